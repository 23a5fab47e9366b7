/*
 * Text: UTF-8 decoding, folding and tokenising, shared by the index, the
 * queries and suggestions so that all three see the same words.
 */
#ifndef ENGINE_TEXT_H
#define ENGINE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Longest folded token in bytes; longer words are cut (at a character
 * boundary) and the rest of the word is skipped. */
#define HOTEL__TOKEN_MAX 64

typedef struct hotel__tokenizer {
	const unsigned char *t_s;
	size_t               t_len;
	size_t               t_pos;
} hotel__tokenizer;

/* Borrows s (len bytes, need not be NUL-terminated) until the last call. */
void hotel__tok_init(hotel__tokenizer *t, const char *s, size_t len);

/* Writes the next folded token into buf (HOTEL__TOKEN_MAX bytes, no NUL)
 * and returns its length, or 0 when there are no more tokens. */
size_t hotel__tok_next(hotel__tokenizer *t, char *buf);

/* Folds s into its tokens joined by single spaces, NUL-terminated, at most
 * cap - 1 bytes (cut at a token boundary). Returns the length. If
 * trailing_sep is not NULL it is set when s has at least one token and ends
 * with a separator. */
size_t hotel__fold_words(
    const char *s, char *out, size_t cap, bool *trailing_sep);

#endif /* ENGINE_TEXT_H */
