/*
 * Benchmark 1: append throughput against a plain file.
 *
 * Writes BENCH_BYTES (default 1 GiB, rounded up to whole batches) of
 * 100-byte log-line records (bench_lines_fill), one log_append call of
 * 1310 records = one 128 KiB batch at a time, into a fresh partition
 * with no compression, lz4 and zstd level 3. The baseline write()s the
 * very same 131000-byte buffers, one call each, to a plain file in the
 * same directory. Throughput counts the records' bytes (the logical
 * payload) in every case, so a codec that shrinks the data shows up as a
 * faster write, not a smaller one.
 *
 * Two modes, with the same treatment for the engine and the baseline:
 *   buffered  the clock stops after the last append / write(); nothing
 *             is fsynced (what a producer that does not wait for the
 *             disk sees: mostly copying into the page cache);
 *   fsync     the clock stops after log_flush / fsync() of the file, so
 *             the disk is in the figure.
 * Opening and closing are outside the clock.
 *
 * Each case runs BENCH_ROUNDS (default 7) times. The cases are
 * interleaved round by round, in an order that rotates, so that another
 * process stealing the CPU for a while hurts all of them alike; run.sh
 * reports the median round. Between runs the files are deleted and the
 * disk synced, so no run pays for the write-back of the previous one, and
 * before each run as much memory as it will fill with page cache is
 * touched and freed (bench_prefault), so that none pays for the host.
 *
 * BENCH_MODES and BENCH_CASES (comma-separated names, e.g.
 * BENCH_CASES=plain,none) restrict a run to some modes and cases.
 *
 * Output: one "BENCH append_config ..." line, one "BENCH append_sample
 * <line>" with the first generated record, then per run
 *   BENCH append mode=M case=C round=R bytes=B seconds=S mb_s=X cpu_s=U
 *         stored_bytes=P disk_bytes=D
 * where stored_bytes is the payload after compression and disk_bytes all
 * bytes of all files (the engine's .meta and .index included).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"

#define APPEND_BYTES_DEFAULT (1ull << 30)
#define APPEND_ROUNDS_DEFAULT 7
#define APPEND_SEED_DEFAULT 0x9e3779b97f4a7c15ull
#define APPEND_ZSTD_LEVEL 3
/* Memory touched before a run: the data plus 1/16 (the engine's .meta
 * takes 4% more for 100-byte records). */
#define PREFAULT_DIVISOR 16

enum append_case { CASE_PLAIN, CASE_NONE, CASE_LZ4, CASE_ZSTD, CASE_COUNT };

static const char *const case_names[CASE_COUNT] = {
	"plain", "none", "lz4", "zstd",
};

enum append_mode { MODE_BUFFERED, MODE_FSYNC, MODE_COUNT };

static const char *const mode_names[MODE_COUNT] = { "buffered", "fsync" };

struct append_run {
	uint64_t bytes;        /* logical payload bytes written */
	uint64_t stored_bytes; /* payload bytes as stored */
	uint64_t disk_bytes;   /* all files of the case */
	double seconds;
	double cpu_s;
};

/* The baseline: write() every batch buffer to one plain file. */
static void run_plain(const char *dir, const struct bench_pool *pool,
		      uint64_t batches, bool durable, struct append_run *r)
{
	char *path = bench_join(dir, "plain.dat");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	double t0, c0;

	if (fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	c0 = bench_cpu_s();
	t0 = bench_now_s();
	for (uint64_t i = 0; i < batches; i++)
		bench_write_all(fd, bench_pool_batch(pool, i),
				BENCH_BATCH_PAYLOAD);
	if (durable && fsync(fd) < 0)
		bench_die("fsync %s: %s", path, strerror(errno));
	r->seconds = bench_now_s() - t0;
	r->cpu_s = bench_cpu_s() - c0;
	close(fd);
	r->bytes = batches * BENCH_BATCH_PAYLOAD;
	r->stored_bytes = r->bytes;
	r->disk_bytes = bench_dir_bytes(dir);
	free(path);
}

static void append_config(struct log_config *cfg, int codec)
{
	log_config_default(cfg);
	cfg->codec = codec;
	cfg->zstd_level = APPEND_ZSTD_LEVEL;
	cfg->batch_bytes = BENCH_BATCH_BYTES;
	cfg->retention_ms = -1;
}

/* The engine: one log_append call per batch buffer. */
static void run_log(const char *dir, int codec, const struct bench_pool *pool,
		    uint64_t batches, bool durable, struct append_run *r)
{
	char *path = bench_join(dir, "partition");
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	double t0, c0;
	int rc;

	append_config(&cfg, codec);
	rc = log_open(path, &cfg, &l);
	if (rc < 0)
		bench_die("log_open %s: %s", path, strerror(-rc));
	c0 = bench_cpu_s();
	t0 = bench_now_s();
	for (uint64_t i = 0; i < batches; i++) {
		rc = log_append(l, bench_pool_batch(pool, i),
				BENCH_BATCH_PAYLOAD, pool->lens,
				BENCH_BATCH_RECORDS, NULL, NULL);
		if (rc < 0)
			bench_die("log_append: %s", strerror(-rc));
	}
	if (durable && (rc = log_flush(l)) < 0)
		bench_die("log_flush: %s", strerror(-rc));
	r->seconds = bench_now_s() - t0;
	r->cpu_s = bench_cpu_s() - c0;
	log_get_state(l, &st);
	r->bytes = st.leo_pos;
	r->stored_bytes = st.size_bytes;
	r->disk_bytes = bench_dir_bytes(path);
	/* Unflushed data is about to be deleted: skip the flush of close. */
	if (durable)
		log_close(l);
	else
		log_abandon(l);
	free(path);
}

/* Whether name is in the comma-separated list in $var (all if unset). */
static bool selected(const char *var, const char *name)
{
	const char *list = getenv(var), *p;
	size_t len = strlen(name);

	if (!list || !*list)
		return true;
	for (p = list; (p = strstr(p, name)); p += len) {
		if ((p == list || p[-1] == ',') &&
		    (p[len] == ',' || p[len] == '\0'))
			return true;
	}
	return false;
}

static void run_case(const char *parent, enum append_case c,
		     enum append_mode m, unsigned round,
		     const struct bench_pool *pool, uint64_t batches)
{
	static const int codecs[CASE_COUNT] = {
		[CASE_NONE] = LOG_CODEC_NONE,
		[CASE_LZ4] = LOG_CODEC_LZ4,
		[CASE_ZSTD] = LOG_CODEC_ZSTD,
	};
	char *dir = bench_mkdtemp(parent, "append");
	bool durable = m == MODE_FSYNC;
	struct append_run r;

	bench_prefault(batches * BENCH_BATCH_PAYLOAD / PREFAULT_DIVISOR *
		       (PREFAULT_DIVISOR + 1));
	if (c == CASE_PLAIN)
		run_plain(dir, pool, batches, durable, &r);
	else
		run_log(dir, codecs[c], pool, batches, durable, &r);
	bench_result("append", "mode=%s case=%s round=%u bytes=%llu "
		     "seconds=%.4f mb_s=%.1f cpu_s=%.3f stored_bytes=%llu "
		     "disk_bytes=%llu", mode_names[m], case_names[c], round,
		     (unsigned long long)r.bytes, r.seconds,
		     (double)r.bytes / BENCH_MB / r.seconds, r.cpu_s,
		     (unsigned long long)r.stored_bytes,
		     (unsigned long long)r.disk_bytes);
	bench_rmtree(dir);
	free(dir);
	sync();
}

int main(void)
{
	uint64_t bytes = bench_env_u64("BENCH_BYTES", APPEND_BYTES_DEFAULT);
	uint64_t rounds = bench_env_u64("BENCH_ROUNDS", APPEND_ROUNDS_DEFAULT);
	uint64_t seed = bench_env_u64("BENCH_SEED", APPEND_SEED_DEFAULT);
	uint64_t batches = bench_batches_for(bytes);
	const char *parent = bench_parent_dir();
	struct bench_pool pool;

	if (batches == 0 || rounds == 0)
		bench_die("BENCH_BYTES and BENCH_ROUNDS must be positive");
	bench_pool_init(&pool, seed);
	bench_result("append_config", "bytes=%llu batches=%llu "
		     "records_per_call=%u record_bytes=%u call_bytes=%u "
		     "batch_bytes_cfg=%u rounds=%llu zstd_level=%d fs=%s",
		     (unsigned long long)(batches * BENCH_BATCH_PAYLOAD),
		     (unsigned long long)batches, BENCH_BATCH_RECORDS,
		     BENCH_RECORD_BYTES, BENCH_BATCH_PAYLOAD, BENCH_BATCH_BYTES,
		     (unsigned long long)rounds, APPEND_ZSTD_LEVEL,
		     bench_fs_name(parent));
	/* The first record, for the report (the one line with spaces). */
	printf("BENCH append_sample %.*s\n", (int)BENCH_RECORD_BYTES - 1,
	       (const char *)pool.data);
	for (int m = 0; m < MODE_COUNT; m++) {
		for (unsigned round = 0; round < rounds; round++) {
			for (int k = 0; k < CASE_COUNT; k++) {
				enum append_case c = (enum append_case)
					((k + (int)round) % CASE_COUNT);
				if (!selected("BENCH_MODES", mode_names[m]) ||
				    !selected("BENCH_CASES", case_names[c]))
					continue;
				bench_note("append: %s %s round %u",
					   mode_names[m], case_names[c],
					   round + 1);
				run_case(parent, c, (enum append_mode)m,
					 round + 1, &pool, batches);
			}
		}
	}
	bench_pool_release(&pool);
	return 0;
}
