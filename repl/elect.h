/*
 * The controller's decisions for one partition (Kafka's
 * PartitionStateMachine and Election.scala), as pure functions: given the
 * stored state, the assignment and which brokers are alive (their
 * coordinator session exists), compute the next state. The caller writes
 * it with a compare-and-set on the version it read, and on success tells
 * every replica (repl_replica_apply). Every change bumps the leader
 * epoch, as Kafka 2.x does, so that a replica can order decisions by
 * epoch alone.
 */
#ifndef TOPICFS_REPL_ELECT_H
#define TOPICFS_REPL_ELECT_H

#include <stdbool.h>
#include <stdint.h>

#include "replica.h"

/* Is broker alive (registered with the coordinator)? */
typedef bool (*repl_alive_fn)(void *ctx, uint32_t broker);

enum repl_elect_result {
	REPL_ELECT_UNCHANGED = 0, /* nothing to write */
	REPL_ELECT_CLEAN,         /* *next: a leader from the ISR, or none */
	REPL_ELECT_UNCLEAN,       /* *next: a leader from outside the ISR */
};

/*
 * Brokers died or came back (Kafka's onBrokerFailure / onBrokerStartup):
 *   - the leader is alive: drop dead brokers from the ISR, if any;
 *   - the leader is dead or there is none: the first live replica in
 *     assignment order that is in the ISR leads, the ISR keeping its live
 *     members; with unclean election enabled and none of the ISR alive,
 *     the first live replica leads alone (records may be lost); else no
 *     leader, the ISR kept as it was so that a returning member can lead.
 */
enum repl_elect_result repl_elect_on_liveness(const struct repl_assignment *a,
					      const struct repl_pstate *cur,
					      repl_alive_fn alive, void *ctx,
					      bool unclean,
					      struct repl_pstate *next);

/*
 * Kafka's preferred replica election (auto.leader.rebalance.enable): the
 * first assigned replica leads again if it is alive, in the ISR and not
 * leading already.
 */
enum repl_elect_result repl_elect_preferred(const struct repl_assignment *a,
					    const struct repl_pstate *cur,
					    repl_alive_fn alive, void *ctx,
					    struct repl_pstate *next);

/*
 * Kafka's controlled shutdown of broker: if it leads, the first other
 * live ISR member in assignment order takes over; it leaves the ISR
 * unless it is the last member. UNCHANGED if it neither leads nor can
 * leave the ISR (then it may stop as it is).
 */
enum repl_elect_result repl_elect_shutdown(const struct repl_assignment *a,
					   const struct repl_pstate *cur,
					   repl_alive_fn alive, void *ctx,
					   uint32_t broker,
					   struct repl_pstate *next);

#endif
