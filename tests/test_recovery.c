/*
 * Crash recovery and I/O errors. A log is written, abandoned as if the
 * process died (or closed cleanly), its files are damaged on disk, and it
 * is reopened. The reopened log must be exactly the longest valid prefix
 * of what was written: the same end, the same bytes, dense offsets and
 * working lookups, and log_dump must find nothing wrong with the files.
 *
 * The expected log is a model kept in memory: the records' lengths, their
 * bytes being tu_fill(offset). Every append of the recovery fixture is one
 * batch, so the model also knows where each batch lies in the segment
 * files (format.h), which is what the damage is aimed at.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "segment.h"

/* Random batches: at most this many records of at most this many bytes,
 * which stays below tu_small_config's batch_bytes (one append, one batch). */
#define RAND_RECORDS_MAX 16u
#define RAND_RECORD_BYTES_MAX 120u
/* The longest record any test here appends. */
#define RECORD_BYTES_MAX 256u
/* Bounds on what the fixture and the loops may produce. */
#define SEGMENTS_MAX 64u
#define SNAP_FILES_MAX 64u
#define FAULT_POINTS_MAX 200

/* One append; in the recovery fixture also exactly one stored batch. */
struct batch {
	uint64_t base;  /* first offset */
	uint32_t count; /* records */
	int64_t ts;     /* its timestamp, distinct per append */
};

/* What was written, in order. */
struct model {
	uint64_t n;       /* records */
	uint64_t *pos;    /* n + 1 positions: record i is [pos[i], pos[i+1]) */
	uint64_t cap;
	struct batch *b;
	uint32_t nb, bcap;
	int64_t ts0;      /* timestamp of append 0; append i has ts0 + 2i */
};

static void model_init(struct model *m)
{
	*m = (struct model){ 0 };
	m->pos = calloc(1, sizeof(*m->pos));
	assert_non_null(m->pos);
	m->cap = 1;
	/* An hour ago: recent enough not to trigger segment.ms rolls. */
	m->ts0 = (int64_t)time(NULL) * 1000 - 3600 * 1000;
}

static void model_free(struct model *m)
{
	free(m->pos);
	free(m->b);
}

static void model_push(struct model *m, const uint32_t *lens, uint32_t count,
		       int64_t ts)
{
	if (m->n + count + 1 > m->cap) {
		m->cap = (m->n + count + 1) * 2;
		m->pos = realloc(m->pos, m->cap * sizeof(*m->pos));
		assert_non_null(m->pos);
	}
	if (m->nb == m->bcap) {
		m->bcap = m->bcap ? m->bcap * 2 : 64;
		m->b = realloc(m->b, m->bcap * sizeof(*m->b));
		assert_non_null(m->b);
	}
	m->b[m->nb++] = (struct batch){ m->n, count, ts };
	for (uint32_t i = 0; i < count; i++, m->n++)
		m->pos[m->n + 1] = m->pos[m->n] + lens[i];
}

/* dst = the first nb appends of src. */
static void model_prefix(struct model *dst, const struct model *src,
			 uint32_t nb)
{
	assert_true(nb <= src->nb);
	*dst = *src;
	dst->n = nb < src->nb ? src->b[nb].base : src->n;
	dst->nb = dst->bcap = nb;
	dst->cap = dst->n + 1;
	dst->pos = malloc(dst->cap * sizeof(*dst->pos));
	dst->b = malloc((nb ? nb : 1) * sizeof(*dst->b));
	assert_non_null(dst->pos);
	assert_non_null(dst->b);
	memcpy(dst->pos, src->pos, dst->cap * sizeof(*dst->pos));
	memcpy(dst->b, src->b, nb * sizeof(*dst->b));
}

/* The bytes the model holds at positions [a, b). */
static void model_bytes(const struct model *m, uint64_t a, uint64_t b,
			uint8_t *out)
{
	uint64_t lo = 0, hi = m->n;
	uint8_t rec[RECORD_BYTES_MAX];

	while (lo + 1 < hi) { /* the record holding a */
		uint64_t mid = (lo + hi) / 2;
		if (m->pos[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	for (uint64_t off = lo, at = a; at < b; off++) {
		uint32_t len = (uint32_t)(m->pos[off + 1] - m->pos[off]);
		uint64_t from = at - m->pos[off], take = len - from;

		assert_true(len <= sizeof(rec));
		tu_fill(rec, len, off);
		if (take > b - at)
			take = b - at;
		memcpy(out + (at - a), rec + from, take);
		at += take;
	}
}

/*
 * Append count records (bytes from tu_fill) in one call, timestamped
 * ts0 + 2 * (appends so far), and raise the high watermark over them.
 * Returns log_append's error, leaving the model alone, or 0.
 */
static int put_records(struct log *l, struct model *m, const uint32_t *lens,
		       uint32_t count, uint32_t epoch)
{
	struct log_append_opts o = { epoch, m->ts0 + 2 * (int64_t)m->nb };
	struct log_append_info info;
	size_t total = 0, at = 0;
	uint8_t *buf;
	int rc;

	for (uint32_t i = 0; i < count; i++) {
		assert_true(lens[i] <= RECORD_BYTES_MAX);
		total += lens[i];
	}
	buf = malloc(total);
	assert_non_null(buf);
	for (uint32_t i = 0; i < count; i++) {
		tu_fill(buf + at, lens[i], m->n + i);
		at += lens[i];
	}
	rc = log_append(l, buf, total, lens, count, &o, &info);
	free(buf);
	if (rc < 0)
		return rc;
	assert_int_equal(info.base_offset, m->n);
	assert_int_equal(info.end_offset, m->n + count);
	assert_int_equal(info.base_pos, m->pos[m->n]);
	assert_int_equal(info.end_pos, m->pos[m->n] + total);
	assert_int_equal(info.timestamp_ms, o.timestamp_ms);
	model_push(m, lens, count, o.timestamp_ms);
	assert_int_equal(log_set_hw(l, info.end_offset), 0);
	return 0;
}

/* One batch of random shape. */
static int put_random(struct log *l, struct model *m)
{
	uint32_t lens[RAND_RECORDS_MAX];
	uint32_t n = 1 + (uint32_t)(tu_rand() % RAND_RECORDS_MAX);

	for (uint32_t i = 0; i < n; i++)
		lens[i] = 1 + (uint32_t)(tu_rand() % RAND_RECORD_BYTES_MAX);
	return put_records(l, m, lens, n, 1);
}

static uint32_t segment_count(struct log *l)
{
	struct log_state st;

	log_get_state(l, &st);
	return st.segments;
}

/* ---- files ------------------------------------------------------------- */

static char *seg_path(const char *dir, uint64_t base, const char *ext)
{
	char name[64];

	snprintf(name, sizeof(name), "%020llu.%s", (unsigned long long)base,
		 ext);
	return tu_join(dir, name);
}

static uint8_t *slurp(const char *path, uint64_t *len)
{
	int64_t size = tu_file_size(path);
	uint8_t *buf;
	int fd;

	assert_true(size >= 0);
	buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(io_pread_full(fd, buf, (size_t)size, 0), 0);
	close(fd);
	*len = (uint64_t)size;
	return buf;
}

static void write_file(const char *path, const void *buf, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(io_pwrite_full(fd, buf, len, 0), 0);
	close(fd);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir (without . and ..), sorted; free each and the array. */
static uint32_t list_dir(const char *dir, char **names, uint32_t max)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint32_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		assert_true(n < max);
		names[n] = strdup(de->d_name);
		assert_non_null(names[n]);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	return n;
}

/* A new temporary directory holding copies of the files of src. */
static char *copy_dir(const char *src)
{
	char *names[SNAP_FILES_MAX], *dst = tu_mkdtemp();
	uint32_t n = list_dir(src, names, SNAP_FILES_MAX);

	for (uint32_t i = 0; i < n; i++) {
		char *from = tu_join(src, names[i]), *to = tu_join(dst, names[i]);
		uint64_t len;
		uint8_t *buf = slurp(from, &len);

		write_file(to, buf, len);
		free(buf);
		free(from);
		free(to);
		free(names[i]);
	}
	return dst;
}

/* Base offsets of the segments in dir (their .meta files), ascending. */
static uint32_t list_segments(const char *dir, uint64_t *bases, uint32_t max)
{
	char *names[SNAP_FILES_MAX];
	uint32_t n = list_dir(dir, names, SNAP_FILES_MAX), k = 0;

	for (uint32_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		if (len == 25 && strcmp(names[i] + 20, ".meta") == 0) {
			assert_true(k < max);
			bases[k++] = strtoull(names[i], NULL, 10);
		}
		free(names[i]);
	}
	return k;
}

static void random_bytes(uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)tu_rand();
}

static void append_garbage(const char *path, size_t len)
{
	uint8_t buf[1024];

	assert_true(len <= sizeof(buf));
	random_bytes(buf, len);
	tu_append_bytes(path, buf, len);
}

/* Every segment that holds data has a non-empty index. */
static void expect_indexes(const char *dir)
{
	uint64_t bases[SEGMENTS_MAX];
	uint32_t n = list_segments(dir, bases, SEGMENTS_MAX);

	for (uint32_t i = 0; i < n; i++) {
		char *data = seg_path(dir, bases[i], "log");
		char *idx = seg_path(dir, bases[i], "index");
		if (tu_file_size(data) > 0)
			assert_true(tu_file_size(idx) >= INDEX_ENTRY_SIZE);
		free(data);
		free(idx);
	}
}

/* ---- checking a log against the model ---------------------------------- */

/* Read [a, b) through a fresh cursor; log_read_copy's result. */
static ssize_t read_range(struct log *l, uint64_t a, uint64_t b, uint8_t *buf)
{
	struct log_cursor *c;
	uint64_t at = a;
	ssize_t n;

	assert_int_equal(log_cursor_new(l, &c), 0);
	n = log_read_copy(c, &at, buf, b - a);
	log_cursor_free(c);
	if (n >= 0)
		assert_int_equal(at, a);
	return n;
}

/* [a, b) reads back as the model's bytes. */
static void expect_range(struct log *l, const struct model *m, uint64_t a,
			 uint64_t b)
{
	uint8_t *got = malloc(b - a + 1), *want = malloc(b - a + 1);

	assert_non_null(got);
	assert_non_null(want);
	assert_int_equal(read_range(l, a, b, got), (ssize_t)(b - a));
	model_bytes(m, a, b, want);
	assert_memory_equal(got, want, b - a);
	free(got);
	free(want);
}

/* Offsets dense and positions right, both ways; time lookups right. */
static void expect_lookups(struct log *l, const struct model *m)
{
	uint64_t pos, off, rec_pos, e = m->n;

	for (uint64_t o = 0; o < e; o++) {
		assert_int_equal(log_offset_to_pos(l, o, &pos), 0);
		assert_int_equal(pos, m->pos[o]);
		assert_int_equal(log_pos_to_offset(l, m->pos[o], &off, &rec_pos), 0);
		assert_int_equal(off, o);
		assert_int_equal(rec_pos, m->pos[o]);
		assert_int_equal(log_pos_to_offset(l, m->pos[o + 1] - 1, &off,
						   &rec_pos), 0);
		assert_int_equal(off, o);
	}
	assert_int_equal(log_offset_to_pos(l, e, &pos), 0);
	assert_int_equal(pos, m->pos[e]);
	assert_int_equal(log_offset_to_pos(l, e + 1, &pos), -ERANGE);
	assert_int_equal(log_pos_to_offset(l, m->pos[e], &off, &rec_pos), -ERANGE);
	for (uint32_t i = 0; i < m->nb; i++) {
		assert_int_equal(log_time_to_offset(l, m->b[i].ts, &off), 0);
		assert_int_equal(off, m->b[i].base);
		assert_int_equal(log_time_to_offset(l, m->b[i].ts - 1, &off), 0);
		assert_int_equal(off, m->b[i].base);
	}
	if (m->nb) {
		assert_int_equal(log_time_to_offset(l, m->b[m->nb - 1].ts + 1,
						    &off), 0);
		assert_int_equal(off, e);
	}
}

/*
 * The log holds exactly the model's records: same end, every byte, every
 * lookup. The high watermark is raised to the end first.
 */
static void expect_log(struct log *l, const struct model *m)
{
	struct log_state st;
	uint64_t len;
	uint8_t *all, *want;

	assert_int_equal(log_set_hw(l, UINT64_MAX), 0);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 0);
	assert_int_equal(st.start_pos, 0);
	assert_int_equal(st.leo, m->n);
	assert_int_equal(st.leo_pos, m->pos[m->n]);
	assert_int_equal(st.hw, m->n);
	assert_int_equal(st.hw_pos, m->pos[m->n]);
	assert_int_equal(st.size_bytes, m->pos[m->n]);
	assert_int_equal(st.max_ts, m->nb ? m->b[m->nb - 1].ts : -1);
	all = tu_read_all(l, &len);
	assert_int_equal(len, m->pos[m->n]);
	want = malloc(len + 1);
	assert_non_null(want);
	model_bytes(m, 0, len, want);
	assert_memory_equal(all, want, len);
	free(all);
	free(want);
	expect_lookups(l, m);
}

/*
 * The log takes appends again, densely after its end; then it closes
 * cleanly and log_dump --verify finds every file in order.
 */
static void expect_appends_and_close(struct log *l, const char *dir,
				     struct model *m)
{
	uint64_t end_pos = m->pos[m->n];

	assert_int_equal(put_random(l, m), 0);
	expect_range(l, m, end_pos, m->pos[m->n]);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	expect_indexes(dir);
}

/* ---- the crash fixture --------------------------------------------------- */

/*
 * One log, written once per run and copied for every case:
 *
 *   seg 0 .. seg k-1      sealed, wholly below the recovery point
 *   seg k                 sealed, the recovery point (rp) inside it
 *   seg k+1 ...           sealed, wholly above rp (unflushed)
 *   active                one random batch, then a small last batch
 *
 * `crashed` is that log abandoned; `clean` is it reopened and closed.
 */
struct fixture {
	struct log_config cfg;
	struct model m;
	uint64_t rp;              /* recovery point of `crashed`, an offset */
	uint32_t rp_batch;        /* the first batch at or above it */
	uint64_t bases[SEGMENTS_MAX];
	uint32_t nsegs;
	char *crashed, *clean;
};

static struct fixture fx;

/* Where batch i lies: its segment and its offsets in .log and .meta. */
struct where {
	uint32_t seg;
	uint64_t base;     /* the segment's base offset */
	uint64_t data_off; /* in <base>.log */
	uint64_t meta_off; /* in <base>.meta: its batch header */
	uint32_t len;      /* payload bytes */
	uint32_t count;
};

static uint32_t seg_of(const struct fixture *f, uint64_t offset)
{
	uint32_t s = 0;

	while (s + 1 < f->nsegs && f->bases[s + 1] <= offset)
		s++;
	return s;
}

static struct where batch_where(const struct fixture *f, uint32_t i)
{
	const struct batch *b = &f->m.b[i];
	struct where w = { .seg = seg_of(f, b->base), .count = b->count };

	w.base = f->bases[w.seg];
	w.data_off = f->m.pos[b->base] - f->m.pos[w.base];
	w.len = (uint32_t)(f->m.pos[b->base + b->count] - f->m.pos[b->base]);
	w.meta_off = SEG_HDR_SIZE;
	for (uint32_t j = i; j > 0 && f->m.b[j - 1].base >= w.base; j--)
		w.meta_off += batch_meta_size(f->m.b[j - 1].count);
	return w;
}

/* The first batch of segment s. */
static uint32_t first_batch_of(const struct fixture *f, uint32_t s)
{
	uint32_t i = 0;

	while (f->m.b[i].base < f->bases[s])
		i++;
	assert_int_equal(f->m.b[i].base, f->bases[s]);
	return i;
}

/* The model's idea of the layout matches the files, batch by batch. */
static void check_layout(const struct fixture *f, const char *dir)
{
	for (uint32_t i = 0; i < f->m.nb; i++) {
		struct where w = batch_where(f, i);
		char *meta = seg_path(dir, w.base, "meta");
		char *data = seg_path(dir, w.base, "log");
		uint8_t raw[BATCH_HDR_SIZE];
		struct batch_hdr h;
		int fd = open(meta, O_RDONLY);

		assert_true(fd >= 0);
		assert_int_equal(io_pread_full(fd, raw, sizeof(raw), w.meta_off), 0);
		close(fd);
		assert_int_equal(batch_hdr_decode(raw, &h), 0);
		assert_int_equal(h.base_offset, f->m.b[i].base);
		assert_int_equal(h.count, w.count);
		assert_int_equal(h.data_pos, w.data_off);
		assert_int_equal(h.logical_len, w.len);
		if (i + 1 == f->m.nb || batch_where(f, i + 1).seg != w.seg) {
			assert_int_equal(tu_file_size(data), w.data_off + w.len);
			assert_int_equal(tu_file_size(meta),
					 w.meta_off + batch_meta_size(w.count));
		}
		free(meta);
		free(data);
	}
}

static int fixture_setup(void **state)
{
	static const uint32_t last_lens[2] = { 3, 2 };
	struct fixture *f = &fx;
	struct log_state st;
	struct log *l;
	uint32_t segs;
	(void)state;

	tu_seed(0x7ec0);
	print_message("seed %llu\n", (unsigned long long)tu_seed_used());
	tu_small_config(&f->cfg);
	assert_true(RAND_RECORDS_MAX * RAND_RECORD_BYTES_MAX <= f->cfg.batch_bytes);
	model_init(&f->m);
	f->crashed = tu_mkdtemp();
	l = tu_open(f->crashed, &f->cfg);

	/* Flushed: at least two whole segments, and into a third. */
	while (segment_count(l) < 3)
		assert_int_equal(put_random(l, &f->m), 0);
	assert_int_equal(put_random(l, &f->m), 0);
	assert_int_equal(log_flush(l), 0);
	log_get_state(l, &st);
	assert_int_equal(st.recovery_point, f->m.n);
	f->rp = f->m.n;
	f->rp_batch = f->m.nb;

	/* Unflushed: fill the rp segment and one more; the batch that rolls
	 * to a new segment is the first of the active segment. */
	segs = st.segments;
	while (segment_count(l) < segs + 2)
		assert_int_equal(put_random(l, &f->m), 0);
	assert_int_equal(put_records(l, &f->m, last_lens, 2, 1), 0);
	assert_int_equal(segment_count(l), segs + 2);
	log_abandon(l);

	f->nsegs = list_segments(f->crashed, f->bases, SEGMENTS_MAX);
	assert_int_equal(f->nsegs, segs + 2);
	assert_true(f->bases[f->nsegs - 3] < f->rp);
	assert_true(f->rp < f->bases[f->nsegs - 2]);
	assert_int_equal(first_batch_of(f, f->nsegs - 1), f->m.nb - 2);
	check_layout(f, f->crashed);

	f->clean = copy_dir(f->crashed);
	l = tu_open(f->clean, &f->cfg);
	expect_log(l, &f->m);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(f->clean), 0);
	check_layout(f, f->clean);
	return 0;
}

static int fixture_teardown(void **state)
{
	(void)state;
	tu_rmdir(fx.crashed);
	tu_rmdir(fx.clean);
	model_free(&fx.m);
	return 0;
}

static char *fixture_file(const char *dir, uint32_t seg, const char *ext)
{
	return seg_path(dir, fx.bases[seg], ext);
}

/*
 * Open the damaged copy dir and expect exactly the first nb batches of the
 * fixture, the segments holding them (the one where the log was cut may
 * be left empty) and none of the files of the segments after; then
 * appends, a clean close and log_dump. Removes dir.
 */
static void expect_prefix(char *dir, uint32_t nb)
{
	uint32_t keep = nb == fx.m.nb ? fx.nsegs :
			batch_where(&fx, nb).seg + 1;
	static const char *const exts[] = { "log", "meta", "index" };
	struct model m;
	struct log *l;

	l = tu_open(dir, &fx.cfg);
	model_prefix(&m, &fx.m, nb);
	expect_log(l, &m);
	assert_int_equal(segment_count(l), keep);
	for (uint32_t s = 0; s < fx.nsegs; s++) {
		for (size_t e = 0; e < 3; e++) {
			char *p = fixture_file(dir, s, exts[e]);
			assert_true((tu_file_size(p) >= 0) == (s < keep));
			free(p);
		}
	}
	expect_appends_and_close(l, dir, &m);
	model_free(&m);
	tu_rmdir(dir);
}

/* ---- 1. torn last batch -------------------------------------------------- */

/*
 * The active segment's .log, then its .meta, cut at every byte of its
 * last batch: the log ends just before that batch, or holds it whole when
 * nothing was cut.
 */
static void test_torn_last_batch(void **state)
{
	uint32_t last = fx.m.nb - 1;
	struct where w = batch_where(&fx, last);
	uint64_t meta_len = batch_meta_size(w.count);
	(void)state;

	assert_int_equal(w.seg, fx.nsegs - 1);
	for (uint64_t k = 0; k <= w.len; k++) {
		char *dir = copy_dir(fx.crashed);
		char *p = fixture_file(dir, w.seg, "log");
		tu_truncate(p, (int64_t)(w.data_off + k));
		free(p);
		expect_prefix(dir, k == w.len ? fx.m.nb : last);
	}
	for (uint64_t k = 0; k <= meta_len; k++) {
		char *dir = copy_dir(fx.crashed);
		char *p = fixture_file(dir, w.seg, "meta");
		tu_truncate(p, (int64_t)(w.meta_off + k));
		free(p);
		expect_prefix(dir, k == meta_len ? fx.m.nb : last);
	}
}

/* ---- 2. garbage after the end -------------------------------------------- */

/*
 * 1 to 1024 random bytes after the end of the active segment's .log,
 * .meta or .index, after a crash and after a clean close: nothing lost,
 * nothing added.
 */
static void test_garbage_after_end(void **state)
{
	static const char *const exts[] = { "log", "meta", "index" };
	const char *const tmpl[] = { fx.crashed, fx.clean };
	(void)state;

	for (size_t t = 0; t < 2; t++) {
		for (size_t e = 0; e < 3; e++) {
			for (int r = 0; r < 6; r++) {
				size_t len = r == 0 ? 1 : r == 1 ? 1024 :
					     1 + (size_t)(tu_rand() % 1024);
				char *dir = copy_dir(tmpl[t]);
				char *p = fixture_file(dir, fx.nsegs - 1, exts[e]);
				append_garbage(p, len);
				free(p);
				expect_prefix(dir, fx.m.nb);
			}
		}
	}
}

/* ---- 3 and 8. bad batches found lazily ----------------------------------- */

/*
 * Flip a bit in the payload of batch i, which the open must not check:
 * the log keeps its end; reads of that batch fail with -EIO, reads around
 * it succeed; scrub and log_dump --verify report exactly one bad batch.
 */
static void expect_bad_batch_kept(const char *tmpl, uint32_t i)
{
	struct where w = batch_where(&fx, i);
	uint64_t a = fx.m.pos[fx.m.b[i].base], b = a + w.len;
	uint64_t end = fx.m.pos[fx.m.n];
	char *dir = copy_dir(tmpl), *p = fixture_file(dir, w.seg, "log");
	uint8_t *buf = malloc(end);
	struct log_state st;
	struct log *l;

	assert_non_null(buf);
	tu_flip_bit(p, (int64_t)(w.data_off + w.len / 2), 5);
	l = tu_open(dir, &fx.cfg);
	assert_int_equal(log_set_hw(l, UINT64_MAX), 0);
	log_get_state(l, &st);
	assert_int_equal(st.leo, fx.m.n);
	assert_int_equal(st.leo_pos, end);

	assert_int_equal(read_range(l, a, b, buf), -EIO);
	assert_int_equal(read_range(l, a + w.len / 2, a + w.len / 2 + 1, buf),
			 -EIO);
	if (a > 0)
		expect_range(l, &fx.m, 0, a);
	if (b < end)
		expect_range(l, &fx.m, b, end);
	/* A read running into the bad batch never returns its bytes. */
	if (a > 0) {
		ssize_t n = read_range(l, 0, b, buf);
		assert_true(n == -EIO || (n >= 0 && (uint64_t)n <= a));
	}
	assert_int_equal(log_scrub(l), 1);
	assert_int_equal(read_range(l, a, b, buf), -EIO);
	expect_lookups(l, &fx.m);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 1);
	free(buf);
	free(p);
	tu_rmdir(dir);
}

/* 3: below the recovery point, in sealed segments. */
static void test_old_bad_batch_not_cut(void **state)
{
	uint32_t in_first = first_batch_of(&fx, 1) / 2;
	uint32_t last_flushed = fx.rp_batch - 1;
	(void)state;

	assert_true(batch_where(&fx, in_first).seg == 0);
	assert_true(batch_where(&fx, last_flushed).seg + 1 < fx.nsegs);
	expect_bad_batch_kept(fx.clean, in_first);
	expect_bad_batch_kept(fx.crashed, in_first);
	expect_bad_batch_kept(fx.clean, last_flushed);
	expect_bad_batch_kept(fx.crashed, last_flushed);
}

/* 8: after a clean shutdown, even the active segment is not read. */
static void test_clean_open_reads_no_payload(void **state)
{
	(void)state;
	expect_bad_batch_kept(fx.clean, fx.m.nb - 2);
	expect_bad_batch_kept(fx.clean, fx.m.nb - 1);
}

/* ---- 4. bad batch above the recovery point ------------------------------- */

enum flip_where { FLIP_PAYLOAD, FLIP_HEADER, FLIP_LENGTHS };

static void flip_in_batch(const char *dir, uint32_t i, enum flip_where where)
{
	struct where w = batch_where(&fx, i);
	char *p = fixture_file(dir, w.seg, where == FLIP_PAYLOAD ? "log" : "meta");

	switch (where) {
	case FLIP_PAYLOAD:
		tu_flip_bit(p, (int64_t)(w.data_off + w.len - 1), 0);
		break;
	case FLIP_HEADER:
		tu_flip_bit(p, (int64_t)(w.meta_off + 16), 2); /* pos */
		break;
	case FLIP_LENGTHS:
		tu_flip_bit(p, (int64_t)(w.meta_off + BATCH_HDR_SIZE +
					 4 * (w.count - 1)), 1);
		break;
	}
	free(p);
}

/*
 * A bit flipped in an unflushed batch: recovery cuts the log just before
 * it and removes every later segment.
 */
static void test_new_bad_batch_cut(void **state)
{
	uint32_t whole = fx.nsegs - 2; /* wholly above the recovery point */
	uint32_t targets[] = {
		fx.rp_batch,                     /* first unflushed */
		fx.rp_batch + 1,
		first_batch_of(&fx, whole),      /* leaves that segment empty */
		(first_batch_of(&fx, whole) + fx.m.nb - 2) / 2,
		fx.m.nb - 2,                     /* first of the active one */
		fx.m.nb - 1,
	};
	(void)state;

	assert_true(batch_where(&fx, fx.rp_batch).seg < whole);
	for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		for (int where = FLIP_PAYLOAD; where <= FLIP_LENGTHS; where++) {
			char *dir = copy_dir(fx.crashed);
			flip_in_batch(dir, targets[t], (enum flip_where)where);
			expect_prefix(dir, targets[t]);
		}
	}
}

/* ---- 5. lost indexes ------------------------------------------------------ */

static void remove_indexes(const char *dir, bool only_active)
{
	for (uint32_t s = only_active ? fx.nsegs - 1 : 0; s < fx.nsegs; s++) {
		char *p = fixture_file(dir, s, "index");
		assert_int_equal(unlink(p), 0);
		free(p);
	}
}

/* Index files deleted: rebuilt on open, every lookup still right. */
static void test_lost_indexes_rebuilt(void **state)
{
	const char *const tmpl[] = { fx.crashed, fx.clean };
	(void)state;

	for (size_t t = 0; t < 2; t++) {
		for (int only_active = 0; only_active < 2; only_active++) {
			char *dir = copy_dir(tmpl[t]);
			remove_indexes(dir, only_active);
			expect_prefix(dir, fx.m.nb);
		}
	}
}

/*
 * seg_index_entries: entries end at the first all-zero slot; the zeros
 * allocated ahead (possibly a partial slot) are not entries.
 */
static void test_index_entries_end_at_zeros(void **state)
{
	uint8_t idx[5 * INDEX_ENTRY_SIZE + 16];
	bool tail_zero;
	(void)state;

	memset(idx, 0, sizeof(idx));
	assert_int_equal(seg_index_entries(idx, 0, &tail_zero), 0);
	assert_true(tail_zero);
	assert_int_equal(seg_index_entries(idx, sizeof(idx), &tail_zero), 0);
	assert_true(tail_zero);
	for (int i = 0; i < 3; i++)
		idx[i * INDEX_ENTRY_SIZE + 8] = (uint8_t)(i + 1);
	assert_int_equal(seg_index_entries(idx, 3 * INDEX_ENTRY_SIZE,
					   &tail_zero), 3);
	assert_true(tail_zero);
	assert_int_equal(seg_index_entries(idx, sizeof(idx), &tail_zero), 3);
	assert_true(tail_zero);
	idx[sizeof(idx) - 1] = 1;       /* in the partial slot at the end */
	assert_int_equal(seg_index_entries(idx, sizeof(idx), &tail_zero), 3);
	assert_false(tail_zero);
	idx[sizeof(idx) - 1] = 0;
	idx[5 * INDEX_ENTRY_SIZE - 1] = 1; /* the last whole slot */
	assert_int_equal(seg_index_entries(idx, sizeof(idx), &tail_zero), 5);
	assert_true(tail_zero);
	idx[5 * INDEX_ENTRY_SIZE + 3] = 1;
	seg_index_entries(idx, sizeof(idx), &tail_zero);
	assert_false(tail_zero);
}

/* Grow every index file of dir to size bytes, the new bytes being fill. */
static void pad_indexes(const char *dir, int64_t size, uint8_t fill)
{
	for (uint32_t s = 0; s < fx.nsegs; s++) {
		char *p = fixture_file(dir, s, "index");
		int64_t have = tu_file_size(p);
		FILE *f = fopen(p, "ab");

		assert_non_null(f);
		for (int64_t i = have; i < size; i++)
			assert_int_equal(fputc(fill, f), fill);
		assert_int_equal(fclose(f), 0);
		free(p);
	}
}

/*
 * Index files as a live daemon leaves them (zeros allocated ahead, ending
 * inside a slot) are read as their entries; garbage after the entries
 * makes the index be rebuilt. Either way every lookup is right.
 */
static void test_index_allocated_ahead(void **state)
{
	const char *const tmpl[] = { fx.crashed, fx.clean };
	(void)state;

	for (size_t t = 0; t < 2; t++) {
		for (int garbage = 0; garbage < 2; garbage++) {
			char *dir = copy_dir(tmpl[t]);
			pad_indexes(dir, 64 << 10, garbage ? 0x5a : 0);
			expect_prefix(dir, fx.m.nb);
		}
	}
}

/* ---- 6. lost clean-shutdown marker -------------------------------------- */

/* No marker after a clean close: recovery runs and cuts garbage. */
static void test_lost_clean_marker(void **state)
{
	char *dir = copy_dir(fx.clean), *marker = tu_join(dir, "clean-shutdown");
	char *p = fixture_file(dir, fx.nsegs - 1, "log");
	(void)state;

	assert_int_equal(unlink(marker), 0);
	append_garbage(p, 100);
	free(marker);
	free(p);
	expect_prefix(dir, fx.m.nb);
}

/* ---- 7. damaged checkpoint ----------------------------------------------- */

enum ckpt_damage { CKPT_DELETED, CKPT_BIT, CKPT_HALF, CKPT_GARBAGE, CKPT_EMPTY };

/* Checkpoint deleted or damaged: open succeeds and recovers everything. */
static void test_damaged_checkpoint(void **state)
{
	const char *const tmpl[] = { fx.crashed, fx.clean };
	(void)state;

	for (size_t t = 0; t < 2; t++) {
		for (int d = CKPT_DELETED; d <= CKPT_EMPTY; d++) {
			char *dir = copy_dir(tmpl[t]), *p = tu_join(dir, "checkpoint");
			int64_t size = tu_file_size(p);
			uint8_t junk[100];

			assert_true(size > 0);
			switch ((enum ckpt_damage)d) {
			case CKPT_DELETED:
				assert_int_equal(unlink(p), 0);
				break;
			case CKPT_BIT:
				tu_flip_bit(p, size / 2, 0);
				break;
			case CKPT_HALF:
				tu_truncate(p, size / 2);
				break;
			case CKPT_GARBAGE:
				random_bytes(junk, sizeof(junk));
				write_file(p, junk, sizeof(junk));
				break;
			case CKPT_EMPTY:
				tu_truncate(p, 0);
				break;
			}
			free(p);
			expect_prefix(dir, fx.m.nb);
		}
	}
}

/* ---- 9. injected I/O errors --------------------------------------------- */

/* A fresh log of a few segments, part of it flushed. */
static struct log *build_small(const char *dir, const struct log_config *cfg,
			       struct model *m)
{
	struct log *l = tu_open(dir, cfg);

	model_init(m);
	while (segment_count(l) < 2)
		assert_int_equal(put_random(l, m), 0);
	assert_int_equal(log_flush(l), 0);
	while (segment_count(l) < 4)
		assert_int_equal(put_random(l, m), 0);
	return l;
}

/*
 * A failed fsync, whichever of a flush's fsyncs it is: the flush fails,
 * the partition refuses appends and flushes (-EROFS) but still reads;
 * after a crash and a reopen everything is there and appends work.
 */
static void test_failed_fsync_sticks(void **state)
{
	struct log_config cfg;
	int k;
	(void)state;

	tu_small_config(&cfg);
	for (k = 0; k < FAULT_POINTS_MAX; k++) {
		char *dir = tu_mkdtemp();
		struct log_state st;
		struct model m;
		struct log *l = build_small(dir, &cfg, &m);
		int rc;

		io_fault_inject(IO_FAULT_FSYNC, k, EIO);
		rc = log_flush(l);
		io_fault_inject(IO_FAULT_NONE, 0, 0);
		if (rc == 0) { /* k is past the flush's last fsync */
			assert_int_equal(log_close(l), 0);
			model_free(&m);
			tu_rmdir(dir);
			break;
		}
		assert_int_equal(rc, -EIO);
		log_get_state(l, &st);
		assert_int_equal(st.sticky_error, EIO);
		assert_int_equal(put_random(l, &m), -EROFS);
		assert_int_equal(log_flush(l), -EROFS);
		expect_log(l, &m);

		log_abandon(l);
		l = tu_open(dir, &cfg);
		expect_log(l, &m);
		log_get_state(l, &st);
		assert_int_equal(st.sticky_error, 0);
		expect_appends_and_close(l, dir, &m);
		model_free(&m);
		tu_rmdir(dir);
	}
	/* Segments, the directory and the checkpoint: several fsyncs. */
	assert_true(k >= 5);
	assert_true(k < FAULT_POINTS_MAX);
}

struct snapshot {
	uint32_t n;
	char *names[SNAP_FILES_MAX];
	uint8_t *data[SNAP_FILES_MAX];
	uint64_t len[SNAP_FILES_MAX];
};

static void snapshot_take(struct snapshot *s, const char *dir)
{
	s->n = list_dir(dir, s->names, SNAP_FILES_MAX);
	for (uint32_t i = 0; i < s->n; i++) {
		char *p = tu_join(dir, s->names[i]);
		s->data[i] = slurp(p, &s->len[i]);
		free(p);
	}
}

static void snapshot_free(struct snapshot *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		free(s->names[i]);
		free(s->data[i]);
	}
}

/* Every file in dir is as in the snapshot, and there is no other. */
static void expect_snapshot(const struct snapshot *s, const char *dir)
{
	struct snapshot now;

	snapshot_take(&now, dir);
	assert_int_equal(now.n, s->n);
	for (uint32_t i = 0; i < s->n; i++) {
		assert_string_equal(now.names[i], s->names[i]);
		assert_int_equal(now.len[i], s->len[i]);
		assert_memory_equal(now.data[i], s->data[i], s->len[i]);
	}
	snapshot_free(&now);
}

static void expect_same_state(struct log *l, const struct log_state *want)
{
	struct log_state st;

	log_get_state(l, &st);
	assert_int_equal(st.start_offset, want->start_offset);
	assert_int_equal(st.start_pos, want->start_pos);
	assert_int_equal(st.hw, want->hw);
	assert_int_equal(st.hw_pos, want->hw_pos);
	assert_int_equal(st.leo, want->leo);
	assert_int_equal(st.leo_pos, want->leo_pos);
	assert_int_equal(st.recovery_point, want->recovery_point);
	assert_int_equal(st.size_bytes, want->size_bytes);
	assert_int_equal(st.segments, want->segments);
	assert_int_equal(st.leader_epoch, want->leader_epoch);
	assert_int_equal(st.max_ts, want->max_ts);
	assert_int_equal(st.sticky_error, want->sticky_error);
}

/* Records of the append that fails: three batches, the third rolls. */
#define BIG_RECORDS 30u
#define BIG_RECORD_BYTES 200u

static int put_big(struct log *l, struct model *m)
{
	uint32_t lens[BIG_RECORDS];

	for (uint32_t i = 0; i < BIG_RECORDS; i++)
		lens[i] = BIG_RECORD_BYTES;
	return put_records(l, m, lens, BIG_RECORDS, 2); /* a new epoch */
}

/* 11 batches of 1000 bytes: 11000 bytes in the one segment. */
static struct log *build_nearly_full(const char *dir,
				     const struct log_config *cfg,
				     struct model *m)
{
	uint32_t lens[10] = { 100, 100, 100, 100, 100, 100, 100, 100, 100, 100 };
	struct log *l = tu_open(dir, cfg);

	model_init(m);
	for (int i = 0; i < 11; i++)
		assert_int_equal(put_records(l, m, lens, 10, 1), 0);
	assert_int_equal(log_flush(l), 0);
	assert_int_equal(segment_count(l), 1);
	return l;
}

/*
 * A failed write, whichever of an append's writes it is (the epoch
 * checkpoint, a batch's payload, header or index entry, the header of
 * the segment it rolls to): the append fails and the log and every file
 * are exactly as before, also after a reopen; the same append then works.
 */
static void test_failed_write_undone(void **state)
{
	struct log_config cfg;
	int k;
	(void)state;

	tu_small_config(&cfg);
	for (k = 0; k < FAULT_POINTS_MAX; k++) {
		char *dir = tu_mkdtemp();
		struct log_state before;
		struct snapshot snap;
		struct model m;
		struct log *l = build_nearly_full(dir, &cfg, &m);
		uint32_t found;
		uint64_t end;
		int rc;

		log_get_state(l, &before);
		snapshot_take(&snap, dir);
		io_fault_inject(IO_FAULT_WRITE, k, EIO);
		rc = put_big(l, &m);
		io_fault_inject(IO_FAULT_NONE, 0, 0);
		if (rc == 0) { /* k is past the append's last write */
			assert_int_equal(segment_count(l), 2);
			expect_log(l, &m);
			assert_int_equal(log_close(l), 0);
			snapshot_free(&snap);
			model_free(&m);
			tu_rmdir(dir);
			break;
		}
		assert_int_equal(rc, -EIO);
		expect_same_state(l, &before);
		expect_snapshot(&snap, dir);
		expect_log(l, &m);
		/* The epoch-2 entry went with the append: epoch 2 is newer
		 * than every entry (Kafka: undefined), epoch 1 runs on. */
		assert_int_equal(log_epoch_end(l, 2, &found, &end), 0);
		assert_int_equal(found, LOG_EPOCH_UNDEFINED);
		assert_int_equal(end, LOG_OFFSET_UNDEFINED);
		assert_int_equal(log_epoch_end(l, 1, &found, &end), 0);
		assert_int_equal(found, 1);
		assert_int_equal(end, m.n);

		/* The same after a reopen, clean or not. */
		if (k % 2)
			log_abandon(l);
		else
			assert_int_equal(log_close(l), 0);
		l = tu_open(dir, &cfg);
		expect_same_state(l, &before);
		expect_log(l, &m);

		assert_int_equal(put_big(l, &m), 0);
		expect_log(l, &m);
		assert_int_equal(log_epoch_end(l, 1, &found, &end), 0);
		assert_int_equal(end, m.b[m.nb - 1].base);
		assert_int_equal(log_close(l), 0);
		assert_int_equal(tu_dump_problems(dir), 0);
		snapshot_free(&snap);
		model_free(&m);
		tu_rmdir(dir);
	}
	/* Epoch checkpoint, three batches of three writes, a new segment. */
	assert_true(k >= 8);
	assert_true(k < FAULT_POINTS_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_torn_last_batch),
		cmocka_unit_test(test_garbage_after_end),
		cmocka_unit_test(test_old_bad_batch_not_cut),
		cmocka_unit_test(test_new_bad_batch_cut),
		cmocka_unit_test(test_lost_indexes_rebuilt),
		cmocka_unit_test(test_index_entries_end_at_zeros),
		cmocka_unit_test(test_index_allocated_ahead),
		cmocka_unit_test(test_lost_clean_marker),
		cmocka_unit_test(test_damaged_checkpoint),
		cmocka_unit_test(test_clean_open_reads_no_payload),
		cmocka_unit_test(test_failed_fsync_sticks),
		cmocka_unit_test(test_failed_write_undone),
	};

	/*
	 * Each open allocates two buffers of 16 MiB. Served by mmap, they
	 * would be faulted in afresh at every one of the hundreds of reopens
	 * when meson's MALLOC_PERTURB_ fills them; kept in the heap, their
	 * pages are reused.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
