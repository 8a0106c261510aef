/*
 * Framing: cutting the bytes written to a partition file into records.
 * Lines end at each '\n'; binary frames are a 4-byte big-endian length
 * and then that many bytes. Pure functions over a growing array of
 * record lengths, so that they can be tested alone.
 */
#ifndef TOPICFS_FRAME_H
#define TOPICFS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The lengths of the records found so far. */
struct frame_lens {
	uint32_t *v;
	uint32_t n;
	size_t cap; /* entries allocated */
};

void frame_lens_free(struct frame_lens *fl);

/* One more record of len bytes: -EMSGSIZE above max, -ENOMEM. */
int frame_add(struct frame_lens *fl, size_t len, size_t max);

/*
 * Add the records that data[*at, len) holds whole, and move *at to the
 * end of the last one (the rest is an incomplete record). -EMSGSIZE if a
 * record exceeds max bytes (lines: with the newline; binary: the length
 * field's value), -ENOMEM.
 */
int frame_lines(struct frame_lens *fl, size_t max, const uint8_t *data,
		size_t len, size_t *at);
int frame_binary(struct frame_lens *fl, size_t max, const uint8_t *data,
		 size_t len, size_t *at);

/* The size of a binary frame whose first 4 bytes are h. */
size_t frame_size(const uint8_t h[4]);

/*
 * How frame_lines finds newlines: the fastest way the CPU has (the
 * default), or another one, for tests. false if the CPU lacks it.
 */
enum frame_scan {
	FRAME_SCAN_BEST,
	FRAME_SCAN_MEMCHR,  /* memchr() per line */
	FRAME_SCAN_SSE2,    /* 64-byte blocks, 4 SSE2 compares */
	FRAME_SCAN_AVX512,  /* 64-byte blocks, 1 AVX-512BW compare */
};
bool frame_use_scan(enum frame_scan scan);

#endif
