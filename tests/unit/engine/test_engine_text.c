/*
 * Tokenising and folding (src/engine/text.c).
 */
#include "engine_test.h"

#include "engine/text.h"

/* Tokens of s joined with '|'. */
static const char *
toks(const char *s)
{
	static char      out[1024];
	char             tok[HOTEL__TOKEN_MAX + 1];
	hotel__tokenizer t;
	size_t           n, len = 0;

	out[0] = '\0';
	hotel__tok_init(&t, s, strlen(s));
	while ((n = hotel__tok_next(&t, tok)) > 0) {
		assert_true(n <= HOTEL__TOKEN_MAX);
		if (len > 0) {
			out[len++] = '|';
		}
		memcpy(out + len, tok, n);
		len += n;
		out[len] = '\0';
	}
	return (out);
}

static void
test_ascii(void **state)
{
	(void) state;
	assert_string_equal(toks("Hello, World!"), "hello|world");
	assert_string_equal(toks("rock'n'roll"), "rock|n|roll");
	assert_string_equal(toks("wi-fi & SPA"), "wi|fi|spa");
	assert_string_equal(toks("100% 2x B&B"), "100|2x|b|b");
	assert_string_equal(toks(""), "");
	assert_string_equal(toks("  ,,; !! "), "");
	assert_string_equal(toks("a_b.c/d\te\nf"), "a|b|c|d|e|f");
}

static void
test_latin_accents(void **state)
{
	(void) state;
	assert_string_equal(toks("Hôtel Zürich"), "hotel|zurich");
	assert_string_equal(toks("São Paulo"), "sao|paulo");
	assert_string_equal(
	    toks("MÁLAGA Málaga málaga"), "malaga|malaga|malaga");
	assert_string_equal(toks("Straße"), "strasse");
	assert_string_equal(toks("ÆØÅ æøå Œuvre"), "aeoa|aeoa|oeuvre");
	assert_string_equal(
	    toks("àáâãäå çÇ èéêë ñÑ öø üÜ ÿ"), "aaaaaa|cc|eeee|nn|oo|uu|y");
	assert_string_equal(toks("Łódź Kraków Gdańsk"), "lodz|krakow|gdansk");
	assert_string_equal(toks("İSTANBUL ıi"), "istanbul|ii");
	assert_string_equal(toks("Brașov Țara"), "brasov|tara");
	assert_string_equal(toks("Þingvellir Ðorð"), "thingvellir|dord");
	/* Decomposed: e + COMBINING ACUTE ACCENT folds like é. */
	assert_string_equal(
	    toks("Cafe\xcc\x81 e\xcc\x81te\xcc\x81"), "cafe|ete");
	/* x and ÷ separate. */
	assert_string_equal(toks("2×3÷4"), "2|3|4");
}

/* Every letter of Latin-1 Supplement and Latin Extended-A folds to
 * lower-case ASCII letters. */
static void
test_latin_blocks_fold_to_ascii(void **state)
{
	(void) state;
	for (unsigned cp = 0xC0; cp <= 0x17F; cp++) {
		char        s[4];
		const char *t;
		if (cp == 0xD7 || cp == 0xF7) {
			s[0] = (char) (0xC0 | (cp >> 6));
			s[1] = (char) (0x80 | (cp & 0x3F));
			s[2] = '\0';
			assert_string_equal(toks(s), "");
			continue;
		}
		s[0] = (char) (0xC0 | (cp >> 6));
		s[1] = (char) (0x80 | (cp & 0x3F));
		s[2] = '\0';
		t = toks(s);
		if (t[0] == '\0') {
			fail_msg("U+%04X gives no token", cp);
		}
		for (const char *p = t; *p; p++) {
			if (*p < 'a' || *p > 'z') {
				fail_msg("U+%04X folds to \"%s\"", cp, t);
			}
		}
	}
}

static void
test_utf8_other_scripts_and_punctuation(void **state)
{
	(void) state;
	/* CJK and Greek are letters, kept as they are. */
	assert_string_equal(toks("東京 hotel"), "東京|hotel");
	assert_string_equal(toks("ΑΘΗΝΑ"), "ΑΘΗΝΑ");
	/* Punctuation outside ASCII separates: em dash, NBSP, guillemets,
	 * CJK full stop, right single quote, emoji. */
	assert_string_equal(toks("foo\xe2\x80\x94"
	                         "bar"),
	    "foo|bar");
	assert_string_equal(toks("a\xc2\xa0"
	                         "b"),
	    "a|b");
	assert_string_equal(toks("\xc2\xab"
	                         "x"
	                         "\xc2\xbb"),
	    "x");
	assert_string_equal(toks("東京\xe3\x80\x82"
	                         "大阪"),
	    "東京|大阪");
	assert_string_equal(toks("it\xe2\x80\x99s"), "it|s");
	assert_string_equal(toks("spa\xf0\x9f\x98\x80pool"), "spa|pool");
}

static void
test_invalid_utf8(void **state)
{
	(void) state;
	assert_string_equal(toks("a\xff"
	                         "b"),
	    "a|b");
	assert_string_equal(toks("caf\xc3"), "caf"); /* cut short */
	assert_string_equal(toks("x\xc0\xaf"
	                         "y"),
	    "x|y"); /* overlong */
	assert_string_equal(toks("x\xed\xa0\x80"
	                         "y"),
	    "x|y"); /* surrogate */
	assert_string_equal(toks("x\xf4\x90\x80\x80"
	                         "y"),
	    "x|y"); /* > 10FFFF */
	assert_string_equal(toks("\x80\x80"
	                         "ok"),
	    "ok");
}

static void
test_long_tokens_cut(void **state)
{
	char        s[300];
	const char *t;
	(void) state;

	memset(s, 'A', 200);
	strcpy(s + 200, " next");
	t = toks(s);
	assert_int_equal(strchr(t, '|') - t, HOTEL__TOKEN_MAX);
	assert_string_equal(strchr(t, '|'), "|next");
	/* A multi-byte letter is never split. */
	memset(s, 'a', 63);
	strcpy(s + 63, "東x");
	assert_string_equal(toks(s),
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaa");
}

static void
test_fold_words(void **state)
{
	char   out[64];
	bool   trailing;
	size_t n;
	(void) state;

	n = hotel__fold_words(
	    "  Grand-Palace  TÔKYO ", out, sizeof(out), &trailing);
	assert_string_equal(out, "grand palace tokyo");
	assert_int_equal(n, strlen(out));
	assert_true(trailing);
	hotel__fold_words("grand pal", out, sizeof(out), &trailing);
	assert_string_equal(out, "grand pal");
	assert_false(trailing);
	hotel__fold_words("", out, sizeof(out), &trailing);
	assert_string_equal(out, "");
	assert_false(trailing);
	hotel__fold_words("!!", out, sizeof(out), &trailing);
	assert_false(trailing);
	/* Cut at a token boundary. */
	hotel__fold_words("alpha beta gamma", out, 12, NULL);
	assert_string_equal(out, "alpha beta");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_latin_accents),
		cmocka_unit_test(test_latin_blocks_fold_to_ascii),
		cmocka_unit_test(test_utf8_other_scripts_and_punctuation),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_long_tokens_cut),
		cmocka_unit_test(test_fold_words),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
