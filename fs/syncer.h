/*
 * Background syncs: a few threads that run jobs queued by the write path,
 * so that no FUSE worker waits for a disk. A job is embedded in what it
 * syncs (a partition) and is never queued twice: a job queued again
 * while it runs runs once more after, which is how concurrent writers
 * share one sync (every run covers everything written before it began).
 *
 * The threads start at the first queued job (the daemon forks after
 * opening its data directory, and threads do not survive a fork) and
 * stop when the last holder lets go. No FUSE here.
 */
#ifndef TOPICFS_FS_SYNCER_H
#define TOPICFS_FS_SYNCER_H

#include <stdbool.h>

struct sync_job {
	void (*run)(struct sync_job *j);
	int state;               /* the syncer's (syncer.c) */
	struct sync_job *next;
};

/* Keep the syncer alive (a broker holds it while open). */
void syncer_hold(void);
/* Let go; the last holder waits for queued jobs and stops the threads. */
void syncer_release(void);

/* Run j->run(j) soon in a syncer thread (in the caller's if none could
 * start); once more after the current run if it is running. */
void syncer_queue(struct sync_job *j);

/* Wait until j is neither queued nor running (before freeing it). */
void syncer_idle(struct sync_job *j);

#endif
