/*
 * Text: folding and tokenising.
 *
 * DESIGN
 * ------
 * A token is a maximal run of letters and digits. Input is UTF-8; each code
 * point is classified:
 *
 *   - ASCII letters are lower-cased, digits kept, other ASCII separates;
 *   - U+00C0..U+024F (Latin-1 Supplement, Latin Extended-A, most of
 *     Extended-B) fold through the table below to ASCII: "é" -> "e",
 *     "ß" -> "ss", "Æ" -> "ae", "Ł" -> "l", "ș" -> "s"; x and ÷ separate;
 *   - combining marks (U+0300..U+036F and friends) are dropped, so a
 *     decomposed "e" + U+0301 folds like "é";
 *   - U+0080..U+00BF (NBSP, ¿, «, ...), general punctuation, symbols,
 *     CJK punctuation, fullwidth punctuation, private use and emoji
 *     separate;
 *   - anything else (Greek, Cyrillic, CJK, ...) is a letter kept as is,
 *     without case folding;
 *   - a byte that does not start a valid UTF-8 sequence separates.
 *
 * Pure functions over caller buffers; thread-safe.
 */
#include "text.h"

#include <stdint.h>
#include <string.h>

enum { C_SEP, C_SKIP, C_FOLD, C_RAW };

/* U+00C0..U+024F: NULL separates, "" is a letter kept as is. */
static const char *const fold_table[0x250 - 0xC0] = {
	"a",
	"a",
	"a",
	"a",
	"a",
	"a",
	"ae",
	"c",
	"e",
	"e",
	"e",
	"e",
	"i",
	"i",
	"i",
	"i",
	"d",
	"n",
	"o",
	"o",
	"o",
	"o",
	"o",
	NULL,
	"o",
	"u",
	"u",
	"u",
	"u",
	"y",
	"th",
	"ss",
	"a",
	"a",
	"a",
	"a",
	"a",
	"a",
	"ae",
	"c",
	"e",
	"e",
	"e",
	"e",
	"i",
	"i",
	"i",
	"i",
	"d",
	"n",
	"o",
	"o",
	"o",
	"o",
	"o",
	NULL,
	"o",
	"u",
	"u",
	"u",
	"u",
	"y",
	"th",
	"y",
	"a",
	"a",
	"a",
	"a",
	"a",
	"a",
	"c",
	"c",
	"c",
	"c",
	"c",
	"c",
	"c",
	"c",
	"d",
	"d",
	"d",
	"d",
	"e",
	"e",
	"e",
	"e",
	"e",
	"e",
	"e",
	"e",
	"e",
	"e",
	"g",
	"g",
	"g",
	"g",
	"g",
	"g",
	"g",
	"g",
	"h",
	"h",
	"h",
	"h",
	"i",
	"i",
	"i",
	"i",
	"i",
	"i",
	"i",
	"i",
	"i",
	"i",
	"ij",
	"ij",
	"j",
	"j",
	"k",
	"k",
	"k",
	"l",
	"l",
	"l",
	"l",
	"l",
	"l",
	"l",
	"l",
	"l",
	"l",
	"n",
	"n",
	"n",
	"n",
	"n",
	"n",
	"n",
	"n",
	"n",
	"o",
	"o",
	"o",
	"o",
	"o",
	"o",
	"oe",
	"oe",
	"r",
	"r",
	"r",
	"r",
	"r",
	"r",
	"s",
	"s",
	"s",
	"s",
	"s",
	"s",
	"s",
	"s",
	"t",
	"t",
	"t",
	"t",
	"t",
	"t",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"w",
	"w",
	"y",
	"y",
	"y",
	"z",
	"z",
	"z",
	"z",
	"z",
	"z",
	"s",
	"b",
	"b",
	"",
	"",
	"",
	"",
	"",
	"c",
	"c",
	"d",
	"d",
	"",
	"",
	"",
	"",
	"",
	"",
	"f",
	"f",
	"g",
	"",
	"",
	"",
	"i",
	"k",
	"k",
	"l",
	"",
	"",
	"n",
	"n",
	"o",
	"o",
	"o",
	"",
	"",
	"p",
	"p",
	"",
	"",
	"",
	"",
	"",
	"t",
	"t",
	"t",
	"t",
	"u",
	"u",
	"",
	"v",
	"y",
	"y",
	"z",
	"z",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"dz",
	"dz",
	"dz",
	"lj",
	"lj",
	"lj",
	"nj",
	"nj",
	"nj",
	"a",
	"a",
	"i",
	"i",
	"o",
	"o",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"u",
	"",
	"a",
	"a",
	"a",
	"a",
	"ae",
	"ae",
	"g",
	"g",
	"g",
	"g",
	"k",
	"k",
	"o",
	"o",
	"o",
	"o",
	"",
	"",
	"j",
	"dz",
	"dz",
	"dz",
	"g",
	"g",
	"",
	"",
	"n",
	"n",
	"a",
	"a",
	"ae",
	"ae",
	"o",
	"o",
	"a",
	"a",
	"a",
	"a",
	"e",
	"e",
	"e",
	"e",
	"i",
	"i",
	"i",
	"i",
	"o",
	"o",
	"o",
	"o",
	"r",
	"r",
	"r",
	"r",
	"u",
	"u",
	"u",
	"u",
	"s",
	"s",
	"t",
	"t",
	"",
	"",
	"h",
	"h",
	"",
	"",
	"",
	"",
	"",
	"",
	"a",
	"a",
	"e",
	"e",
	"o",
	"o",
	"o",
	"o",
	"o",
	"o",
	"o",
	"o",
	"y",
	"y",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
	"",
};

static const char ascii_fold[128] = {
	['0'] = '0',
	['1'] = '1',
	['2'] = '2',
	['3'] = '3',
	['4'] = '4',
	['5'] = '5',
	['6'] = '6',
	['7'] = '7',
	['8'] = '8',
	['9'] = '9',
	['A'] = 'a',
	['B'] = 'b',
	['C'] = 'c',
	['D'] = 'd',
	['E'] = 'e',
	['F'] = 'f',
	['G'] = 'g',
	['H'] = 'h',
	['I'] = 'i',
	['J'] = 'j',
	['K'] = 'k',
	['L'] = 'l',
	['M'] = 'm',
	['N'] = 'n',
	['O'] = 'o',
	['P'] = 'p',
	['Q'] = 'q',
	['R'] = 'r',
	['S'] = 's',
	['T'] = 't',
	['U'] = 'u',
	['V'] = 'v',
	['W'] = 'w',
	['X'] = 'x',
	['Y'] = 'y',
	['Z'] = 'z',
	['a'] = 'a',
	['b'] = 'b',
	['c'] = 'c',
	['d'] = 'd',
	['e'] = 'e',
	['f'] = 'f',
	['g'] = 'g',
	['h'] = 'h',
	['i'] = 'i',
	['j'] = 'j',
	['k'] = 'k',
	['l'] = 'l',
	['m'] = 'm',
	['n'] = 'n',
	['o'] = 'o',
	['p'] = 'p',
	['q'] = 'q',
	['r'] = 'r',
	['s'] = 's',
	['t'] = 't',
	['u'] = 'u',
	['v'] = 'v',
	['w'] = 'w',
	['x'] = 'x',
	['y'] = 'y',
	['z'] = 'z',
};

/* Decodes the code point at s[0..len). Returns the bytes it takes (1..4),
 * with *cpp = -1 for an invalid sequence (1 byte consumed). */
static size_t
utf8_decode(const unsigned char *s, size_t len, int32_t *cpp)
{
	unsigned char c = s[0];
	size_t        n;
	int32_t       cp, min;

	if (c < 0x80) {
		*cpp = c;
		return (1);
	} else if (c >= 0xC2 && c <= 0xDF) {
		n = 2, cp = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3, cp = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4, cp = c & 0x07, min = 0x10000;
	} else {
		*cpp = -1;
		return (1);
	}
	if (len < n) {
		*cpp = -1;
		return (1);
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*cpp = -1;
			return (1);
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
		*cpp = -1;
		return (1);
	}
	*cpp = cp;
	return (n);
}

static int
classify(int32_t cp, const char **foldp)
{
	if (cp < 0) {
		return (C_SEP);
	}
	if (cp < 0xC0) {
		/* ASCII never gets here (hotel__tok_next() has a fast path);
		 * U+0080..U+00BF are controls and punctuation. */
		return (C_SEP);
	}
	if (cp < 0x250) {
		const char *f = fold_table[cp - 0xC0];
		if (f == NULL) {
			return (C_SEP);
		}
		if (f[0] == '\0') {
			return (C_RAW);
		}
		*foldp = f;
		return (C_FOLD);
	}
	if (cp >= 0x2B0 && cp <= 0x2FF) {
		return (C_SEP); /* spacing modifiers: ʻ ˆ ˜ */
	}
	if ((cp >= 0x300 && cp <= 0x36F) || (cp >= 0x1AB0 && cp <= 0x1AFF)
	    || (cp >= 0x1DC0 && cp <= 0x1DFF) || (cp >= 0x20D0 && cp <= 0x20FF)
	    || (cp >= 0xFE20 && cp <= 0xFE2F)) {
		return (C_SKIP);
	}
	if ((cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F)
	    || (cp >= 0xE000 && cp <= 0xF8FF) || (cp >= 0xFE10 && cp <= 0xFE6F)
	    || (cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20)
	    || (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65)
	    || cp == 0xFEFF || cp >= 0xFFF0) {
		if (cp >= 0x20000 && cp <= 0x3FFFF) {
			return (C_RAW); /* CJK extension planes */
		}
		if (cp >= 0x10000 && cp < 0x1F000) {
			return (C_RAW); /* historic scripts and such */
		}
		return (C_SEP);
	}
	return (C_RAW);
}

void
hotel__tok_init(hotel__tokenizer *t, const char *s, size_t len)
{
	t->t_s = (const unsigned char *) s;
	t->t_len = len;
	t->t_pos = 0;
}

size_t
hotel__tok_next(hotel__tokenizer *t, char *buf)
{
	const unsigned char *s = t->t_s;
	size_t               len = t->t_len;
	size_t               pos = t->t_pos;
	size_t               out = 0;
	bool                 in = false; /* inside a token */
	bool                 full = false;

	while (pos < len) {
		int32_t     cp;
		const char *f = NULL;
		size_t      n;
		int         cls;

		/* ASCII fast path. */
		if (s[pos] < 0x80) {
			char c = ascii_fold[s[pos]];
			if (c == 0) {
				if (in) {
					break;
				}
				pos++;
				continue;
			}
			pos++;
			in = true;
			if (!full) {
				if (out < HOTEL__TOKEN_MAX) {
					buf[out++] = c;
				} else {
					full = true;
				}
			}
			continue;
		}
		n = utf8_decode(s + pos, len - pos, &cp);
		cls = classify(cp, &f);
		if (cls == C_SEP) {
			if (in) {
				break;
			}
			pos += n;
			continue;
		}
		pos += n;
		if (cls == C_SKIP) {
			continue; /* a mark inside or before a word */
		}
		in = true;
		if (full) {
			continue;
		}
		if (cls == C_FOLD) {
			size_t fl = strlen(f);
			if (out + fl > HOTEL__TOKEN_MAX) {
				full = true;
				continue;
			}
			memcpy(buf + out, f, fl);
			out += fl;
		} else {
			if (out + n > HOTEL__TOKEN_MAX) {
				full = true;
				continue;
			}
			memcpy(buf + out, s + pos - n, n);
			out += n;
		}
	}
	t->t_pos = pos;
	return (out);
}

size_t
hotel__fold_words(const char *s, char *out, size_t cap, bool *trailing_sep)
{
	hotel__tokenizer t;
	char             tok[HOTEL__TOKEN_MAX];
	size_t           n, len = 0, slen = strlen(s);
	size_t           end = 0; /* input position after the last token */

	if (cap == 0) {
		return (0);
	}
	hotel__tok_init(&t, s, slen);
	while ((n = hotel__tok_next(&t, tok)) > 0) {
		size_t need = n + (len > 0 ? 1 : 0);
		if (len + need > cap - 1) {
			break;
		}
		if (len > 0) {
			out[len++] = ' ';
		}
		memcpy(out + len, tok, n);
		len += n;
		end = t.t_pos;
	}
	out[len] = '\0';
	if (trailing_sep != NULL) {
		*trailing_sep = len > 0 && end < slen;
	}
	return (len);
}
