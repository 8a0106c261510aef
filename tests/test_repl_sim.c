/*
 * repl/replica.c and repl/elect.c in the in-memory cluster of repl_sim.c:
 * a few scripted scenarios (Kafka's KIP-101 and KIP-279 cases), then
 * thousands of seeded random schedules of appends and faults, each
 * checked as it runs and at its end (see repl_sim.h for the invariants).
 *
 *   TOPICFS_SIM_SEED=N       base seed of the random schedules
 *   TOPICFS_SIM_SCHEDULES=N  how many (default SCHEDULES_DEFAULT)
 *   TOPICFS_SIM_REPLAY=S     run only the schedule with seed S, traced
 *
 * A failing schedule prints its seed; TOPICFS_SIM_REPLAY replays it with
 * a trace of every event.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "repl_sim.h"

#define SCHEDULES_DEFAULT 2000
#define SCHEDULE_MS 1500   /* of faults and appends, then healing */
#define HEAL_MS 3000
#define SEED_DEFAULT 0x5eed2026ULL

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static struct sim_config base_config(uint32_t n)
{
	struct sim_config c = {
		.nbrokers = n,
		.assignment = { .n = n },
		.min_insync = 1,
		.write_caching = false,
		.lag_time_max_ms = 100,
		.session_timeout_ms = 150,
		.coord_timeout_ms = 40,
		.delay_min_ms = 1,
		.delay_max_ms = 3,
		.disk_ms = 2,
		.fetch_max_bytes = 256,
		.request_timeout_ms = 300,
	};

	for (uint32_t i = 0; i < n; i++)
		c.assignment.replicas[i] = i;
	return c;
}

static void assert_ok(struct sim *s)
{
	if (s->failed)
		fail_msg("%s", s->why);
}

/* Wait (in simulated time) until cond holds, at most ms. */
#define RUN_UNTIL(s, ms, cond)                                      \
	do {                                                        \
		uint64_t until_ = (s)->now + (ms);                  \
		while (!(cond) && (s)->now < until_ && !(s)->failed) \
			sim_step(s);                                \
		assert_ok(s);                                       \
		assert_true(cond);                                  \
	} while (0)

static struct sim *sim_new(void)
{
	struct sim *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->trace = getenv("TOPICFS_SIM_TRACE") != NULL;
	return s;
}

/*
 * KIP-101's first case: a follower that restarts must not cut its log to
 * its (stale) high watermark. Follower 1 fetched a record but had not yet
 * heard the high watermark that covers it; it restarts, then the leader
 * dies: 1 leads, and the acknowledged record must still be there.
 */
static void test_restart_keeps_records_above_stale_hw(void **state)
{
	struct sim_config c = base_config(2);
	struct sim *s = sim_new();
	(void)state;

	sim_init(s, &c, 1);
	assert_int_equal(sim_append(s, 0, -1, 2), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	sim_kill(s, 1, false);
	RUN_UNTIL(s, 500, !s->session[1]);
	assert_true(sim_restart(s, 1));
	RUN_UNTIL(s, 500, s->b[1].r.fetch.matched);
	sim_kill(s, 0, false);
	RUN_UNTIL(s, 500, sim_leader(s) == 1);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/*
 * KIP-101's first case, as it happens with a leader change: the followers
 * have the leader's records but not yet the high watermark that covers
 * them when leadership moves. A follower that then cut its log to its
 * stale high watermark (instead of asking the new leader by epoch) would
 * lose acknowledged records if it led next.
 */
static void test_new_follower_keeps_tail_above_stale_hw(void **state)
{
	struct sim_config c = base_config(3);
	struct sim *s = sim_new();
	(void)state;

	sim_init(s, &c, 7);
	assert_int_equal(sim_append(s, 0, -1, 2), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	/* The responses carrying the new HW are lost. */
	sim_cut(s, 0, 1, true);
	sim_cut(s, 0, 2, true);
	sim_cut(s, 1, 2, true);
	assert_true(s->b[2].log.hw < s->b[2].log.leo);
	sim_shutdown(s, 0);
	assert_int_equal(sim_leader(s), 1);
	RUN_UNTIL(s, 200, repl_replica_epoch(&s->b[2].r) == 2);
	sim_kill(s, 1, false);
	RUN_UNTIL(s, 500, sim_leader(s) == 2);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/*
 * The ISR expands only with followers that reached the start of this
 * leader's epoch, not merely its (possibly stale) high watermark. New
 * leader 1 holds acknowledged records [2, 4) above its stale HW 2, and
 * so does 3, which cannot reach it; follower 2 stopped at offset 2. Had
 * 2 joined the ISR at once and 1 died before 2 caught up, 2 (before 3 in
 * assignment order) would lead without those records.
 */
static void test_expand_needs_epoch_start(void **state)
{
	struct sim_config c = base_config(4);
	struct sim *s = sim_new();
	(void)state;

	sim_init(s, &c, 8);
	assert_int_equal(sim_append(s, 0, -1, 2), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	sim_run(s, 20); /* everyone has HW 2 */
	sim_pause(s, 2, true);
	assert_int_equal(sim_append(s, 0, -1, 2), 0);
	RUN_UNTIL(s, 400, s->stats.acked == 2); /* once 2 left the ISR */
	for (uint32_t b = 1; b < 4; b++)
		sim_cut(s, 0, b, true); /* nobody hears HW 4 */
	sim_cut(s, 1, 3, true);
	assert_int_equal(s->b[1].log.hw, 2);
	sim_shutdown(s, 0);
	sim_pause(s, 2, false);
	RUN_UNTIL(s, 200, repl_replica_role(&s->b[1].r) == REPL_ROLE_LEADER &&
		  s->b[1].r.remote[2].leo == 2);
	assert_int_equal(s->b[1].r.hw, 2);
	sim_cut(s, 1, 2, true);
	sim_kill(s, 1, false);
	sim_run(s, 500);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/*
 * KIP-101's second case: the leader wrote records the follower never got
 * (and nobody acknowledged), then both lost power; the follower comes
 * back first and leads, writing other records at the same offsets. When
 * the old leader returns it must truncate its tail by epoch and copy the
 * new leader's, so the logs end identical.
 */
static void test_divergent_tails_converge(void **state)
{
	struct sim_config c = base_config(2);
	struct sim *s = sim_new();
	(void)state;

	c.write_caching = true;
	sim_init(s, &c, 2);
	assert_int_equal(sim_append(s, 0, -1, 1), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	sim_cut(s, 0, 1, true); /* shorter than the lag time: 1 stays in sync */
	for (int i = 0; i < 3; i++)
		assert_int_equal(sim_append(s, 0, 1, 1), 0);
	sim_flush(s, 0);
	sim_flush(s, 1);
	sim_run(s, 20);
	assert_int_equal(s->b[0].log.durable, 4);
	assert_int_equal(s->b[1].log.durable, 1);
	sim_kill(s, 0, true);
	sim_kill(s, 1, true);
	sim_cut(s, 0, 1, false);
	RUN_UNTIL(s, 500, !s->session[0] && !s->session[1]);
	assert_true(sim_restart(s, 1));
	RUN_UNTIL(s, 200, repl_replica_role(&s->b[1].r) == REPL_ROLE_LEADER);
	assert_int_equal(sim_append(s, 1, 1, 2), 0);
	assert_true(sim_restart(s, 0));
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	assert_int_equal(s->b[0].r.stats.truncations, 1);
	assert_int_equal(s->b[0].log.leo, 3);
	free(s);
}

/*
 * KIP-279: a follower whose newest epoch the leader never had (it led
 * alone, cut off, and wrote in an epoch nobody else saw) is cut back
 * epoch by epoch until it matches.
 */
static void test_epoch_the_leader_never_had(void **state)
{
	struct sim_config c = base_config(3);
	struct sim *s = sim_new();
	(void)state;

	c.unclean = true;
	sim_init(s, &c, 3);
	assert_int_equal(sim_append(s, 0, -1, 2), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	/* 0 is cut from everyone; it keeps appending acks=1 while the
	 * controller moves leadership to 1 in a new epoch. */
	sim_cut(s, 0, 1, true);
	sim_cut(s, 0, 2, true);
	sim_cut(s, 0, SIM_COORD, true);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sim_append(s, 0, 1, 2), 0);
	RUN_UNTIL(s, 500, repl_replica_role(&s->b[1].r) == REPL_ROLE_LEADER);
	assert_int_equal(sim_append(s, 1, 1, 1), 0);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	assert_true(s->b[0].r.stats.truncations >= 1);
	free(s);
}

/*
 * A leader cut from the coordinator cannot shrink the ISR to itself:
 * its acks=all appends never succeed alone, and the controller moves
 * leadership to an in-sync follower.
 */
static void test_cut_leader_cannot_commit_alone(void **state)
{
	struct sim_config c = base_config(3);
	struct sim *s = sim_new();
	uint64_t acked;
	(void)state;

	sim_init(s, &c, 4);
	sim_cut(s, 0, 1, true);
	sim_cut(s, 0, 2, true);
	sim_cut(s, 0, SIM_COORD, true);
	acked = s->stats.acked;
	assert_int_equal(sim_append(s, 0, -1, 1), 0);
	RUN_UNTIL(s, 1000, s->stats.unknown == 1);
	assert_int_equal(s->stats.acked, acked);
	assert_int_equal(s->b[0].r.st.nisr, 3);
	assert_int_equal(sim_leader(s), 1);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/* min.insync.replicas: with the ISR too small an acks=all append is
 * refused before anything is appended. */
static void test_min_insync_refuses_before_append(void **state)
{
	struct sim_config c = base_config(3);
	struct sim *s = sim_new();
	uint64_t leo;
	(void)state;

	c.min_insync = 3;
	sim_init(s, &c, 5);
	sim_pause(s, 2, true);
	assert_int_equal(sim_append(s, 0, 1, 1), 0); /* makes 2 lag */
	RUN_UNTIL(s, 1000, s->b[0].r.st.nisr == 2);
	leo = s->b[0].log.leo;
	assert_int_equal(sim_append(s, 0, -1, 1), -EAGAIN);
	assert_int_equal(s->b[0].log.leo, leo);
	sim_pause(s, 2, false);
	RUN_UNTIL(s, 1000, s->b[0].r.st.nisr == 3);
	assert_int_equal(sim_append(s, 0, -1, 1), 0);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/* Controlled shutdown moves leadership before the broker stops, and the
 * preferred replica leads again once it is back in sync. */
static void test_shutdown_and_preferred_leader(void **state)
{
	struct sim_config c = base_config(3);
	struct sim *s = sim_new();
	(void)state;

	c.rebalance = true;
	sim_init(s, &c, 6);
	assert_int_equal(sim_append(s, 0, -1, 1), 0);
	RUN_UNTIL(s, 200, s->stats.acked == 1);
	sim_shutdown(s, 0);
	assert_int_equal(sim_leader(s), 1);
	RUN_UNTIL(s, 500, !s->b[0].alive);
	RUN_UNTIL(s, 500, !s->session[0]);
	assert_true(sim_restart(s, 0));
	RUN_UNTIL(s, 2000, sim_leader(s) == 0 &&
		  repl_replica_role(&s->b[0].r) == REPL_ROLE_LEADER);
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	assert_ok(s);
	free(s);
}

/* ---- Random schedules ----------------------------------------------------- */

static uint64_t pick(struct sim *s, uint64_t n)
{
	return sim_rand(s) % n;
}

static bool chance(struct sim *s, uint32_t one_in)
{
	return pick(s, one_in) == 0;
}

static void random_config(struct sim *s, struct sim_config *c)
{
	uint32_t n = 3 + (uint32_t)pick(s, 3);

	*c = base_config(n);
	for (uint32_t i = n - 1; i > 0; i--) { /* a random assignment */
		uint32_t j = (uint32_t)pick(s, i + 1), t;

		t = c->assignment.replicas[i];
		c->assignment.replicas[i] = c->assignment.replicas[j];
		c->assignment.replicas[j] = t;
	}
	c->min_insync = 1 + (uint32_t)pick(s, 3);
	c->write_caching = chance(s, 2);
	c->unclean = chance(s, 4);
	c->rebalance = chance(s, 2);
	c->delay_max_ms = chance(s, 3) ? 20 : 4;
	c->drop_per_mille = chance(s, 3) ? 20 : 0;
	c->disk_ms = 1 + (uint32_t)pick(s, 10);
}

static void random_faults(struct sim *s)
{
	uint32_t n = s->cfg.nbrokers, b = (uint32_t)pick(s, n);

	if (chance(s, 500))
		sim_kill(s, b, chance(s, 2));
	if (!s->b[b].alive && chance(s, 50))
		sim_restart(s, b);
	if (chance(s, 700))
		sim_pause(s, b, true);
	if (s->b[b].paused && chance(s, 100))
		sim_pause(s, b, false);
	if (chance(s, 400)) {
		uint32_t o = (uint32_t)pick(s, n + 1);

		sim_cut(s, b, o == n ? SIM_COORD : o, o != b);
	}
	if (chance(s, 60)) {
		uint32_t o = (uint32_t)pick(s, n + 1);

		sim_cut(s, b, o == n ? SIM_COORD : o, false);
	}
	if (s->b[b].alive && chance(s, 600))
		s->b[b].disk_ms = 50 + (uint32_t)pick(s, 250);
	if (chance(s, 200))
		s->b[b].disk_ms = s->cfg.disk_ms;
	if (chance(s, 1500))
		sim_shutdown(s, b);
	if (s->cfg.write_caching && chance(s, 60))
		sim_flush(s, b);
}

static void random_appends(struct sim *s)
{
	static const int acks[] = { 0, 1, 1, -1, -1, -1, -1 };
	uint32_t b;

	if (!chance(s, 4))
		return;
	b = sim_leader(s);
	if (b == REPL_BROKER_NONE || chance(s, 5))
		b = (uint32_t)pick(s, s->cfg.nbrokers);
	sim_append(s, b, acks[pick(s, 7)], 1 + (uint32_t)pick(s, 3));
}

struct totals {
	uint64_t schedules, failed, lossy, steps;
	struct sim_stats st;
};

static bool run_schedule(struct sim *s, uint64_t seed, struct totals *t)
{
	struct sim_config c;

	s->rng = seed;
	random_config(s, &c);
	sim_init(s, &c, seed ^ 0xa5a5a5a5a5a5a5a5ULL);
	for (uint64_t ms = 0; ms < SCHEDULE_MS && !s->failed; ms++) {
		random_faults(s);
		random_appends(s);
		sim_step(s);
	}
	sim_heal(s, HEAL_MS);
	sim_check_final(s);
	t->schedules++;
	t->lossy += s->lossy;
	t->steps += SCHEDULE_MS + HEAL_MS;
	for (size_t i = 0; i < sizeof(t->st) / 8; i++)
		((uint64_t *)&t->st)[i] += ((uint64_t *)&s->stats)[i];
	return !s->failed;
}

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_random_schedules(void **state)
{
	uint64_t replay = env_u64("TOPICFS_SIM_REPLAY", 0);
	uint64_t base = env_u64("TOPICFS_SIM_SEED", SEED_DEFAULT);
	uint64_t count = env_u64("TOPICFS_SIM_SCHEDULES", SCHEDULES_DEFAULT);
	struct sim *s = sim_new();
	struct totals t = { 0 };
	double t0 = seconds(), dt;
	(void)state;

	if (replay) {
		s->trace = true;
		run_schedule(s, replay, &t);
		if (s->failed)
			fail_msg("schedule %#" PRIx64 ": %s", replay, s->why);
		free(s);
		return;
	}
	for (uint64_t i = 0; i < count; i++) {
		uint64_t seed = base * 1000003ULL + i;

		if (!run_schedule(s, seed, &t)) {
			printf("schedule %" PRIu64 " failed: %s\n"
			       "replay: TOPICFS_SIM_REPLAY=%#" PRIx64 "\n",
			       i, s->why, seed);
			t.failed++;
			break;
		}
	}
	dt = seconds() - t0;
	printf("%" PRIu64 " schedules (base seed %#" PRIx64 ", %" PRIu64
	       " lossy) in %.1f s: %.0f schedules/s, %.0f simulated ms/s\n"
	       "appends acks 0/1/all %" PRIu64 "/%" PRIu64 "/%" PRIu64
	       ", acked %" PRIu64 ", refused %" PRIu64 ", unknown %" PRIu64
	       "\nelections %" PRIu64 " (unclean %" PRIu64 "), kills %" PRIu64
	       " (power losses %" PRIu64 "), messages %" PRIu64 "\n",
	       t.schedules, base, t.lossy, dt, (double)t.schedules / dt,
	       (double)t.steps / dt, t.st.appends[0], t.st.appends[1],
	       t.st.appends[2], t.st.acked, t.st.refused, t.st.unknown,
	       t.st.elections, t.st.unclean_elections, t.st.kills,
	       t.st.power_losses, t.st.messages);
	free(s);
	assert_int_equal(t.failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restart_keeps_records_above_stale_hw),
		cmocka_unit_test(test_new_follower_keeps_tail_above_stale_hw),
		cmocka_unit_test(test_expand_needs_epoch_start),
		cmocka_unit_test(test_divergent_tails_converge),
		cmocka_unit_test(test_epoch_the_leader_never_had),
		cmocka_unit_test(test_cut_leader_cannot_commit_alone),
		cmocka_unit_test(test_min_insync_refuses_before_append),
		cmocka_unit_test(test_shutdown_and_preferred_leader),
		cmocka_unit_test(test_random_schedules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
