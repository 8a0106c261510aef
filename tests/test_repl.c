/*
 * repl/commit: the high watermark and its waiters, checked against a
 * trivial model over seeded random schedules (TOPICFS_TEST_SEED).
 */
#include "testutil.h"

#include "commit.h"

#define WAITERS_MAX 64

struct tw {
	struct repl_waiter w;
	int calls, rc;
};

static void tw_done(struct repl_waiter *w, int rc)
{
	struct tw *t = (struct tw *)w;

	t->calls++;
	t->rc = rc;
}

static void test_one_replica_follows_appends_and_syncs(void **state)
{
	struct repl_commit c;
	struct tw a = { .w = { .offset = 5, .done = tw_done } };
	struct tw d = { .w = { .offset = 5, .durable = true, .done = tw_done } };
	struct tw now = { .w = { .offset = 3, .done = tw_done } };
	(void)state;

	repl_commit_init(&c, 1, 3, 3);
	repl_commit_wait(&c, &now.w); /* already committed: done at once */
	assert_int_equal(now.calls, 1);
	repl_commit_wait(&c, &a.w);
	repl_commit_wait(&c, &d.w);
	assert_int_equal(a.calls + d.calls, 0);
	assert_int_equal(repl_commit_replica(&c, 0, 5, 3), 5);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.rc, 0);
	assert_int_equal(d.calls, 0); /* not on disk yet */
	repl_commit_replica(&c, 0, 5, 5);
	assert_int_equal(d.calls, 1);
	assert_int_equal(c.nwaiters, 0);
}

static void test_three_replicas_lowest_in_isr_commits(void **state)
{
	struct repl_commit c;
	struct tw a = { .w = { .offset = 10, .done = tw_done } };
	struct tw f = { .w = { .offset = 20, .done = tw_done } };
	(void)state;

	repl_commit_init(&c, 3, 0, 0);
	repl_commit_wait(&c, &a.w);
	repl_commit_wait(&c, &f.w);
	assert_int_equal(repl_commit_replica(&c, 0, 20, 0), 0);
	assert_int_equal(repl_commit_replica(&c, 1, 15, 0), 0);
	assert_int_equal(repl_commit_replica(&c, 2, 12, 0), 12);
	assert_int_equal(a.calls, 1);
	assert_int_equal(f.calls, 0);
	/* A smaller report never moves anything back. */
	assert_int_equal(repl_commit_replica(&c, 2, 4, 0), 12);
	repl_commit_fail_all(&c, -ETIMEDOUT);
	assert_int_equal(f.calls, 1);
	assert_int_equal(f.rc, -ETIMEDOUT);
	assert_int_equal(c.nwaiters, 0);
}

/* Random schedules against the model: the high watermark is the largest
 * lowest-end seen, never goes down, and every waiter is done exactly once,
 * as soon as (and only when) its condition holds. */
static void test_random_schedules_match_the_model(void **state)
{
	(void)state;
	tu_seed(0x7e91c0de);
	for (int round = 0; round < 2000; round++) {
		uint32_t n = 1 + (uint32_t)(tu_rand() % 5);
		uint64_t leo[REPL_REPLICAS_MAX] = { 0 }, dur[REPL_REPLICAS_MAX] = { 0 };
		uint64_t hw = 0;
		struct tw ws[WAITERS_MAX];
		unsigned nw = 0;
		struct repl_commit c;

		repl_commit_init(&c, n, 0, 0);
		for (int step = 0; step < 200; step++) {
			uint64_t low = UINT64_MAX, dlow = UINT64_MAX;
			if (tu_rand() % 3 == 0 && nw < WAITERS_MAX) {
				struct tw *t = &ws[nw++];
				*t = (struct tw){ .w = {
					.offset = leo[0] + tu_rand() % 4,
					.durable = tu_rand() % 2,
					.done = tw_done } };
				repl_commit_wait(&c, &t->w);
			} else {
				uint32_t r = (uint32_t)(tu_rand() % n);
				uint64_t l = r == 0 ? leo[0] + tu_rand() % 5 :
					     leo[r] + tu_rand() % (leo[0] - leo[r] + 1);
				uint64_t d = dur[r] + tu_rand() % (l - dur[r] + 1);
				leo[r] = l;
				dur[r] = d;
				repl_commit_replica(&c, r, l, d);
			}
			for (uint32_t r = 0; r < n; r++) {
				low = leo[r] < low ? leo[r] : low;
				dlow = dur[r] < dlow ? dur[r] : dlow;
			}
			if (low > hw)
				hw = low;
			assert_int_equal(c.hw, hw);
			for (unsigned i = 0; i < nw; i++) {
				bool ready = hw >= ws[i].w.offset &&
					     (!ws[i].w.durable ||
					      dlow >= ws[i].w.offset);
				assert_int_equal(ws[i].calls, ready ? 1 : 0);
				if (ready)
					assert_int_equal(ws[i].rc, 0);
			}
		}
		repl_commit_fail_all(&c, -ETIMEDOUT);
		for (unsigned i = 0; i < nw; i++)
			assert_int_equal(ws[i].calls, 1);
		assert_int_equal(c.nwaiters, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_replica_follows_appends_and_syncs),
		cmocka_unit_test(test_three_replicas_lowest_in_isr_commits),
		cmocka_unit_test(test_random_schedules_match_the_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
