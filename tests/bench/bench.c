#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <dirent.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

/* Longest line of /proc/self/status or /proc/self/io we parse. */
#define BENCH_PROC_LINE_BYTES 256
/* Room to format one log line before it is cut to a record. */
#define BENCH_LINE_SCRATCH_BYTES 256

/* ---- messages ---------------------------------------------------------- */

static void bench_vnote(const char *fmt, va_list ap)
{
	fputs("bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vnote(fmt, ap);
	va_end(ap);
	exit(1);
}

void bench_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vnote(fmt, ap);
	va_end(ap);
}

void bench_result(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("BENCH %s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* ---- clocks ------------------------------------------------------------ */

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_now_s(void)
{
	return (double)bench_now_ns() / 1e9;
}

double bench_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- settings ---------------------------------------------------------- */

uint64_t bench_env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	unsigned long long v;
	char *end;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		bench_die("%s=%s: not a number", name, s);
	switch (*end) {
	case 'K': case 'k': v <<= 10; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		bench_die("%s=%s: trailing characters", name, s);
	return v;
}

const char *bench_parent_dir(void)
{
	const char *s = getenv("BENCH_DIR");

	return s && *s ? s : BENCH_DIR_DEFAULT;
}

/* ---- files and directories --------------------------------------------- */

const char *bench_fs_name(const char *path)
{
	struct statfs sf;

	if (statfs(path, &sf) < 0)
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case EXT4_SUPER_MAGIC: return "ext4";
	case XFS_SUPER_MAGIC: return "xfs";
	case BTRFS_SUPER_MAGIC: return "btrfs";
	case TMPFS_MAGIC: return "tmpfs";
	case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
	default: return "other";
	}
}

char *bench_mkdtemp(const char *parent, const char *tag)
{
	char *path;

	if (asprintf(&path, "%s/topicfs-bench-%s-XXXXXX", parent, tag) < 0)
		bench_die("out of memory");
	if (!mkdtemp(path))
		bench_die("mkdtemp %s: %s", path, strerror(errno));
	if (strcmp(bench_fs_name(path), "tmpfs") == 0)
		bench_note("warning: %s is on tmpfs; set BENCH_DIR to a "
			   "directory on a real disk", path);
	return path;
}

static int bench_rm_one(const char *p, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(p) < 0 && errno != ENOENT)
		bench_note("remove %s: %s", p, strerror(errno));
	return 0;
}

void bench_rmtree(const char *path)
{
	nftw(path, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *bench_join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		bench_die("out of memory");
	return p;
}

uint64_t bench_dir_bytes(const char *dir)
{
	struct dirent *de;
	uint64_t total = 0;
	DIR *d = opendir(dir);

	if (!d)
		bench_die("opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	}
	closedir(d);
	return total;
}

void bench_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			bench_die("write: %s", n < 0 ? strerror(errno) : "0 bytes");
		p += n;
		len -= (size_t)n;
	}
}

void bench_prefault(uint64_t bytes)
{
	void *m;

	if (bytes == 0)
		return;
	m = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (m == MAP_FAILED) {
		bench_note("prefault of %llu bytes: %s",
			   (unsigned long long)bytes, strerror(errno));
		return;
	}
	munmap(m, (size_t)bytes);
}

/* ---- /proc ------------------------------------------------------------- */

bool bench_drop_caches(void)
{
	int fd;
	bool ok;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/*
 * Values of the lines "<key><value>" of a /proc file, read at one time:
 * out[i] for keys[i], 0 if missing.
 */
static void bench_proc_fields(const char *file, const char *const *keys,
			      uint64_t *out, size_t n)
{
	char line[BENCH_PROC_LINE_BYTES];
	FILE *f = fopen(file, "r");

	if (!f)
		bench_die("open %s: %s", file, strerror(errno));
	for (size_t i = 0; i < n; i++)
		out[i] = 0;
	while (fgets(line, sizeof(line), f)) {
		for (size_t i = 0; i < n; i++) {
			size_t klen = strlen(keys[i]);
			if (strncmp(line, keys[i], klen) == 0 && line[klen] == ':')
				out[i] = strtoull(line + klen + 1, NULL, 10);
		}
	}
	fclose(f);
}

void bench_read_io(struct bench_io *io)
{
	static const char *const keys[] = { "rchar", "read_bytes" };
	uint64_t v[2];

	bench_proc_fields("/proc/self/io", keys, v, 2);
	io->rchar = v[0];
	io->read_bytes = v[1];
}

void bench_status_kib(const char *const *fields, uint64_t *out, size_t n)
{
	bench_proc_fields("/proc/self/status", fields, out, n);
}

/* ---- random numbers and statistics ------------------------------------- */

uint64_t bench_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 1;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 2685821657736338717ull;
}

uint64_t bench_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
	return lo + bench_rand(state) % (hi - lo);
}

static int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void bench_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_u64);
}

uint64_t bench_quantile(const uint64_t *sorted, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);

	if (n == 0)
		return 0;
	return sorted[i < n ? i : n - 1];
}

uint64_t bench_batches_for(uint64_t bytes)
{
	return (bytes + BENCH_BATCH_PAYLOAD - 1) / BENCH_BATCH_PAYLOAD;
}

/* ---- log-like data ----------------------------------------------------- */

static const char *const bench_levels[] = {
	"INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR",
};
static const char *const bench_threads[] = {
	"http", "worker", "db-pool", "kafka-io", "scheduler",
};
static const char *const bench_methods[] = {
	"GET", "GET", "GET", "POST", "PUT", "DELETE",
};
static const char *const bench_paths[] = {
	"/api/v1/orders", "/api/v1/users", "/api/v2/cart/items",
	"/api/v1/payments", "/healthz", "/static/js/app",
};
static const unsigned bench_statuses[] = {
	200, 200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503,
};

#define BENCH_PICK(arr, r) (arr[(r) % (sizeof(arr) / sizeof(arr[0]))])

/* One line into rec: exactly BENCH_RECORD_BYTES bytes ending in '\n'. */
static void bench_line(uint8_t *rec, uint64_t *state, uint64_t ts_ms)
{
	char line[BENCH_LINE_SCRATCH_BYTES];
	uint64_t r = bench_rand(state), r2 = bench_rand(state);
	uint64_t sec = ts_ms / 1000;
	int n;

	n = snprintf(line, sizeof(line),
		     "2024-06-01T%02u:%02u:%02u.%03uZ %s [%s-%02u] %s %s/%u "
		     "status=%u latency_ms=%u.%03u req=%08x user=%u bytes=%u "
		     "trace=%016" PRIx64,
		     (unsigned)(sec / 3600 % 24), (unsigned)(sec / 60 % 60),
		     (unsigned)(sec % 60), (unsigned)(ts_ms % 1000),
		     BENCH_PICK(bench_levels, r),
		     BENCH_PICK(bench_threads, r >> 8), (unsigned)(r >> 16) % 16,
		     BENCH_PICK(bench_methods, r >> 24),
		     BENCH_PICK(bench_paths, r >> 32),
		     (unsigned)(r2 % 100000000),
		     BENCH_PICK(bench_statuses, r >> 40),
		     (unsigned)(r2 >> 32) % 250, (unsigned)(r2 >> 40) % 1000,
		     (unsigned)(r2 >> 16), (unsigned)(r >> 44) % 100000,
		     (unsigned)(r2 >> 50) % 65536, bench_rand(state));
	if (n < (int)BENCH_RECORD_BYTES)
		bench_die("generated line too short (%d bytes)", n);
	memcpy(rec, line, BENCH_RECORD_BYTES - 1);
	rec[BENCH_RECORD_BYTES - 1] = '\n';
}

void bench_lines_fill(uint8_t *buf, uint32_t n, uint64_t *state,
		      uint64_t *ts_ms)
{
	for (uint32_t i = 0; i < n; i++) {
		*ts_ms += bench_rand(state) % 7;
		bench_line(buf + (size_t)i * BENCH_RECORD_BYTES, state, *ts_ms);
	}
}

void bench_pool_init(struct bench_pool *p, uint64_t seed)
{
	uint64_t state = seed, ts_ms = 12ull * 3600 * 1000;

	p->data = malloc((size_t)BENCH_POOL_BATCHES * BENCH_BATCH_PAYLOAD);
	if (!p->data)
		bench_die("out of memory for the data pool");
	bench_lines_fill(p->data, BENCH_POOL_BATCHES * BENCH_BATCH_RECORDS,
			 &state, &ts_ms);
	for (uint32_t i = 0; i < BENCH_BATCH_RECORDS; i++)
		p->lens[i] = BENCH_RECORD_BYTES;
}

void bench_pool_release(struct bench_pool *p)
{
	free(p->data);
	p->data = NULL;
}

const uint8_t *bench_pool_batch(const struct bench_pool *p, uint64_t i)
{
	return p->data + (size_t)(i % BENCH_POOL_BATCHES) * BENCH_BATCH_PAYLOAD;
}
