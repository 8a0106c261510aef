/*
 * A helper of tests/bench/mount_bench.sh: small writes or stat calls in a
 * loop, from several threads, for a fixed time.
 *
 *   mount_write_loop write PATH THREADS SECONDS [LINE_BYTES]
 *       each thread opens PATH (O_WRONLY | O_APPEND) and write()s one
 *       LINE_BYTES-byte line (default 100, newline included) per call
 *   mount_write_loop fstat PATH THREADS SECONDS
 *       each thread opens PATH read-only and calls fstat() in a loop: on
 *       topicfs (attr_timeout 0) every call is one FUSE round trip that
 *       does no work, the bound for one-request-per-call loops
 *
 * Prints one line: "calls=N seconds=S per_s=R threads=T".
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *path;
static int do_write;
static size_t line_bytes = 100;
static atomic_bool stop;
static atomic_bool failed;

struct worker {
	pthread_t thread;
	int index;
	uint64_t calls;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char *line = malloc(line_bytes);
	struct stat st;
	int fd;

	if (!line) {
		atomic_store(&failed, true);
		return NULL;
	}
	memset(line, 'a' + w->index % 26, line_bytes - 1);
	line[line_bytes - 1] = '\n';
	fd = open(path, do_write ? O_WRONLY | O_APPEND : O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "mount_write_loop: %s: %s\n", path, strerror(errno));
		atomic_store(&failed, true);
		free(line);
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (do_write) {
			ssize_t n = write(fd, line, line_bytes);
			if (n != (ssize_t)line_bytes) {
				fprintf(stderr, "mount_write_loop: write: %s\n",
					n < 0 ? strerror(errno) : "short write");
				atomic_store(&failed, true);
				break;
			}
		} else if (fstat(fd, &st) < 0) {
			fprintf(stderr, "mount_write_loop: fstat: %s\n",
				strerror(errno));
			atomic_store(&failed, true);
			break;
		}
		w->calls++;
	}
	close(fd);
	free(line);
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker *ws;
	int threads;
	double seconds, t0, t1;
	uint64_t total = 0;

	if (argc < 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "fstat"))) {
		fprintf(stderr, "usage: mount_write_loop write|fstat PATH THREADS "
			"SECONDS [LINE_BYTES]\n");
		return 2;
	}
	do_write = strcmp(argv[1], "write") == 0;
	path = argv[2];
	threads = atoi(argv[3]);
	seconds = atof(argv[4]);
	if (argc > 5)
		line_bytes = (size_t)atol(argv[5]);
	if (threads < 1 || seconds <= 0 || line_bytes < 1) {
		fprintf(stderr, "mount_write_loop: bad arguments\n");
		return 2;
	}
	ws = calloc((size_t)threads, sizeof(*ws));
	if (!ws)
		return 1;
	t0 = now_s();
	for (int i = 0; i < threads; i++) {
		ws[i].index = i;
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
			fprintf(stderr, "mount_write_loop: pthread_create failed\n");
			return 1;
		}
	}
	while (now_s() - t0 < seconds && !atomic_load(&failed)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < threads; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].calls;
	}
	t1 = now_s();
	free(ws);
	if (atomic_load(&failed))
		return 1;
	printf("calls=%llu seconds=%.3f per_s=%.0f threads=%d\n",
	       (unsigned long long)total, t1 - t0, (double)total / (t1 - t0),
	       threads);
	return 0;
}
