/*
 * The log engine against a trivial model: a list of (offset, position,
 * length) kept in memory, with record bytes defined by tu_fill(offset).
 */
#include "testutil.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <unistd.h>


struct model {
	uint64_t start;      /* first retained offset */
	uint64_t n;          /* records ever appended */
	uint64_t *pos;       /* position of each record, n + 1 entries */
	int64_t *ts;
	uint64_t cap;
};

static void model_push(struct model *m, uint32_t len, int64_t ts)
{
	if (m->n + 2 > m->cap) {
		m->cap = m->cap ? m->cap * 2 : 1024;
		m->pos = realloc(m->pos, m->cap * sizeof(*m->pos));
		m->ts = realloc(m->ts, m->cap * sizeof(*m->ts));
		assert_non_null(m->pos);
		assert_non_null(m->ts);
	}
	if (m->n == 0)
		m->pos[0] = 0;
	m->ts[m->n] = ts;
	m->pos[m->n + 1] = m->pos[m->n] + len;
	m->n++;
}

static void model_free(struct model *m)
{
	free(m->pos);
	free(m->ts);
}

/* The bytes the model says lie at [a, a+len). */
static void model_bytes(const struct model *m, uint64_t a, uint8_t *out,
			uint64_t len)
{
	uint64_t lo = 0, hi = m->n;

	while (lo + 1 < hi) { /* record containing a */
		uint64_t mid = (lo + hi) / 2;
		if (m->pos[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	for (uint64_t off = lo, done = 0; done < len; off++) {
		uint32_t rl = (uint32_t)(m->pos[off + 1] - m->pos[off]);
		uint8_t rec[4096];
		assert_true(rl <= sizeof(rec));
		tu_fill(rec, rl, off);
		uint64_t from = a + done - m->pos[off];
		uint64_t take = rl - from;
		if (take > len - done)
			take = len - done;
		memcpy(out + done, rec + from, take);
		done += take;
	}
}

static void append_model(struct log *l, struct model *m, uint32_t n,
			 uint32_t maxlen)
{
	uint32_t lens[256];
	struct log_append_info info;

	assert_true(n <= 256);
	for (uint32_t i = 0; i < n; i++)
		lens[i] = 1 + (uint32_t)(tu_rand() % maxlen);
	info = tu_append(l, lens, n);
	assert_int_equal(info.base_offset, m->n);
	assert_int_equal(info.end_offset, m->n + n);
	for (uint32_t i = 0; i < n; i++)
		model_push(m, lens[i], info.timestamp_ms);
	assert_int_equal(info.base_pos, m->pos[info.base_offset]);
	assert_int_equal(info.end_pos, m->pos[m->n]);
}

/* Every lookup and a few reads agree with the model. */
static void check_model(struct log *l, const struct model *m, int probes)
{
	struct log_state st;
	struct log_cursor *c;
	uint8_t got[8192], want[8192];

	log_get_state(l, &st);
	assert_int_equal(st.leo, m->n);
	assert_int_equal(st.start_offset, m->start);
	assert_int_equal(st.leo_pos, m->n ? m->pos[m->n] : 0);
	assert_int_equal(st.start_pos, m->n ? m->pos[m->start] : 0);
	if (m->n == m->start)
		return;
	assert_int_equal(log_cursor_new(l, &c), 0);
	for (int i = 0; i < probes; i++) {
		uint64_t off = m->start + tu_rand() % (m->n - m->start);
		uint64_t pos, got_off, rec_pos;
		uint64_t p = m->pos[m->start] +
			     tu_rand() % (m->pos[m->n] - m->pos[m->start]);

		assert_int_equal(log_offset_to_pos(l, off, &pos), 0);
		assert_int_equal(pos, m->pos[off]);
		assert_int_equal(log_pos_to_offset(l, p, &got_off, &rec_pos), 0);
		assert_true(m->pos[got_off] <= p && p < m->pos[got_off + 1]);
		assert_int_equal(rec_pos, m->pos[got_off]);

		uint64_t len = 1 + tu_rand() % sizeof(got);
		if (len > m->pos[m->n] - p)
			len = m->pos[m->n] - p;
		uint64_t at = p;
		ssize_t n = log_read_copy(c, &at, got, len);
		assert_int_equal(n, (ssize_t)len);
		assert_int_equal(at, p);
		model_bytes(m, p, want, len);
		assert_memory_equal(got, want, len);
	}
	uint64_t pos;
	assert_int_equal(log_offset_to_pos(l, m->n, &pos), 0);
	assert_int_equal(pos, m->pos[m->n]);
	assert_int_equal(log_offset_to_pos(l, m->n + 1, &pos), -ERANGE);
	if (m->start > 0)
		assert_int_equal(log_offset_to_pos(l, m->start - 1, &pos), -ERANGE);
	log_cursor_free(c);
}

static void test_round_trip_dense_offsets(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log *l;
	uint64_t len;
	uint8_t *all, *want;
	(void)state;

	tu_seed(1);
	log_config_default(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 50; i++)
		append_model(l, &m, 1 + (uint32_t)(tu_rand() % 40), 200);
	all = tu_read_all(l, &len);
	assert_int_equal(len, m.pos[m.n]);
	want = malloc(len);
	model_bytes(&m, 0, want, len);
	assert_memory_equal(all, want, len);
	check_model(l, &m, 200);
	assert_int_equal(log_close(l), 0);

	/* Again after a clean reopen. */
	l = tu_open(dir, &cfg);
	check_model(l, &m, 200);
	append_model(l, &m, 10, 100);
	check_model(l, &m, 50);
	assert_int_equal(log_close(l), 0);
	free(all);
	free(want);
	model_free(&m);
	tu_rmdir(dir);
}

static void test_zero_and_bad_records_rejected(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log *l;
	struct log_state st;
	uint32_t lens[2] = { 3, 0 };
	(void)state;

	log_config_default(&cfg);
	l = tu_open(dir, &cfg);
	assert_int_equal(log_append(l, "abc", 3, lens, 2, NULL, NULL), -EINVAL);
	lens[1] = 1;
	assert_int_equal(log_append(l, "abc", 3, lens, 2, NULL, NULL), -EINVAL);
	assert_int_equal(log_append(l, "abc", 3, lens, 0, NULL, NULL), -EINVAL);
	log_get_state(l, &st);
	assert_int_equal(st.leo, 0);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

static void test_segment_roll(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log_state st;
	struct log *l;
	(void)state;

	tu_seed(2);
	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 100; i++)
		append_model(l, &m, 10, 200);
	log_get_state(l, &st);
	assert_true(st.segments > 3);
	check_model(l, &m, 300);
	/* Every segment is within segment.bytes. */
	for (uint64_t off = 0; off < m.n; off++) {
		char name[64], *p;
		snprintf(name, sizeof(name), "%020llu.log", (unsigned long long)off);
		p = tu_join(dir, name);
		int64_t sz = tu_file_size(p);
		assert_true(sz <= (int64_t)cfg.segment_bytes);
		free(p);
	}
	/* The index filling up rolls too. */
	assert_int_equal(log_close(l), 0);
	cfg.segment_bytes = 1 << 20;
	cfg.index_bytes = LOG_INDEX_BYTES_MIN; /* 10 entries */
	cfg.index_interval_bytes = 1;
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	uint32_t before = st.segments;
	for (int i = 0; i < 30; i++)
		append_model(l, &m, 1, 10);
	log_get_state(l, &st);
	assert_true(st.segments >= before + 2);
	check_model(l, &m, 100);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	model_free(&m);
	tu_rmdir(dir);
}

static void test_segment_ms_roll(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	struct log_append_opts o = { 0, 1000 };
	uint32_t len = 3;
	(void)state;

	log_config_default(&cfg);
	cfg.segment_ms = 10;
	l = tu_open(dir, &cfg);
	/* Segment age is judged against now: an old first batch rolls. */
	assert_int_equal(log_append(l, "ab\n", 3, &len, 1, &o, NULL), 0);
	assert_int_equal(log_append(l, "cd\n", 3, &len, 1, NULL, NULL), 0);
	log_get_state(l, &st);
	assert_int_equal(st.segments, 2);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* Random appends, config changes, retention and reopens vs. the model. */
static void test_model_random(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log *l;
	(void)state;

	tu_seed(0x5eed);
	print_message("seed %llu\n", (unsigned long long)tu_seed_used());
	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int step = 0; step < 400; step++) {
		uint64_t r = tu_rand() % 100;
		if (r < 70) {
			append_model(l, &m, 1 + (uint32_t)(tu_rand() % 60),
				     1 + (uint32_t)(tu_rand() % 300));
		} else if (r < 78) {
			cfg.retention_bytes = 20000 + (int64_t)(tu_rand() % 60000);
			assert_int_equal(log_set_config(l, &cfg), 0);
			assert_true(log_retention(l, 0) >= 0);
			cfg.retention_bytes = -1;
			assert_int_equal(log_set_config(l, &cfg), 0);
			struct log_state st;
			log_get_state(l, &st);
			assert_true(st.start_offset >= m.start);
			m.start = st.start_offset;
		} else if (r < 86) {
			assert_int_equal(log_close(l), 0);
			l = tu_open(dir, &cfg);
		} else if (r < 92) {
			/* Crash without flushing: page cache survives. */
			log_abandon(l);
			l = tu_open(dir, &cfg);
			assert_int_equal(log_set_hw(l, m.n), 0);
		} else if (r < 96) {
			assert_int_equal(log_flush(l), 0);
		} else {
			cfg.codec = (int)(tu_rand() % LOG_CODEC_COUNT);
			cfg.segment_bytes = 4096 + tu_rand() % 40000;
			assert_int_equal(log_set_config(l, &cfg), 0);
		}
		if (step % 10 == 0)
			check_model(l, &m, 20);
	}
	check_model(l, &m, 500);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	model_free(&m);
	tu_rmdir(dir);
}

static void test_time_lookup(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log *l;
	uint64_t off;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 200; i++) {
		struct log_append_opts o = { 0, 1000000 + i * 10 };
		uint8_t buf[64];
		uint32_t lens[2] = { 32, 32 };
		tu_fill(buf, 64, (uint64_t)i);
		assert_int_equal(log_append(l, buf, 64, lens, 2, &o, NULL), 0);
	}
	/* Batch i holds offsets 2i, 2i+1 at time 1000000 + 10i. */
	assert_int_equal(log_time_to_offset(l, 0, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(log_time_to_offset(l, 1000000, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(log_time_to_offset(l, 1000001, &off), 0);
	assert_int_equal(off, 2);
	for (int i = 0; i < 200; i += 7) {
		assert_int_equal(log_time_to_offset(l, 1000000 + i * 10, &off), 0);
		assert_int_equal(off, 2 * (uint64_t)i);
		assert_int_equal(log_time_to_offset(l, 1000000 + i * 10 - 5, &off), 0);
		assert_int_equal(off, 2 * (uint64_t)i);
	}
	assert_int_equal(log_time_to_offset(l, 99999999, &off), 0);
	assert_int_equal(off, 400);
	/* Timestamps never go backwards. */
	struct log_append_opts back = { 0, 5 };
	struct log_append_info info;
	uint32_t one = 1;
	assert_int_equal(log_append(l, "x", 1, &one, 1, &back, &info), 0);
	assert_int_equal(info.timestamp_ms, 1000000 + 199 * 10);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

static void test_retention(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log_state st;
	struct log_cursor *c;
	struct log *l;
	uint8_t buf[100];
	(void)state;

	tu_seed(3);
	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 60; i++)
		append_model(l, &m, 20, 200);
	log_get_state(l, &st);
	uint32_t segs = st.segments;
	assert_true(segs > 4);

	/* A reader inside the first segment keeps its bytes alive. */
	assert_int_equal(log_cursor_new(l, &c), 0);
	struct log_extent ext[8];
	unsigned n;
	uint64_t at = 0;
	assert_true(log_read(c, &at, 50, ext, 8, &n) == 50);
	int held_fd = ext[0].fd;

	/* By time: nothing is old enough yet. */
	cfg.retention_ms = 3600 * 1000;
	log_set_config(l, &cfg);
	assert_int_equal(log_retention(l, st.max_ts + 1000), 0);
	/* Far in the future, everything but the active segment goes. */
	assert_int_equal(log_retention(l, st.max_ts + 3600 * 1000 + 1),
			 (int)segs - 1);
	log_get_state(l, &st);
	assert_int_equal(st.segments, 1);
	assert_true(st.start_offset > 0);
	m.start = st.start_offset;
	check_model(l, &m, 50);

	/* The old segment's bytes are still readable through the held fd. */
	uint8_t want[50];
	assert_int_equal(pread(held_fd, buf, 50, 0), 50);
	model_bytes(&m, 0, want, 50);
	assert_memory_equal(buf, want, 50);
	/* A read below the start begins at the start. */
	at = 0;
	assert_true(log_read_copy(c, &at, buf, sizeof(buf)) > 0);
	assert_int_equal(at, st.start_pos);
	log_cursor_free(c);

	/* By size. */
	for (int i = 0; i < 60; i++)
		append_model(l, &m, 20, 80);
	cfg.retention_ms = -1;
	cfg.retention_bytes = 30000;
	log_set_config(l, &cfg);
	assert_true(log_retention(l, 0) > 0);
	log_get_state(l, &st);
	assert_true(st.size_bytes >= 30000 - cfg.segment_bytes);
	assert_true(st.size_bytes < 30000 + cfg.segment_bytes);
	m.start = st.start_offset;
	check_model(l, &m, 50);

	/* The log start survives both kinds of reopen. */
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	check_model(l, &m, 50);
	log_abandon(l);
	l = tu_open(dir, &cfg);
	log_set_hw(l, m.n);
	check_model(l, &m, 50);
	assert_int_equal(log_close(l), 0);
	model_free(&m);
	tu_rmdir(dir);
}

/* l (hw at its end) reads back as data, also after a reopen, and its
 * files verify clean. Closes l. */
static void check_round_trip(const char *dir, const struct log_config *cfg,
			     struct log *l, const uint8_t *data, size_t total)
{
	uint8_t *back;
	uint64_t len;

	for (int open = 0; open < 2; open++) {
		if (open)
			l = tu_open(dir, cfg);
		back = tu_read_all(l, &len);
		assert_int_equal(len, total);
		assert_memory_equal(back, data, total);
		free(back);
		assert_int_equal(log_close(l), 0);
	}
	assert_int_equal(tu_dump_problems(dir), 0);
}

static void compression_case(int codec, bool random_bytes)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	size_t total = 256 * 1024;
	uint8_t *data = malloc(total);
	uint32_t lens[8192];
	uint32_t n = 0;

	tu_seed(4);
	for (size_t i = 0; i < total; i++)
		data[i] = random_bytes ? (uint8_t)tu_rand() :
					 (uint8_t)("topicfs line\n"[i % 13]);
	for (size_t at = 0; at < total && n < 8192; n++) {
		lens[n] = (uint32_t)(1 + tu_rand() % 255);
		if (lens[n] > total - at)
			lens[n] = (uint32_t)(total - at);
		at += lens[n];
	}
	log_config_default(&cfg);
	cfg.codec = codec;
	cfg.batch_bytes = 16384;
	l = tu_open(dir, &cfg);
	assert_int_equal(log_append(l, data, total, lens, n, NULL, NULL), 0);
	log_set_hw(l, n);
	log_get_state(l, &st);
	if (!random_bytes && codec != LOG_CODEC_NONE)
		assert_true(st.size_bytes < total / 4);
	check_round_trip(dir, &cfg, l, data, total);
	free(data);
	tu_rmdir(dir);
}

/*
 * log_appendv: records spanning pieces, empty pieces, batches written
 * from a few pieces and batches gathered from many tiny ones, with each
 * codec; read back (checksums verified) before and after a reopen.
 */
static void appendv_case(int codec)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log *l;
	size_t total = 256 * 1024, at = 0;
	uint8_t *data = malloc(total);
	struct iovec *iov = calloc(total, sizeof(*iov));
	uint32_t *lens = malloc(total * sizeof(*lens));
	uint32_t n = 0;
	int pieces = 0;

	tu_seed(5);
	for (size_t i = 0; i < total; i++)
		data[i] = (uint8_t)tu_rand();
	for (at = 0; at < total; n++) {
		lens[n] = (uint32_t)(1 + tu_rand() % 300);
		if (lens[n] > total - at)
			lens[n] = (uint32_t)(total - at);
		at += lens[n];
	}
	/* The first quarter in 1..8-byte pieces, the rest in large ones. */
	for (at = 0; at < total; pieces++) {
		size_t want = at < total / 4 ? 1 + tu_rand() % 8 :
					       1 + tu_rand() % 20000;
		if (tu_rand() % 16 == 0)
			want = 0;
		if (want > total - at)
			want = total - at;
		iov[pieces] = (struct iovec){ data + at, want };
		at += want;
	}
	log_config_default(&cfg);
	cfg.codec = codec;
	cfg.batch_bytes = 16384;
	l = tu_open(dir, &cfg);
	iov[0].iov_len++; /* the pieces no longer add up to the records */
	assert_int_equal(log_appendv(l, iov, pieces, lens, n, NULL, NULL),
			 -EINVAL);
	iov[0].iov_len--;
	assert_int_equal(log_appendv(l, iov, pieces, lens, n, NULL, NULL), 0);
	log_set_hw(l, n);
	check_round_trip(dir, &cfg, l, data, total);
	free(lens);
	free(iov);
	free(data);
	tu_rmdir(dir);
}

static void test_appendv(void **state)
{
	(void)state;
	for (int codec = 0; codec < LOG_CODEC_COUNT; codec++)
		appendv_case(codec);
}

static void test_compression(void **state)
{
	(void)state;
	for (int codec = 0; codec < LOG_CODEC_COUNT; codec++) {
		compression_case(codec, false);
		compression_case(codec, true);
	}
}

/* A codec change before the first append applies to the empty segment. */
static void test_codec_change_on_empty_segment(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log_state st;
	struct log *l;
	(void)state;

	tu_seed(5);
	log_config_default(&cfg);
	l = tu_open(dir, &cfg);
	cfg.codec = LOG_CODEC_ZSTD;
	assert_int_equal(log_set_config(l, &cfg), 0);
	for (int i = 0; i < 20; i++)
		append_model(l, &m, 50, 100);
	check_model(l, &m, 100);
	log_get_state(l, &st);
	assert_int_equal(st.segments, 1);
	assert_true(st.size_bytes < m.pos[m.n]);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	check_model(l, &m, 100);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	model_free(&m);
	tu_rmdir(dir);
}

static uint64_t self_rchar(void)
{
	char line[128];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/io", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "rchar: %" SCNu64, &v) == 1)
			break;
	}
	fclose(f);
	return v;
}

/*
 * After a clean reopen nothing is verified; a read at the end of a large
 * segment checks only the batches it reads (not everything before it),
 * and a damaged batch elsewhere is found by the scrub, not by that read.
 */
static void test_tail_read_verifies_only_its_range(void **state)
{
	char *dir = tu_mkdtemp(), *log_file;
	struct log_config cfg;
	struct log_cursor *c;
	struct log_state st;
	struct log *l;
	uint32_t lens[100];
	uint8_t buf[200];
	uint64_t before, at;
	(void)state;

	log_config_default(&cfg);
	cfg.batch_bytes = 4096;
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 100; i++)
		lens[i] = 100;
	for (int i = 0; i < 400; i++) /* 4 MB in 1000 batches */
		tu_append(l, lens, 100);
	assert_int_equal(log_close(l), 0);
	log_file = tu_join(dir, "00000000000000000000.log");
	tu_flip_bit(log_file, 12345, 3);

	l = tu_open(dir, &cfg);
	log_set_hw(l, UINT64_MAX);
	log_get_state(l, &st);
	assert_int_equal(log_cursor_new(l, &c), 0);
	before = self_rchar();
	at = st.hw_pos - sizeof(buf);
	assert_int_equal(log_read_copy(c, &at, buf, sizeof(buf)), sizeof(buf));
	assert_true(self_rchar() - before < 64 * 1024);
	at = 12000;
	assert_int_equal(log_read_copy(c, &at, buf, sizeof(buf)), -EIO);
	at = 20000;
	assert_int_equal(log_read_copy(c, &at, buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(log_scrub(l), 1);
	log_cursor_free(c);
	assert_int_equal(log_close(l), 0);
	free(log_file);
	tu_rmdir(dir);
}

static void test_truncate_and_epochs(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct model m = { 0 };
	struct log *l;
	uint64_t leo, end;
	uint32_t ep;
	uint32_t lens[4] = { 10, 10, 10, 10 };
	uint8_t buf[40] = { 0 };
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	/* Epoch 1: offsets 0..399; epoch 3: 400..799; epoch 4: 800.. */
	for (uint32_t e = 0; e < 3; e++) {
		struct log_append_opts o = { e == 0 ? 1 : e + 2, 0 };
		for (int i = 0; i < 100; i++) {
			struct log_state st;
			log_get_state(l, &st);
			for (int k = 0; k < 4; k++)
				tu_fill(buf + 10 * k, 10, st.leo + (uint64_t)k);
			assert_int_equal(log_append(l, buf, 40, lens, 4, &o, NULL), 0);
			for (int k = 0; k < 4; k++)
				model_push(&m, 10, 0);
		}
	}
	log_set_hw(l, m.n);
	/* Older than the first entry: Kafka answers (that epoch, the first
	 * entry's start). */
	assert_int_equal(log_epoch_end(l, 0, &ep, &end), 0);
	assert_int_equal(ep, 0);
	assert_int_equal(end, 0);
	assert_int_equal(log_epoch_end(l, 1, &ep, &end), 0);
	assert_int_equal(ep, 1);
	assert_int_equal(end, 400);
	assert_int_equal(log_epoch_end(l, 2, &ep, &end), 0);
	assert_int_equal(ep, 1);
	assert_int_equal(end, 400);
	assert_int_equal(log_epoch_end(l, 4, &ep, &end), 0);
	assert_int_equal(ep, 4);
	assert_int_equal(end, 1200);
	/* A lower epoch is refused. */
	struct log_append_opts low = { 3, 0 };
	assert_int_equal(log_append(l, buf, 40, lens, 4, &low, NULL), -EINVAL);

	/* Truncate inside epoch 3, at a batch boundary. */
	assert_int_equal(log_truncate(l, 600, &leo), 0);
	assert_int_equal(leo, 600);
	m.n = 600;
	check_model(l, &m, 100);
	/* Epoch 4's entry went; 3 is the newest and ends at the log end. */
	assert_int_equal(log_epoch_end(l, 4, &ep, &end), 0);
	assert_int_equal(ep, LOG_EPOCH_UNDEFINED);
	assert_int_equal(log_epoch_end(l, 3, &ep, &end), 0);
	assert_int_equal(ep, 3);
	assert_int_equal(end, 600);
	/* Inside a batch: cut to the batch start. */
	assert_int_equal(log_truncate(l, 402, &leo), 0);
	assert_int_equal(leo, 400);
	m.n = 400;
	check_model(l, &m, 100);
	/* Appending resumes with dense offsets; survives reopen. */
	append_model(l, &m, 7, 50);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	log_set_hw(l, m.n);
	check_model(l, &m, 100);
	/* Epoch 3 began at 400 and was cut away whole: epoch 1 goes on,
	 * and epoch 3 is newer than every entry (Kafka: undefined). */
	assert_int_equal(log_epoch_end(l, 3, &ep, &end), 0);
	assert_int_equal(ep, LOG_EPOCH_UNDEFINED);
	assert_int_equal(end, LOG_OFFSET_UNDEFINED);
	assert_int_equal(log_epoch_end(l, 1, &ep, &end), 0);
	assert_int_equal(ep, 1);
	assert_int_equal(end, m.n);
	/* Truncate to a segment boundary and to the very start. */
	assert_int_equal(log_truncate(l, 0, &leo), 0);
	assert_int_equal(leo, 0);
	m.n = 0;
	check_model(l, &m, 10);
	append_model(l, &m, 5, 50);
	check_model(l, &m, 10);
	assert_int_equal(log_close(l), 0);
	model_free(&m);
	tu_rmdir(dir);
}

static void test_hw_bounds_readers(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct log_cursor *c;
	struct log *l;
	uint32_t lens[3] = { 4, 4, 4 };
	struct log_state st;
	uint8_t buf[16];
	uint64_t at = 0;
	(void)state;

	log_config_default(&cfg);
	l = tu_open(dir, &cfg);
	assert_int_equal(log_append(l, "aaa\nbbb\nccc\n", 12, lens, 3, NULL, NULL), 0);
	assert_int_equal(log_cursor_new(l, &c), 0);
	assert_int_equal(log_read_copy(c, &at, buf, sizeof(buf)), 0);
	assert_int_equal(log_set_hw(l, 2), 0);
	log_get_state(l, &st);
	assert_int_equal(st.hw_pos, 8);
	assert_int_equal(log_read_copy(c, &at, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "aaa\nbbb\n", 8);
	log_cursor_free(c);
	assert_int_equal(log_close(l), 0);
	/* The HW is checkpointed. */
	l = tu_open(dir, &cfg);
	log_get_state(l, &st);
	assert_int_equal(st.hw, 2);
	assert_int_equal(st.leo, 3);
	assert_int_equal(log_close(l), 0);
	tu_rmdir(dir);
}

/* One appender, several readers that check every byte they see. */
#define CONC_REC 37
#define CONC_RECORDS 20000

struct conc {
	struct log *l;
	_Atomic int done;
};

static void *conc_reader(void *arg)
{
	struct conc *cc = arg;
	struct log_cursor *c;
	uint8_t buf[4096], want[CONC_REC];
	uint64_t at = 0;

	assert_int_equal(log_cursor_new(cc->l, &c), 0);
	for (;;) {
		int done = atomic_load(&cc->done);
		uint64_t p = at;
		ssize_t n = log_read_copy(c, &p, buf, sizeof(buf));
		assert_true(n >= 0);
		for (ssize_t i = 0; i < n; i++) {
			uint64_t pos = at + (uint64_t)i;
			if (pos % CONC_REC == 0 || i == 0)
				tu_fill(want, CONC_REC, pos / CONC_REC);
			assert_int_equal(buf[i], want[pos % CONC_REC]);
		}
		at += (uint64_t)n;
		if (n == 0 && done)
			break;
	}
	assert_int_equal(at, (uint64_t)CONC_REC * CONC_RECORDS);
	log_cursor_free(c);
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	char *dir = tu_mkdtemp();
	struct log_config cfg;
	struct conc cc;
	pthread_t rd[3];
	uint32_t lens[50];
	(void)state;

	tu_small_config(&cfg);
	cfg.segment_bytes = 64 * 1024;
	cc.l = tu_open(dir, &cfg);
	atomic_init(&cc.done, 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&rd[i], NULL, conc_reader, &cc);
	for (int i = 0; i < 50; i++)
		lens[i] = CONC_REC;
	for (int i = 0; i < CONC_RECORDS / 50; i++)
		tu_append(cc.l, lens, 50);
	atomic_store(&cc.done, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(rd[i], NULL);
	assert_int_equal(log_close(cc.l), 0);
	tu_rmdir(dir);
}

/* The background scrub's pacing callback: counts bytes; stops the pass
 * after scrub_stop_after bytes (0: never). */
static uint64_t scrubbed, scrub_stop_after;

static bool count_pace(uint64_t bytes, void *arg)
{
	(void)arg;
	scrubbed += bytes;
	return !scrub_stop_after || scrubbed < scrub_stop_after;
}

/* One log_scrub_pass at wall time now_ms: the payload bytes it read. */
static uint64_t scrub_bytes(struct log *l, int64_t now_ms, int64_t recheck_ms)
{
	struct log_scrub_ctl ctl = { now_ms, recheck_ms, 4096, count_pace,
				     NULL };

	scrubbed = 0;
	assert_true(log_scrub_pass(l, &ctl) >= 0);
	return scrubbed;
}

/* Base position of the newest segment (its .meta with the largest name). */
static uint64_t last_segment_pos(struct log *l, const char *dir)
{
	struct dirent **es;
	uint64_t base = 0, pos;
	int n = scandir(dir, &es, NULL, alphasort);

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		if (strstr(es[i]->d_name, ".meta") &&
		    !strstr(es[i]->d_name, ".deleted"))
			base = strtoull(es[i]->d_name, NULL, 10);
		free(es[i]);
	}
	free(es);
	assert_int_equal(log_offset_to_pos(l, base, &pos), 0);
	return pos;
}

/*
 * log_scrub_pass reads each stored byte once and remembers it in
 * scrub-checkpoint: a second pass, and a pass after a reopen, read
 * nothing; a pass stopped by its pace goes on where it stopped. A
 * segment truncated and written again with other bytes of the same
 * sizes is read again from its start, and only it and what follows;
 * a check older than recheck_ms is done again; a damaged record means
 * everything is read again.
 */
static void test_scrub_pass_reads_each_byte_once(void **state)
{
	char *dir = tu_mkdtemp(), *rec;
	uint32_t lens[10];
	uint8_t other[1000];
	struct log_config cfg;
	struct log_state st;
	uint64_t total, leo, seg_pos, first;
	int64_t now = 1800000000000;
	struct log *l;
	(void)state;

	tu_small_config(&cfg);
	l = tu_open(dir, &cfg);
	for (int i = 0; i < 10; i++)
		lens[i] = 100;
	for (int i = 0; i < 100; i++)
		tu_append(l, lens, 10);
	log_get_state(l, &st);
	assert_true(st.segments >= 5);
	total = st.leo_pos - st.start_pos;

	/* Stopped after the first chunks, then finished: all read once. */
	scrub_stop_after = 3 * 4096;
	first = scrub_bytes(l, now, 0);
	assert_true(first >= scrub_stop_after && first < total);
	scrub_stop_after = 0;
	assert_int_equal(scrub_bytes(l, now, 0), total - first);
	assert_int_equal(scrub_bytes(l, now, 0), 0);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	assert_int_equal(scrub_bytes(l, now, 0), 0);

	/* The tail diverges: same record sizes, other bytes. */
	assert_int_equal(log_truncate(l, st.leo / 2 + 3, &leo), 0);
	seg_pos = last_segment_pos(l, dir);
	memset(other, 'Z', sizeof(other));
	while (leo < st.leo) {
		assert_int_equal(log_append(l, other, sizeof(other), lens, 10,
					    NULL, NULL), 0);
		leo += 10;
	}
	log_set_hw(l, UINT64_MAX);
	log_get_state(l, &st);
	assert_int_equal(st.leo_pos - st.start_pos, total);
	assert_int_equal(scrub_bytes(l, now, 0), st.leo_pos - seg_pos);
	assert_int_equal(scrub_bytes(l, now, 0), 0);

	/* Checked too long ago: read again. */
	assert_int_equal(scrub_bytes(l, now + 5000, 5000), total);
	assert_int_equal(scrub_bytes(l, now + 5000, 5000), 0);

	/* A damaged record: everything again. */
	assert_int_equal(log_close(l), 0);
	rec = tu_join(dir, "scrub-checkpoint");
	tu_flip_bit(rec, 40, 0);
	l = tu_open(dir, &cfg);
	assert_int_equal(scrub_bytes(l, now, 0), total);
	assert_int_equal(log_close(l), 0);
	free(rec);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_dense_offsets),
		cmocka_unit_test(test_zero_and_bad_records_rejected),
		cmocka_unit_test(test_segment_roll),
		cmocka_unit_test(test_segment_ms_roll),
		cmocka_unit_test(test_model_random),
		cmocka_unit_test(test_time_lookup),
		cmocka_unit_test(test_retention),
		cmocka_unit_test(test_compression),
		cmocka_unit_test(test_appendv),
		cmocka_unit_test(test_codec_change_on_empty_segment),
		cmocka_unit_test(test_tail_read_verifies_only_its_range),
		cmocka_unit_test(test_scrub_pass_reads_each_byte_once),
		cmocka_unit_test(test_truncate_and_epochs),
		cmocka_unit_test(test_hw_bounds_readers),
		cmocka_unit_test(test_concurrent_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
