/*
 * The engine calls replication builds on (log.h, "Replication"): batches
 * read and appended as stored, leader epochs as Kafka answers them,
 * truncation under readers (ESTALE, files never cut under a held
 * segment), full truncation, log start moves, syncs by offset, the
 * checkpoint on its own schedule, wake-ups, and no allocation on lookups.
 *
 * This program is linked with -Wl,--wrap=malloc (tests/meson.build) so
 * that it can count the engine's malloc calls.
 */
#include "testutil.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"

/* ---- counting malloc ----------------------------------------------------- */

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);

static _Atomic uint64_t mallocs;

void *__wrap_malloc(size_t size)
{
	atomic_fetch_add(&mallocs, 1);
	return __real_malloc(size);
}

/* ---- helpers ------------------------------------------------------------- */

/* Timestamps of the tests' records start here (now, at start: records
 * from 1970 would roll a segment per batch by segment.ms). */
static int64_t ts0;

/* Append n records of len bytes, epoch and timestamp given; byte k of
 * record o is tu_fill's, xor'ed with flavour (so that a truncated log
 * can be refilled with different bytes at the same offsets). */
static void put(struct log *l, uint32_t n, uint32_t len, uint32_t epoch,
		int64_t ts, uint8_t flavour)
{
	struct log_append_opts o = { epoch, ts };
	struct log_state st;
	uint32_t *lens = malloc(n * sizeof(*lens));
	uint8_t *buf = malloc((size_t)n * len);

	assert_non_null(lens);
	assert_non_null(buf);
	log_get_state(l, &st);
	for (uint32_t i = 0; i < n; i++) {
		lens[i] = len;
		tu_fill(buf + (size_t)i * len, len, st.leo + i);
		for (uint32_t k = 0; k < len; k++)
			buf[(size_t)i * len + k] ^= flavour;
	}
	assert_int_equal(log_append(l, buf, (size_t)n * len, lens, n, &o, NULL), 0);
	free(lens);
	free(buf);
}

/* Text that compresses, so that compressed batches are smaller. */
static void put_text(struct log *l, uint32_t n, uint32_t epoch, int64_t ts)
{
	static const char *const words[] = { "GET ", "PUT ", "/api/v1/", "ok ",
					     "status=200 ", "latency_ms=4 " };
	uint32_t lens[64];
	char buf[64 * 80];
	size_t at = 0;
	struct log_append_opts o = { epoch, ts };

	assert_true(n <= 64);
	for (uint32_t i = 0; i < n; i++) {
		size_t start = at;
		for (int w = 0; w < 6; w++) {
			const char *s = words[tu_rand() % 6];
			memcpy(buf + at, s, strlen(s));
			at += strlen(s);
		}
		buf[at++] = '\n';
		lens[i] = (uint32_t)(at - start);
	}
	assert_int_equal(log_append(l, buf, at, lens, n, &o, NULL), 0);
}

static uint8_t *read_extent(const struct log_extent *x)
{
	uint8_t *buf = malloc(x->len ? x->len : 1);

	assert_non_null(buf);
	assert_null(x->mem);
	assert_true(x->fd >= 0);
	assert_int_equal(pread(x->fd, buf, x->len, (off_t)x->off),
			 (ssize_t)x->len);
	return buf;
}

/* A run read from a log, copied into memory (the wire payload). */
struct wire {
	uint8_t *meta, *data;
	size_t meta_len, data_len;
	struct log_batch_run run;
};

static void wire_free(struct wire *w)
{
	free(w->meta);
	free(w->data);
	memset(w, 0, sizeof(*w));
}

static bool wire_read(struct log_cursor *c, uint64_t offset, size_t max,
		      struct wire *w)
{
	memset(w, 0, sizeof(*w));
	assert_int_equal(log_read_batches(c, offset, LOG_UPTO_LEO, max, &w->run), 0);
	if (w->run.batches == 0)
		return false;
	w->meta = read_extent(&w->run.meta);
	w->data = read_extent(&w->run.data);
	w->meta_len = w->run.meta.len;
	w->data_len = w->run.data.len;
	return true;
}

/* Replicate a to b as a follower would: fetch from b's end, append. */
static uint32_t replicate(struct log *a, struct log *b, size_t max)
{
	struct log_cursor *c;
	struct log_state st;
	struct wire w;
	uint32_t runs = 0;

	assert_int_equal(log_cursor_new(a, &c), 0);
	for (;;) {
		log_get_state(b, &st);
		if (!wire_read(c, st.leo, max, &w))
			break;
		assert_int_equal(w.run.base_offset, st.leo);
		assert_int_equal(log_append_batches(b, w.meta, w.meta_len, w.data,
						    w.data_len, NULL), 0);
		wire_free(&w);
		runs++;
	}
	log_cursor_free(c);
	return runs;
}

/* Every batch of a and b, side by side: the same header fields (all but
 * data_pos, which is where a replica keeps it), lengths and stored bytes. */
static void expect_same_batches(struct log *a, struct log *b)
{
	struct log_cursor *ca, *cb;
	struct wire wa, wb;
	uint64_t off;
	struct log_state st;

	log_get_state(a, &st);
	off = st.start_offset;
	assert_int_equal(log_cursor_new(a, &ca), 0);
	assert_int_equal(log_cursor_new(b, &cb), 0);
	while (wire_read(ca, off, 1, &wa)) {
		struct batch_hdr ha, hb;
		assert_true(wire_read(cb, off, 1, &wb));
		assert_int_equal(wa.run.batches, 1);
		assert_int_equal(wb.run.batches, 1);
		assert_int_equal(wa.meta_len, wb.meta_len);
		assert_int_equal(wa.data_len, wb.data_len);
		assert_int_equal(batch_hdr_decode(wa.meta, &ha), 0);
		assert_int_equal(batch_hdr_decode(wb.meta, &hb), 0);
		assert_int_equal(ha.base_offset, hb.base_offset);
		assert_int_equal(ha.pos, hb.pos);
		assert_int_equal(ha.max_ts, hb.max_ts);
		assert_int_equal(ha.count, hb.count);
		assert_int_equal(ha.stored_len, hb.stored_len);
		assert_int_equal(ha.logical_len, hb.logical_len);
		assert_int_equal(ha.epoch, hb.epoch);
		assert_int_equal(ha.crc, hb.crc);
		assert_int_equal(ha.codec, hb.codec);
		assert_memory_equal(wa.meta + BATCH_HDR_SIZE, wb.meta + BATCH_HDR_SIZE,
				    wa.meta_len - BATCH_HDR_SIZE);
		assert_memory_equal(wa.data, wb.data, wa.data_len);
		off = wa.run.end_offset;
		wire_free(&wa);
		wire_free(&wb);
	}
	assert_int_equal(off, st.leo);
	log_cursor_free(ca);
	log_cursor_free(cb);
}

/* a and b hold the same log: ends, stream, offsets, epochs, times. */
static void expect_same_log(struct log *a, struct log *b, uint32_t max_epoch)
{
	struct log_state sa, sb;
	uint8_t *ba, *bb;
	uint64_t la, lb;

	log_get_state(a, &sa);
	log_get_state(b, &sb);
	assert_int_equal(sa.start_offset, sb.start_offset);
	assert_int_equal(sa.start_pos, sb.start_pos);
	assert_int_equal(sa.leo, sb.leo);
	assert_int_equal(sa.leo_pos, sb.leo_pos);
	assert_int_equal(sa.leader_epoch, sb.leader_epoch);
	assert_int_equal(sa.max_ts, sb.max_ts);
	assert_int_equal(log_set_hw(a, sa.leo), 0);
	assert_int_equal(log_set_hw(b, sb.leo), 0);
	ba = tu_read_all(a, &la);
	bb = tu_read_all(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ba, bb, la);
	free(ba);
	free(bb);
	for (uint64_t o = sa.start_offset; o <= sa.leo; o++) {
		uint64_t pa, pb;
		assert_int_equal(log_offset_to_pos(a, o, &pa), 0);
		assert_int_equal(log_offset_to_pos(b, o, &pb), 0);
		assert_int_equal(pa, pb);
	}
	for (uint32_t e = 0; e <= max_epoch + 1; e++) {
		uint32_t fa, fb;
		uint64_t ea, eb;
		assert_int_equal(log_epoch_end(a, e, &fa, &ea), 0);
		assert_int_equal(log_epoch_end(b, e, &fb, &eb), 0);
		assert_int_equal(fa, fb);
		assert_int_equal(ea, eb);
	}
	for (int64_t t = ts0; t <= ts0 + 150; t += 7) {
		uint64_t oa, ob;
		assert_int_equal(log_time_to_offset(a, t, &oa), 0);
		assert_int_equal(log_time_to_offset(b, t, &ob), 0);
		assert_int_equal(oa, ob);
	}
	expect_same_batches(a, b);
}

static uint32_t segment_files(const char *dir)
{
	char cmd[512];
	FILE *p;
	unsigned n = 0;

	snprintf(cmd, sizeof(cmd), "ls %s | grep -c '\\.meta$'", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%u", &n), 1);
	pclose(p);
	return n;
}

/* ---- 1, 2: batches as stored ---------------------------------------------- */

/*
 * Every batch read from log A and appended to log B gives B the same
 * records, offsets, epochs, timestamps and partition stream, for every
 * codec, across segment rolls (B rolls at other points than A), and B
 * keeps them across a clean and an unclean reopen.
 */
static void round_trip_case(int codec)
{
	char *da = tu_mkdtemp(), *db = tu_mkdtemp();
	struct log_config ca, cb;
	struct log *a, *b;
	int64_t ts = ts0;

	tu_small_config(&ca);
	ca.codec = codec;
	cb = ca;
	cb.codec = LOG_CODEC_NONE; /* the batches' codec wins, not B's */
	cb.segment_bytes = 8192;
	a = tu_open(da, &ca);
	b = tu_open(db, &cb);
	for (uint32_t e = 1; e <= 4; e++) {
		if (e == 3) {
			/* A leader that wrote nothing in epoch 3. */
			assert_int_equal(log_begin_epoch(a, 3), 0);
			continue;
		}
		for (int i = 0; i < 30; i++) {
			if (i % 2)
				put_text(a, 1 + (uint32_t)(tu_rand() % 40), e, ts++);
			else
				put(a, 1 + (uint32_t)(tu_rand() % 30),
				    1 + (uint32_t)(tu_rand() % 90), e, ts++, 0);
		}
	}
	assert_true(replicate(a, b, 3000) > 1);
	expect_same_log(a, b, 4);
	{
		/* Both rolled, at other points (B's segments are smaller). */
		struct log_state sa, sb;
		log_get_state(a, &sa);
		log_get_state(b, &sb);
		assert_true(sa.segments >= 2);
		assert_true(sb.segments > sa.segments);
	}
	/* One more round after more appends: B goes on from its end. */
	put_text(a, 20, 4, ts++);
	replicate(a, b, 100000);
	expect_same_log(a, b, 4);

	assert_int_equal(log_close(b), 0);
	b = tu_open(db, &cb);
	expect_same_log(a, b, 4);
	log_abandon(b);
	b = tu_open(db, &cb);
	expect_same_log(a, b, 4);
	assert_int_equal(tu_dump_problems(db), 0);
	assert_int_equal(log_close(a), 0);
	assert_int_equal(log_close(b), 0);
	tu_rmdir(da);
	tu_rmdir(db);
}

static void test_round_trip_none(void **state)
{
	(void)state;
	round_trip_case(LOG_CODEC_NONE);
}

static void test_round_trip_lz4(void **state)
{
	(void)state;
	round_trip_case(LOG_CODEC_LZ4);
}

static void test_round_trip_zstd(void **state)
{
	(void)state;
	round_trip_case(LOG_CODEC_ZSTD);
}

/* The limits of a batch read: bytes, high watermark, segment, range. */
static void test_read_batches_limits(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_batch_run r;
	struct log_cursor *c;
	struct log_state st;
	struct log *l;
	(void)state;

	tu_small_config(&cfg);
	cfg.codec = LOG_CODEC_ZSTD;
	l = tu_open(dir, &cfg);
	/* Batches 0..9 of 10 records each, then more to roll segments. */
	for (int i = 0; i < 10; i++)
		put_text(l, 10, 1, 0);
	assert_int_equal(log_cursor_new(l, &c), 0);

	/* A limit below one batch still gives one whole batch. */
	assert_int_equal(log_read_batches(c, 0, LOG_UPTO_LEO, 1, &r), 0);
	assert_int_equal(r.batches, 1);
	assert_int_equal(r.base_offset, 0);
	assert_int_equal(r.end_offset, 10);
	assert_int_equal(r.meta.len, BATCH_HDR_SIZE + 4 * 10);
	/* Compressed batches stay compressed. */
	assert_true(r.data.len < r.end_pos - r.base_pos);
	/* An offset inside a batch gives the batch holding it. */
	assert_int_equal(log_read_batches(c, 15, LOG_UPTO_LEO, 1, &r), 0);
	assert_int_equal(r.base_offset, 10);
	assert_int_equal(r.end_offset, 20);
	/* The byte limit: whole batches only, within max_bytes. */
	assert_int_equal(log_read_batches(c, 0, LOG_UPTO_LEO,
					  2 * (BATCH_HDR_SIZE + 40) + 1, &r), 0);
	assert_true(r.batches >= 1);
	assert_true(r.meta.len + r.data.len <= 2 * (BATCH_HDR_SIZE + 40) + 1 ||
		    r.batches == 1);
	assert_int_equal(log_read_batches(c, 0, LOG_UPTO_LEO, 1 << 20, &r), 0);
	assert_int_equal(r.batches, 10);
	assert_int_equal(r.end_offset, 100);
	assert_int_equal(r.first_epoch, 1);
	assert_int_equal(r.last_epoch, 1);

	/* Up to the high watermark: a watermark inside a batch holds it. */
	assert_int_equal(log_set_hw(l, 35), 0);
	assert_int_equal(log_read_batches(c, 0, LOG_UPTO_HW, 1 << 20, &r), 0);
	assert_int_equal(r.end_offset, 30);
	assert_int_equal(log_read_batches(c, 30, LOG_UPTO_HW, 1 << 20, &r), 0);
	assert_int_equal(r.batches, 0);
	assert_int_equal(log_read_batches(c, 30, LOG_UPTO_LEO, 1 << 20, &r), 0);
	assert_int_equal(r.base_offset, 30);
	assert_int_equal(r.end_offset, 100);

	/* At the end: nothing; past it: out of range. */
	assert_int_equal(log_read_batches(c, 100, LOG_UPTO_LEO, 1 << 20, &r), 0);
	assert_int_equal(r.batches, 0);
	assert_int_equal(log_read_batches(c, 101, LOG_UPTO_LEO, 1 << 20, &r),
			 -ERANGE);

	/* A run stops at the end of its segment. */
	for (int i = 0; i < 200; i++)
		put(l, 10, 50, 1, 0, 0);
	log_get_state(l, &st);
	assert_true(st.segments > 2);
	{
		uint64_t off = 0;
		uint32_t runs = 0;
		while (off < st.leo) {
			assert_int_equal(log_read_batches(c, off, LOG_UPTO_LEO,
							  SIZE_MAX, &r), 0);
			assert_true(r.batches > 0);
			off = r.end_offset;
			runs++;
		}
		assert_int_equal(runs, st.segments);
	}
	/* Below the log start: out of range. */
	log_cursor_free(c);
	assert_int_equal(log_set_hw(l, st.leo), 0);
	assert_int_equal(log_advance_start(l, 500), 0);
	assert_int_equal(log_cursor_new(l, &c), 0);
	assert_int_equal(log_read_batches(c, 499, LOG_UPTO_LEO, 1, &r), -ERANGE);
	assert_int_equal(log_read_batches(c, 500, LOG_UPTO_LEO, 1, &r), 0);
	assert_true(r.base_offset <= 500 && 500 < r.end_offset);
	log_cursor_free(c);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* A run taken from a three-batch log, to damage. */
static void sample_run(struct log *a, struct wire *w)
{
	struct log_cursor *c;

	assert_int_equal(log_cursor_new(a, &c), 0);
	assert_true(wire_read(c, 0, 1 << 20, w));
	assert_int_equal(w->run.batches, 3);
	log_cursor_free(c);
}

static void expect_refused(struct log *b, const char *dir, struct wire *w,
			   int err)
{
	struct log_state before, after;
	char *logf = tu_join(dir, "00000000000000000000.log");
	char *metaf = tu_join(dir, "00000000000000000000.meta");
	int64_t ls = tu_file_size(logf), ms = tu_file_size(metaf);

	log_get_state(b, &before);
	assert_int_equal(log_append_batches(b, w->meta, w->meta_len, w->data,
					    w->data_len, NULL), err);
	log_get_state(b, &after);
	assert_int_equal(after.leo, before.leo);
	assert_int_equal(after.leo_pos, before.leo_pos);
	assert_int_equal(after.leader_epoch, before.leader_epoch);
	assert_int_equal(tu_file_size(logf), ls);
	assert_int_equal(tu_file_size(metaf), ms);
	free(logf);
	free(metaf);
}

/* Bad runs are refused whole, and the log is exactly as before. */
static void test_append_batches_refused(void **state)
{
	char *da = tu_mkdtemp(), *db = tu_mkdtemp();
	struct log_config cfg;
	struct log *a, *b;
	struct batch_hdr h;
	struct wire w;
	size_t second;
	(void)state;

	tu_small_config(&cfg);
	a = tu_open(da, &cfg);
	b = tu_open(db, &cfg);
	put(a, 5, 20, 2, ts0, 0);
	put(a, 5, 20, 2, ts0 + 1, 0);
	put(a, 5, 20, 3, ts0 + 2, 0);
	sample_run(a, &w);
	assert_int_equal(batch_hdr_decode(w.meta, &h), 0);
	second = (size_t)batch_meta_size(h.count);

	/* A payload byte of the last batch: its CRC fails; the first two
	 * batches, which are fine, are not appended either. */
	w.data[w.data_len - 1] ^= 1;
	expect_refused(b, db, &w, -EBADMSG);
	w.data[w.data_len - 1] ^= 1;
	/* A record length (the CRC covers the lengths too). */
	w.meta[second + BATCH_HDR_SIZE] ^= 1;
	expect_refused(b, db, &w, -EBADMSG);
	w.meta[second + BATCH_HDR_SIZE] ^= 1;
	/* A header byte: the header checksum fails. */
	w.meta[second + 40] ^= 1;
	expect_refused(b, db, &w, -EBADMSG);
	w.meta[second + 40] ^= 1;
	/* Bytes missing or left over. */
	w.data_len--;
	expect_refused(b, db, &w, -EBADMSG);
	w.data_len++;
	w.meta_len--;
	expect_refused(b, db, &w, -EBADMSG);
	w.meta_len++;
	{
		uint8_t *more = realloc(w.data, w.data_len + 1);
		assert_non_null(more);
		w.data = more;
		w.data[w.data_len++] = 'x';
		expect_refused(b, db, &w, -EBADMSG);
		w.data_len--;
	}
	/* Nothing at all. */
	assert_int_equal(log_append_batches(b, w.meta, 0, w.data, 0, NULL),
			 -EINVAL);

	/* A well-formed run that does not continue b: epoch below b's. */
	assert_int_equal(log_begin_epoch(b, 7), 0);
	expect_refused(b, db, &w, -EINVAL);
	wire_free(&w);
	log_close(b);
	tu_rmdir(db);
	db = tu_mkdtemp();
	b = tu_open(db, &cfg);

	/* The good run goes in; the same run again starts at the wrong
	 * offset. */
	sample_run(a, &w);
	assert_int_equal(log_append_batches(b, w.meta, w.meta_len, w.data,
					    w.data_len, NULL), 0);
	expect_refused(b, db, &w, -EINVAL);
	expect_same_log(a, b, 4);
	wire_free(&w);
	assert_int_equal(log_close(a), 0);
	assert_int_equal(log_close(b), 0);
	tu_rmdir(da);
	tu_rmdir(db);
}

/* ---- 3: leader epochs ------------------------------------------------------ */

static void expect_end(struct log *l, uint32_t epoch, uint32_t want_epoch,
		       uint64_t want_end)
{
	uint32_t e;
	uint64_t end;

	assert_int_equal(log_epoch_end(l, epoch, &e, &end), 0);
	assert_int_equal(e, want_epoch);
	assert_int_equal(end, want_end);
}

/* log_epoch_end answers as LeaderEpochFileCache.endOffsetFor. */
static void test_epochs_as_kafka(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	/* An empty cache: undefined, whatever the epoch. */
	expect_end(l, 0, LOG_EPOCH_UNDEFINED, LOG_OFFSET_UNDEFINED);
	expect_end(l, 5, LOG_EPOCH_UNDEFINED, LOG_OFFSET_UNDEFINED);

	/* A new leader records its epoch before writing anything. */
	assert_int_equal(log_begin_epoch(l, 2), 0);
	expect_end(l, 2, 2, 0);
	/* Epoch 2 wrote nothing: epoch 3 starting there replaces it. */
	assert_int_equal(log_begin_epoch(l, 3), 0);
	expect_end(l, 2, 2, 0); /* older than the first entry (3 at 0) */
	put(l, 10, 10, 3, 0, 0);            /* epoch 3: offsets 0..9 */
	assert_int_equal(log_begin_epoch(l, 3), 0); /* the same: no-op */
	assert_int_equal(log_begin_epoch(l, 2), -EINVAL);
	assert_int_equal(log_begin_epoch(l, LOG_EPOCH_UNDEFINED), -EINVAL);
	assert_int_equal(log_begin_epoch(l, 5), 0); /* epoch 5 from 10 */
	log_get_state(l, &st);
	assert_int_equal(st.leader_epoch, 5);
	assert_int_equal(st.leo, 10);
	/* Before epoch 5 wrote a record, the end of epoch 3 is known. */
	expect_end(l, 3, 3, 10);
	expect_end(l, 4, 3, 10);   /* the largest epoch <= 4, next start */
	expect_end(l, 5, 5, 10);   /* the newest: the log end */
	{
		struct log_append_opts low = { 0, 0 }; /* below 5: refused */
		uint32_t lens[1] = { 3 };
		assert_int_equal(log_append(l, "ab\n", 3, lens, 1, &low, NULL),
				 -EINVAL);
	}
	log_get_state(l, &st);
	assert_int_equal(st.leo, 10);
	expect_end(l, 5, 5, 10);
	{
		struct log_append_info info;
		uint32_t lens[1] = { 3 };
		assert_int_equal(log_append(l, "ab\n", 3, lens, 1, NULL, &info), 0);
		assert_int_equal(info.base_offset, 10);
	}
	expect_end(l, 5, 5, 11);
	expect_end(l, 1, 1, 0);    /* older than the first: (1, its start) */
	expect_end(l, 6, LOG_EPOCH_UNDEFINED, LOG_OFFSET_UNDEFINED);
	expect_end(l, LOG_EPOCH_UNDEFINED, LOG_EPOCH_UNDEFINED,
		   LOG_OFFSET_UNDEFINED);

	/* Durable: the same after a clean and an unclean reopen. */
	assert_int_equal(log_begin_epoch(l, 8), 0);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	expect_end(l, 5, 5, 11);
	expect_end(l, 8, 8, 11);
	log_abandon(l);
	l = tu_open(dir, &cfg);
	expect_end(l, 5, 5, 11);
	expect_end(l, 8, 8, 11);
	log_get_state(l, &st);
	assert_int_equal(st.leader_epoch, 8);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* ---- 4, 7: truncation ------------------------------------------------------ */

static ino_t inode_of(const char *dir, const char *name)
{
	char *p = tu_join(dir, name);
	struct stat sb;

	assert_int_equal(stat(p, &sb), 0);
	free(p);
	return sb.st_ino;
}

/*
 * Readers learn of a truncation (KIP-320): a cursor that was shown bytes
 * now removed gets -ESTALE at their positions, never the new bytes;
 * one still below the truncation point reads on, the new bytes included.
 * The file a reader holds extents of is never cut: a held segment is
 * replaced by a copy, one nobody holds is cut in place.
 */
static void test_truncate_under_readers(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_extent ext[8];
	struct log_cursor *ahead, *behind, *fresh;
	uint8_t buf[4096], old_bytes[200], *all;
	uint64_t pos, cut_pos, leo, len;
	unsigned n;
	ino_t ino;
	ssize_t got;
	struct log *l;
	(void)state;

	log_config_default(&cfg); /* one segment */
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 10; i++)  /* offsets 0..99, positions 0..1999 */
		put(l, 10, 20, 1, 0, 0);  /* in batches of 10 */
	assert_int_equal(log_set_hw(l, 100), 0);
	assert_int_equal(log_cursor_new(l, &ahead), 0);
	assert_int_equal(log_cursor_new(l, &behind), 0);
	/* ahead reads up to 1600 and holds extents of [1400, 1600). */
	pos = 0;
	assert_int_equal(log_read_copy(ahead, &pos, buf, 1400), 1400);
	pos = 1400;
	got = log_read(ahead, &pos, 200, ext, 8, &n);
	assert_int_equal(got, 200);
	assert_int_equal(n, 1);
	assert_int_equal(pread(ext[0].fd, old_bytes, 200, (off_t)ext[0].off), 200);
	/* behind has read up to 400 only. */
	pos = 0;
	assert_int_equal(log_read_copy(behind, &pos, buf, 400), 400);

	/* Truncate to offset 50 (position 1000) and write other bytes. */
	ino = inode_of(dir, "00000000000000000000.log");
	assert_int_equal(log_truncate(l, 50, &leo), 0);
	assert_int_equal(leo, 50);
	for (int i = 0; i < 5; i++)
		put(l, 10, 20, 2, 0, 0x5a);
	assert_int_equal(log_set_hw(l, 100), 0);
	assert_int_equal(log_offset_to_pos(l, 50, &cut_pos), 0);
	assert_int_equal(cut_pos, 1000);
	/* The held file was replaced, not cut: the extent still reads the
	 * bytes it was given. */
	assert_true(inode_of(dir, "00000000000000000000.log") != ino);
	assert_int_equal(pread(ext[0].fd, buf, 200, (off_t)ext[0].off), 200);
	assert_memory_equal(buf, old_bytes, 200);

	/* ahead: at 1600 (shown bytes were removed) -ESTALE, never the new
	 * bytes; below the cut it still reads, and stops at the cut. */
	pos = 1600;
	assert_int_equal(log_read(ahead, &pos, 100, ext, 8, &n), -ESTALE);
	pos = 1200;
	assert_int_equal(log_read_copy(ahead, &pos, buf, 100), -ESTALE);
	pos = 900;
	assert_int_equal(log_read_copy(ahead, &pos, buf, 500), 100);
	pos = 1000;
	assert_int_equal(log_read_copy(ahead, &pos, buf, 10), -ESTALE);

	/* behind: its bytes are all still there; it reads on into the new
	 * ones, which are what the log now holds. */
	all = tu_read_all(l, &len);
	assert_int_equal(len, 2000);
	pos = 400;
	assert_int_equal(log_read_copy(behind, &pos, buf, 1600), 1600);
	assert_memory_equal(buf, all + 400, 1600);
	assert_true(memcmp(buf + 1200, old_bytes, 200) != 0);
	/* A cursor made after the truncation reads the new log. */
	assert_int_equal(log_cursor_new(l, &fresh), 0);
	pos = 1600;
	assert_int_equal(log_read_copy(fresh, &pos, buf, 400), 400);
	assert_memory_equal(buf, all + 1600, 400);
	free(all);

	/* With no reader holding the segment, it is cut in place. */
	log_cursor_free(ahead);
	log_cursor_free(behind);
	log_cursor_free(fresh);
	ino = inode_of(dir, "00000000000000000000.log");
	assert_int_equal(log_truncate(l, 70, &leo), 0);
	assert_int_equal(inode_of(dir, "00000000000000000000.log"), ino);
	{
		char *f = tu_join(dir, "00000000000000000000.log");
		assert_int_equal(tu_file_size(f), 1400);
		free(f);
	}
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	{
		struct log_state st;
		log_get_state(l, &st);
		assert_int_equal(st.leo, 70);
	}
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	tu_rmdir(dir);
}

/*
 * A follower wholly behind its leader's start restarts empty at the
 * leader's start offset and position; the epoch cache empties; readers
 * that were shown the old bytes get -ESTALE. Durable across reopens.
 */
static void test_truncate_fully(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_cursor *c;
	struct log_state st;
	struct log_append_info info;
	uint8_t buf[256];
	uint64_t pos = 0;
	struct log *l;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 40; i++)
		put(l, 10, 30, 1, 0, 0);
	assert_int_equal(log_set_hw(l, 400), 0);
	assert_int_equal(log_cursor_new(l, &c), 0);
	assert_int_equal(log_read_copy(c, &pos, buf, 100), 100);

	assert_int_equal(log_truncate_fully(l, 5000, 777777), 0);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 5000);
	assert_int_equal(st.start_pos, 777777);
	assert_int_equal(st.leo, 5000);
	assert_int_equal(st.leo_pos, 777777);
	assert_int_equal(st.hw, 5000);
	assert_int_equal(st.recovery_point, 5000);
	assert_int_equal(st.segments, 1);
	assert_int_equal(segment_files(dir), 1);
	expect_end(l, 1, LOG_EPOCH_UNDEFINED, LOG_OFFSET_UNDEFINED);
	pos = 100;
	assert_int_equal(log_read_copy(c, &pos, buf, 100), -ESTALE);
	log_cursor_free(c);

	/* The leader's batches go on from there. */
	{
		uint32_t lens[2] = { 4, 4 };
		struct log_append_opts o = { 3, 0 };
		assert_int_equal(log_append(l, "abc\ndef\n", 8, lens, 2, &o,
					    &info), 0);
	}
	assert_int_equal(info.base_offset, 5000);
	assert_int_equal(info.base_pos, 777777);
	expect_end(l, 3, 3, 5002);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 5000);
	assert_int_equal(st.start_pos, 777777);
	assert_int_equal(st.leo, 5002);
	expect_end(l, 3, 3, 5002);
	expect_end(l, 1, 1, 5000);
	assert_int_equal(log_set_hw(l, 5002), 0);
	assert_int_equal(log_cursor_new(l, &c), 0);
	pos = 0;
	assert_int_equal(log_read_copy(c, &pos, buf, sizeof(buf)), 8);
	assert_int_equal(pos, 777777);
	assert_memory_equal(buf, "abc\ndef\n", 8);
	log_cursor_free(c);
	/* Unclean: the same. */
	log_abandon(l);
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 5000);
	assert_int_equal(st.leo, 5002);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	tu_rmdir(dir);
}

/* A follower's log start follows its leader's (maybeIncrementLogStartOffset). */
static void test_advance_start(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_state st;
	struct log_cursor *c;
	uint8_t buf[64], want[30];
	uint64_t pos, p250;
	uint32_t before;
	struct log *l;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 300; i++)
		put(l, 10, 30, 1, 0, 0);
	assert_int_equal(log_set_hw(l, 2800), 0);
	before = segment_files(dir);
	assert_true(before > 4);

	assert_int_equal(log_advance_start(l, 2801), -ERANGE); /* above HW */
	assert_int_equal(log_advance_start(l, 2255), 0);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 2255);
	assert_int_equal(log_offset_to_pos(l, 2255, &p250), 0);
	assert_int_equal(st.start_pos, p250);
	assert_true(segment_files(dir) < before);
	assert_int_equal(st.segments, segment_files(dir));
	assert_int_equal(log_advance_start(l, 100), 0); /* below: no-op */
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 2255);
	/* A read below the start begins at the start. */
	assert_int_equal(log_cursor_new(l, &c), 0);
	pos = 0;
	assert_int_equal(log_read_copy(c, &pos, buf, 30), 30);
	assert_int_equal(pos, p250);
	tu_fill(want, 30, 2255);
	assert_memory_equal(buf, want, 30);
	log_cursor_free(c);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 2255);
	assert_int_equal(st.start_pos, p250);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* ---- 5: syncs by offset, checkpoints on their own schedule ------------------ */

static uint64_t syncs_of_sync_to(struct log *l, uint64_t offset)
{
	uint64_t before = io_sync_count();

	assert_int_equal(log_sync_to(l, offset), 0);
	return io_sync_count() - before;
}

static void test_sync_to_counts(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	uint64_t before, flush_syncs;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	put(l, 5, 20, 1, 0, 0);
	/* A commit in the active segment: its .log and .meta, no more. */
	assert_int_equal(syncs_of_sync_to(l, 5), 2);
	log_get_state(l, &st);
	assert_int_equal(st.recovery_point, 5);
	/* Already durable: no system call at all. */
	assert_int_equal(syncs_of_sync_to(l, 5), 0);
	assert_int_equal(syncs_of_sync_to(l, 3), 0);
	/* Concurrent commits share: one sync covers all written so far. */
	put(l, 5, 20, 1, 0, 0);
	put(l, 5, 20, 1, 0, 0);
	assert_int_equal(syncs_of_sync_to(l, 10), 2);
	assert_int_equal(syncs_of_sync_to(l, 15), 0);
	/* Past the end: up to the end. */
	put(l, 1, 20, 1, 0, 0);
	assert_int_equal(syncs_of_sync_to(l, UINT64_MAX), 2);
	log_get_state(l, &st);
	assert_int_equal(st.recovery_point, 16);

	/* Across a roll: both segments' data, the sealed index once, and
	 * the directory once. */
	log_get_state(l, &st);
	while (true) {
		struct log_state now;
		put(l, 10, 100, 1, 0, 0);
		log_get_state(l, &now);
		if (now.segments > st.segments)
			break;
	}
	assert_int_equal(syncs_of_sync_to(l, UINT64_MAX), 2 + 1 + 2 + 1);
	put(l, 1, 20, 1, 0, 0);
	assert_int_equal(syncs_of_sync_to(l, UINT64_MAX), 2);

	/* The checkpoint: written when something changed, else nothing. */
	before = io_sync_count();
	assert_int_equal(log_checkpoint(l), 0);
	assert_int_equal(io_sync_count() - before, 2); /* file, directory */
	before = io_sync_count();
	assert_int_equal(log_checkpoint(l), 0);
	assert_int_equal(io_sync_count() - before, 0);
	assert_int_equal(log_set_hw(l, 3), 0);
	before = io_sync_count();
	assert_int_equal(log_checkpoint(l), 0);
	assert_int_equal(io_sync_count() - before, 2);

	/* log_flush: the same sync plus the checkpoint. */
	put(l, 1, 20, 1, 0, 0);
	before = io_sync_count();
	assert_int_equal(log_flush(l), 0);
	flush_syncs = io_sync_count() - before;
	assert_int_equal(flush_syncs, 2 + 2);
	assert_int_equal(log_close(l), 0);

	/* The checkpoint holds what was synced and checkpointed. */
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	assert_int_equal(st.hw, 3);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* ---- 6: wake-ups ---------------------------------------------------------- */

struct waiter {
	struct log *l;
	uint64_t seen;
	int rc;
	_Atomic int started, done;
};

static void deadline_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	struct timespec dl;

	deadline_in(&dl, 30000);
	atomic_store(&w->started, 1);
	w->rc = log_wait_change(w->l, w->seen, &dl);
	atomic_store(&w->done, 1);
	return NULL;
}

/* Spin-free wait for a flag, with a deadline (the test's, not the log's). */
static bool wait_flag(_Atomic int *flag, int64_t ms)
{
	struct timespec t0, t, nap = { 0, 1000000 };

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(flag)) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return false;
		nanosleep(&nap, NULL);
	}
	return true;
}

static void expect_wakes(struct log *l, void (*move)(struct log *))
{
	struct waiter w = { .l = l };
	pthread_t th;

	w.seen = log_change_seq(l);
	pthread_create(&th, NULL, waiter_main, &w);
	assert_true(wait_flag(&w.started, 10000));
	/* It waits (nothing moved): not done after a while... */
	assert_false(wait_flag(&w.done, 100));
	move(l);
	/* ... and wakes at once when something does. */
	assert_true(wait_flag(&w.done, 10000));
	pthread_join(th, NULL);
	assert_int_equal(w.rc, 0);
	assert_true(log_change_seq(l) != w.seen);
}

static void move_append(struct log *l)
{
	put(l, 1, 10, 1, 0, 0);
}

static void move_hw(struct log *l)
{
	struct log_state st;
	log_get_state(l, &st);
	assert_int_equal(log_set_hw(l, st.hw + 1), 0);
}

static void move_truncate(struct log *l)
{
	uint64_t leo;
	struct log_state st;
	log_get_state(l, &st);
	assert_int_equal(log_truncate(l, st.leo - 1, &leo), 0);
}

static void test_wait_change(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct timespec dl;
	struct log *l;
	uint64_t seq;
	(void)state;

	log_config_default(&cfg);
	l = tu_open(dir, &cfg);
	put(l, 3, 10, 1, 0, 0);
	expect_wakes(l, move_append);
	expect_wakes(l, move_hw);
	expect_wakes(l, move_truncate);
	expect_wakes(l, log_wake);
	/* Nothing moves: the deadline. A sequence already moved: at once. */
	seq = log_change_seq(l);
	deadline_in(&dl, 50);
	assert_int_equal(log_wait_change(l, seq, &dl), -ETIMEDOUT);
	assert_int_equal(log_wait_change(l, seq - 1, NULL), 0);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* ---- 8: no allocation on lookups; state queries never wait ---------------- */

static void test_no_alloc_per_lookup(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_extent ext[8];
	struct log_cursor *c;
	struct log_batch_run r;
	struct log_state st;
	struct log *l;
	uint64_t n0, pos, off, rec;
	unsigned n;
	(void)state;

	tu_small_config(&cfg);
	cfg.segment_bytes = 1 << 20;
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 400; i++)
		put(l, 20, 50, 1, 0, 0);
	assert_int_equal(log_set_hw(l, 8000), 0);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg); /* nothing verified since open */
	log_get_state(l, &st);
	assert_int_equal(log_cursor_new(l, &c), 0);
	/* The first read of a thread sets up its verification buffer. */
	pos = 0;
	assert_true(log_read(c, &pos, 100, ext, 8, &n) > 0);

	n0 = atomic_load(&mallocs);
	for (int i = 0; i < 200; i++) {
		uint64_t o = tu_rand() % st.leo;
		assert_int_equal(log_offset_to_pos(l, o, &pos), 0);
		assert_int_equal(log_pos_to_offset(l, pos, &off, &rec), 0);
		assert_int_equal(off, o);
		/* A cold range far on: verified now, through the buffer. */
		pos = st.leo_pos - 1 - tu_rand() % (st.leo_pos / 2);
		assert_true(log_read(c, &pos, 100, ext, 8, &n) > 0);
		assert_int_equal(log_read_batches(c, o, LOG_UPTO_HW, 4096, &r), 0);
		assert_true(r.batches > 0);
	}
	assert_int_equal(atomic_load(&mallocs) - n0, 0);
	log_cursor_free(c);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

struct slow_append {
	struct log *l;
	uint8_t *buf;
	size_t len;
	_Atomic int started, done;
};

static void *slow_append_main(void *arg)
{
	struct slow_append *a = arg;
	uint32_t len32 = (uint32_t)a->len;

	atomic_store(&a->started, 1);
	assert_int_equal(log_append(a->l, a->buf, a->len, &len32, 1, NULL, NULL), 0);
	atomic_store(&a->done, 1);
	return NULL;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * log_get_state, log_get_bounds and log_epoch_end while an append takes
 * its time (one 2 MiB record compressed by zstd at level 19, seconds of
 * CPU under the append lock): none of them waits for it.
 */
static void test_state_not_behind_append(void **state)
{
	char *dir = tu_mkdtemp();
	struct slow_append a = { 0 };
	struct log_config cfg;
	struct log_state st;
	struct log_bounds bd;
	pthread_t th;
	int64_t worst = 0, calls = 0, t_start, took;
	uint32_t ep;
	uint64_t end;
	(void)state;

	log_config_default(&cfg);
	cfg.codec = LOG_CODEC_ZSTD;
	cfg.zstd_level = 19;
	cfg.batch_bytes = LOG_RECORD_BYTES_MAX;
	a.l = tu_open(dir, &cfg);
	put(a.l, 1, 10, 1, 0, 0);
	a.len = 2u << 20;
	a.buf = malloc(a.len);
	assert_non_null(a.buf);
	for (size_t i = 0; i < a.len; i++)
		a.buf[i] = (uint8_t)("abcdefgh"[tu_rand() % 8]);
	t_start = mono_us();
	pthread_create(&th, NULL, slow_append_main, &a);
	assert_true(wait_flag(&a.started, 10000));
	while (!atomic_load(&a.done)) {
		int64_t t0 = mono_us(), dt;
		log_get_state(a.l, &st);
		log_get_bounds(a.l, &bd);
		assert_int_equal(log_epoch_end(a.l, 1, &ep, &end), 0);
		dt = mono_us() - t0;
		if (atomic_load(&a.done))
			break; /* this one may have overlapped the end */
		if (dt > worst)
			worst = dt;
		calls++;
		nanosleep(&(struct timespec){ 0, 200000 }, NULL); /* pace */
	}
	pthread_join(th, NULL);
	took = mono_us() - t_start;
	printf("append of 2 MiB took %" PRId64 " ms; %" PRId64 " state "
	       "queries meanwhile, the slowest %" PRId64 " us\n", took / 1000,
	       calls, worst);
	/* Many calls during the append, none of them waiting for it (one
	 * that waited would take most of the append's time; a busy machine
	 * may delay one a little). */
	assert_true(took > 300000);
	assert_true(calls > 10);
	assert_true(worst < took / 3);
	log_get_state(a.l, &st);
	assert_int_equal(st.leo, 2);
	free(a.buf);
	assert_int_equal(log_close(a.l), 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_none),
		cmocka_unit_test(test_round_trip_lz4),
		cmocka_unit_test(test_round_trip_zstd),
		cmocka_unit_test(test_read_batches_limits),
		cmocka_unit_test(test_append_batches_refused),
		cmocka_unit_test(test_epochs_as_kafka),
		cmocka_unit_test(test_truncate_under_readers),
		cmocka_unit_test(test_truncate_fully),
		cmocka_unit_test(test_advance_start),
		cmocka_unit_test(test_sync_to_counts),
		cmocka_unit_test(test_wait_change),
		cmocka_unit_test(test_no_alloc_per_lookup),
		cmocka_unit_test(test_state_not_behind_append),
	};

	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	ts0 = (int64_t)now.tv_sec * 1000;
	tu_seed(9);
	printf("seed %" PRIu64 "\n", tu_seed_used());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
