#include "commit.h"

#include <assert.h>
#include <stddef.h>

void repl_commit_init(struct repl_commit *c, uint32_t nreplicas, uint64_t hw,
		      uint64_t leo)
{
	assert(nreplicas >= 1 && nreplicas <= REPL_REPLICAS_MAX);
	assert(hw <= leo);
	*c = (struct repl_commit){ .nreplicas = nreplicas, .hw = hw };
	for (uint32_t r = 0; r < nreplicas; r++) {
		c->leo[r] = leo;
		c->durable[r] = leo;
		c->in_isr[r] = true;
	}
}

uint64_t repl_commit_durable(const struct repl_commit *c)
{
	uint64_t low = UINT64_MAX;

	for (uint32_t r = 0; r < c->nreplicas; r++) {
		if (c->in_isr[r] && c->durable[r] < low)
			low = c->durable[r];
	}
	return low;
}

static bool waiter_ready(const struct repl_commit *c, uint64_t durable,
			 const struct repl_waiter *w)
{
	return c->hw >= w->offset && (!w->durable || durable >= w->offset);
}

/* Complete the waiters whose records are committed, in arrival order. */
static void repl_commit_wake(struct repl_commit *c)
{
	uint64_t durable = repl_commit_durable(c);
	struct repl_waiter **pp = &c->waiters;

	while (*pp) {
		struct repl_waiter *w = *pp;
		if (!waiter_ready(c, durable, w)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		c->nwaiters--;
		w->next = NULL;
		w->done(w, 0);
	}
}

/* The high watermark: the lowest log end over the ISR, never lower. */
static void repl_commit_advance(struct repl_commit *c)
{
	uint64_t low = UINT64_MAX;

	for (uint32_t r = 0; r < c->nreplicas; r++) {
		if (c->in_isr[r] && c->leo[r] < low)
			low = c->leo[r];
	}
	if (low != UINT64_MAX && low > c->hw) /* an empty ISR commits nothing */
		c->hw = low;
}

uint64_t repl_commit_replica(struct repl_commit *c, uint32_t r, uint64_t leo,
			     uint64_t durable)
{
	assert(r < c->nreplicas);
	assert(durable <= leo);
	if (leo > c->leo[r])
		c->leo[r] = leo;
	if (durable > c->durable[r])
		c->durable[r] = durable;
	repl_commit_advance(c);
	repl_commit_wake(c);
	return c->hw;
}

uint64_t repl_commit_set(struct repl_commit *c, uint32_t r, uint64_t leo,
			 uint64_t durable, bool in_isr)
{
	assert(r < c->nreplicas);
	assert(durable <= leo);
	c->leo[r] = leo;
	c->durable[r] = durable;
	c->in_isr[r] = in_isr;
	repl_commit_advance(c);
	repl_commit_wake(c);
	return c->hw;
}

struct repl_waiter *repl_commit_oldest(const struct repl_commit *c)
{
	return c->waiters;
}

void repl_commit_cancel(struct repl_commit *c, struct repl_waiter *w, int rc)
{
	struct repl_waiter **pp = &c->waiters;

	while (*pp && *pp != w)
		pp = &(*pp)->next;
	assert(*pp == w);
	*pp = w->next;
	c->nwaiters--;
	w->next = NULL;
	w->done(w, rc);
}

void repl_commit_wait(struct repl_commit *c, struct repl_waiter *w)
{
	struct repl_waiter **pp = &c->waiters;

	if (waiter_ready(c, repl_commit_durable(c), w)) {
		w->next = NULL;
		w->done(w, 0);
		return;
	}
	while (*pp)
		pp = &(*pp)->next;
	w->next = NULL;
	*pp = w;
	c->nwaiters++;
}

void repl_commit_fail_all(struct repl_commit *c, int rc)
{
	while (c->waiters) {
		struct repl_waiter *w = c->waiters;
		c->waiters = w->next;
		c->nwaiters--;
		w->next = NULL;
		w->done(w, rc);
	}
}
