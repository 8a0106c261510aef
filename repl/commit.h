/*
 * The commit point of one partition: the high watermark and the writers
 * waiting for it. A pure state machine (no threads, no I/O, no clock of
 * its own): the broker tells it where each replica's log ends and what
 * each has on disk, it answers with the high watermark and completes the
 * waiters whose records are committed. The caller serialises all calls
 * for one partition (one lock); waiters' done() run inside those calls.
 *
 * Replicas are numbered 0 .. n-1 in assignment order; one of them is
 * the leader (the one that appends; repl/replica.c passes its own
 * position). The in-sync set (ISR) always holds the leader. Kafka's
 * rules:
 *   - the high watermark is the lowest log end offset over the ISR, and
 *     never goes down;
 *   - a waiter for offset o (its records end below o) with acks=all is
 *     done once the high watermark reaches o; with write.caching=false
 *     it also waits until every replica in the ISR has o on disk (what
 *     Redpanda promises);
 *   - a waiter may be failed (leadership lost, shutdown): done(-rc).
 * With one replica this reduces to: the high watermark follows the
 * leader's appends, and a durable waiter waits for the leader's sync.
 */
#ifndef TOPICFS_REPL_COMMIT_H
#define TOPICFS_REPL_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Replicas of one partition, at most (Kafka allows more; this bounds
 * every per-partition array). */
#define REPL_REPLICAS_MAX 16

struct repl_waiter {
	uint64_t offset;          /* done once committed below this offset */
	bool durable;             /* and on disk on every in-sync replica */
	void (*done)(struct repl_waiter *w, int rc); /* 0 or a negative errno */
	struct repl_waiter *next; /* the commit point's own */
};

struct repl_commit {
	uint32_t nreplicas;
	uint64_t hw;                            /* high watermark */
	uint64_t leo[REPL_REPLICAS_MAX];        /* log end offset of each */
	uint64_t durable[REPL_REPLICAS_MAX];    /* on disk below this */
	bool in_isr[REPL_REPLICAS_MAX];
	struct repl_waiter *waiters;            /* in arrival order */
	uint32_t nwaiters;
};

/*
 * Start with nreplicas replicas (1 .. REPL_REPLICAS_MAX), all in the ISR,
 * all known to end at and have on disk the leader's log end offset leo,
 * committed below hw (<= leo).
 */
void repl_commit_init(struct repl_commit *c, uint32_t nreplicas, uint64_t hw,
		      uint64_t leo);

/*
 * Replica r's log now ends at leo, and its bytes below durable are on
 * disk (durable <= leo; both only grow, smaller values are ignored).
 * Returns the high watermark, which may have moved; completes waiters.
 */
uint64_t repl_commit_replica(struct repl_commit *c, uint32_t r, uint64_t leo,
			     uint64_t durable);

/* Wait for w->offset (see above); done() may run before this returns. */
void repl_commit_wait(struct repl_commit *c, struct repl_waiter *w);

/*
 * Replica r's log now ends at exactly leo with durable on disk, even if
 * lower than before (a follower that lost its tail, or one not heard
 * from since this leader took over), and is (not) in the ISR. The high
 * watermark still never goes down. Returns it; completes waiters.
 */
uint64_t repl_commit_set(struct repl_commit *c, uint32_t r, uint64_t leo,
			 uint64_t durable, bool in_isr);

/* The waiter that arrived first, or NULL (waiters time out in order). */
struct repl_waiter *repl_commit_oldest(const struct repl_commit *c);

/* Remove w, which must be waiting, and complete it with rc. */
void repl_commit_cancel(struct repl_commit *c, struct repl_waiter *w, int rc);

/* Fail every waiter with rc (a negative errno). */
void repl_commit_fail_all(struct repl_commit *c, int rc);

/* The lowest offset some in-sync replica lacks on disk: what a durable
 * waiter waits for. */
uint64_t repl_commit_durable(const struct repl_commit *c);

#endif
