#include "elect.h"

/* next := cur with ISR members kept where keep(broker) holds. */
static void keep_isr(const struct repl_pstate *cur, struct repl_pstate *next,
		     repl_alive_fn keep, void *ctx, uint32_t drop)
{
	next->nisr = 0;
	for (uint32_t i = 0; i < cur->nisr; i++) {
		uint32_t b = cur->isr[i];

		if (b != drop && keep(ctx, b))
			next->isr[next->nisr++] = b;
	}
}

/* First replica in assignment order that is alive (and in the ISR if
 * isr is given) and is not skip; REPL_BROKER_NONE if none. */
static uint32_t first_live(const struct repl_assignment *a,
			   const struct repl_pstate *isr, repl_alive_fn alive,
			   void *ctx, uint32_t skip)
{
	for (uint32_t i = 0; i < a->n; i++) {
		uint32_t b = a->replicas[i];

		if (b != skip && alive(ctx, b) &&
		    (!isr || repl_pstate_in_isr(isr, b)))
			return b;
	}
	return REPL_BROKER_NONE;
}

static enum repl_elect_result changed(const struct repl_pstate *cur,
				      struct repl_pstate *next,
				      enum repl_elect_result how)
{
	next->leader_epoch = cur->leader_epoch + 1;
	return how;
}

enum repl_elect_result repl_elect_on_liveness(const struct repl_assignment *a,
					      const struct repl_pstate *cur,
					      repl_alive_fn alive, void *ctx,
					      bool unclean,
					      struct repl_pstate *next)
{
	uint32_t leader;

	*next = *cur;
	if (cur->leader != REPL_BROKER_NONE && alive(ctx, cur->leader)) {
		keep_isr(cur, next, alive, ctx, REPL_BROKER_NONE);
		if (next->nisr == cur->nisr)
			return REPL_ELECT_UNCHANGED;
		return changed(cur, next, REPL_ELECT_CLEAN);
	}
	leader = first_live(a, cur, alive, ctx, REPL_BROKER_NONE);
	if (leader != REPL_BROKER_NONE) {
		next->leader = leader;
		keep_isr(cur, next, alive, ctx, REPL_BROKER_NONE);
		return changed(cur, next, REPL_ELECT_CLEAN);
	}
	leader = unclean ? first_live(a, NULL, alive, ctx, REPL_BROKER_NONE)
			 : REPL_BROKER_NONE;
	if (leader != REPL_BROKER_NONE) {
		next->leader = leader;
		next->nisr = 1;
		next->isr[0] = leader;
		return changed(cur, next, REPL_ELECT_UNCLEAN);
	}
	if (cur->leader == REPL_BROKER_NONE)
		return REPL_ELECT_UNCHANGED; /* still offline */
	next->leader = REPL_BROKER_NONE; /* offline; the ISR stays */
	return changed(cur, next, REPL_ELECT_CLEAN);
}

enum repl_elect_result repl_elect_preferred(const struct repl_assignment *a,
					    const struct repl_pstate *cur,
					    repl_alive_fn alive, void *ctx,
					    struct repl_pstate *next)
{
	uint32_t preferred = a->replicas[0];

	*next = *cur;
	if (cur->leader == preferred || !alive(ctx, preferred) ||
	    !repl_pstate_in_isr(cur, preferred))
		return REPL_ELECT_UNCHANGED;
	next->leader = preferred;
	return changed(cur, next, REPL_ELECT_CLEAN);
}

static bool always(void *ctx, uint32_t broker)
{
	(void)ctx;
	(void)broker;
	return true;
}

enum repl_elect_result repl_elect_shutdown(const struct repl_assignment *a,
					   const struct repl_pstate *cur,
					   repl_alive_fn alive, void *ctx,
					   uint32_t broker,
					   struct repl_pstate *next)
{
	*next = *cur;
	if (cur->leader == broker) {
		uint32_t leader = first_live(a, cur, alive, ctx, broker);

		if (leader == REPL_BROKER_NONE)
			return REPL_ELECT_UNCHANGED;
		next->leader = leader;
		keep_isr(cur, next, always, NULL, broker);
		return changed(cur, next, REPL_ELECT_CLEAN);
	}
	if (!repl_pstate_in_isr(cur, broker) || cur->nisr <= 1)
		return REPL_ELECT_UNCHANGED;
	keep_isr(cur, next, always, NULL, broker);
	return changed(cur, next, REPL_ELECT_CLEAN);
}
