/*
 * The commit waits of the write path (part_wait_commit): a durable wait
 * is answered by a sync thread, never by the caller, and concurrent
 * waits share syncs.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>

#include "broker.h"
#include "part.h"
#include "topic.h"

#define WAITS 16

/* The sync hook: count runs; hold them while `hold` is set. */
static pthread_mutex_t h_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t h_cond = PTHREAD_COND_INITIALIZER;
static bool hold;
static unsigned syncs, reached;

static void hook(struct part *p)
{
	(void)p;
	pthread_mutex_lock(&h_lock);
	syncs++;
	reached++;
	pthread_cond_broadcast(&h_cond);
	while (hold)
		pthread_cond_wait(&h_cond, &h_lock);
	pthread_mutex_unlock(&h_lock);
}

struct done_count {
	struct part_wait pw;
	_Atomic int rc;
	_Atomic bool done;
};

static void on_done(struct part_wait *pw, int rc)
{
	struct done_count *d = (struct done_count *)(void *)pw;

	atomic_store(&d->rc, rc);
	atomic_store(&d->done, true);
	pthread_mutex_lock(&h_lock);
	pthread_cond_broadcast(&h_cond);
	pthread_mutex_unlock(&h_lock);
}

/* Wait (5 s at most) until cond holds, h_lock held. */
static bool wait_until(bool (*cond)(void *), void *arg)
{
	struct timespec end;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 5;
	while (!cond(arg)) {
		if (pthread_cond_timedwait(&h_cond, &h_lock, &end) == ETIMEDOUT)
			return cond(arg);
	}
	return true;
}

static bool sync_reached(void *arg)
{
	(void)arg;
	return reached > 0;
}

static bool all_done(void *arg)
{
	struct done_count *d = arg;

	for (int i = 0; i < WAITS; i++) {
		if (!atomic_load(&d[i].done))
			return false;
	}
	return true;
}

static uint64_t append_line(struct part *p)
{
	char line[] = "a record\n";
	uint32_t len = sizeof(line) - 1;
	struct iovec iov = { line, len };
	struct log_append_info info;

	assert_int_equal(part_produce(p, &iov, 1, &len, 1, &info), 0);
	return info.end_offset;
}

/*
 * Durable waits are answered from the sync thread after the sync, not in
 * the caller, and WAITS writers arriving while a sync runs share it and
 * the next one: two syncs at most, not WAITS.
 */
static void test_durable_waits_share_a_background_sync(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker_opts o = { .datadir = dir, .num_partitions = 1 };
	struct done_count d[WAITS] = { 0 };
	struct log_state st;
	struct broker *b;
	struct topic *t;
	struct part *p;
	uint64_t end = 0;

	(void)state;
	assert_int_equal(broker_open(&o, &b), 0);
	assert_int_equal(broker_topic_create(b, "t"), 0);
	t = broker_topic_get(b, "t");
	p = topic_part(t, 0);
	syncs = reached = 0;
	hold = true;
	part_set_sync_hook(hook);

	for (int i = 0; i < WAITS; i++) {
		end = append_line(p);
		d[i].pw.done = on_done;
		part_wait_commit(p, end, true, &d[i].pw);
		/* Answered later, by the sync thread. */
		assert_false(atomic_load(&d[i].done));
		if (i == 0) { /* the first sync is under way, held */
			pthread_mutex_lock(&h_lock);
			assert_true(wait_until(sync_reached, NULL));
			pthread_mutex_unlock(&h_lock);
		}
	}
	pthread_mutex_lock(&h_lock);
	hold = false;
	pthread_cond_broadcast(&h_cond);
	assert_true(wait_until(all_done, d));
	pthread_mutex_unlock(&h_lock);
	for (int i = 0; i < WAITS; i++)
		assert_int_equal(atomic_load(&d[i].rc), 0);
	log_get_state(part_log(p), &st);
	assert_true(st.recovery_point >= end);
	/* The first run synced what was appended when it began (all of it,
	 * as it was held until then); the one asked for meanwhile may or
	 * may not have run yet. */
	assert_true(syncs <= 2);

	/* Already durable: answered at once, no sync. */
	atomic_store(&d[0].done, false);
	part_wait_commit(p, end, true, &d[0].pw);
	assert_true(atomic_load(&d[0].done));

	topic_put(t);
	broker_close(b);
	assert_true(syncs <= 2);
	part_set_sync_hook(NULL);
	tu_rmdir(dir);
}

/* A wait still pending when its partition closes is answered, not lost. */
static void test_close_answers_pending_waits(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker_opts o = { .datadir = dir, .num_partitions = 1 };
	struct done_count d = { 0 };
	struct broker *b;
	struct topic *t;
	struct part *p;

	(void)state;
	assert_int_equal(broker_open(&o, &b), 0);
	assert_int_equal(broker_topic_create(b, "t"), 0);
	t = broker_topic_get(b, "t");
	p = topic_part(t, 0);
	d.pw.done = on_done;
	/* Past the end: never committed while the partition lives. */
	part_wait_commit(p, append_line(p) + 1, false, &d.pw);
	assert_false(atomic_load(&d.done));
	topic_put(t);
	broker_close(b);
	assert_true(atomic_load(&d.done));
	assert_int_equal(atomic_load(&d.rc), -ESHUTDOWN);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durable_waits_share_a_background_sync),
		cmocka_unit_test(test_close_answers_pending_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
