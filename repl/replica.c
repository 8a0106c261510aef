/*
 * One partition replica's state machine: see replica.h for the contract
 * and docs/REPLICATION.md for the rules, with Kafka's names for each.
 *
 * Two sets of in-sync replicas live here. The confirmed ISR (r->st) is
 * what the coordinator stores as far as this replica knows: it counts for
 * min.insync.replicas. While an ISR write is in flight the high
 * watermark is computed over the union of the confirmed ISR and the
 * proposed one (Kafka's "maximal ISR", KIP-497): a shrink takes effect
 * only once stored, an expansion at once, so that whichever of the two
 * the coordinator ends up holding, every member of it has every
 * committed record.
 */
#include "replica.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t now(struct repl_replica *r)
{
	return r->io.now_ms(r->io.ctx);
}

static void log_state(struct repl_replica *r, struct repl_log_state *ls)
{
	r->io.log_state(r->io.ctx, ls);
}

bool repl_pstate_in_isr(const struct repl_pstate *s, uint32_t broker)
{
	for (uint32_t i = 0; i < s->nisr; i++) {
		if (s->isr[i] == broker)
			return true;
	}
	return false;
}

bool repl_pstate_equal(const struct repl_pstate *a,
		       const struct repl_pstate *b)
{
	if (a->leader != b->leader || a->leader_epoch != b->leader_epoch ||
	    a->nisr != b->nisr)
		return false;
	for (uint32_t i = 0; i < a->nisr; i++) {
		if (!repl_pstate_in_isr(b, a->isr[i]))
			return false;
	}
	return true;
}

/* Position of broker in the assignment, or -1. */
static int position(const struct repl_replica *r, uint32_t broker)
{
	for (uint32_t i = 0; i < r->cfg.assignment.n; i++) {
		if (r->cfg.assignment.replicas[i] == broker)
			return (int)i;
	}
	return -1;
}

static uint32_t broker_at(const struct repl_replica *r, uint32_t pos)
{
	return r->cfg.assignment.replicas[pos];
}

/* Where a replica's records count for the high watermark: its log end,
 * or with write.caching=false only what is on its disk (so that readers
 * never see what a crash of every replica could take back). */
static uint64_t visible_end(const struct repl_replica *r, uint64_t leo,
			    uint64_t durable)
{
	return r->cfg.write_caching ? leo : min_u64(leo, durable);
}

static void set_hw(struct repl_replica *r, uint64_t hw)
{
	if (hw == r->hw)
		return;
	r->hw = hw;
	r->io.log_set_hw(r->io.ctx, hw);
}

/* ---- Leader: the ISR and the high watermark ---------------------------- */

static bool in_effective_isr(const struct repl_replica *r, uint32_t broker)
{
	return repl_pstate_in_isr(&r->st, broker) ||
	       (r->pending.active && repl_pstate_in_isr(&r->pending.want, broker));
}

/* Recompute the high watermark over the effective ISR. */
static void leader_commit(struct repl_replica *r)
{
	struct repl_log_state ls;

	log_state(r, &ls);
	for (uint32_t i = 0; i < r->cfg.assignment.n; i++) {
		bool in = in_effective_isr(r, broker_at(r, i));
		const struct repl_remote *rm = &r->remote[i];
		uint64_t leo = rm->leo, durable = rm->durable;

		if (i == r->self) {
			leo = ls.leo;
			durable = min_u64(ls.durable, ls.leo);
		}
		repl_commit_set(&r->commit, i, visible_end(r, leo, durable),
				min_u64(durable, leo), in);
		if (r->role != REPL_ROLE_LEADER)
			return; /* a waiter's done() changed everything */
	}
	set_hw(r, r->commit.hw);
}

/* With write.caching=false, ask for this replica's whole log to reach
 * its disk (a leader's HW and a follower's ISR membership wait for it). */
static void maybe_sync(struct repl_replica *r)
{
	struct repl_log_state ls;

	if (r->cfg.write_caching)
		return;
	log_state(r, &ls);
	if (ls.durable < ls.leo && r->sync_asked < ls.leo) {
		r->sync_asked = ls.leo;
		r->io.log_sync_to(r->io.ctx, ls.leo);
	}
}

static void propose_isr(struct repl_replica *r, const bool *in)
{
	struct repl_pstate *w = &r->pending.want;

	*w = r->st;
	w->nisr = 0;
	for (uint32_t i = 0; i < r->cfg.assignment.n; i++) {
		if (in[i])
			w->isr[w->nisr++] = broker_at(r, i);
	}
	r->pending.active = true;
	r->pending.unknown = false;
	r->pending.frozen = false;
	r->pending.op = ++r->op_next;
	leader_commit(r); /* an expansion counts at once */
	if (r->role == REPL_ROLE_LEADER && r->pending.active)
		r->io.coord_cas(r->io.ctx, r->pending.op, w, r->version);
}

/* The coordinator holds the proposed ISR at version: adopt it. */
static void adopt_pending(struct repl_replica *r, uint32_t version)
{
	bool grew = r->pending.want.nisr > r->st.nisr;

	r->st = r->pending.want;
	r->version = version;
	r->pending.active = false;
	if (grew)
		r->stats.isr_expands++;
	else
		r->stats.isr_shrinks++;
	leader_commit(r);
}

/*
 * Kafka's maybeShrinkIsr: drop followers that have not caught up with
 * the log end for lag_time_max_ms. A follower at the log end is in sync
 * however long ago it fetched (Kafka's rule: nothing to catch up with).
 */
static void maybe_shrink_isr(struct repl_replica *r)
{
	bool in[REPL_REPLICAS_MAX] = { false };
	struct repl_log_state ls;
	uint64_t t = now(r);
	bool out = false;

	if (r->pending.active)
		return;
	log_state(r, &ls);
	for (uint32_t i = 0; i < r->cfg.assignment.n; i++) {
		const struct repl_remote *rm = &r->remote[i];

		in[i] = repl_pstate_in_isr(&r->st, broker_at(r, i));
		if (!in[i] || i == r->self)
			continue;
		if (rm->leo != ls.leo &&
		    t - rm->last_caught_up_ms > r->cfg.lag_time_max_ms) {
			in[i] = false;
			out = true;
		}
	}
	if (out)
		propose_isr(r, in);
}

/*
 * Kafka's maybeExpandIsr: a follower outside the ISR joins once it has
 * everything committed and reached this epoch's start (so that it holds
 * this leader's view of the log, not a stale one). With write.caching
 * off it must also have the committed records on disk.
 */
static void maybe_expand_isr(struct repl_replica *r, uint32_t pos)
{
	const struct repl_remote *rm = &r->remote[pos];
	bool in[REPL_REPLICAS_MAX] = { false };

	if (r->pending.active || repl_pstate_in_isr(&r->st, broker_at(r, pos)))
		return;
	if (rm->leo < r->hw || rm->leo < r->epoch_start)
		return;
	if (!r->cfg.write_caching && rm->durable < r->hw)
		return;
	for (uint32_t i = 0; i < r->cfg.assignment.n; i++)
		in[i] = i == pos || repl_pstate_in_isr(&r->st, broker_at(r, i));
	propose_isr(r, in);
}

/* Kafka's updateFollowerFetchState (Replica.updateFetchState). */
static void update_follower(struct repl_replica *r, uint32_t pos,
			    const struct repl_fetch *f, uint64_t leader_leo)
{
	struct repl_remote *rm = &r->remote[pos];
	uint64_t t = now(r);

	if (f->fetch_offset >= rm->leader_leo_at_last_fetch &&
	    rm->last_fetch_ms > rm->last_caught_up_ms)
		rm->last_caught_up_ms = rm->last_fetch_ms;
	if (f->fetch_offset >= leader_leo)
		rm->last_caught_up_ms = t;
	rm->leader_leo_at_last_fetch = leader_leo;
	rm->last_fetch_ms = t;
	rm->leo = f->fetch_offset;
	rm->durable = min_u64(f->durable_offset, f->fetch_offset);
	leader_commit(r);
	if (r->role == REPL_ROLE_LEADER)
		maybe_expand_isr(r, pos);
}

/*
 * KAFKA-10554: does the follower's log diverge from ours? It does if we
 * never had its last fetched epoch, or our log of that epoch ends before
 * its fetch offset. *epoch and *end tell it where ours ends.
 */
static bool diverges(struct repl_replica *r, const struct repl_fetch *f,
		     uint32_t *epoch, uint64_t *end)
{
	if (f->last_fetched_epoch == REPL_EPOCH_UNDEFINED)
		return false;
	r->io.log_epoch_end(r->io.ctx, f->last_fetched_epoch, epoch, end);
	return *epoch == REPL_EPOCH_UNDEFINED ||
	       *epoch < f->last_fetched_epoch || *end < f->fetch_offset;
}

static int16_t check_fetch(struct repl_replica *r, const struct repl_fetch *f,
			   int *pos)
{
	if (r->role != REPL_ROLE_LEADER)
		return REPL_ERR_NOT_LEADER;
	if (f->leader_epoch < r->st.leader_epoch)
		return REPL_ERR_FENCED_LEADER_EPOCH;
	if (f->leader_epoch > r->st.leader_epoch)
		return REPL_ERR_UNKNOWN_LEADER_EPOCH;
	*pos = position(r, f->replica_id);
	if (*pos < 0 || (uint32_t)*pos == r->self)
		return REPL_ERR_REPLICA_NOT_AVAILABLE;
	return REPL_ERR_NONE;
}

/* Answer a follower's fetch: divergence, or records and our HW. */
static void leader_on_fetch(struct repl_replica *r, const struct repl_msg *m)
{
	const struct repl_fetch *f = &m->u.fetch;
	struct repl_msg out = {
		.type = REPL_MSG_FETCH_RESPONSE,
		.from = r->cfg.broker_id,
		.to = m->from,
		.partition = r->cfg.partition,
		.correlation = m->correlation,
	};
	struct repl_fetch_response *resp = &out.u.resp;
	struct repl_log_state ls;
	int pos = -1;

	resp->leader_epoch = r->st.leader_epoch;
	resp->error = check_fetch(r, f, &pos);
	if (resp->error != REPL_ERR_NONE)
		goto out_send;
	log_state(r, &ls);
	resp->log_start_offset = ls.start;
	resp->log_end_offset = ls.leo;
	resp->high_watermark = r->hw;
	if (f->fetch_offset < ls.start) {
		resp->error = REPL_ERR_OFFSET_OUT_OF_RANGE;
		goto out_send;
	}
	if (diverges(r, f, &resp->diverging_epoch,
		     &resp->diverging_end_offset)) {
		/* Its fetch offset says nothing about what it holds: no
		 * update of its state, or a divergent tail could count. */
		resp->diverging = true;
		goto out_send;
	}
	if (f->fetch_offset > ls.leo) {
		resp->error = REPL_ERR_OFFSET_OUT_OF_RANGE;
		goto out_send;
	}
	update_follower(r, (uint32_t)pos, f, ls.leo);
	if (r->role != REPL_ROLE_LEADER) {
		resp->error = REPL_ERR_NOT_LEADER;
		goto out_send;
	}
	resp->high_watermark = r->hw;
	if (f->fetch_offset < ls.leo &&
	    r->io.log_read_run(r->io.ctx, f->fetch_offset, f->max_bytes,
			       &resp->records) < 0) {
		resp->error = REPL_ERR_KAFKA_STORAGE;
		resp->records = (struct repl_run){ 0 };
	}
out_send:
	r->io.send(r->io.ctx, m->from, &out);
}

/* ---- Follower: fetching and truncation by epoch ------------------------ */

static void follower_send_fetch(struct repl_replica *r)
{
	struct repl_log_state ls;
	struct repl_msg m = {
		.type = REPL_MSG_FETCH,
		.from = r->cfg.broker_id,
		.to = r->st.leader,
		.partition = r->cfg.partition,
		.correlation = ++r->correlation_next,
	};

	log_state(r, &ls);
	m.u.fetch = (struct repl_fetch){
		.replica_id = r->cfg.broker_id,
		.leader_epoch = r->st.leader_epoch,
		.fetch_offset = ls.leo,
		.last_fetched_epoch = ls.latest_epoch,
		.log_start_offset = ls.start,
		.durable_offset = min_u64(ls.durable, ls.leo),
		.max_bytes = r->cfg.fetch_max_bytes,
	};
	r->fetch.in_flight = true;
	r->fetch.correlation = m.correlation;
	r->fetch.sent_ms = now(r);
	r->fetch.fetch_offset = ls.leo;
	r->io.send(r->io.ctx, r->st.leader, &m);
}

/*
 * Kafka's getOffsetTruncationState, on the leader's answer (epoch, end)
 * to our last fetched epoch. If the leader never had our epoch it names
 * an older one; if we do not have that one either we cut back to where
 * our own older epochs end and ask again with our new newest epoch
 * (KIP-279's loop: each round removes at least our newest epoch entry).
 */
static uint64_t truncation_offset(struct repl_replica *r,
				  const struct repl_log_state *ls,
				  uint32_t epoch, uint64_t end)
{
	uint32_t mine;
	uint64_t mine_end;

	if (epoch == REPL_EPOCH_UNDEFINED || end == REPL_OFFSET_UNDEFINED)
		return min_u64(r->hw, ls->leo); /* the leader knows no epochs */
	r->io.log_epoch_end(r->io.ctx, epoch, &mine, &mine_end);
	if (mine == REPL_EPOCH_UNDEFINED)
		return min_u64(end, ls->leo);
	if (mine != epoch)
		return min_u64(mine_end, ls->leo); /* then ask again */
	return min_u64(min_u64(mine_end, end), ls->leo);
}

static int follower_truncate(struct repl_replica *r, uint32_t epoch,
			     uint64_t end)
{
	struct repl_log_state ls;
	uint64_t to;
	int rc;

	log_state(r, &ls);
	to = truncation_offset(r, &ls, epoch, end);
	rc = r->io.log_truncate(r->io.ctx, to);
	if (rc < 0)
		return rc;
	if (to < ls.leo)
		r->stats.truncations++;
	if (r->sync_asked > to)
		r->sync_asked = to;
	if (r->hw > to) /* only after an unclean election */
		set_hw(r, to);
	return 0;
}

/* Apply a fetched run and the leader's high watermark. */
static void follower_apply(struct repl_replica *r,
			   const struct repl_fetch_response *resp)
{
	struct repl_log_state ls;
	bool got = false;

	log_state(r, &ls);
	if (resp->records.batches > 0 &&
	    resp->records.base_offset == ls.leo &&
	    r->io.log_append_run(r->io.ctx, &resp->records) == 0) {
		got = true;
		log_state(r, &ls);
	}
	maybe_sync(r);
	if (min_u64(resp->high_watermark, ls.leo) > r->hw)
		set_hw(r, min_u64(resp->high_watermark, ls.leo));
	r->fetch.next_ms = now(r) + (got ? 0 : r->cfg.fetch_backoff_ms);
}

static void follower_on_response(struct repl_replica *r,
				 const struct repl_msg *m)
{
	const struct repl_fetch_response *resp = &m->u.resp;

	if (r->role != REPL_ROLE_FOLLOWER || !r->fetch.in_flight ||
	    m->correlation != r->fetch.correlation || m->from != r->st.leader)
		return; /* late, or from a leader we left */
	r->fetch.in_flight = false;
	r->fetch.next_ms = now(r) + r->cfg.fetch_backoff_ms;
	if (resp->error == REPL_ERR_OFFSET_OUT_OF_RANGE &&
	    r->fetch.fetch_offset < resp->log_start_offset) {
		/* Wholly behind the leader's start: start over there. */
		if (r->io.log_truncate_fully(r->io.ctx,
					     resp->log_start_offset) == 0) {
			r->sync_asked = 0;
			set_hw(r, resp->log_start_offset);
			r->fetch.next_ms = now(r);
		}
		return;
	}
	if (resp->error != REPL_ERR_NONE)
		return;
	if (resp->diverging) {
		r->stats.divergences++;
		r->fetch.matched = false;
		if (follower_truncate(r, resp->diverging_epoch,
				      resp->diverging_end_offset) == 0)
			r->fetch.next_ms = now(r);
		return;
	}
	r->fetch.matched = true;
	follower_apply(r, resp);
}

/* ---- Roles ------------------------------------------------------------- */

static void fail_waiters(struct repl_replica *r, int rc)
{
	repl_commit_fail_all(&r->commit, rc);
}

static int become_leader(struct repl_replica *r, const struct repl_pstate *st,
			 uint32_t version)
{
	bool continuing = r->role == REPL_ROLE_LEADER;
	struct repl_log_state ls;
	uint64_t t = now(r);
	int rc;

	rc = r->io.log_begin_epoch(r->io.ctx, st->leader_epoch);
	if (rc < 0)
		return rc;
	log_state(r, &ls);
	r->st = *st;
	r->version = version;
	r->pending.active = false;
	r->epoch_start = ls.leo;
	r->stats.epochs_led++;
	if (!continuing) {
		/* Kafka's makeLeader: followers' positions unknown, the ISR's
		 * members counted as caught up now. */
		/* Everyone starts at the HW (followers unknown: their
		 * fetches tell), never at our log end: leader_commit sets
		 * replicas one by one and must never see a min too high. */
		repl_commit_init(&r->commit, r->cfg.assignment.n, r->hw,
				 r->hw);
		for (uint32_t i = 0; i < r->cfg.assignment.n; i++) {
			bool in = repl_pstate_in_isr(st, broker_at(r, i));

			r->remote[i] = (struct repl_remote){
				.last_caught_up_ms = in ? t : 0,
				.last_fetch_ms = in ? t : 0,
				.leader_leo_at_last_fetch = ls.leo,
			};
		}
		r->sync_asked = 0;
	}
	r->role = REPL_ROLE_LEADER;
	r->fetch.in_flight = false;
	leader_commit(r);
	maybe_sync(r);
	return 0;
}

static void become_follower(struct repl_replica *r,
			    const struct repl_pstate *st, uint32_t version)
{
	if (r->role == REPL_ROLE_LEADER)
		fail_waiters(r, -ETIMEDOUT); /* they may yet commit */
	r->st = *st;
	r->version = version;
	r->pending.active = false;
	r->role = st->leader == REPL_BROKER_NONE ? REPL_ROLE_NONE
						 : REPL_ROLE_FOLLOWER;
	r->fetch.in_flight = false;
	r->fetch.matched = false;
	r->fetch.next_ms = now(r);
}

int repl_replica_apply(struct repl_replica *r, const struct repl_pstate *st,
		       uint32_t version)
{
	int rc = 0;

	if (st->leader_epoch < r->st.leader_epoch ||
	    (r->told && st->leader_epoch == r->st.leader_epoch))
		return 0;
	r->told = true;
	if (st->leader == r->cfg.broker_id) {
		rc = become_leader(r, st, version);
		if (rc < 0) {
			struct repl_pstate none = *st;

			none.leader = REPL_BROKER_NONE;
			become_follower(r, &none, version);
		}
	} else {
		become_follower(r, st, version);
	}
	return rc;
}

/* ---- Appends ----------------------------------------------------------- */

static void produce_done(struct repl_waiter *w, int rc)
{
	struct repl_produce *p =
		(struct repl_produce *)((char *)w -
					offsetof(struct repl_produce, w));
	struct repl_replica *r = p->r;

	/* Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: committed, but by too
	 * few replicas for the promise; the writer cannot know more. */
	if (rc == 0 && r->st.nisr < r->cfg.min_insync)
		rc = -ETIMEDOUT;
	p->done(p, rc);
}

int repl_replica_append(struct repl_replica *r, const void *records, int acks,
			struct repl_produce *p)
{
	struct repl_log_state ls;
	uint64_t end;
	int rc;

	if (r->role == REPL_ROLE_FOLLOWER)
		return -EREMOTE;
	if (r->role != REPL_ROLE_LEADER)
		return -EAGAIN;
	if (acks == -1 && r->st.nisr < r->cfg.min_insync)
		return -EAGAIN;
	log_state(r, &ls);
	rc = r->io.log_append(r->io.ctx, r->st.leader_epoch, records, &end);
	if (rc < 0)
		return rc;
	if (p) {
		p->base_offset = ls.leo;
		p->end_offset = end;
	}
	if (acks == -1) {
		assert(p && p->done);
		p->r = r;
		p->deadline_ms = now(r) + r->cfg.request_timeout_ms;
		p->w = (struct repl_waiter){ .offset = end,
					     .done = produce_done };
		repl_commit_wait(&r->commit, &p->w);
	}
	if (r->role == REPL_ROLE_LEADER)
		leader_commit(r);
	if (r->role == REPL_ROLE_LEADER)
		maybe_sync(r);
	return 0;
}

/* ---- Coordinator results ----------------------------------------------- */

void repl_replica_cas_done(struct repl_replica *r, uint64_t op, int rc,
			   uint32_t version)
{
	if (r->role != REPL_ROLE_LEADER || !r->pending.active ||
	    op != r->pending.op || r->pending.unknown)
		return;
	if (rc == 0) {
		adopt_pending(r, version);
	} else if (rc == -ETIMEDOUT) {
		/* It may have been applied: read and compare. */
		r->pending.unknown = true;
		r->io.coord_read(r->io.ctx, op);
	} else {
		/* Someone else wrote (the controller): whatever it decided
		 * comes as a new epoch. Until then both ISRs count. */
		r->pending.frozen = true;
	}
}

void repl_replica_coord_read_done(struct repl_replica *r, uint64_t op, int rc,
				  const struct repl_pstate *st,
				  uint32_t version)
{
	if (r->role != REPL_ROLE_LEADER || !r->pending.active ||
	    op != r->pending.op || !r->pending.unknown)
		return;
	if (rc < 0) {
		/* Still unknown: the tick reads again. */
		r->pending.read_due_ms = now(r) + r->cfg.coord_retry_ms;
		return;
	}
	if (repl_pstate_equal(st, &r->pending.want))
		adopt_pending(r, version);
	else if (version == r->version && repl_pstate_equal(st, &r->st))
		r->pending.active = false; /* not applied: try again later */
	else
		r->pending.frozen = true;
	if (r->role == REPL_ROLE_LEADER && !r->pending.active)
		leader_commit(r);
}

/* ---- Time and disks ---------------------------------------------------- */

void repl_replica_synced(struct repl_replica *r)
{
	if (r->role == REPL_ROLE_LEADER) {
		leader_commit(r);
		if (r->role == REPL_ROLE_LEADER)
			maybe_sync(r);
	} else if (r->role == REPL_ROLE_FOLLOWER && !r->fetch.in_flight) {
		r->fetch.next_ms = now(r); /* tell the leader soon */
	}
}

static void expire_waiters(struct repl_replica *r)
{
	struct repl_waiter *w;
	uint64_t t = now(r);

	while ((w = repl_commit_oldest(&r->commit))) {
		struct repl_produce *p =
			(struct repl_produce *)((char *)w -
						offsetof(struct repl_produce, w));
		if (p->deadline_ms > t)
			break;
		repl_commit_cancel(&r->commit, w, -ETIMEDOUT);
		if (r->role != REPL_ROLE_LEADER)
			return;
	}
}

void repl_replica_tick(struct repl_replica *r)
{
	uint64_t t = now(r);

	if (r->role == REPL_ROLE_LEADER) {
		expire_waiters(r);
		if (r->role != REPL_ROLE_LEADER)
			return;
		if (r->pending.active && r->pending.unknown &&
		    r->pending.read_due_ms && t >= r->pending.read_due_ms) {
			r->pending.read_due_ms = 0;
			r->io.coord_read(r->io.ctx, r->pending.op);
		}
		maybe_shrink_isr(r);
		return;
	}
	if (r->role != REPL_ROLE_FOLLOWER)
		return;
	if (r->fetch.in_flight && t - r->fetch.sent_ms >= r->cfg.fetch_timeout_ms)
		r->fetch.in_flight = false; /* lost: ask again */
	if (!r->fetch.in_flight && t >= r->fetch.next_ms)
		follower_send_fetch(r);
}

void repl_replica_receive(struct repl_replica *r, const struct repl_msg *m)
{
	if (m->partition != r->cfg.partition)
		return;
	if (m->type == REPL_MSG_FETCH)
		leader_on_fetch(r, m);
	else if (m->type == REPL_MSG_FETCH_RESPONSE)
		follower_on_response(r, m);
}

/* ---- Life -------------------------------------------------------------- */

void repl_replica_init(struct repl_replica *r, const struct repl_config *cfg,
		       const struct repl_io *io, uint64_t hw)
{
	struct repl_log_state ls;
	int pos;

	*r = (struct repl_replica){ .cfg = *cfg, .io = *io };
	pos = position(r, cfg->broker_id);
	assert(pos >= 0 && cfg->assignment.n <= REPL_REPLICAS_MAX);
	r->self = (uint32_t)pos;
	r->st.leader = REPL_BROKER_NONE;
	log_state(r, &ls);
	r->hw = min_u64(hw, ls.leo);
	repl_commit_init(&r->commit, cfg->assignment.n, r->hw, ls.leo);
}

void repl_replica_release(struct repl_replica *r)
{
	fail_waiters(r, -ESHUTDOWN);
	r->role = REPL_ROLE_NONE;
}
