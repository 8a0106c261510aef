#include "syncer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "msg.h"

#define SYNCER_THREADS 4

enum { JOB_IDLE, JOB_QUEUED, JOB_RUNNING, JOB_AGAIN };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;      /* a job was queued, or stop */
	pthread_cond_t ran;       /* a job finished a run */
	struct sync_job *head, **tail;
	unsigned holders;
	bool stop, tried;
	pthread_t threads[SYNCER_THREADS];
	unsigned nthreads;
} sy = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
	.ran = PTHREAD_COND_INITIALIZER,
	.tail = &sy.head,
};

/*
 * Run j (its state JOB_RUNNING, lock held), again while it is asked to
 * run again: by a thread if there are any, here if not.
 */
static void syncer_run(struct sync_job *j)
{
	for (;;) {
		pthread_mutex_unlock(&sy.lock);
		j->run(j);
		pthread_mutex_lock(&sy.lock);
		if (j->state != JOB_AGAIN)
			break;
		if (sy.nthreads > 0 && !sy.stop) {
			j->state = JOB_QUEUED;
			j->next = NULL;
			*sy.tail = j;
			sy.tail = &j->next;
			pthread_cond_signal(&sy.work);
			pthread_cond_broadcast(&sy.ran);
			return;
		}
		j->state = JOB_RUNNING;
	}
	j->state = JOB_IDLE;
	pthread_cond_broadcast(&sy.ran);
}

static void *syncer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sy.lock);
	for (;;) {
		struct sync_job *j;
		while (!sy.head && !sy.stop)
			pthread_cond_wait(&sy.work, &sy.lock);
		j = sy.head;
		if (!j)
			break;
		sy.head = j->next;
		if (!sy.head)
			sy.tail = &sy.head;
		j->state = JOB_RUNNING;
		syncer_run(j);
	}
	pthread_mutex_unlock(&sy.lock);
	return NULL;
}

void syncer_hold(void)
{
	pthread_mutex_lock(&sy.lock);
	sy.holders++;
	pthread_mutex_unlock(&sy.lock);
}

void syncer_release(void)
{
	unsigned n;

	pthread_mutex_lock(&sy.lock);
	if (--sy.holders > 0) {
		pthread_mutex_unlock(&sy.lock);
		return;
	}
	sy.stop = true;
	pthread_cond_broadcast(&sy.work);
	n = sy.nthreads;
	pthread_mutex_unlock(&sy.lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(sy.threads[i], NULL);
	pthread_mutex_lock(&sy.lock);
	sy.nthreads = 0;
	sy.stop = false;
	sy.tried = false;
	pthread_mutex_unlock(&sy.lock);
}

/* Start the threads once (lock held). */
static void syncer_start(void)
{
	if (sy.tried)
		return;
	sy.tried = true;
	while (sy.nthreads < SYNCER_THREADS &&
	       pthread_create(&sy.threads[sy.nthreads], NULL, syncer_main,
			      NULL) == 0)
		sy.nthreads++;
	if (sy.nthreads < SYNCER_THREADS)
		msg(LOG_WARNING, "only %u of %d sync threads could start",
		    sy.nthreads, SYNCER_THREADS);
}

void syncer_queue(struct sync_job *j)
{
	pthread_mutex_lock(&sy.lock);
	syncer_start();
	switch (j->state) {
	case JOB_QUEUED:
	case JOB_AGAIN:
		break;
	case JOB_RUNNING:
		j->state = JOB_AGAIN;
		break;
	case JOB_IDLE:
		if (sy.nthreads == 0 || sy.stop) {
			/* No thread to run it: run it here. */
			j->state = JOB_RUNNING;
			syncer_run(j);
			break;
		}
		j->state = JOB_QUEUED;
		j->next = NULL;
		*sy.tail = j;
		sy.tail = &j->next;
		pthread_cond_signal(&sy.work);
		break;
	}
	pthread_mutex_unlock(&sy.lock);
}

void syncer_idle(struct sync_job *j)
{
	pthread_mutex_lock(&sy.lock);
	while (j->state != JOB_IDLE)
		pthread_cond_wait(&sy.ran, &sy.lock);
	pthread_mutex_unlock(&sy.lock);
}
