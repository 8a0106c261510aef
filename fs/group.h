/*
 * Consumer groups of one topic (docs/GROUPS.md). Each open file on
 * MNT/<t>/.groups/<g> is one member; the topic's partitions are spread
 * over the members by the group's assignment strategy; a read returns the
 * next whole records of the member's partitions from the group's
 * position. Committed offsets live in an internal log per group (like
 * Kafka's __consumer_offsets), so a commit is one append and survives
 * kill -9 of the daemon.
 *
 *   <topic dir>/groups/<g>/config     group settings, "name=value"
 *   <topic dir>/groups/<g>/offsets/   a log/ partition; each record is
 *                                     one full snapshot of the group's
 *                                     committed offsets (docs/FORMAT.md)
 */
#ifndef TOPICFS_FS_GROUP_H
#define TOPICFS_FS_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "log.h"
#include "topic.h"

/* Groups one topic can have (inode numbering leaves 20 bits). */
#define GROUPS_MAX (1u << 20)
/* A member's host name and client id, with their NUL. */
#define MEMBER_HOST_MAX 65
#define MEMBER_CLIENT_MAX 48

struct groups;
struct group;
struct member;

/* Load the groups stored in <topic dir>/groups. */
int groups_open(struct topic *t, const char *topic_dir, struct groups **out);
void groups_close(struct groups *gs);

/*
 * The group named name, created in memory if unknown (it is stored once
 * it commits or is configured). -EINVAL for a bad name. Groups live as
 * long as their topic: the pointers need no reference.
 */
int groups_lookup(struct groups *gs, const char *name, struct group **out);
/* The group with index i (its inode), or NULL. */
struct group *groups_get(struct groups *gs, uint32_t index);
/*
 * Groups with index >= from, at most max, that are stored or have
 * members (what `ls MNT/t/.groups` lists).
 */
unsigned groups_list(struct groups *gs, uint32_t from, struct group **out,
		     unsigned max);
/* Delete a stored group: -EBUSY while it has members. */
int groups_delete(struct groups *gs, const char *name);
/* Evict members that have not read for max.poll.interval.ms, measured
 * on the monotonic clock (now->mono_ms). */
void groups_tick(struct groups *gs, const struct tick_now *now);

const char *group_name(const struct group *g);
uint32_t group_index(const struct group *g);
bool group_stored(struct group *g);

/* Committed offset (-1 if none) and log end of partition p. */
void group_lag(struct group *g, uint32_t p, int64_t *committed, uint64_t *leo);

int group_getxattr(struct group *g, const char *name, char *buf, size_t size);
/* All attribute names, NUL-separated, into a malloc'd buffer. */
int group_listxattr(struct group *g, char **out, size_t *len);
int group_setxattr(struct group *g, const char *name, const char *value,
		   size_t len);

/*
 * Join (open for reading) and leave (close). pid is the thread that
 * opened the member's file: the member's CLIENT-ID names its process
 * ("comm[pid]"), its HOST is this machine's host name (the xattr
 * user.topicfs.member.<p> shows both).
 */
int member_join(struct group *g, pid_t pid, struct member **out);
void member_leave(struct member *m);
/* What one read returns: extents of partition files (log.h). */
#define MEMBER_EXTENTS_MAX 32
struct member_read {
	struct log_extent ext[MEMBER_EXTENTS_MAX];
	unsigned n;
};

/*
 * The next whole records of the member's partitions, at most size bytes,
 * described as extents valid until the member's next read. Returns the
 * byte count, 0 when caught up, or a negative errno.
 */
ssize_t member_read(struct member *m, size_t size, struct member_read *r);
/* Commit what this member has read (fsync with auto commit off). */
int member_commit(struct member *m);

#endif
