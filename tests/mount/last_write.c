/*
 * last_write FILE [DATA...]
 *
 * Opens FILE (a partition file or .produce) for appending, writes each
 * DATA argument with one write() call, and after each asks the file for
 * the offsets its records got (TOPICFS_IOC_LAST_WRITE), printing
 *
 *     <bytes written> <partition> <base_offset> <end_offset> <records>
 *
 * one line per DATA. With no DATA it prints the answer for a file that
 * wrote nothing. Exit 1 with a message on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "topicfs_ioctl.h"

static int report(int fd, ssize_t written)
{
	struct topicfs_last_write w;

	memset(&w, 0xa5, sizeof(w));
	if (ioctl(fd, TOPICFS_IOC_LAST_WRITE, &w) < 0) {
		fprintf(stderr, "last_write: ioctl: %s\n", strerror(errno));
		return -1;
	}
	printf("%zd %" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu32 "\n",
	       written, w.partition, w.base_offset, w.end_offset, w.records);
	return 0;
}

int main(int argc, char **argv)
{
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: last_write FILE [DATA...]\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_APPEND);
	if (fd < 0) {
		fprintf(stderr, "last_write: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (argc == 2 && report(fd, 0) < 0)
		return 1;
	for (int i = 2; i < argc; i++) {
		size_t len = strlen(argv[i]);
		ssize_t n = write(fd, argv[i], len);
		if (n < 0 || (size_t)n != len) {
			fprintf(stderr, "last_write: write: %s\n",
				n < 0 ? strerror(errno) : "short write");
			return 1;
		}
		if (report(fd, n) < 0)
			return 1;
	}
	if (close(fd) < 0) {
		fprintf(stderr, "last_write: close: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
