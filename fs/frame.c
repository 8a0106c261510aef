#include "frame.h"
#include "grow.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif

void frame_lens_free(struct frame_lens *fl)
{
	free(fl->v);
	*fl = (struct frame_lens){ 0 };
}

/* Room for want lengths. */
static int frame_reserve(struct frame_lens *fl, size_t want)
{
	return grow(&fl->v, &fl->cap, want, sizeof(*fl->v));
}

int frame_add(struct frame_lens *fl, size_t len, size_t max)
{
	if (len > max)
		return -EMSGSIZE;
	if (frame_reserve(fl, (size_t)fl->n + 1) < 0)
		return -ENOMEM;
	fl->v[fl->n++] = (uint32_t)len;
	return 0;
}

size_t frame_size(const uint8_t h[4])
{
	return 4 + ((size_t)h[0] << 24 | (size_t)h[1] << 16 |
		    (size_t)h[2] << 8 | h[3]);
}

int frame_binary(struct frame_lens *fl, size_t max, const uint8_t *data,
		 size_t len, size_t *at)
{
	while (len - *at >= 4) {
		size_t rec = frame_size(data + *at);
		int rc;

		if (rec - 4 > max)
			return -EMSGSIZE;
		if (len - *at < rec)
			break;
		if ((rc = frame_add(fl, rec, max + 4)) < 0)
			return rc;
		*at += rec;
	}
	return 0;
}

/*
 * Lines. One memchr() call per line has a fixed cost that dominated for
 * 100-byte lines (11% of the daemon's time in `cat >>`), so on x86-64 the
 * newlines of 64 bytes at a time are found as a bit mask: one AVX-512
 * compare where the CPU has AVX-512BW, four SSE2 compares otherwise
 * (every x86-64 has SSE2). memchr() scans the rest.
 */
typedef ssize_t frame_blocks_fn(struct frame_lens *, size_t, const uint8_t *,
				size_t, size_t *);

#ifdef __x86_64__
static inline uint64_t nl_mask_sse2(const uint8_t *p)
{
	const __m128i nl = _mm_set1_epi8('\n');
	uint64_t m = 0;

	for (int j = 0; j < 4; j++) {
		__m128i v = _mm_loadu_si128((const __m128i *)p + j);
		m |= (uint64_t)(uint16_t)_mm_movemask_epi8(
			_mm_cmpeq_epi8(v, nl)) << (16 * j);
	}
	return m;
}

__attribute__((target("avx512bw")))
static inline uint64_t nl_mask_avx512(const uint8_t *p)
{
	return _mm512_cmpeq_epi8_mask(_mm512_loadu_si512(p),
				      _mm512_set1_epi8('\n'));
}

/*
 * The whole 64-byte blocks of data: each newline ends a record that
 * started at *at. Returns the bytes scanned, or -EMSGSIZE / -ENOMEM.
 * Inlined into one copy per mask function.
 */
static inline __attribute__((always_inline)) ssize_t
frame_blocks(struct frame_lens *fl, size_t max, const uint8_t *data,
	     size_t len, size_t *at, uint64_t (*mask)(const uint8_t *))
{
	uint32_t n = fl->n;
	size_t a = *at, i;

	for (i = 0; i + 64 <= len; i += 64) {
		uint64_t m = mask(data + i);
		if (!m)
			continue;
		/* Room for a newline in each of the 64 bytes. */
		fl->n = n;
		if (frame_reserve(fl, (size_t)n + 64) < 0)
			return -ENOMEM;
		for (uint32_t *v = fl->v; m; m &= m - 1) {
			size_t end = i + (size_t)__builtin_ctzll(m) + 1;
			if (end - a > max) {
				fl->n = n;
				return -EMSGSIZE;
			}
			v[n++] = (uint32_t)(end - a);
			a = end;
		}
	}
	fl->n = n;
	*at = a;
	return (ssize_t)i;
}

static ssize_t frame_blocks_sse2(struct frame_lens *fl, size_t max,
				 const uint8_t *data, size_t len, size_t *at)
{
	return frame_blocks(fl, max, data, len, at, nl_mask_sse2);
}

__attribute__((target("avx512bw")))
static ssize_t frame_blocks_avx512(struct frame_lens *fl, size_t max,
				   const uint8_t *data, size_t len, size_t *at)
{
	return frame_blocks(fl, max, data, len, at, nl_mask_avx512);
}
#endif

static ssize_t frame_blocks_none(struct frame_lens *fl, size_t max,
				 const uint8_t *data, size_t len, size_t *at)
{
	(void)fl;
	(void)max;
	(void)data;
	(void)len;
	(void)at;
	return 0;
}

/* The block scan for scan, or NULL if the CPU lacks it. */
static frame_blocks_fn *scan_fn(enum frame_scan scan)
{
#ifdef __x86_64__
	bool avx512 = __builtin_cpu_supports("avx512bw");

	switch (scan) {
	case FRAME_SCAN_BEST:
		return avx512 ? frame_blocks_avx512 : frame_blocks_sse2;
	case FRAME_SCAN_SSE2:
		return frame_blocks_sse2;
	case FRAME_SCAN_AVX512:
		return avx512 ? frame_blocks_avx512 : NULL;
	case FRAME_SCAN_MEMCHR:
		return frame_blocks_none;
	}
	return NULL;
#else
	return scan == FRAME_SCAN_BEST || scan == FRAME_SCAN_MEMCHR ?
	       frame_blocks_none : NULL;
#endif
}

static frame_blocks_fn *_Atomic blocks_fn; /* NULL: not chosen yet */

bool frame_use_scan(enum frame_scan scan)
{
	frame_blocks_fn *fn = scan_fn(scan);

	if (fn)
		atomic_store_explicit(&blocks_fn, fn, memory_order_relaxed);
	return fn != NULL;
}

int frame_lines(struct frame_lens *fl, size_t max, const uint8_t *data,
		size_t len, size_t *at)
{
	frame_blocks_fn *fn = atomic_load_explicit(&blocks_fn,
						   memory_order_relaxed);
	size_t base = *at, a = 0, i;
	ssize_t done;
	int rc;

	if (!fn) {
		fn = scan_fn(FRAME_SCAN_BEST);
		atomic_store_explicit(&blocks_fn, fn, memory_order_relaxed);
	}
	done = fn(fl, max, data + base, len - base, &a);
	if (done < 0)
		return (int)done;
	i = base + (size_t)done;
	*at = base + a;
	for (;;) {
		const uint8_t *p = memchr(data + i, '\n', len - i);
		if (!p)
			return 0;
		i = (size_t)(p - data) + 1;
		if ((rc = frame_add(fl, i - *at, max)) < 0)
			return rc;
		*at = i;
	}
}
