/*
 * A helper of tests/bench/durable_bench.sh: N writers appending 100-byte
 * lines to one file (MNT/t/.produce) for a fixed time, each through its
 * own open(), several lines per write() as a pipelining client sends
 * several commands per round trip.
 *
 *   produce_writers PATH WRITERS SECONDS LINES_PER_WRITE [sync]
 *
 * Every writer is a thread with its own descriptor (O_WRONLY | O_APPEND)
 * and writes LINES_PER_WRITE lines of 100 bytes (newline included) per
 * call. With "sync" each write() is followed by fdatasync() of the same
 * descriptor: the durable append of a build that has no write.caching
 * setting. A write() counts once it has returned (and, with "sync", once
 * its fdatasync has).
 *
 * Prints one line:
 *   writes=N records=N seconds=S records_per_s=R writers=W
 *   lines_per_write=L p50_us=P p99_us=P
 * where p50_us and p99_us are the latencies of single write() calls (with
 * their fdatasync), read from a histogram of power-of-two-microsecond
 * buckets: each is the upper bound of its bucket. Exit status 1 if any
 * call failed or was short (the first error is printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LINE_BYTES = 100, LATENCY_BUCKETS = 40 };

static const char *path;
static int lines_per_write;
static bool sync_each;
static atomic_bool stop;
static atomic_bool failed;

struct writer {
	pthread_t thread;
	int index;
	uint64_t writes;
	/* Bucket b counts calls that took less than 2^b microseconds. */
	uint64_t latency[LATENCY_BUCKETS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned latency_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned b = 0;

	while (b + 1 < LATENCY_BUCKETS && (1ull << b) <= us)
		b++;
	return b;
}

/* Report the first failure only: the others are its consequences. */
static void fail(const char *what, const char *why)
{
	if (!atomic_exchange(&failed, true))
		fprintf(stderr, "produce_writers: %s: %s\n", what, why);
}

/* LINES_PER_WRITE distinct lines: writer index, then a fill. */
static char *make_buffer(int index, size_t bytes)
{
	char *buf = malloc(bytes);

	if (!buf)
		return NULL;
	for (int i = 0; i < lines_per_write; i++) {
		char *line = buf + (size_t)i * LINE_BYTES;
		int n = snprintf(line, LINE_BYTES, "w%03d-l%03d-", index, i);
		memset(line + n, 'a' + index % 26, LINE_BYTES - 1 - (size_t)n);
		line[LINE_BYTES - 1] = '\n';
	}
	return buf;
}

/* One write() of the whole buffer, and its fdatasync: 0 or -1. */
static int append_once(int fd, const char *buf, size_t bytes)
{
	ssize_t n = write(fd, buf, bytes);

	if (n != (ssize_t)bytes) {
		fail("write", n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	if (sync_each && fdatasync(fd) < 0) {
		fail("fdatasync", strerror(errno));
		return -1;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t bytes = (size_t)lines_per_write * LINE_BYTES;
	char *buf = make_buffer(w->index, bytes);
	int fd;

	if (!buf) {
		fail("malloc", strerror(ENOMEM));
		return NULL;
	}
	fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0) {
		fail(path, strerror(errno));
		free(buf);
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t t0 = now_ns();
		if (append_once(fd, buf, bytes) < 0)
			break;
		w->latency[latency_bucket(now_ns() - t0)]++;
		w->writes++;
	}
	if (close(fd) < 0)
		fail("close", strerror(errno));
	free(buf);
	return NULL;
}

/* The upper bound (us) of the bucket holding quantile q of the calls. */
static uint64_t quantile_us(const uint64_t *latency, uint64_t total, double q)
{
	uint64_t want = (uint64_t)((double)total * q), seen = 0;

	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		seen += latency[b];
		if (seen > want)
			return 1ull << b;
	}
	return 1ull << (LATENCY_BUCKETS - 1);
}

static int usage(void)
{
	fprintf(stderr, "usage: produce_writers PATH WRITERS SECONDS "
		"LINES_PER_WRITE [sync]\n");
	return 2;
}

int main(int argc, char **argv)
{
	uint64_t latency[LATENCY_BUCKETS] = { 0 }, total = 0, t0, t1;
	struct writer *ws;
	int writers;
	double seconds;

	if (argc < 5 || argc > 6 || (argc == 6 && strcmp(argv[5], "sync")))
		return usage();
	path = argv[1];
	writers = atoi(argv[2]);
	seconds = atof(argv[3]);
	lines_per_write = atoi(argv[4]);
	sync_each = argc == 6;
	if (writers < 1 || seconds <= 0 || lines_per_write < 1 ||
	    lines_per_write > 1 << 16)
		return usage();
	ws = calloc((size_t)writers, sizeof(*ws));
	if (!ws)
		return 1;
	t0 = now_ns();
	for (int i = 0; i < writers; i++) {
		ws[i].index = i;
		if (pthread_create(&ws[i].thread, NULL, writer_main, &ws[i])) {
			fprintf(stderr, "produce_writers: pthread_create failed\n");
			return 1;
		}
	}
	while ((double)(now_ns() - t0) / 1e9 < seconds && !atomic_load(&failed)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < writers; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].writes;
		for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
			latency[b] += ws[i].latency[b];
	}
	t1 = now_ns();
	free(ws);
	if (atomic_load(&failed))
		return 1;
	printf("writes=%llu records=%llu seconds=%.3f records_per_s=%.0f "
	       "writers=%d lines_per_write=%d p50_us=%llu p99_us=%llu\n",
	       (unsigned long long)total,
	       (unsigned long long)total * (unsigned long long)lines_per_write,
	       (double)(t1 - t0) / 1e9,
	       (double)total * lines_per_write / ((double)(t1 - t0) / 1e9),
	       writers, lines_per_write,
	       (unsigned long long)quantile_us(latency, total, 0.5),
	       (unsigned long long)quantile_us(latency, total, 0.99));
	return 0;
}
