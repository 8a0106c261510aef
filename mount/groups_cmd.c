/*
 * `topicfs groups MNT [GROUP]` prints, for every consumer group of every
 * topic under the mount (or just GROUP), the table of
 * kafka-consumer-groups --describe. It is a client of the mount: it reads
 * the user.topicfs.* attributes of MNT/<topic>/.groups/<group>.
 */
#include "groups_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static void attr(const char *path, const char *name, unsigned p, char *buf,
		 size_t size)
{
	char full[128];
	ssize_t n;

	snprintf(full, sizeof(full), "user.topicfs.%s.%u", name, p);
	n = getxattr(path, full, buf, size - 1);
	if (n < 0)
		n = snprintf(buf, size, "?");
	buf[n] = '\0';
}

static unsigned partitions(const char *topic_dir)
{
	char buf[32];
	ssize_t n = getxattr(topic_dir, "user.topicfs.partitions", buf,
			     sizeof(buf) - 1);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (unsigned)strtoul(buf, NULL, 10);
}

static int describe(const char *mnt, const char *topic, const char *group)
{
	char tdir[4096], gpath[8192];
	unsigned n;

	if (snprintf(tdir, sizeof(tdir), "%s/%s", mnt, topic) >= (int)sizeof(tdir))
		return -ENAMETOOLONG;
	snprintf(gpath, sizeof(gpath), "%s/.groups/%s", tdir, group);
	n = partitions(tdir);
	for (unsigned p = 0; p < n; p++) {
		char cur[32], leo[32], lag[32], owner[64];
		attr(gpath, "offset", p, cur, sizeof(cur));
		attr(gpath, "log_end_offset", p, leo, sizeof(leo));
		attr(gpath, "lag", p, lag, sizeof(lag));
		attr(gpath, "owner", p, owner, sizeof(owner));
		printf("%-20s %-20s %9u %14s %14s %8s %s\n", group, topic, p, cur,
		       leo, lag, owner);
	}
	return 0;
}

int cmd_groups(int argc, char **argv)
{
	const char *mnt, *only;
	struct dirent *te;
	DIR *td;
	int found = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: topicfs groups MOUNTPOINT [GROUP]\n");
		return 2;
	}
	mnt = argv[1];
	only = argc == 3 ? argv[2] : NULL;
	td = opendir(mnt);
	if (!td) {
		fprintf(stderr, "topicfs groups: %s: %s\n", mnt, strerror(errno));
		return 1;
	}
	printf("%-20s %-20s %9s %14s %14s %8s %s\n", "GROUP", "TOPIC",
	       "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
	       "CONSUMER-ID");
	while ((te = readdir(td))) {
		char gdir[4096];
		struct dirent *ge;
		DIR *gd;

		if (te->d_name[0] == '.')
			continue;
		snprintf(gdir, sizeof(gdir), "%s/%s/.groups", mnt, te->d_name);
		gd = opendir(gdir);
		if (!gd)
			continue;
		while ((ge = readdir(gd))) {
			if (ge->d_name[0] == '.' ||
			    (only && strcmp(only, ge->d_name) != 0))
				continue;
			describe(mnt, te->d_name, ge->d_name);
			found++;
		}
		closedir(gd);
	}
	closedir(td);
	if (only && !found) {
		fprintf(stderr, "topicfs groups: no group named %s\n", only);
		return 1;
	}
	return 0;
}
