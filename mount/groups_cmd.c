/*
 * `topicfs groups` is kafka-consumer-groups for a mounted topicfs
 * (docs/GROUPS.md):
 *
 *   topicfs groups MNT [GROUP]     --describe: one table per group
 *   topicfs groups --list MNT      --list: one group name per line
 *
 * It is a client of the mount: it lists MNT/<topic>/.groups/ and reads the
 * user.topicfs.* attributes of each group file. A group of topicfs belongs
 * to one topic; a name used on several topics is shown as one group with
 * rows for each topic, as Kafka shows a group subscribed to several.
 */
#include "groups_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>

/* statfs f_type of every FUSE file system (linux/magic.h). */
#define FUSE_SUPER_MAGIC 0x65735546
/* Kafka's narrowest width of the GROUP, TOPIC, CONSUMER-ID, HOST columns. */
#define COLUMN_MIN 15
/* A name under the mount: topics and groups follow Kafka's 249. */
#define NAME_MAX_LEN 249
/* One attribute value: an offset, or "member-N HOST CLIENT-ID". */
#define VALUE_MAX 160

static const char usage_text[] =
	"usage: topicfs groups MOUNTPOINT [GROUP]\n"
	"       topicfs groups --list MOUNTPOINT\n"
	"       topicfs groups -h | --help\n"
	"\n"
	"Prints the consumer groups of the topicfs mounted at MOUNTPOINT as\n"
	"kafka-consumer-groups does: by default (--describe) one table per\n"
	"group (only GROUP if given) with its committed offset, log end offset\n"
	"and lag per topic and partition, and the member that owns each\n"
	"partition (CONSUMER-ID, HOST, CLIENT-ID = command[pid] of the process\n"
	"that opened it); --list prints one group name per line. A group is\n"
	"shown once it has committed an offset, been configured, or while it\n"
	"has members.\n"
	"\n"
	"Exit status: 0, 1 if MOUNTPOINT is not a topicfs mount or GROUP does\n"
	"not exist, 2 for a bad command line.\n";

/* One group file: MNT/<topic>/.groups/<group>. */
struct entry {
	char group[NAME_MAX_LEN + 1];
	char topic[NAME_MAX_LEN + 1];
};

/* One row of the describe table. */
struct row {
	const struct entry *e;
	unsigned partition;
	char offset[VALUE_MAX], leo[VALUE_MAX], lag[VALUE_MAX];
	char consumer[VALUE_MAX], host[VALUE_MAX], client[VALUE_MAX];
};

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->group, y->group);

	return c ? c : strcmp(x->topic, y->topic);
}

/*
 * Whether mnt is the root of a topicfs mount: a FUSE file system with
 * topicfs's .status file at its top. 0, or -errno of statfs (no such
 * path), or -ENOTSUP for anything else.
 */
static int check_mount(const char *mnt)
{
	char path[PATH_MAX];
	struct statfs sf;
	struct stat st;

	if (statfs(mnt, &sf) < 0)
		return -errno;
	if (snprintf(path, sizeof(path), "%s/.status", mnt) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if ((unsigned long)sf.f_type != FUSE_SUPER_MAGIC ||
	    lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return -ENOTSUP;
	return 0;
}

/* Add the group files of MNT/<topic>/.groups to *v (n of cap). */
static int collect_topic(const char *mnt, const char *topic, struct entry **v,
			 size_t *n, size_t *cap)
{
	char gdir[PATH_MAX];
	struct dirent *ge;
	DIR *gd;
	int rc = 0;

	snprintf(gdir, sizeof(gdir), "%s/%s/.groups", mnt, topic);
	gd = opendir(gdir);
	if (!gd)
		return 0; /* removed meanwhile: nothing to show */
	while (rc == 0 && (ge = readdir(gd))) {
		if (ge->d_name[0] == '.' || strlen(ge->d_name) > NAME_MAX_LEN)
			continue;
		if (*n == *cap) {
			size_t ncap = *cap ? 2 * *cap : 16;
			struct entry *nv = realloc(*v, ncap * sizeof(**v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			*v = nv;
			*cap = ncap;
		}
		snprintf((*v)[*n].group, sizeof((*v)[*n].group), "%s", ge->d_name);
		snprintf((*v)[*n].topic, sizeof((*v)[*n].topic), "%s", topic);
		(*n)++;
	}
	closedir(gd);
	return rc;
}

/* Every group file under the mount, sorted by group then topic. */
static int collect(const char *mnt, struct entry **out, size_t *count)
{
	struct entry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *te;
	DIR *td = opendir(mnt);
	int rc = 0;

	if (!td)
		return -errno;
	while (rc == 0 && (te = readdir(td))) {
		if (te->d_name[0] != '.' && strlen(te->d_name) <= NAME_MAX_LEN)
			rc = collect_topic(mnt, te->d_name, &v, &n, &cap);
	}
	closedir(td);
	if (rc < 0) {
		free(v);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	*out = v;
	*count = n;
	return 0;
}

/* The attribute user.topicfs.<name>[.<p>] of path, or "?" if unreadable. */
static void attr(const char *path, const char *name, long p, char *buf,
		 size_t size)
{
	char full[128];
	ssize_t n;

	if (p < 0)
		snprintf(full, sizeof(full), "user.topicfs.%s", name);
	else
		snprintf(full, sizeof(full), "user.topicfs.%s.%ld", name, p);
	n = getxattr(path, full, buf, size - 1);
	if (n < 0)
		n = snprintf(buf, size, "?");
	buf[n] = '\0';
}

/* Fill r from the group file's attributes for partition p. */
static void read_row(const char *mnt, const struct entry *e, unsigned p,
		     struct row *r)
{
	char path[PATH_MAX], member[VALUE_MAX];

	snprintf(path, sizeof(path), "%s/%s/.groups/%s", mnt, e->topic, e->group);
	r->e = e;
	r->partition = p;
	attr(path, "offset", p, r->offset, sizeof(r->offset));
	attr(path, "log_end_offset", p, r->leo, sizeof(r->leo));
	attr(path, "lag", p, r->lag, sizeof(r->lag));
	attr(path, "member", p, member, sizeof(member));
	/* "member-N HOST CLIENT-ID", or "-" when nobody owns it. */
	strcpy(r->consumer, "-");
	strcpy(r->host, "-");
	strcpy(r->client, "-");
	sscanf(member, "%159s %159s %159s", r->consumer, r->host, r->client);
}

static unsigned partitions(const char *mnt, const char *topic)
{
	char path[PATH_MAX], buf[32];

	snprintf(path, sizeof(path), "%s/%s", mnt, topic);
	attr(path, "partitions", -1, buf, sizeof(buf));
	return (unsigned)strtoul(buf, NULL, 10);
}

static int width(int w, const char *s)
{
	int n = (int)strlen(s);

	return n > w ? n : w;
}

/*
 * kafka-consumer-groups --describe --group g: "has no active members" on
 * stderr when nobody owns a partition, then a blank line, the header and
 * one row per topic and partition, columns as wide as Kafka makes them.
 */
static int describe(const char *mnt, const struct entry *e, size_t n)
{
	struct row *rows;
	size_t nrows = 0, cap = 0;
	int wg = COLUMN_MIN, wt = COLUMN_MIN, wc = COLUMN_MIN, wh = COLUMN_MIN;
	bool active = false;

	for (size_t i = 0; i < n; i++)
		cap += partitions(mnt, e[i].topic);
	rows = calloc(cap ? cap : 1, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned np = partitions(mnt, e[i].topic);
		for (unsigned p = 0; p < np && nrows < cap; p++) {
			struct row *r = &rows[nrows++];
			read_row(mnt, &e[i], p, r);
			active |= strcmp(r->consumer, "-") != 0;
			wg = width(wg, e[i].group);
			wt = width(wt, e[i].topic);
			wc = width(wc, r->consumer);
			wh = width(wh, r->host);
		}
	}
	if (!active) {
		fflush(stdout);
		fprintf(stderr, "\nConsumer group '%s' has no active members.\n",
			e[0].group);
	}
	printf("\n%-*s %-*s %-10s %-15s %-15s %-15s %-*s %-*s %s\n", wg, "GROUP",
	       wt, "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET",
	       "LAG", wc, "CONSUMER-ID", wh, "HOST", "CLIENT-ID");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%-*s %-*s %-10u %-15s %-15s %-15s %-*s %-*s %s\n", wg,
		       r->e->group, wt, r->e->topic, r->partition, r->offset,
		       r->leo, r->lag, wc, r->consumer, wh, r->host, r->client);
	}
	fflush(stdout);
	free(rows);
	return 0;
}

int cmd_groups(int argc, char **argv)
{
	const char *mnt = NULL, *only = NULL;
	struct entry *e = NULL;
	size_t n = 0, shown = 0;
	bool list = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strcmp(argv[i], "--list") == 0) {
			list = true;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "topicfs groups: unknown option '%s'\n%s",
				argv[i], usage_text);
			return 2;
		} else if (!mnt) {
			mnt = argv[i];
		} else if (!only && !list) {
			only = argv[i];
		} else {
			fprintf(stderr, "topicfs groups: unexpected argument "
				"'%s'\n%s", argv[i], usage_text);
			return 2;
		}
	}
	if (!mnt) {
		fprintf(stderr, "topicfs groups: no MOUNTPOINT given\n%s",
			usage_text);
		return 2;
	}
	rc = check_mount(mnt);
	if (rc == -ENOTSUP) {
		fprintf(stderr, "topicfs groups: %s is not a topicfs mount (no "
			"topicfs file system is mounted there)\n", mnt);
		return 1;
	}
	if (rc == 0)
		rc = collect(mnt, &e, &n);
	if (rc < 0) {
		fprintf(stderr, "topicfs groups: %s: %s\n", mnt, strerror(-rc));
		return 1;
	}
	for (size_t i = 0; i < n;) {
		size_t k = i + 1;
		while (k < n && strcmp(e[k].group, e[i].group) == 0)
			k++;
		if (list) {
			printf("%s\n", e[i].group);
		} else if (!only || strcmp(only, e[i].group) == 0) {
			rc = describe(mnt, e + i, k - i);
			shown++;
		}
		i = k;
	}
	free(e);
	if (rc < 0) {
		fprintf(stderr, "topicfs groups: %s\n", strerror(-rc));
		return 1;
	}
	if (only && !shown) {
		fprintf(stderr, "Error: Consumer group '%s' does not exist.\n",
			only);
		return 1;
	}
	return 0;
}
