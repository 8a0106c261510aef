/*
 * Benchmarks 2 to 4, on one large partition built once:
 *
 *   lookup    latency of log_offset_to_pos and log_pos_to_offset at
 *             random offsets / positions, on the large partition and on a
 *             small one: p50, p90, p99 and p99.9 of BENCH_LOOKUPS (default
 *             100k) lookups each. The two should be close: a lookup is a
 *             binary search of the segment table and of one segment's
 *             index, then a walk over the batch headers of at most one
 *             index interval and the record lengths of one batch. The
 *             reference is one random 4 KiB pread() of plain files as
 *             large as the two partitions: how much a read of the same
 *             disk and page cache slows down by itself when the file
 *             grows. Everything is warm (just written).
 *   rss       resident memory (VmRSS) of a fresh process before and after
 *             log_open plus BENCH_RSS_LOOKUPS (default 10k) random
 *             lookups, for the small and the large partition. A
 *             throwaway partition is opened and closed first, so that
 *             library code and heap set-up are not counted.
 *   recovery  unclean shutdown: open the large partition, append
 *             BENCH_TAIL_BYTES (default 64 MiB) past its recovery point,
 *             log_abandon, sync and drop the page cache (root only), then
 *             time log_open and count the bytes it reads (/proc/self/io).
 *             Only the tail should be read back. The baselines are cold
 *             reads of the first BENCH_TAIL_BYTES and of the whole of a
 *             plain file as large as the partition.
 *
 * Layout of the work directory: large/ (BENCH_PARTITION_BYTES, default
 * 2 GiB, default segment.bytes of 1 GiB, uncompressed), small/ (2 MiB)
 * and the baseline files plain.dat and plain-small.dat (as large as
 * large/ and small/), all written in the 128 KiB batches of bench_append.
 *
 * Usage: bench_partition all           every step in a scratch directory
 *                                      under $BENCH_DIR, then removed
 *        bench_partition build DIR     make the partitions in DIR
 *        bench_partition lookup DIR
 *        bench_partition rss DIR small|large
 *        bench_partition recovery DIR  (grows large/ by the tail)
 * "all" runs each step in a process of its own (a fresh exec of this
 * program), so that one step's memory and I/O counters never leak into
 * the next one's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"

#define PARTITION_BYTES_DEFAULT (2ull << 30)
#define SMALL_BYTES_DEFAULT (2ull << 20)
#define TAIL_BYTES_DEFAULT (64ull << 20)
#define LOOKUPS_DEFAULT 100000u
#define RSS_LOOKUPS_DEFAULT 10000u
#define SEED_DEFAULT 0x2545f4914f6cdd1dull
/* One random read of the lookup reference; one read of the cold reads. */
#define PLAIN_PREAD_BYTES 4096u
#define PLAIN_READ_CHUNK_BYTES BENCH_BATCH_BYTES

#define LARGE_NAME "large"
#define SMALL_NAME "small"
#define PLAIN_NAME "plain.dat"
#define PLAIN_SMALL_NAME "plain-small.dat"
#define RSS_WARM_UP_NAME "rss-warm-up"

enum lookup_kind { KIND_OFFSET, KIND_POS, KIND_COUNT };

static const char *const kind_names[KIND_COUNT] = {
	"offset_to_pos", "pos_to_offset",
};

/* ---- building ---------------------------------------------------------- */

static void partition_config(struct log_config *cfg)
{
	log_config_default(cfg);
	cfg->batch_bytes = BENCH_BATCH_BYTES;
	cfg->retention_ms = -1;
}

static struct log *partition_open(const char *dir)
{
	struct log_config cfg;
	struct log *l;
	int rc;

	partition_config(&cfg);
	rc = log_open(dir, &cfg, &l);
	if (rc < 0)
		bench_die("log_open %s: %s", dir, strerror(-rc));
	return l;
}

/* Append batches [first, first + n) of the pool, one call per batch. */
static void partition_fill(struct log *l, const struct bench_pool *pool,
			   uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++) {
		int rc = log_append(l, bench_pool_batch(pool, i),
				    BENCH_BATCH_PAYLOAD, pool->lens,
				    BENCH_BATCH_RECORDS, NULL, NULL);
		if (rc < 0)
			bench_die("log_append: %s", strerror(-rc));
	}
}

static void build_partition(const char *dir, uint64_t bytes,
			    const struct bench_pool *pool)
{
	struct log *l = partition_open(dir);
	struct log_state st;
	int rc;

	partition_fill(l, pool, 0, bench_batches_for(bytes));
	log_get_state(l, &st);
	rc = log_close(l);
	if (rc < 0)
		bench_die("log_close %s: %s", dir, strerror(-rc));
	bench_result("build", "name=%s bytes=%llu records=%llu segments=%u",
		     strrchr(dir, '/') + 1, (unsigned long long)st.leo_pos,
		     (unsigned long long)st.leo, st.segments);
}

static void build_plain(const char *path, uint64_t bytes,
			const struct bench_pool *pool)
{
	uint64_t batches = bench_batches_for(bytes);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	for (uint64_t i = 0; i < batches; i++)
		bench_write_all(fd, bench_pool_batch(pool, i),
				BENCH_BATCH_PAYLOAD);
	if (fsync(fd) < 0)
		bench_die("fsync %s: %s", path, strerror(errno));
	close(fd);
}

static void cmd_build(const char *dir)
{
	uint64_t large = bench_env_u64("BENCH_PARTITION_BYTES",
				       PARTITION_BYTES_DEFAULT);
	uint64_t small = bench_env_u64("BENCH_SMALL_BYTES", SMALL_BYTES_DEFAULT);
	char *large_dir = bench_join(dir, LARGE_NAME);
	char *small_dir = bench_join(dir, SMALL_NAME);
	char *plain = bench_join(dir, PLAIN_NAME);
	char *plain_small = bench_join(dir, PLAIN_SMALL_NAME);
	struct bench_pool pool;
	double t0 = bench_now_s();

	bench_pool_init(&pool, bench_env_u64("BENCH_SEED", SEED_DEFAULT));
	build_partition(large_dir, large, &pool);
	build_partition(small_dir, small, &pool);
	build_plain(plain, large, &pool);
	build_plain(plain_small, small, &pool);
	sync();
	bench_note("build: %.1f s", bench_now_s() - t0);
	bench_pool_release(&pool);
	free(plain_small);
	free(plain);
	free(small_dir);
	free(large_dir);
}

/* ---- lookups ----------------------------------------------------------- */

/* One random lookup of the given kind; dies if the engine fails it. */
static void lookup_one(struct log *l, const struct log_state *st,
		       enum lookup_kind k, uint64_t *rng)
{
	uint64_t off, pos;
	int rc;

	if (k == KIND_OFFSET) {
		off = bench_rand_range(rng, st->start_offset, st->leo);
		rc = log_offset_to_pos(l, off, &pos);
	} else {
		uint64_t want = bench_rand_range(rng, st->start_pos,
						 st->leo_pos);
		rc = log_pos_to_offset(l, want, &off, &pos);
	}
	if (rc < 0)
		bench_die("%s: %s", kind_names[k], strerror(-rc));
}

static void report_latency(const char *what, const char *name, uint64_t bytes,
			   uint64_t *ns, size_t n)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += ns[i];
	bench_sort_u64(ns, n);
	bench_result("lookup", "size=%s kind=%s bytes=%llu n=%zu p50_ns=%llu "
		     "p90_ns=%llu p99_ns=%llu p999_ns=%llu mean_ns=%llu "
		     "max_ns=%llu", name, what, (unsigned long long)bytes, n,
		     (unsigned long long)bench_quantile(ns, n, 0.50),
		     (unsigned long long)bench_quantile(ns, n, 0.90),
		     (unsigned long long)bench_quantile(ns, n, 0.99),
		     (unsigned long long)bench_quantile(ns, n, 0.999),
		     (unsigned long long)(sum / n),
		     (unsigned long long)ns[n - 1]);
}

/* Time n lookups of each kind, one clock reading around each. */
static void lookup_partition(const char *dir, const char *name, uint64_t n,
			     uint64_t *ns)
{
	struct log *l = partition_open(dir);
	uint64_t rng = bench_env_u64("BENCH_SEED", SEED_DEFAULT);
	struct log_state st;

	log_get_state(l, &st);
	for (int k = 0; k < KIND_COUNT; k++) {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t t0 = bench_now_ns();
			lookup_one(l, &st, (enum lookup_kind)k, &rng);
			ns[i] = bench_now_ns() - t0;
		}
		report_latency(kind_names[k], name, st.leo_pos - st.start_pos,
			       ns, n);
	}
	log_close(l);
}

/* The reference: one 4 KiB pread() at a random aligned place. */
static void lookup_plain(const char *path, const char *name, uint64_t n,
			 uint64_t *ns)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t rng = bench_env_u64("BENCH_SEED", SEED_DEFAULT);
	uint8_t buf[PLAIN_PREAD_BYTES];
	uint64_t size, pages;

	if (fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	size = (uint64_t)lseek(fd, 0, SEEK_END);
	pages = size / PLAIN_PREAD_BYTES;
	for (uint64_t i = 0; i < n; i++) {
		off_t at = (off_t)(bench_rand_range(&rng, 0, pages) *
				   PLAIN_PREAD_BYTES);
		uint64_t t0 = bench_now_ns();
		if (pread(fd, buf, sizeof(buf), at) != (ssize_t)sizeof(buf))
			bench_die("pread %s: short read", path);
		ns[i] = bench_now_ns() - t0;
	}
	close(fd);
	report_latency("pread_4k", name, size, ns, n);
}

static void cmd_lookup(const char *dir)
{
	uint64_t n = bench_env_u64("BENCH_LOOKUPS", LOOKUPS_DEFAULT);
	char *large_dir = bench_join(dir, LARGE_NAME);
	char *small_dir = bench_join(dir, SMALL_NAME);
	char *plain = bench_join(dir, PLAIN_NAME);
	char *plain_small = bench_join(dir, PLAIN_SMALL_NAME);
	uint64_t *ns = malloc((n ? n : 1) * sizeof(*ns));

	if (!ns || n == 0)
		bench_die("BENCH_LOOKUPS must be positive (and fit in memory)");
	lookup_partition(small_dir, SMALL_NAME, n, ns);
	lookup_partition(large_dir, LARGE_NAME, n, ns);
	lookup_plain(plain_small, "plain_small", n, ns);
	lookup_plain(plain, "plain_large", n, ns);
	free(ns);
	free(plain_small);
	free(plain);
	free(small_dir);
	free(large_dir);
}

/* ---- resident memory --------------------------------------------------- */

/* The memory counters of /proc/self/status, in KiB. */
struct rss_sample {
	uint64_t rss, anon, file;
};

static void rss_sample(struct rss_sample *s)
{
	static const char *const fields[] = { "VmRSS", "RssAnon", "RssFile" };
	uint64_t v[3];

	bench_status_kib(fields, v, 3);
	s->rss = v[0];
	s->anon = v[1];
	s->file = v[2];
}

/*
 * Open, use and close a one-record partition in a scratch directory, so
 * that the code of the engine and of the codec libraries, the heap and
 * stdio are resident before the first sample: what is left to measure is
 * what one more open partition costs a process that already has one.
 */
static void rss_warm_up(const char *dir)
{
	static const uint8_t rec[BENCH_RECORD_BYTES];
	char *path = bench_join(dir, RSS_WARM_UP_NAME);
	uint32_t len = BENCH_RECORD_BYTES;
	uint64_t off, pos;
	struct log *l;
	int rc;

	bench_rmtree(path);
	l = partition_open(path);
	rc = log_append(l, rec, len, &len, 1, NULL, NULL);
	if (rc == 0)
		rc = log_offset_to_pos(l, 0, &pos);
	if (rc == 0)
		rc = log_pos_to_offset(l, 0, &off, &pos);
	if (rc < 0)
		bench_die("warm-up partition: %s", strerror(-rc));
	log_close(l);
	bench_rmtree(path);
	free(path);
}

static void cmd_rss(const char *dir, const char *name)
{
	uint64_t n = bench_env_u64("BENCH_RSS_LOOKUPS", RSS_LOOKUPS_DEFAULT);
	uint64_t rng = bench_env_u64("BENCH_SEED", SEED_DEFAULT);
	char *path = bench_join(dir, name);
	struct rss_sample s0, s1;
	struct log_state st;
	struct log *l;

	rss_warm_up(dir);
	rss_sample(&s0);
	l = partition_open(path);
	log_get_state(l, &st);
	for (uint64_t i = 0; i < n; i++)
		lookup_one(l, &st, (enum lookup_kind)(i % KIND_COUNT), &rng);
	rss_sample(&s1);
	bench_result("rss", "size=%s bytes=%llu segments=%u lookups=%llu "
		     "rss_before_kib=%llu rss_delta_kib=%lld "
		     "anon_delta_kib=%lld file_delta_kib=%lld", name,
		     (unsigned long long)(st.leo_pos - st.start_pos),
		     st.segments, (unsigned long long)n,
		     (unsigned long long)s0.rss,
		     (long long)(s1.rss - s0.rss),
		     (long long)(s1.anon - s0.anon),
		     (long long)(s1.file - s0.file));
	log_close(l);
	free(path);
}

/* ---- recovery ---------------------------------------------------------- */

/* Append tail bytes past a flushed end, then "crash" (log_abandon). */
static void recovery_prepare(const char *dir, uint64_t tail)
{
	struct log *l = partition_open(dir);
	struct bench_pool pool;
	int rc;

	bench_pool_init(&pool, bench_env_u64("BENCH_SEED", SEED_DEFAULT) + 1);
	rc = log_flush(l);
	if (rc < 0)
		bench_die("log_flush: %s", strerror(-rc));
	partition_fill(l, &pool, 0, bench_batches_for(tail));
	log_abandon(l);
	bench_pool_release(&pool);
}

/* Time the open of an abandoned partition, cold if we may drop caches. */
static void recovery_measure(const char *dir, uint64_t tail)
{
	bool dropped = bench_drop_caches();
	struct bench_io io0, io1;
	struct log_state st;
	struct log *l;
	double t0, secs;

	bench_read_io(&io0);
	t0 = bench_now_s();
	l = partition_open(dir);
	secs = bench_now_s() - t0;
	bench_read_io(&io1);
	log_get_state(l, &st);
	bench_result("recovery", "what=log_open bytes=%llu tail_bytes=%llu "
		     "segments=%u seconds=%.4f read_bytes=%llu rchar=%llu "
		     "dropped_caches=%d",
		     (unsigned long long)(st.leo_pos - st.start_pos),
		     (unsigned long long)(bench_batches_for(tail) *
					  BENCH_BATCH_PAYLOAD),
		     st.segments, secs,
		     (unsigned long long)(io1.read_bytes - io0.read_bytes),
		     (unsigned long long)(io1.rchar - io0.rchar), dropped);
	log_close(l);
}

/* The baseline: read the first len bytes of a plain file, cold. */
static void recovery_plain(const char *path, uint64_t len, const char *what)
{
	bool dropped = bench_drop_caches();
	uint8_t *buf = malloc(PLAIN_READ_CHUNK_BYTES);
	struct bench_io io0, io1;
	uint64_t done = 0;
	double t0, secs;
	int fd;

	if (!buf)
		bench_die("out of memory");
	bench_read_io(&io0);
	t0 = bench_now_s();
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	while (done < len) {
		size_t want = len - done < PLAIN_READ_CHUNK_BYTES ?
			      (size_t)(len - done) : PLAIN_READ_CHUNK_BYTES;
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			bench_die("read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	close(fd);
	secs = bench_now_s() - t0;
	bench_read_io(&io1);
	bench_result("recovery", "what=%s bytes=%llu seconds=%.4f "
		     "read_bytes=%llu rchar=%llu dropped_caches=%d", what,
		     (unsigned long long)done, secs,
		     (unsigned long long)(io1.read_bytes - io0.read_bytes),
		     (unsigned long long)(io1.rchar - io0.rchar), dropped);
	free(buf);
}

static void cmd_recovery(const char *dir)
{
	uint64_t tail = bench_env_u64("BENCH_TAIL_BYTES", TAIL_BYTES_DEFAULT);
	char *large_dir = bench_join(dir, LARGE_NAME);
	char *plain = bench_join(dir, PLAIN_NAME);

	recovery_prepare(large_dir, tail);
	recovery_measure(large_dir, tail);
	recovery_plain(plain, tail, "plain_tail");
	recovery_plain(plain, UINT64_MAX, "plain_whole");
	free(plain);
	free(large_dir);
}

/* ---- all steps --------------------------------------------------------- */

/* Run this program again with argv; true if it exited with status 0. */
static bool run_step(char *const argv[])
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			bench_die("waitpid: %s", strerror(errno));
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int cmd_all(const char *self)
{
	char *dir = bench_mkdtemp(bench_parent_dir(), "partition");
	char *steps[][5] = {
		{ (char *)self, "build", dir, NULL, NULL },
		{ (char *)self, "lookup", dir, NULL, NULL },
		{ (char *)self, "rss", dir, SMALL_NAME, NULL },
		{ (char *)self, "rss", dir, LARGE_NAME, NULL },
		{ (char *)self, "recovery", dir, NULL, NULL },
	};
	int rc = 0;

	bench_result("partition_config", "fs=%s", bench_fs_name(dir));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		bench_note("partition: %s %s", steps[i][1],
			   steps[i][3] ? steps[i][3] : "");
		if (!run_step(steps[i])) {
			bench_note("step %s failed", steps[i][1]);
			rc = 1;
			break;
		}
	}
	bench_rmtree(dir);
	free(dir);
	return rc;
}

static void usage(void)
{
	bench_die("usage: bench_partition all | build DIR | lookup DIR | "
		  "rss DIR small|large | recovery DIR");
}

int main(int argc, char **argv)
{
	if (argc == 1 || (argc == 2 && strcmp(argv[1], "all") == 0))
		return cmd_all(argv[0]);
	if (argc == 3 && strcmp(argv[1], "build") == 0)
		cmd_build(argv[2]);
	else if (argc == 3 && strcmp(argv[1], "lookup") == 0)
		cmd_lookup(argv[2]);
	else if (argc == 4 && strcmp(argv[1], "rss") == 0)
		cmd_rss(argv[2], argv[3]);
	else if (argc == 3 && strcmp(argv[1], "recovery") == 0)
		cmd_recovery(argv[2]);
	else
		usage();
	return 0;
}
