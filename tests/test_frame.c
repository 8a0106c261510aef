/*
 * fs/frame.c: lines and binary frames cut into records, with each way of
 * finding newlines the CPU has, against a byte-at-a-time reference.
 */
#include "testutil.h"

#include "frame.h"

static const enum frame_scan scans[] = {
	FRAME_SCAN_MEMCHR, FRAME_SCAN_SSE2, FRAME_SCAN_AVX512,
};
static const char *const scan_names[] = { "memchr", "sse2", "avx512" };

/* Lines of 1..300 bytes (newline included), then a tail without one. */
static uint8_t *make_lines(size_t nlines, size_t tail, size_t *len)
{
	size_t cap = nlines * 300 + tail, at = 0;
	uint8_t *d = malloc(cap);

	assert_non_null(d);
	for (size_t l = 0; l < nlines; l++) {
		size_t n = 1 + tu_rand() % 300;
		for (size_t i = 0; i + 1 < n; i++)
			d[at++] = (uint8_t)('a' + tu_rand() % 26);
		d[at++] = '\n';
	}
	for (size_t i = 0; i < tail; i++)
		d[at++] = (uint8_t)('a' + tu_rand() % 26);
	*len = at;
	return d;
}

/* The reference: one byte at a time from at. */
static int ref_lines(const uint8_t *d, size_t len, size_t max, size_t at,
		     uint32_t *lens, uint32_t *n, size_t *end)
{
	*n = 0;
	for (size_t i = at; i < len; i++) {
		if (d[i] != '\n')
			continue;
		if (i + 1 - at > max)
			return -EMSGSIZE;
		lens[(*n)++] = (uint32_t)(i + 1 - at);
		at = i + 1;
	}
	*end = at;
	return 0;
}

static void check_lines(const uint8_t *d, size_t len, size_t max,
			size_t start)
{
	uint32_t *want = malloc((len + 1) * sizeof(*want)), nwant;
	size_t want_end, at = start;
	struct frame_lens fl = { 0 };
	int want_rc, rc;

	assert_non_null(want);
	want_rc = ref_lines(d, len, max, start, want, &nwant, &want_end);
	/* Lengths already there stay. */
	assert_int_equal(frame_add(&fl, 7, 7), 0);
	rc = frame_lines(&fl, max, d, len, &at);
	assert_int_equal(rc, want_rc);
	assert_int_equal(fl.v[0], 7);
	if (rc == 0) {
		assert_int_equal(fl.n, 1 + nwant);
		assert_memory_equal(fl.v + 1, want, nwant * sizeof(*want));
		assert_int_equal(at, want_end);
	}
	frame_lens_free(&fl);
	free(want);
}

static void test_lines(void **state)
{
	(void)state;
	tu_seed(11);
	for (size_t s = 0; s < sizeof(scans) / sizeof(scans[0]); s++) {
		size_t len;
		uint8_t *d;

		if (!frame_use_scan(scans[s])) {
			print_message("no %s on this CPU\n", scan_names[s]);
			continue;
		}
		for (size_t tail = 0; tail < 70; tail += 23) {
			d = make_lines(2000, tail, &len);
			check_lines(d, len, 300, 0);
			check_lines(d, len, 300, 5);   /* from inside a line */
			/* Too long somewhere: at each of the first 200 lines,
			 * inside the 64-byte blocks and in the tail alike. */
			check_lines(d, len, 150, 0);
			for (size_t cut = 0; cut < 200; cut++)
				check_lines(d, len > 64 * cut + 100 ?
					    64 * cut + 100 : len, 150, 0);
			free(d);
		}
		/* Exactly max is a record, max + 1 is not: after 0..9
		 * records of max bytes, in blocks and in the tail. */
		d = malloc(1200);
		for (size_t k = 0; k < 10; k++) {
			memset(d, 'x', 1200);
			for (size_t i = 1; i <= k + 1; i++)
				d[i * 100 - 1] = '\n';
			check_lines(d, 1200, 100, 0);
			d[(k + 1) * 100 - 1] = 'x';
			d[(k + 1) * 100] = '\n';
			check_lines(d, 1200, 100, 0);
			check_lines(d, (k + 1) * 100 + 1, 100, 0);
		}
		free(d);
		/* No newline at all, and newlines only. */
		d = calloc(1000, 1);
		check_lines(d, 1000, 10, 0);
		memset(d, '\n', 1000);
		check_lines(d, 1000, 1, 0);
		free(d);
	}
	assert_true(frame_use_scan(FRAME_SCAN_BEST));
}

static void put_frame(uint8_t *d, size_t *at, uint32_t n)
{
	d[(*at)++] = (uint8_t)(n >> 24);
	d[(*at)++] = (uint8_t)(n >> 16);
	d[(*at)++] = (uint8_t)(n >> 8);
	d[(*at)++] = (uint8_t)n;
	memset(d + *at, '\n', n); /* newlines mean nothing here */
	*at += n;
}

static void test_binary(void **state)
{
	uint8_t d[4096];
	uint32_t sizes[] = { 0, 1, 100, 5, 0, 300 };
	struct frame_lens fl = { 0 };
	size_t len = 0, at = 0;

	(void)state;
	for (size_t i = 0; i < 6; i++)
		put_frame(d, &len, sizes[i]);
	assert_int_equal(frame_size(d + 4), 5);
	/* Every cut: whole frames before it, the rest left. */
	for (size_t cut = 0; cut <= len; cut++) {
		size_t end = 0, whole = 0;
		fl.n = 0;
		at = 0;
		assert_int_equal(frame_binary(&fl, 300, d, cut, &at), 0);
		for (size_t i = 0; i < 6 && end + 4 + sizes[i] <= cut; i++) {
			assert_true(whole < fl.n);
			assert_int_equal(fl.v[whole++], 4 + sizes[i]);
			end += 4 + sizes[i];
		}
		assert_int_equal(fl.n, whole);
		assert_int_equal(at, end);
	}
	/* A length above max is refused as soon as it is read. */
	fl.n = 0;
	at = 0;
	assert_int_equal(frame_binary(&fl, 299, d, len - 10, &at), -EMSGSIZE);
	frame_lens_free(&fl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_binary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
