/*
 * Helpers shared by the log engine benchmarks: monotonic clocks, settings
 * from the environment, scratch directories on the benchmark disk, the
 * /proc readers for memory and I/O, the generator of log-like record
 * data, and the result lines that tests/bench/run.sh turns into
 * docs/PERFORMANCE.md.
 *
 * Every result is one line on stdout:
 *
 *   BENCH <benchmark> key=value key=value ...
 *
 * with no spaces inside a value (the one exception, "BENCH append_sample",
 * carries a generated record as the rest of its line). Anything else
 * (progress, warnings) goes to stderr. A benchmark that cannot run exits
 * non-zero after saying why.
 */
#ifndef TOPICFS_BENCH_H
#define TOPICFS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default parent of the scratch directory: a real disk, unlike /tmp. */
#define BENCH_DIR_DEFAULT "/var/tmp"

/*
 * One log_append call carries BENCH_BATCH_RECORDS records of
 * BENCH_RECORD_BYTES each: as many as fit in BENCH_BATCH_BYTES (128 KiB),
 * i.e. 1310 records and 131000 payload bytes. cfg.batch_bytes is set to
 * BENCH_BATCH_BYTES so that each call writes exactly one batch.
 */
#define BENCH_BATCH_BYTES (128u << 10)
#define BENCH_RECORD_BYTES 100u
#define BENCH_BATCH_RECORDS (BENCH_BATCH_BYTES / BENCH_RECORD_BYTES)
#define BENCH_BATCH_PAYLOAD (BENCH_BATCH_RECORDS * BENCH_RECORD_BYTES)

/* Distinct batches of generated data, cycled through (32 MiB). */
#define BENCH_POOL_BATCHES 256u

/* Bytes per megabyte in every MB/s figure. */
#define BENCH_MB 1e6

__attribute__((noreturn, format(printf, 1, 2)))
void bench_die(const char *fmt, ...);

/* Progress and warnings, to stderr with a "bench: " prefix. */
__attribute__((format(printf, 1, 2)))
void bench_note(const char *fmt, ...);

/* One result line: "BENCH <name> " followed by the formatted fields. */
__attribute__((format(printf, 2, 3)))
void bench_result(const char *name, const char *fmt, ...);

/* CLOCK_MONOTONIC, in nanoseconds and in seconds. */
uint64_t bench_now_ns(void);
double bench_now_s(void);

/* User plus system CPU time of this process, in seconds. */
double bench_cpu_s(void);

/*
 * The value of environment variable name, or def if it is unset or
 * empty. A K, M or G suffix multiplies by 2^10, 2^20 or 2^30. Dies on a
 * malformed value.
 */
uint64_t bench_env_u64(const char *name, uint64_t def);

/* $BENCH_DIR, or BENCH_DIR_DEFAULT. */
const char *bench_parent_dir(void);

/*
 * Make a fresh directory "<parent>/topicfs-bench-<tag>-XXXXXX" and return
 * it (malloc'd). Warns when the parent is on tmpfs, whose figures say
 * nothing about a disk.
 */
char *bench_mkdtemp(const char *parent, const char *tag);

/* rm -rf path (a missing path is fine). */
void bench_rmtree(const char *path);

/* path/name, malloc'd. */
char *bench_join(const char *dir, const char *name);

/* Sum of the sizes of the regular files directly in dir. */
uint64_t bench_dir_bytes(const char *dir);

/* Name of the filesystem type holding path ("ext4", "tmpfs", ...). */
const char *bench_fs_name(const char *path);

/*
 * sync(), then ask the kernel to drop its clean page cache, dentries and
 * inodes. Returns true if it could (root only); false leaves the cache
 * as it was.
 */
bool bench_drop_caches(void);

/*
 * Touch bytes of fresh anonymous memory and give it back. On a virtual
 * machine that returns free guest memory to its host (virtio-balloon
 * free page reporting, as on the machine these figures come from), the
 * first touch of a page the host took back costs a host page fault, and
 * the page cache that a write or read allocates pays it at random. Called
 * right before a timed run, so that the run finds freshly used pages
 * whatever ran before it; the engine and its baseline get the same.
 */
void bench_prefault(uint64_t bytes);

/* Counters from /proc/self/io: all bytes read by read-like calls, and
 * the bytes fetched from storage. */
struct bench_io {
	uint64_t rchar;
	uint64_t read_bytes;
};

void bench_read_io(struct bench_io *io);

/*
 * Fields such as "VmRSS" of /proc/self/status, in KiB, read at one time:
 * out[i] gets fields[i] (0 if the kernel has no such field).
 */
void bench_status_kib(const char *const *fields, uint64_t *out, size_t n);

/* xorshift64*: a fast, seeded generator for lookups and data. */
uint64_t bench_rand(uint64_t *state);

/* A random value in [lo, hi); hi > lo. */
uint64_t bench_rand_range(uint64_t *state, uint64_t lo, uint64_t hi);

/*
 * Fill buf with n records of BENCH_RECORD_BYTES each: log lines such as
 *
 *   2024-06-01T12:00:03.117Z INFO  [http-07] GET /api/v1/orders/48213977
 *   status=200 latency_ms=12.345 req=9f3a1c2b...
 *
 * (one line, cut to 99 characters plus '\n'), with timestamps moving
 * forward and the numbers, levels, threads, paths and statuses drawn from
 * *state. *ts_ms is the clock of the generated lines; it advances.
 */
void bench_lines_fill(uint8_t *buf, uint32_t n, uint64_t *state,
		      uint64_t *ts_ms);

/*
 * BENCH_POOL_BATCHES batches of BENCH_BATCH_PAYLOAD bytes of log lines,
 * generated before any timing starts so that both the engine and the
 * plain-file baseline write the very same bytes.
 */
struct bench_pool {
	uint8_t *data;
	uint32_t lens[BENCH_BATCH_RECORDS]; /* all BENCH_RECORD_BYTES */
};

void bench_pool_init(struct bench_pool *p, uint64_t seed);
void bench_pool_release(struct bench_pool *p);
/* Batch i (taken modulo BENCH_POOL_BATCHES). */
const uint8_t *bench_pool_batch(const struct bench_pool *p, uint64_t i);

/* write() all of buf to fd, retrying EINTR and short writes; dies on error. */
void bench_write_all(int fd, const void *buf, size_t len);

/* Sort v ascending. */
void bench_sort_u64(uint64_t *v, size_t n);
/* The value at fraction q (0..1) of sorted v (nearest rank). */
uint64_t bench_quantile(const uint64_t *sorted, size_t n, double q);

/* Whole batches needed to hold at least bytes payload bytes. */
uint64_t bench_batches_for(uint64_t bytes);

#endif
