/*
 * The broker: the table of the topics of one data directory, their files
 * on disk, and the background work over all of them. No FUSE here; fs.c
 * maps FUSE operations onto these calls and those of topic.h and part.h.
 *
 *   DATADIR/.lock                    flock'd while mounted
 *   DATADIR/next-topic-id            the next topic id to give
 *   DATADIR/topics/<topic>/          a topic (topic.h)
 *   DATADIR/trash/<id>-<topic>/      topics being created or deleted
 *
 * A deleted topic disappears from the table once its directory is in the
 * trash; its files go when its last reference does (topic.h), never under
 * the broker lock.
 *
 * Lock order of the broker core: broker lock (the table) -> topic lock
 * (its settings, partition creation) -> partition queue lock (part.h) ->
 * the log's own locks (log/log.c). Group locks (group.h) are taken
 * without any of these held, or after the topic's. The id lock (the next
 * topic id and its file) is taken with none of them held.
 *
 * The broker lock is held only for work in memory: a topic's creation or
 * deletion reserves its name under it (no other creation or deletion of
 * that name meanwhile), does its disk work without it, and enters or
 * removes the topic under it again.
 */
#ifndef TOPICFS_FS_BROKER_H
#define TOPICFS_FS_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "topic.h"

struct broker;

struct broker_opts {
	const char *datadir;
	uint32_t num_partitions;
	/* Descriptors the partitions' files may hold open (idle ones are
	 * closed beyond it, log_set_fd_budget); 0: broker_fd_budget(). */
	unsigned max_partition_fds;
};

/*
 * The default budget of partitions' descriptors: the soft RLIMIT_NOFILE
 * less what the rest of the daemon may need (FUSE's device and splice
 * pipes, files being created or replaced, directory listings): a
 * quarter of the limit, at least FDS_RESERVE_MIN and at most
 * FDS_RESERVE_MAX.
 */
#define FDS_RESERVE_MIN 128u
#define FDS_RESERVE_MAX 4096u
/* Fewer than this and one partition could not be opened. */
#define PARTITION_FDS_MIN 16u
unsigned broker_fd_budget(void);

/*
 * Lock the data directory (creating it if missing) and open every topic.
 * -EBUSY if another topicfs holds the directory.
 */
int broker_open(const struct broker_opts *o, struct broker **out);

/* Flush and close every partition cleanly, release the lock, free. */
int broker_close(struct broker *b);

const char *broker_datadir(const struct broker *b);

/*
 * Retention (against now->wall_ms) and the periodic flush and member
 * eviction (intervals against now->mono_ms, clock.h); call about once a
 * second with clock_now(). Tests drive both clocks by hand. Due flushes
 * are handed to a few flush threads: a tick never waits for a sync, and
 * a partition whose last flush is still running is not queued again.
 */
void broker_tick(struct broker *b, const struct tick_now *now);

/* Tests only: hook(p) runs in a flush worker before p's periodic flush. */
struct part;
void broker_set_flush_hook(void (*hook)(struct part *p));

/* Answer every write still waiting for a commit (part_settle): before
 * the FUSE session that would carry the answers goes. */
void broker_settle(struct broker *b);

/*
 * One pass of the background scrub over every partition (log_scrub_pass:
 * each stored batch is checked once, remembered across mounts), paced by
 * ctl: its pace may wait and returns false to stop the pass (unmount).
 * The bytes checked and the passes finished are counted for .metrics.
 */
void broker_scrub(struct broker *b, const struct log_scrub_ctl *ctl);

struct broker_scrub_stats {
	uint64_t bytes;   /* payload bytes the scrub has checked */
	uint64_t passes;  /* passes over every partition finished */
};
void broker_scrub_stats(struct broker *b, struct broker_scrub_stats *st);

/*
 * Create a topic with the mount's defaults: -EINVAL for a bad name,
 * -EEXIST if a topic of that name is loaded or stored (one log line when
 * it is stored but failed to load). After a crash at any point the next
 * mount sees the whole topic or none of it.
 */
int broker_topic_create(struct broker *b, const char *name);
int broker_topic_delete(struct broker *b, const char *name);

/* Referenced topic, or NULL. */
struct topic *broker_topic_get(struct broker *b, const char *name);
struct topic *broker_topic_by_id(struct broker *b, uint64_t id);

/*
 * Referenced topics with id > after, in id order, at most max of them:
 * for readdir and .status. Returns the count.
 */
unsigned broker_topics_list(struct broker *b, uint64_t after,
			    struct topic **out, unsigned max);

/* A topic stored in DATADIR that could not be loaded: left untouched on
 * disk, shown in .status with its reason. */
struct topic_failure {
	char name[TOPIC_NAME_MAX + 1];
	char reason[160];
};

/* Copy the failed topics from index `from` on, at most max; the count. */
unsigned broker_failures(struct broker *b, unsigned from,
			 struct topic_failure *out, unsigned max);

/* Tests only: hook(step) is called at each step of a topic's creation and
 * deletion (tests/test_topic.c kills the process there). */
void broker_set_step_hook(void (*hook)(const char *step));

#endif
