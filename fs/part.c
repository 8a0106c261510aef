#include "part.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "commit.h"
#include "io.h"
#include "msg.h"
#include "syncer.h"

/* A group commit appends at most this many payload bytes (one request
 * alone may be larger). */
#define GROUP_BYTES_MAX (8u << 20)

const uint64_t latency_bucket_us[LATENCY_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 500000,
	2000000,
};

/* One writer's records waiting to be appended (group commit). */
struct append_req {
	const struct iovec *iov; /* the records' bytes, in pieces */
	int iovcnt;
	size_t len;
	const uint32_t *lens;
	uint32_t n;
	int rc;
	bool done;
	struct log_append_info info;
	struct append_req *next;
};

struct part {
	const char *topic;        /* its topic's name, for log lines */
	uint32_t index;
	struct log *log;
	struct part_stats stats;

	pthread_mutex_t q_lock;   /* protects the fields below */
	pthread_cond_t q_cond;
	struct append_req *q_head, **q_tail;
	bool appending;           /* a leader is committing a group */
	struct iovec *giov;       /* the leader's: every request's pieces */
	uint32_t *glens;          /* and their record lengths */
	size_t giov_bytes, glens_bytes;
	int64_t flush_messages;   /* flush after this many records */
	int64_t flush_ms;         /* flush when data is this old */
	uint64_t unflushed;       /* records since the last flush */
	struct repl_commit commit; /* the high watermark's owner */
	int64_t last_flush_ms;     /* monotonic (clock.h) */
	bool flush_queued;        /* a tick's flush is queued or running */
	struct part_wait *told;   /* waits completed, to be told (unlocked) */
	struct sync_job sync_job; /* syncs for durable waits (syncer.h) */
};

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void part_sync_job(struct sync_job *j);

/* Tests only: called by a sync thread before each durable sync. */
static void (*sync_hook)(struct part *p);

void part_set_sync_hook(void (*hook)(struct part *p))
{
	sync_hook = hook;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int part_open(const char *dir, const char *topic, uint32_t index,
	      const struct topic_config *cfg, struct part **out,
	      bool *created)
{
	struct part *p = calloc(1, sizeof(*p));
	struct log_bounds lb;
	int rc;

	if (!p)
		return -ENOMEM;
	*created = access(dir, F_OK) < 0 && errno == ENOENT;
	rc = log_open(dir, &cfg->log, &p->log);
	if (rc < 0) {
		free(p);
		return rc;
	}
	/* One replica: everything stored is committed. */
	log_get_bounds(p->log, &lb);
	repl_commit_init(&p->commit, 1, lb.leo, lb.leo);
	log_set_hw(p->log, p->commit.hw);
	p->topic = topic;
	p->index = index;
	p->flush_messages = cfg->flush_messages;
	p->flush_ms = cfg->flush_ms;
	p->q_tail = &p->q_head;
	p->sync_job.run = part_sync_job;
	p->last_flush_ms = clock_mono_ms();
	pthread_mutex_init(&p->q_lock, NULL);
	pthread_cond_init(&p->q_cond, NULL);
	*out = p;
	return 0;
}

static void part_unlock_tell(struct part *p);

int part_close(struct part *p, bool clean)
{
	struct log_state st;
	int rc = 0;

	syncer_idle(&p->sync_job);
	log_get_state(p->log, &st);
	if (clean)
		rc = log_close(p->log);
	else
		log_abandon(p->log);
	/* A clean close made everything durable: tell the waits so; any
	 * other wait fails (there is no more partition to wait on). */
	pthread_mutex_lock(&p->q_lock);
	if (clean && rc == 0)
		repl_commit_replica(&p->commit, 0, st.leo, st.leo);
	repl_commit_fail_all(&p->commit, -ESHUTDOWN);
	part_unlock_tell(p);
	pthread_mutex_destroy(&p->q_lock);
	pthread_cond_destroy(&p->q_cond);
	free(p->giov);
	free(p->glens);
	free(p);
	return rc;
}

void part_set_config(struct part *p, const struct topic_config *cfg)
{
	log_set_config(p->log, &cfg->log);
	pthread_mutex_lock(&p->q_lock);
	p->flush_messages = cfg->flush_messages;
	p->flush_ms = cfg->flush_ms;
	pthread_mutex_unlock(&p->q_lock);
}

struct log *part_log(struct part *p)
{
	return p->log;
}

uint32_t part_index(const struct part *p)
{
	return p->index;
}

struct part_stats *part_stats(struct part *p)
{
	return &p->stats;
}

static void part_note_latency(struct part *p, uint64_t us)
{
	unsigned b = 0;

	while (b < LATENCY_BUCKETS && us > latency_bucket_us[b])
		b++;
	atomic_fetch_add(&p->stats.latency_bucket[b], 1);
	atomic_fetch_add(&p->stats.latency_count, 1);
	atomic_fetch_add(&p->stats.latency_sum_us, us);
}

/* The commit point completed a wait (q_lock held): tell it later. */
static void part_wait_done(struct repl_waiter *rw, int rc)
{
	struct part_wait *w = container_of(rw, struct part_wait, rw);

	w->rc = rc;
	w->next = w->p->told;
	w->p->told = w;
}

/* Unlock q_lock, then tell the completed waits, in arrival order. */
static void part_unlock_tell(struct part *p)
{
	struct part_wait *w = p->told, *rev = NULL, *next;

	p->told = NULL;
	pthread_mutex_unlock(&p->q_lock);
	for (; w; w = next) {
		next = w->next;
		w->next = rev;
		rev = w;
	}
	for (w = rev; w; w = next) {
		next = w->next;
		w->done(w, w->rc);
	}
}

/*
 * Tell the commit point where the log ends and what is on disk, and
 * publish the high watermark it answers (repl/ owns the value).
 */
static void part_replica_moved(struct part *p)
{
	struct log_state st;
	uint64_t hw;

	log_get_state(p->log, &st);
	/* Under the lock, so that two callers cannot publish out of order. */
	pthread_mutex_lock(&p->q_lock);
	hw = repl_commit_replica(&p->commit, 0, st.leo, st.recovery_point);
	log_set_hw(p->log, hw);
	part_unlock_tell(p);
}

void part_wait_commit(struct part *p, uint64_t offset, bool durable,
		      struct part_wait *w)
{
	bool sync;

	w->p = p;
	w->rw = (struct repl_waiter){ .offset = offset, .durable = durable,
				      .done = part_wait_done };
	pthread_mutex_lock(&p->q_lock);
	repl_commit_wait(&p->commit, &w->rw);
	sync = durable && repl_commit_durable(&p->commit) < offset;
	part_unlock_tell(p);
	if (sync)
		syncer_queue(&p->sync_job);
}

void part_settle(struct part *p)
{
	bool waits;

	pthread_mutex_lock(&p->q_lock);
	waits = p->commit.nwaiters > 0;
	pthread_mutex_unlock(&p->q_lock);
	if (!waits)
		return;
	if (log_sync_to(p->log, UINT64_MAX) == 0)
		part_replica_moved(p);
	pthread_mutex_lock(&p->q_lock);
	repl_commit_fail_all(&p->commit, -ESHUTDOWN);
	part_unlock_tell(p);
}

/*
 * A sync thread's run for durable waits: everything written so far to
 * disk (log_sync_to: the data and whatever metadata the records need),
 * then the waits it covers are done. Writers that arrive meanwhile
 * queue the next run, which covers them all at once.
 */
static void part_sync_job(struct sync_job *j)
{
	struct part *p = container_of(j, struct part, sync_job);
	int rc;

	if (sync_hook)
		sync_hook(p);
	pthread_mutex_lock(&p->q_lock);
	p->unflushed = 0;
	p->last_flush_ms = clock_mono_ms();
	pthread_mutex_unlock(&p->q_lock);
	rc = log_sync_to(p->log, UINT64_MAX);
	if (rc == 0) {
		part_replica_moved(p);
		return;
	}
	msg(LOG_ERR, "topic %s partition %" PRIu32 ": sync failed: %s",
	    p->topic, p->index, strerror(-rc));
	pthread_mutex_lock(&p->q_lock);
	repl_commit_fail_all(&p->commit, rc);
	part_unlock_tell(p);
}

/*
 * Append the queued requests from head on, as one append when there are
 * several: their pieces and record lengths one after the other (the
 * engine copies only batches made of many small pieces). Called by the
 * group leader without q_lock. Returns the first request not taken (if
 * the group was full).
 */
static struct append_req *part_commit(struct part *p, struct append_req *head)
{
	struct append_req *r, *stop;
	struct log_append_info info;
	size_t len = 0, pieces = 0;
	uint32_t n = 0;
	int rc;

	for (stop = head; stop; stop = stop->next) {
		if (stop != head && len + stop->len > GROUP_BYTES_MAX)
			break;
		len += stop->len;
		n += stop->n;
		pieces += (size_t)stop->iovcnt;
	}
	if (head->next == stop) {
		rc = log_appendv(p->log, head->iov, head->iovcnt, head->lens,
				 head->n, NULL, &head->info);
		head->rc = rc;
		goto out_hw;
	}
	rc = io_buf_reserve((void **)&p->giov, &p->giov_bytes,
			    pieces * sizeof(*p->giov));
	if (rc == 0)
		rc = io_buf_reserve((void **)&p->glens, &p->glens_bytes,
				    n * sizeof(*p->glens));
	if (rc == 0) {
		size_t v = 0;
		uint32_t k = 0;
		for (r = head; r != stop; r = r->next) {
			memcpy(p->giov + v, r->iov, r->iovcnt * sizeof(*r->iov));
			memcpy(p->glens + k, r->lens, r->n * sizeof(*r->lens));
			v += (size_t)r->iovcnt;
			k += r->n;
		}
		rc = log_appendv(p->log, p->giov, (int)pieces, p->glens, n,
				 NULL, &info);
	}
	for (r = head; r != stop; r = r->next) {
		r->rc = rc;
		if (rc == 0) {
			r->info = info;
			r->info.end_offset = info.base_offset + r->n;
			r->info.end_pos = info.base_pos + r->len;
			info.base_offset += r->n;
			info.base_pos += r->len;
		}
	}
out_hw:
	if (rc == 0) {
		part_replica_moved(p);
		atomic_fetch_add(&p->stats.batches_in, 1);
		atomic_fetch_add(&p->stats.bytes_in, len);
		atomic_fetch_add(&p->stats.records_in, n);
	}
	return stop;
}

int part_produce(struct part *p, const struct iovec *iov, int iovcnt,
		 const uint32_t *lens, uint32_t n, struct log_append_info *info)
{
	struct append_req req = { .iov = iov, .iovcnt = iovcnt, .lens = lens,
				  .n = n };
	uint64_t t0 = mono_us();
	bool flush = false;

	for (int i = 0; i < iovcnt; i++)
		req.len += iov[i].iov_len;
	pthread_mutex_lock(&p->q_lock);
	*p->q_tail = &req;
	p->q_tail = &req.next;
	while (!req.done) {
		if (p->appending) {
			pthread_cond_wait(&p->q_cond, &p->q_lock);
			continue;
		}
		/* Become the leader: commit everything queued so far. */
		struct append_req *head = p->q_head, *rest, *r;
		p->appending = true;
		p->q_head = NULL;
		p->q_tail = &p->q_head;
		pthread_mutex_unlock(&p->q_lock);
		rest = part_commit(p, head);
		pthread_mutex_lock(&p->q_lock);
		for (r = head; r != rest; r = r->next)
			r->done = true;
		if (rest) { /* put back what did not fit, at the front */
			struct append_req **tail = &rest;
			while (*tail)
				tail = &(*tail)->next;
			*tail = p->q_head;
			if (!p->q_head)
				p->q_tail = tail;
			p->q_head = rest;
		}
		p->appending = false;
		pthread_cond_broadcast(&p->q_cond);
	}
	if (req.rc == 0) {
		p->unflushed += n;
		flush = (int64_t)p->unflushed >= p->flush_messages;
	}
	pthread_mutex_unlock(&p->q_lock);
	part_note_latency(p, mono_us() - t0);
	if (req.rc == 0 && info)
		*info = req.info;
	if (flush) /* flush.messages: in the background, as fsync does */
		syncer_queue(&p->sync_job);
	return req.rc;
}

int part_sync(struct part *p)
{
	int rc;

	pthread_mutex_lock(&p->q_lock);
	p->unflushed = 0;
	p->last_flush_ms = clock_mono_ms();
	pthread_mutex_unlock(&p->q_lock);
	rc = log_flush(p->log);
	if (rc < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": flush failed: %s", p->topic, p->index,
		       strerror(-rc));
	else
		part_replica_moved(p);
	return rc;
}

bool part_tick(struct part *p, const struct tick_now *now)
{
	bool due;

	if (log_retention(p->log, now->wall_ms) < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": retention failed", p->topic, p->index);
	pthread_mutex_lock(&p->q_lock);
	due = !p->flush_queued && p->unflushed > 0 &&
	      now->mono_ms - p->last_flush_ms >= p->flush_ms;
	if (due)
		p->flush_queued = true;
	pthread_mutex_unlock(&p->q_lock);
	return due;
}

void part_tick_flush(struct part *p)
{
	part_sync(p);
	pthread_mutex_lock(&p->q_lock);
	p->flush_queued = false;
	pthread_mutex_unlock(&p->q_lock);
}

void part_checkpoint(struct part *p)
{
	struct log_state st;
	int rc;

	/* A partition whose sync or checkpoint failed is refusing writes
	 * and said so once: no line every few seconds until its reopen. */
	log_get_state(p->log, &st);
	if (st.sticky_error)
		return;
	rc = log_checkpoint(p->log);
	if (rc < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": checkpoint failed: %s", p->topic, p->index,
		       strerror(-rc));
}

void part_scrub(struct part *p, const struct log_scrub_ctl *ctl)
{
	int bad = log_scrub_pass(p->log, ctl);

	if (bad > 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": %d corrupt batch(es); reads of them fail with EIO",
		       p->topic, p->index, bad);
	else if (bad < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32 ": scrub failed: %s",
		    p->topic, p->index, strerror(-bad));
}
