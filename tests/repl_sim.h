/*
 * An in-memory cluster for repl/replica.c (canonical/raft's fixture is
 * the model): brokers with in-memory logs that have a disk boundary, a
 * coordinator with versions and sessions, the controller's decisions
 * (repl/elect.c), and a network with delays, drops and cuts between any
 * two nodes. Time is simulated in milliseconds; everything runs on one
 * thread, driven by a seeded generator, so a seed replays a schedule
 * exactly.
 *
 * The fixture checks invariants as it goes (sim->failed and sim->why):
 * replicas never hold different records below their high watermark,
 * nothing committed is lost (unless a loss was allowed: an unclean
 * election, or a power loss with write.caching=true), at most one
 * leader per epoch, a leader's high watermark never moves back in its
 * epoch, logs are dense. sim_check_final checks the end state after
 * sim_heal and a quiet period: one leader, identical logs and high
 * watermarks, every acknowledged acks=all record present at its offset,
 * no refused record anywhere.
 */
#ifndef TOPICFS_REPL_SIM_H
#define TOPICFS_REPL_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "elect.h"
#include "replica.h"

#define SIM_BROKERS_MAX 5
#define SIM_COORD SIM_BROKERS_MAX   /* the coordinator's node number */
#define SIM_NODES (SIM_BROKERS_MAX + 1)
#define SIM_BATCHES_MAX 1024        /* per log */
#define SIM_BATCH_RECORDS_MAX 4
#define SIM_EPOCHS_MAX 256          /* epoch entries per log */
#define SIM_OFFSETS_MAX 4096        /* offsets the checks follow */
#define SIM_MSGS_MAX 512            /* in flight */
#define SIM_MSG_BYTES_MAX 512       /* a fetch response's records */
#define SIM_PRODUCES_MAX 64         /* acks=all appends in flight */
#define SIM_REFUSED_MAX 1024
#define SIM_EPOCH_HISTORY_MAX 1024

/* One batch: records are 64-bit ids, unique in a run. */
struct sim_batch {
	uint64_t base;
	uint32_t count;
	uint32_t epoch;
	uint64_t ids[SIM_BATCH_RECORDS_MAX];
};

struct sim_epoch_entry {
	uint32_t epoch;
	uint64_t start;
	bool durable;               /* by log_begin_epoch */
};

/* A partition log in memory; below `durable` it survives a power loss. */
struct sim_log {
	uint64_t start, leo, durable;
	uint32_t nbatches;
	struct sim_batch batches[SIM_BATCHES_MAX];
	uint32_t nepochs;
	struct sim_epoch_entry epochs[SIM_EPOCHS_MAX];
	uint64_t hw;                /* the checkpointed high watermark */
	uint8_t run[SIM_MSG_BYTES_MAX];
};

struct sim_config {
	uint32_t nbrokers;
	struct repl_assignment assignment;
	uint32_t min_insync;
	bool write_caching;
	bool unclean;
	bool rebalance;             /* auto.leader.rebalance.enable */
	uint64_t lag_time_max_ms;
	uint64_t session_timeout_ms;
	uint64_t coord_timeout_ms;
	uint32_t delay_min_ms, delay_max_ms;
	uint32_t drop_per_mille;
	uint32_t disk_ms;
	uint32_t fetch_max_bytes;
	uint64_t request_timeout_ms;
};

struct sim;

struct sim_broker {
	struct sim *sim;
	uint32_t id;
	bool alive, paused, stopping;
	uint64_t gen;               /* incarnation */
	uint64_t stop_at;           /* controlled shutdown: stop then */
	uint32_t disk_ms;           /* sync latency now */
	struct repl_replica r;
	struct sim_log log;
	struct {
		bool active;
		uint64_t offset, due;
	} sync;
	struct {
		bool active, cas;
		uint64_t op, deadline;
	} coord;
	/* checks */
	uint64_t checked;           /* records below verified against truth */
	uint32_t lead_epoch;        /* last epoch led, and its HW */
	uint64_t lead_hw;
	bool lost_committed;        /* a power loss took committed records */
};

struct sim_msg {
	bool used;
	uint8_t kind;
	uint32_t from, to;
	uint64_t due, seq;
	struct repl_msg m;
	uint8_t bytes[SIM_MSG_BYTES_MAX];
	/* coordinator traffic and the controller's decisions */
	uint64_t op;
	bool cas;
	int rc;
	struct repl_pstate st;
	uint32_t version;
};

struct sim_produce {
	bool used;
	struct repl_produce p;
	uint32_t broker;
	uint64_t gen;
	uint32_t count;
	uint64_t ids[SIM_BATCH_RECORDS_MAX];
};

struct sim_stats {
	uint64_t appends[3];        /* acks 0, 1, all: accepted */
	uint64_t acked, refused, unknown;
	uint64_t elections, unclean_elections, kills, power_losses;
	uint64_t isr_shrinks, isr_expands, truncations, messages;
};

struct sim {
	struct sim_config cfg;
	uint64_t rng;
	uint64_t now;
	bool trace;
	bool failed;
	char why[512];
	bool lossy;                 /* a loss was allowed from here on */
	bool healing;

	struct sim_broker b[SIM_BROKERS_MAX];

	/* The coordinator. */
	struct repl_pstate st;
	uint32_t version;
	bool session[SIM_BROKERS_MAX];
	uint64_t heartbeat[SIM_BROKERS_MAX];
	uint32_t told_epoch[SIM_BROKERS_MAX]; /* the controller's last word */
	uint64_t told_at[SIM_BROKERS_MAX];
	uint32_t epoch_leader[SIM_EPOCH_HISTORY_MAX];

	/* The network. */
	bool cut[SIM_NODES][SIM_NODES];
	struct sim_msg msgs[SIM_MSGS_MAX];
	struct sim_msg inbox;       /* the one being delivered */
	uint64_t msg_seq;

	/* Clients. */
	uint64_t next_id;
	struct sim_produce produce[SIM_PRODUCES_MAX];
	uint64_t truth[SIM_OFFSETS_MAX];      /* committed record ids */
	uint64_t truth_end;                   /* committed below, ever */
	uint64_t acked_off[SIM_OFFSETS_MAX];  /* acked acks=all id at offset */
	uint32_t nrefused;
	uint64_t refused[SIM_REFUSED_MAX];

	struct sim_stats stats;
};

/* Start a cluster: every replica empty, the first assigned one leader. */
void sim_init(struct sim *s, const struct sim_config *cfg, uint64_t seed);
uint64_t sim_rand(struct sim *s);
/* One millisecond: deliveries, disks, sessions, the controller, ticks. */
void sim_step(struct sim *s);
void sim_run(struct sim *s, uint64_t ms);

/* Clients: append count new records through broker with acks (0, 1 or
 * -1). Returns what repl_replica_append returned (or -ENOTCONN if the
 * broker is down). */
int sim_append(struct sim *s, uint32_t broker, int acks, uint32_t count);

/* Faults. */
void sim_kill(struct sim *s, uint32_t broker, bool power_loss);
bool sim_restart(struct sim *s, uint32_t broker); /* false: not yet */
void sim_pause(struct sim *s, uint32_t broker, bool paused);
void sim_cut(struct sim *s, uint32_t a, uint32_t b, bool cut);
void sim_shutdown(struct sim *s, uint32_t broker); /* controlled */
void sim_flush(struct sim *s, uint32_t broker);     /* write.caching's */

/* Remove every fault, restart every broker; run until quiet. */
void sim_heal(struct sim *s, uint64_t ms);
/* The end state's checks (after sim_heal). */
void sim_check_final(struct sim *s);

/* The broker the coordinator names leader, or REPL_BROKER_NONE. */
uint32_t sim_leader(const struct sim *s);

#endif
