/*
 * One partition of a topic as the broker serves it: its log (log/), the
 * queue of appends combined by group commit, the periodic flush, its
 * commit point (repl/commit.h) and its counters. No FUSE here.
 *
 * Lock: q_lock (inside part.c) protects the queue, the flush state, the
 * settings copy and the commit point; it is taken after the topic's lock
 * when both are held, and no other lock is taken inside it except the
 * log's own.
 */
#ifndef TOPICFS_FS_PART_H
#define TOPICFS_FS_PART_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "clock.h"
#include "commit.h"
#include "config.h"
#include "log.h"

struct part;

/* Append-latency histogram bucket bounds, in microseconds. */
#define LATENCY_BUCKETS 12
extern const uint64_t latency_bucket_us[LATENCY_BUCKETS];

struct part_stats {
	_Atomic uint64_t bytes_in, records_in, bytes_out, records_out, batches_in;
	_Atomic uint64_t latency_count, latency_sum_us;
	_Atomic uint64_t latency_bucket[LATENCY_BUCKETS + 1];
};

/*
 * Open partition `index` of topic `topic` (a name for log lines, which
 * must outlive the partition) in directory dir with the settings cfg.
 * *created says whether this call made the directory (so that undoing
 * the open may remove it, and nothing else), also when the open fails.
 */
int part_open(const char *dir, const char *topic, uint32_t index,
	      const struct topic_config *cfg, struct part **out,
	      bool *created);

/* Close (flushing, with a clean-shutdown marker if clean) and free. */
int part_close(struct part *p, bool clean);

/* New settings: the log's, and when to flush. */
void part_set_config(struct part *p, const struct topic_config *cfg);

struct log *part_log(struct part *p);
uint32_t part_index(const struct part *p);
struct part_stats *part_stats(struct part *p);

/*
 * Append n records (lens; their bytes back to back in the iovcnt pieces
 * of iov, a record may span pieces) to the partition, combined with
 * whatever other writers append at the same moment into one append
 * (group commit). On return the records are appended and *info says
 * which offsets they got; part_wait_commit waits for their commit. The
 * caller's bytes are used in place, so a writer waits here while the
 * writer leading the group appends them: the queue holds at most one
 * request per writing thread, and memory never grows with a backlog.
 */
int part_produce(struct part *p, const struct iovec *iov, int iovcnt,
		 const uint32_t *lens, uint32_t n, struct log_append_info *info);

/*
 * A wait for the records below an offset to be committed (under the high
 * watermark: what acks=all waits for) and, if durable, on disk (what
 * write.caching=false and fsync wait for). done(w, rc) runs exactly once,
 * 0 or a negative errno, in whichever thread completes the wait (maybe
 * inside part_wait_commit, maybe a sync thread), never under a
 * partition's lock. The caller owns w until then.
 */
struct part_wait {
	void (*done)(struct part_wait *w, int rc);
	/* part.c's */
	struct repl_waiter rw;
	struct part *p;
	int rc;
	struct part_wait *next;
};

/* Wait (w->done set by the caller); a durable wait queues a sync. */
void part_wait_commit(struct part *p, uint64_t offset, bool durable,
		      struct part_wait *w);

/*
 * Answer every wait before the FUSE session goes (unmount): sync what
 * they wait for, then fail the rest with -ESHUTDOWN. Costs nothing when
 * nothing waits.
 */
void part_settle(struct part *p);

/* Tests only: hook(p) runs in a sync thread before each durable sync. */
void part_set_sync_hook(void (*hook)(struct part *p));

/* Flush the partition now (data, metadata and checkpoint). */
int part_sync(struct part *p);

/*
 * Retention (wall time), and whether the flush that flush.ms asks for (an
 * interval on the monotonic clock since the last flush) is due. When it
 * is, the caller must call part_tick_flush (in the background: it syncs);
 * until then no tick finds the partition due again, so a slow flush is
 * never queued twice.
 */
bool part_tick(struct part *p, const struct tick_now *now);
void part_tick_flush(struct part *p);

/*
 * Write the partition's checkpoint (log start, recovery point, high
 * watermark) if it changed: the broker calls it every few seconds, not
 * per commit. A failure is logged (one line) and sticks in the log.
 */
void part_checkpoint(struct part *p);

/*
 * One pass of the background scrub over the partition (log_scrub_pass,
 * paced by ctl); one log line if it finds bad batches or fails.
 */
void part_scrub(struct part *p, const struct log_scrub_ctl *ctl);

#endif
