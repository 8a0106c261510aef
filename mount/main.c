/*
 * The topicfs program. For now: `topicfs dump-log [--verify] PATH`, the
 * kafka-dump-log of topicfs, plus --help and --version.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dump.h"

#ifndef TOPICFS_VERSION
#define TOPICFS_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: topicfs dump-log [--verify] PATH\n"
		"       topicfs --help | --version\n"
		"\n"
		"dump-log prints one line per record batch of a segment file or\n"
		"of every segment in a partition directory; --verify also checks\n"
		"the index files and exits 1 if anything is bad.\n");
}

static int cmd_dump_log(int argc, char **argv)
{
	bool verify = false;
	const char *path = NULL;
	int bad;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--verify") == 0)
			verify = true;
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else {
			fprintf(stderr, "topicfs dump-log: unexpected argument '%s'\n",
				argv[i]);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	bad = log_dump(path, verify, stdout);
	if (bad < 0) {
		fprintf(stderr, "topicfs dump-log: %s: %s\n", path,
			bad == -EINVAL ? "not a partition directory or segment file"
				       : strerror(-bad));
		return 2;
	}
	if (bad > 0)
		fprintf(stderr, "topicfs dump-log: %s: %d bad batch(es) or index "
			"entries\n", path, bad);
	return bad > 0 && verify ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "dump-log") == 0)
		return cmd_dump_log(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("topicfs %s\n", TOPICFS_VERSION);
		return 0;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
