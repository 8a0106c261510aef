/*
 * One replica of one partition: Kafka's classic (ZooKeeper era) leader
 * and follower rules as a pure state machine. It has no thread, no clock,
 * no socket and no file of its own: everything it needs from the world
 * goes through a small I/O table (struct repl_io), and everything the
 * world tells it comes in through the calls below. The owner (the broker
 * core, or the in-memory cluster of tests/repl_sim.c) serialises all
 * calls for one replica (one lock), and the I/O callbacks run inside
 * them. docs/REPLICATION.md states the rules this file implements.
 *
 * Roles, set only by the controller's decisions (repl_replica_apply):
 *
 *   NONE      no leader known (or the partition is offline): no fetching,
 *             appends fail with EAGAIN, reads below the high watermark
 *             still work (the owner serves them from the log).
 *   FOLLOWER  fetches from the leader, truncating by leader epoch on a
 *             divergence answer, and takes the leader's high watermark.
 *   LEADER    appends, answers fetches, keeps each follower's log end
 *             and last caught-up time, shrinks and expands the ISR
 *             through the coordinator (compare-and-set), and moves the
 *             high watermark (repl/commit.c).
 *
 * Broker ids are uint32_t; REPL_BROKER_NONE is "no leader".
 */
#ifndef TOPICFS_REPL_REPLICA_H
#define TOPICFS_REPL_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"

#define REPL_BROKER_NONE UINT32_MAX
/* Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET; equal to log.h's
 * LOG_EPOCH_UNDEFINED and LOG_OFFSET_UNDEFINED. */
#define REPL_EPOCH_UNDEFINED UINT32_MAX
#define REPL_OFFSET_UNDEFINED UINT64_MAX

/* A partition's replicas in assignment order (the first is preferred). */
struct repl_assignment {
	uint32_t n;
	uint32_t replicas[REPL_REPLICAS_MAX];
};

/*
 * What the coordinator stores for a partition (Kafka's
 * /brokers/topics/T/partitions/P/state), besides its version, which is
 * kept apart: every write is a compare-and-set on the version.
 */
struct repl_pstate {
	uint32_t leader;           /* a broker id or REPL_BROKER_NONE */
	uint32_t leader_epoch;
	uint32_t controller_epoch; /* of the controller that last wrote it */
	uint32_t nisr;
	uint32_t isr[REPL_REPLICAS_MAX]; /* broker ids, in assignment order */
};

bool repl_pstate_in_isr(const struct repl_pstate *s, uint32_t broker);
/* Same leader, epoch and ISR (as sets): "my write was applied". */
bool repl_pstate_equal(const struct repl_pstate *a,
		       const struct repl_pstate *b);

/*
 * A run of whole batches as stored (log.h's log_batch_run, flattened):
 * offsets [base_offset, end_offset), epochs of its first and last batch,
 * and the bytes exactly as they travel: opaque here, checked (CRC) by
 * the log that appends them. bytes belong to whoever filled the run.
 */
struct repl_run {
	uint64_t base_offset, end_offset;
	uint32_t batches;          /* 0: no records */
	uint32_t first_epoch, last_epoch;
	const void *bytes;
	size_t len;
};

/* Kafka's error codes, as the fetch response carries them. */
enum repl_error {
	REPL_ERR_NONE = 0,
	REPL_ERR_OFFSET_OUT_OF_RANGE = 1,
	REPL_ERR_NOT_LEADER = 6,             /* NOT_LEADER_OR_FOLLOWER */
	REPL_ERR_REPLICA_NOT_AVAILABLE = 9,  /* not an assigned replica */
	REPL_ERR_KAFKA_STORAGE = 56,         /* the leader's log failed */
	REPL_ERR_FENCED_LEADER_EPOCH = 74,   /* the follower's epoch is old */
	REPL_ERR_UNKNOWN_LEADER_EPOCH = 75,  /* the follower's epoch is newer */
};

/* A follower's fetch (Kafka's FetchRequest, one partition, version 12). */
struct repl_fetch {
	uint32_t replica_id;         /* the follower's broker id */
	uint32_t leader_epoch;       /* the follower's current leader epoch */
	uint64_t fetch_offset;       /* its log end offset */
	uint32_t last_fetched_epoch; /* its newest epoch, or UNDEFINED */
	uint64_t log_start_offset;
	uint64_t durable_offset;     /* everything below is on its disk */
	uint32_t max_bytes;
};

/* The leader's answer. */
struct repl_fetch_response {
	int16_t error;               /* enum repl_error */
	uint32_t leader_epoch;       /* the answering replica's epoch */
	uint64_t high_watermark;
	uint64_t log_end_offset;
	uint64_t log_start_offset;
	/* KAFKA-10554: the follower's log diverges; no records then. */
	bool diverging;
	uint32_t diverging_epoch;    /* may be UNDEFINED */
	uint64_t diverging_end_offset;
	struct repl_run records;
};

enum repl_msg_type {
	REPL_MSG_FETCH = 1,
	REPL_MSG_FETCH_RESPONSE = 2,
};

struct repl_msg {
	uint16_t type;               /* enum repl_msg_type */
	uint32_t from, to;           /* broker ids */
	uint32_t partition;          /* the owner's partition id */
	uint64_t correlation;        /* a response carries its request's */
	union {
		struct repl_fetch fetch;
		struct repl_fetch_response resp;
	} u;
};

/* The replica's view of its own log (log_get_bounds and friends). */
struct repl_log_state {
	uint64_t start, leo;
	uint64_t durable;            /* recovery point: on disk below this */
	uint32_t latest_epoch;       /* newest epoch entry, or UNDEFINED */
};

/*
 * The world. Every callback gets ctx first. Log calls mirror log.h's
 * replication API; they complete before returning except log_sync_to.
 * Coordinator calls complete later, through repl_replica_cas_done and
 * repl_replica_coord_read_done with the op number given here.
 */
struct repl_io {
	void *ctx;
	uint64_t (*now_ms)(void *ctx);    /* a monotonic clock */
	/* Hand m to the network for broker to; copy what you keep (the
	 * run's bytes are valid only during the call). */
	void (*send)(void *ctx, uint32_t to, const struct repl_msg *m);

	/* Write want if the stored version is still version. */
	void (*coord_cas)(void *ctx, uint64_t op, const struct repl_pstate *want,
			  uint32_t version);
	/* Read the stored state and version. */
	void (*coord_read)(void *ctx, uint64_t op);

	void (*log_state)(void *ctx, struct repl_log_state *st);
	/* A leader's append of producer records (opaque to this file) in
	 * epoch; *end_offset is the new log end. 0 or a negative errno. */
	int (*log_append)(void *ctx, uint32_t epoch, const void *records,
			  uint64_t *end_offset);
	/* log_append_batches: a run fetched from the leader, at the log end. */
	int (*log_append_run)(void *ctx, const struct repl_run *run);
	/* log_read_batches up to the log end: whole batches from offset,
	 * at most max_bytes except that the first batch always comes. The
	 * run's bytes stay valid until the next log call. */
	int (*log_read_run)(void *ctx, uint64_t offset, uint32_t max_bytes,
			    struct repl_run *run);
	/* log_epoch_end, exactly (LeaderEpochFileCache.endOffsetFor). */
	void (*log_epoch_end)(void *ctx, uint32_t epoch, uint32_t *found_epoch,
			      uint64_t *end_offset);
	int (*log_begin_epoch)(void *ctx, uint32_t epoch);
	/* Remove records at or past offset and epoch entries starting at or
	 * past offset, even when offset is the log end (an empty epoch this
	 * replica began as a leader must go, or its fetches keep naming
	 * it). The durable offset drops to at most offset. */
	int (*log_truncate)(void *ctx, uint64_t offset);
	int (*log_truncate_fully)(void *ctx, uint64_t offset);
	/* Start making everything below offset durable; the owner calls
	 * repl_replica_synced when the durable offset moved. */
	void (*log_sync_to)(void *ctx, uint64_t offset);
	void (*log_set_hw)(void *ctx, uint64_t hw);
};

/* Settings: Kafka's names. */
struct repl_config {
	uint32_t broker_id;
	uint32_t partition;
	struct repl_assignment assignment; /* must hold broker_id */
	uint32_t min_insync;               /* min.insync.replicas */
	bool write_caching;                /* false: HW waits for disks */
	uint64_t lag_time_max_ms;          /* replica.lag.time.max.ms */
	uint32_t fetch_max_bytes;          /* replica.fetch.max.bytes */
	uint64_t fetch_backoff_ms;         /* after an empty or failed fetch */
	uint64_t fetch_timeout_ms;         /* a fetch with no answer is lost */
	uint64_t request_timeout_ms;       /* an acks=all append's wait */
	uint64_t coord_retry_ms;           /* re-read after a failed read */
};

enum repl_role {
	REPL_ROLE_NONE = 0,
	REPL_ROLE_FOLLOWER,
	REPL_ROLE_LEADER,
};

/*
 * An acks=all append waiting for its records to commit. The caller owns
 * it and sets done; repl_replica_append fills the rest. done(p, rc) runs
 * exactly once, inside some call on the replica: 0 (committed, with at
 * least min.insync.replicas in the ISR), -ETIMEDOUT (unknown: leadership
 * lost, the request timeout, or the ISR below the minimum when the
 * records committed) or -ESHUTDOWN (repl_replica_release).
 */
struct repl_produce {
	void (*done)(struct repl_produce *p, int rc);
	uint64_t base_offset, end_offset; /* the records' offsets */
	/* private */
	struct repl_waiter w;
	struct repl_replica *r;
	uint64_t deadline_ms;
};

/* What a leader knows of one follower (Kafka's Replica). */
struct repl_remote {
	uint64_t leo, durable;         /* from its last fetch */
	uint64_t last_caught_up_ms;
	uint64_t last_fetch_ms;
	uint64_t leader_leo_at_last_fetch;
};

struct repl_stats {
	uint64_t isr_shrinks, isr_expands;   /* confirmed changes */
	uint64_t truncations;                /* by epoch, records removed */
	uint64_t divergences;                /* diverging answers received */
	uint64_t epochs_led;
};

/* The state; fields are the implementation's (read them through the
 * accessors below), public only so the owner can embed it. */
struct repl_replica {
	struct repl_config cfg;
	struct repl_io io;
	uint32_t self;                /* my position in the assignment */
	enum repl_role role;
	bool told;                    /* st came from the controller */
	struct repl_pstate st;        /* confirmed: by the controller or CAS */
	uint32_t version;             /* of st in the coordinator */
	uint64_t hw;

	/* Leader. */
	struct repl_commit commit;
	struct repl_remote remote[REPL_REPLICAS_MAX];
	uint64_t epoch_start;         /* log end when this epoch began */
	uint64_t sync_asked;          /* log_sync_to asked up to here */
	uint64_t op_next;
	struct {
		bool active;          /* an ISR write is not settled */
		bool unknown;         /* it timed out: re-reading */
		bool frozen;          /* someone else wrote: wait for the
				       * controller's next decision */
		uint64_t op;
		uint64_t read_due_ms;
		struct repl_pstate want;
	} pending;

	/* Follower. */
	struct {
		bool in_flight;
		uint64_t correlation;
		uint64_t sent_ms;
		uint64_t next_ms;
		uint64_t fetch_offset;
		bool matched;         /* a fetch of this epoch did not diverge */
	} fetch;
	uint64_t correlation_next;

	struct repl_stats stats;
};

/*
 * Start a replica of cfg's partition over io, knowing nothing of the
 * cluster yet (role NONE until the controller speaks), with the high
 * watermark last checkpointed (capped at the log end).
 */
void repl_replica_init(struct repl_replica *r, const struct repl_config *cfg,
		       const struct repl_io *io, uint64_t hw);

/* Stop: waiting appends get -ESHUTDOWN. */
void repl_replica_release(struct repl_replica *r);

/*
 * The controller's decision (Kafka's LeaderAndIsr): the partition's state
 * as stored at version. Older epochs are ignored, and so is a repeat of
 * the epoch already applied. The replica becomes leader if st->leader is
 * itself, a follower of st->leader otherwise, or NONE. Returns 0, or a
 * negative errno if the log failed (the replica is then NONE).
 */
int repl_replica_apply(struct repl_replica *r, const struct repl_pstate *st,
		       uint32_t version);

/*
 * Append producer records (opaque, passed to io->log_append) as leader.
 * acks: 0, 1 or -1 (all). With acks -1, p must be given and p->done set;
 * it is called when the outcome is known (maybe before this returns).
 * Returns 0 (p->base_offset and p->end_offset set when p is given),
 *   -EREMOTE  this replica is a follower (see repl_replica_leader),
 *   -EAGAIN   no leader, or acks -1 with fewer than min.insync.replicas
 *             in the ISR (nothing appended),
 *   or the log's error (nothing appended).
 */
int repl_replica_append(struct repl_replica *r, const void *records, int acks,
			struct repl_produce *p);

/* A message from the network (a fetch or a fetch response). */
void repl_replica_receive(struct repl_replica *r, const struct repl_msg *m);

/* Results of io->coord_cas (rc 0 with the new version, -ESTALE for a
 * version mismatch, -ETIMEDOUT when unknown) and io->coord_read (rc 0
 * with the stored state, or a negative errno). */
void repl_replica_cas_done(struct repl_replica *r, uint64_t op, int rc,
			   uint32_t version);
void repl_replica_coord_read_done(struct repl_replica *r, uint64_t op, int rc,
				  const struct repl_pstate *st,
				  uint32_t version);

/* The log's durable offset moved (io->log_sync_to completed). */
void repl_replica_synced(struct repl_replica *r);

/* Time passed: fetches, ISR shrink, timeouts. Call every few ms. */
void repl_replica_tick(struct repl_replica *r);

static inline enum repl_role repl_replica_role(const struct repl_replica *r)
{
	return r->role;
}

static inline uint32_t repl_replica_leader(const struct repl_replica *r)
{
	return r->st.leader;
}

static inline uint32_t repl_replica_epoch(const struct repl_replica *r)
{
	return r->st.leader_epoch;
}

static inline uint64_t repl_replica_hw(const struct repl_replica *r)
{
	return r->hw;
}

/* The confirmed ISR (a leader's, or the controller's last word). */
static inline const struct repl_pstate *
repl_replica_state(const struct repl_replica *r)
{
	return &r->st;
}

#endif
