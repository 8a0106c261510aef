/*
 * The in-memory cluster of repl_sim.h. Sections: the generator and the
 * failure report, the in-memory log (its replication calls mirror
 * log/log.h's), the network, the coordinator and controller, the I/O
 * table each replica gets, clients, faults, the step, and the checks.
 */
#include "repl_sim.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Generator, report -------------------------------------------------- */

uint64_t sim_rand(struct sim *s)
{
	/* splitmix64: every seed, even 0, gives a good stream. */
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(struct sim *s, uint64_t lo, uint64_t hi)
{
	return lo + sim_rand(s) % (hi - lo + 1);
}

static void trace(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->trace)
		return;
	printf("%6" PRIu64 " ", s->now);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Record the first violation (later ones follow from it). */
static void fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->failed)
		return;
	s->failed = true;
	n = snprintf(s->why, sizeof(s->why), "t=%" PRIu64 " ms: ", s->now);
	va_start(ap, fmt);
	vsnprintf(s->why + n, sizeof(s->why) - (size_t)n, fmt, ap);
	va_end(ap);
	trace(s, "VIOLATION %s", s->why);
}

/* ---- The in-memory log --------------------------------------------------- */

static uint64_t batch_end(const struct sim_batch *b)
{
	return b->base + b->count;
}

static uint32_t latest_epoch(const struct sim_log *l)
{
	return l->nepochs ? l->epochs[l->nepochs - 1].epoch
			  : REPL_EPOCH_UNDEFINED;
}

/* The batch holding offset, or -1. */
static int batch_at(const struct sim_log *l, uint64_t offset)
{
	uint32_t lo = 0, hi = l->nbatches;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (batch_end(&l->batches[mid]) <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->nbatches && l->batches[lo].base <= offset)
		return (int)lo;
	return -1;
}

/* The record id at offset, or 0. */
static uint64_t record_at(const struct sim_log *l, uint64_t offset)
{
	int i = batch_at(l, offset);

	if (i < 0)
		return 0;
	return l->batches[i].ids[offset - l->batches[i].base];
}

/* A batch of a new epoch starts an epoch entry (log_append's rule). */
static void note_epoch(struct sim_log *l, uint32_t epoch, uint64_t base)
{
	if (l->nepochs && l->epochs[l->nepochs - 1].epoch >= epoch)
		return;
	if (l->nepochs == SIM_EPOCHS_MAX) {
		memmove(l->epochs, l->epochs + 1,
			(SIM_EPOCHS_MAX - 1) * sizeof(l->epochs[0]));
		l->nepochs--;
	}
	l->epochs[l->nepochs++] = (struct sim_epoch_entry){ epoch, base, false };
}

static int log_push(struct sim_log *l, const struct sim_batch *b)
{
	if (l->nbatches == SIM_BATCHES_MAX)
		return -ENOSPC;
	if (b->base != l->leo || b->count == 0 ||
	    b->count > SIM_BATCH_RECORDS_MAX ||
	    (l->nepochs && b->epoch < latest_epoch(l)))
		return -EINVAL;
	l->batches[l->nbatches++] = *b;
	note_epoch(l, b->epoch, b->base);
	l->leo = batch_end(b);
	return 0;
}

/* Cut whole batches at or past offset, and epoch entries at or past the
 * new end (even when nothing was cut: see repl_io.log_truncate). */
static void log_cut(struct sim_log *l, uint64_t offset)
{
	while (l->nbatches && batch_end(&l->batches[l->nbatches - 1]) > offset)
		l->nbatches--;
	l->leo = l->nbatches ? batch_end(&l->batches[l->nbatches - 1])
			     : l->start;
	while (l->nepochs && l->epochs[l->nepochs - 1].start >= l->leo)
		l->nepochs--;
	if (l->durable > l->leo)
		l->durable = l->leo;
	if (l->hw > l->leo)
		l->hw = l->leo;
}

/* A power loss: only what reached the disk stays. An epoch entry made by
 * log_begin_epoch is on disk when that returns. */
static void log_power_loss(struct sim_log *l)
{
	while (l->nbatches &&
	       batch_end(&l->batches[l->nbatches - 1]) > l->durable)
		l->nbatches--;
	l->leo = l->nbatches ? batch_end(&l->batches[l->nbatches - 1])
			     : l->start;
	while (l->nepochs && (l->epochs[l->nepochs - 1].start > l->leo ||
			      (l->epochs[l->nepochs - 1].start == l->leo &&
			       !l->epochs[l->nepochs - 1].durable)))
		l->nepochs--;
	l->durable = l->leo;
	if (l->hw > l->leo)
		l->hw = l->leo;
}

/* The wire form of a batch: base u64, count u32, epoch u32, ids. */
static size_t batch_size(const struct sim_batch *b)
{
	return 16 + 8 * (size_t)b->count;
}

static size_t encode_batch(const struct sim_batch *b, uint8_t *p)
{
	memcpy(p, &b->base, 8);
	memcpy(p + 8, &b->count, 4);
	memcpy(p + 12, &b->epoch, 4);
	memcpy(p + 16, b->ids, 8 * (size_t)b->count);
	return batch_size(b);
}

static int decode_batch(const uint8_t *p, size_t len, struct sim_batch *b)
{
	if (len < 16)
		return -EBADMSG;
	memcpy(&b->base, p, 8);
	memcpy(&b->count, p + 8, 4);
	memcpy(&b->epoch, p + 12, 4);
	if (b->count == 0 || b->count > SIM_BATCH_RECORDS_MAX ||
	    len < batch_size(b))
		return -EBADMSG;
	memcpy(b->ids, p + 16, 8 * (size_t)b->count);
	return 0;
}

/* ---- The network --------------------------------------------------------- */

static bool link_ok(const struct sim *s, uint32_t a, uint32_t b)
{
	return !s->cut[a][b];
}

static struct sim_msg *msg_new(struct sim *s, uint8_t kind, uint32_t from,
			       uint32_t to)
{
	if (!link_ok(s, from, to) ||
	    rnd(s, 1, 1000) <= s->cfg.drop_per_mille)
		return NULL;
	for (uint32_t i = 0; i < SIM_MSGS_MAX; i++) {
		struct sim_msg *m = &s->msgs[i];

		if (m->used)
			continue;
		memset(m, 0, offsetof(struct sim_msg, bytes));
		m->used = true;
		m->kind = kind;
		m->from = from;
		m->to = to;
		m->seq = ++s->msg_seq;
		m->due = s->now + rnd(s, s->cfg.delay_min_ms, s->cfg.delay_max_ms);
		s->stats.messages++;
		return m;
	}
	return NULL; /* a full network drops */
}

enum { MSG_REPL = 1, MSG_COORD_REQ, MSG_COORD_RESP, MSG_CTRL };

/* ---- The coordinator and the controller --------------------------------- */

static uint64_t committed_end(const struct sim *s);

static bool session_alive(void *ctx, uint32_t broker)
{
	const struct sim *s = ctx;

	return broker < s->cfg.nbrokers && s->session[broker];
}

uint32_t sim_leader(const struct sim *s)
{
	return s->st.leader;
}

/* The controller tells brokers its decision until each has heard it. */
static void ctrl_tell(struct sim *s, uint32_t b)
{
	struct sim_msg *m;

	if (!s->session[b] || s->told_epoch[b] >= s->st.leader_epoch ||
	    s->now < s->told_at[b] + 10)
		return;
	s->told_at[b] = s->now;
	m = msg_new(s, MSG_CTRL, SIM_COORD, b);
	if (!m)
		return;
	m->st = s->st;
	m->version = s->version;
}

/* The end of what was ever committed (a power loss does not move it). */
static uint64_t committed_end(const struct sim *s)
{
	return s->truth_end < SIM_OFFSETS_MAX ? s->truth_end : SIM_OFFSETS_MAX;
}

/* Does broker b's log hold every committed record? */
static bool holds_committed(const struct sim *s, uint32_t b)
{
	uint64_t end = committed_end(s);

	for (uint64_t o = 0; o < end; o++) {
		if (s->truth[o] && record_at(&s->b[b].log, o) != s->truth[o])
			return false;
	}
	return true;
}

static void ctrl_write(struct sim *s, const struct repl_pstate *next,
		       enum repl_elect_result how, const char *why)
{
	if (next->leader != REPL_BROKER_NONE &&
	    s->b[next->leader].lost_committed &&
	    !holds_committed(s, next->leader)) {
		trace(s, "broker %u leads without records it lost in a power "
		      "loss (write.caching=true): losses allowed from here",
		      next->leader);
		s->lossy = true;
	}
	s->st = *next;
	s->version++;
	s->stats.elections++;
	if (next->leader_epoch < SIM_EPOCH_HISTORY_MAX)
		s->epoch_leader[next->leader_epoch] = next->leader;
	if (how == REPL_ELECT_UNCLEAN) {
		s->stats.unclean_elections++;
		s->lossy = true;
	}
	trace(s, "controller (%s): epoch %u leader %d isr %u%s", why,
	      next->leader_epoch, (int)next->leader, next->nisr,
	      how == REPL_ELECT_UNCLEAN ? " UNCLEAN" : "");
	for (uint32_t b = 0; b < s->cfg.nbrokers; b++)
		s->told_at[b] = 0;
}

static void ctrl_liveness(struct sim *s, const char *why)
{
	struct repl_pstate next;
	enum repl_elect_result how;

	how = repl_elect_on_liveness(&s->cfg.assignment, &s->st, session_alive,
				     s, s->cfg.unclean, &next);
	if (how != REPL_ELECT_UNCHANGED)
		ctrl_write(s, &next, how, why);
}

static void coord_apply(struct sim *s, struct sim_msg *req)
{
	struct sim_msg *resp = msg_new(s, MSG_COORD_RESP, SIM_COORD, req->from);
	int rc = 0;

	if (req->cas) {
		if (req->version != s->version) {
			rc = -ESTALE;
		} else {
			s->st = req->st;
			s->version++;
			trace(s, "coordinator: broker %u writes isr of %u "
			      "(epoch %u, version %u)", req->from, req->st.nisr,
			      req->st.leader_epoch, s->version);
		}
	}
	if (!resp)
		return; /* applied, but nobody hears of it */
	resp->op = req->op;
	resp->cas = req->cas;
	resp->rc = rc;
	resp->st = s->st;
	resp->version = s->version;
}

static void sessions(struct sim *s)
{
	for (uint32_t b = 0; b < s->cfg.nbrokers; b++) {
		struct sim_broker *br = &s->b[b];
		bool beats = br->alive && !br->paused &&
			     link_ok(s, b, SIM_COORD);

		if (beats && !s->session[b]) {
			s->session[b] = true; /* registers again */
			s->heartbeat[b] = s->now;
			s->told_epoch[b] = 0;
			s->told_at[b] = 0;
			trace(s, "broker %u registers", b);
			ctrl_liveness(s, "startup");
		} else if (beats) {
			s->heartbeat[b] = s->now;
		} else if (s->session[b] &&
			   s->now - s->heartbeat[b] > s->cfg.session_timeout_ms) {
			s->session[b] = false;
			trace(s, "broker %u: session expired", b);
			ctrl_liveness(s, "session expired");
		}
	}
	if (s->cfg.rebalance && s->now % 200 == 0) {
		struct repl_pstate next;

		if (repl_elect_preferred(&s->cfg.assignment, &s->st,
					 session_alive, s, &next) !=
		    REPL_ELECT_UNCHANGED)
			ctrl_write(s, &next, REPL_ELECT_CLEAN, "preferred");
	}
	for (uint32_t b = 0; b < s->cfg.nbrokers; b++)
		ctrl_tell(s, b);
}

/* ---- The I/O table of each replica --------------------------------------- */

static void check_below_hw(struct sim_broker *br);

static uint64_t io_now(void *ctx)
{
	return ((struct sim_broker *)ctx)->sim->now;
}

static void io_send(void *ctx, uint32_t to, const struct repl_msg *rm)
{
	struct sim_broker *br = ctx;
	struct sim *s = br->sim;
	struct sim_msg *m;
	const struct repl_run *run = &rm->u.resp.records;

	if (to >= s->cfg.nbrokers)
		return;
	m = msg_new(s, MSG_REPL, br->id, to);
	if (!m)
		return;
	m->m = *rm;
	if (rm->type == REPL_MSG_FETCH_RESPONSE && run->len) {
		if (run->len > sizeof(m->bytes)) {
			fail(s, "a run of %zu bytes exceeds the fetch limit",
			     run->len);
			m->used = false;
			return;
		}
		memcpy(m->bytes, run->bytes, run->len);
		m->m.u.resp.records.bytes = m->bytes;
	}
}

static void coord_send(struct sim_broker *br, uint64_t op, bool cas,
		       const struct repl_pstate *want, uint32_t version)
{
	struct sim *s = br->sim;
	struct sim_msg *m;

	br->coord.active = true;
	br->coord.cas = cas;
	br->coord.op = op;
	br->coord.deadline = s->now + s->cfg.coord_timeout_ms;
	m = msg_new(s, MSG_COORD_REQ, br->id, SIM_COORD);
	if (!m)
		return;
	m->op = op;
	m->cas = cas;
	if (want)
		m->st = *want;
	m->version = version;
}

static void io_coord_cas(void *ctx, uint64_t op, const struct repl_pstate *want,
			 uint32_t version)
{
	coord_send(ctx, op, true, want, version);
}

static void io_coord_read(void *ctx, uint64_t op)
{
	coord_send(ctx, op, false, NULL, 0);
}

static void io_log_state(void *ctx, struct repl_log_state *st)
{
	const struct sim_log *l = &((struct sim_broker *)ctx)->log;

	*st = (struct repl_log_state){
		.start = l->start,
		.leo = l->leo,
		.durable = l->durable,
		.latest_epoch = latest_epoch(l),
	};
}

struct sim_records {
	uint32_t count;
	const uint64_t *ids;
};

static int io_log_append(void *ctx, uint32_t epoch, const void *records,
			 uint64_t *end)
{
	struct sim_broker *br = ctx;
	const struct sim_records *rec = records;
	struct sim_batch b = { .base = br->log.leo, .count = rec->count,
			       .epoch = epoch };
	int rc;

	memcpy(b.ids, rec->ids, 8 * (size_t)rec->count);
	rc = log_push(&br->log, &b);
	if (rc == -EINVAL)
		fail(br->sim, "broker %u: leader append refused", br->id);
	*end = br->log.leo;
	return rc;
}

static int io_log_append_run(void *ctx, const struct repl_run *run)
{
	struct sim_broker *br = ctx;
	const uint8_t *p = run->bytes;
	size_t left = run->len;
	uint64_t leo = br->log.leo;
	struct sim_batch b;
	uint32_t n = 0;

	/* Check the whole run first: all or nothing, like the engine. */
	while (left) {
		if (decode_batch(p, left, &b) < 0)
			return -EBADMSG;
		if (b.base != leo)
			return -EINVAL;
		leo = batch_end(&b);
		p += batch_size(&b);
		left -= batch_size(&b);
		n++;
	}
	if (n != run->batches || leo != run->end_offset)
		return -EBADMSG;
	for (p = run->bytes, left = run->len; left;) {
		int rc;

		decode_batch(p, left, &b);
		rc = log_push(&br->log, &b);
		if (rc < 0)
			return rc;
		p += batch_size(&b);
		left -= batch_size(&b);
	}
	return 0;
}

static int io_log_read_run(void *ctx, uint64_t offset, uint32_t max_bytes,
			   struct repl_run *run)
{
	struct sim_log *l = &((struct sim_broker *)ctx)->log;
	int i = batch_at(l, offset);
	size_t len = 0;

	*run = (struct repl_run){ .base_offset = offset, .end_offset = offset };
	if (offset < l->start || offset > l->leo)
		return -ERANGE;
	if (i < 0)
		return 0;
	run->base_offset = l->batches[i].base;
	run->first_epoch = l->batches[i].epoch;
	for (; (uint32_t)i < l->nbatches; i++) {
		const struct sim_batch *b = &l->batches[i];

		if (run->batches && len + batch_size(b) > max_bytes)
			break;
		if (len + batch_size(b) > sizeof(l->run))
			break;
		len += encode_batch(b, l->run + len);
		run->batches++;
		run->end_offset = batch_end(b);
		run->last_epoch = b->epoch;
	}
	run->bytes = l->run;
	run->len = len;
	return 0;
}

/* LeaderEpochFileCache.endOffsetFor, as log.h's table states it. */
static void io_log_epoch_end(void *ctx, uint32_t epoch, uint32_t *found,
			     uint64_t *end)
{
	const struct sim_log *l = &((struct sim_broker *)ctx)->log;
	uint32_t n = l->nepochs;

	*found = REPL_EPOCH_UNDEFINED;
	*end = REPL_OFFSET_UNDEFINED;
	if (epoch == REPL_EPOCH_UNDEFINED || n == 0)
		return;
	if (epoch == l->epochs[n - 1].epoch) {
		*found = epoch;
		*end = l->leo;
		return;
	}
	if (epoch > l->epochs[n - 1].epoch)
		return;
	if (epoch < l->epochs[0].epoch) {
		*found = epoch;
		*end = l->epochs[0].start;
		return;
	}
	for (uint32_t i = n - 1; i-- > 0;) {
		if (l->epochs[i].epoch <= epoch) {
			*found = l->epochs[i].epoch;
			*end = l->epochs[i + 1].start;
			return;
		}
	}
}

static int io_log_begin_epoch(void *ctx, uint32_t epoch)
{
	struct sim_log *l = &((struct sim_broker *)ctx)->log;
	struct sim_epoch_entry *last =
		l->nepochs ? &l->epochs[l->nepochs - 1] : NULL;

	if (last && epoch == last->epoch)
		return 0;
	if (last && epoch < last->epoch)
		return -EINVAL;
	if (last && last->start == l->leo) {
		*last = (struct sim_epoch_entry){ epoch, l->leo, true };
		return 0;
	}
	note_epoch(l, epoch, l->leo);
	l->epochs[l->nepochs - 1].durable = true;
	return 0;
}

static int io_log_truncate(void *ctx, uint64_t offset)
{
	struct sim_broker *br = ctx;
	struct sim *s = br->sim;

	if (offset < br->checked && !s->lossy)
		fail(s, "broker %u truncates to %" PRIu64 " below its "
		     "checked high watermark %" PRIu64, br->id, offset,
		     br->checked);
	if (offset < br->log.leo)
		trace(s, "broker %u truncates %" PRIu64 " -> %" PRIu64, br->id,
		      br->log.leo, offset);
	log_cut(&br->log, offset);
	if (br->checked > br->log.leo)
		br->checked = br->log.leo;
	return 0;
}

static int io_log_truncate_fully(void *ctx, uint64_t offset)
{
	struct sim_log *l = &((struct sim_broker *)ctx)->log;

	l->nbatches = 0;
	l->nepochs = 0;
	l->start = l->leo = l->durable = l->hw = offset;
	((struct sim_broker *)ctx)->checked = offset;
	return 0;
}

static void io_log_sync_to(void *ctx, uint64_t offset)
{
	struct sim_broker *br = ctx;

	if (br->sync.active) {
		if (offset > br->sync.offset)
			br->sync.offset = offset;
		return;
	}
	br->sync.active = true;
	br->sync.offset = offset;
	br->sync.due = br->sim->now + br->disk_ms;
}

static void io_log_set_hw(void *ctx, uint64_t hw)
{
	struct sim_broker *br = ctx;

	if (br->sim->trace)
		trace(br->sim, "broker %u: hw %" PRIu64 " (leo %" PRIu64
		      ", isr %u)", br->id, hw, br->log.leo, br->r.st.nisr);
	/* Only a truncation (which lowers it itself) takes it back: a
	 * reader of this replica never sees the readable end recede. */
	if (hw < br->log.hw)
		fail(br->sim, "broker %u: high watermark went back from %"
		     PRIu64 " to %" PRIu64, br->id, br->log.hw, hw);
	br->log.hw = hw;
	if (br->checked > hw)
		br->checked = hw;
	check_below_hw(br);
}

static const struct repl_io sim_io = {
	.now_ms = io_now,
	.send = io_send,
	.coord_cas = io_coord_cas,
	.coord_read = io_coord_read,
	.log_state = io_log_state,
	.log_append = io_log_append,
	.log_append_run = io_log_append_run,
	.log_read_run = io_log_read_run,
	.log_epoch_end = io_log_epoch_end,
	.log_begin_epoch = io_log_begin_epoch,
	.log_truncate = io_log_truncate,
	.log_truncate_fully = io_log_truncate_fully,
	.log_sync_to = io_log_sync_to,
	.log_set_hw = io_log_set_hw,
};

/* ---- Checks --------------------------------------------------------------- */

/* Everything below a replica's HW is what was committed at that offset. */
static void check_below_hw(struct sim_broker *br)
{
	struct sim *s = br->sim;
	uint64_t hw = br->log.hw;

	if (hw > br->log.leo)
		fail(s, "broker %u: high watermark %" PRIu64 " above its log "
		     "end %" PRIu64, br->id, hw, br->log.leo);
	for (uint64_t o = br->checked; o < hw && o < SIM_OFFSETS_MAX; o++) {
		uint64_t id = record_at(&br->log, o);

		if (s->lossy) {
			s->truth[o] = id;
		} else if (s->truth[o] == 0) {
			s->truth[o] = id;
		} else if (s->truth[o] != id) {
			fail(s, "broker %u holds record %" PRIu64 " at offset "
			     "%" PRIu64 " below its high watermark %" PRIu64
			     "; committed there was %" PRIu64, br->id, id, o,
			     hw, s->truth[o]);
			return;
		}
	}
	if (hw > br->checked)
		br->checked = hw;
	if (br->checked > s->truth_end)
		s->truth_end = br->checked;
	if (br->lost_committed && br->checked >= committed_end(s))
		br->lost_committed = false; /* has it all again */
}

/* At most one leader per epoch, the controller's; a leader's HW never
 * moves back within its epoch. */
static void check_leaders(struct sim *s)
{
	for (uint32_t i = 0; i < s->cfg.nbrokers; i++) {
		struct sim_broker *br = &s->b[i];
		uint32_t e = repl_replica_epoch(&br->r);

		if (!br->alive || repl_replica_role(&br->r) != REPL_ROLE_LEADER)
			continue;
		if (e < SIM_EPOCH_HISTORY_MAX && s->epoch_leader[e] != i)
			fail(s, "broker %u leads epoch %u, which the "
			     "controller gave to %d", i, e,
			     (int)s->epoch_leader[e]);
		if (br->lead_epoch == e && br->r.hw < br->lead_hw)
			fail(s, "broker %u: high watermark went back from "
			     "%" PRIu64 " to %" PRIu64 " in epoch %u", i,
			     br->lead_hw, br->r.hw, e);
		br->lead_epoch = e;
		br->lead_hw = br->r.hw;
		for (uint32_t j = i + 1; j < s->cfg.nbrokers; j++) {
			const struct sim_broker *o = &s->b[j];

			if (o->alive &&
			    repl_replica_role(&o->r) == REPL_ROLE_LEADER &&
			    repl_replica_epoch(&o->r) == e)
				fail(s, "brokers %u and %u both lead epoch %u",
				     i, j, e);
		}
	}
}

/* ---- Clients -------------------------------------------------------------- */

static void produce_done(struct repl_produce *p, int rc)
{
	struct sim_produce *sp =
		(struct sim_produce *)((char *)p -
				       offsetof(struct sim_produce, p));
	struct sim_broker *br = (struct sim_broker *)p->r->io.ctx;
	struct sim *s = br->sim;

	sp->used = false;
	if (rc != 0) {
		s->stats.unknown++;
		trace(s, "acks=all [%" PRIu64 ", %" PRIu64 ") on %u: %d",
		      p->base_offset, p->end_offset, sp->broker, rc);
		return;
	}
	s->stats.acked++;
	trace(s, "acks=all [%" PRIu64 ", %" PRIu64 ") acknowledged by %u",
	      p->base_offset, p->end_offset, sp->broker);
	for (uint32_t k = 0; k < sp->count; k++) {
		uint64_t o = p->base_offset + k;

		if (o >= SIM_OFFSETS_MAX)
			break;
		if (record_at(&br->log, o) != sp->ids[k])
			fail(s, "acknowledged record %" PRIu64 " is not at "
			     "offset %" PRIu64 " of its leader %u", sp->ids[k],
			     o, sp->broker);
		if (!s->lossy && s->truth[o] && s->truth[o] != sp->ids[k])
			fail(s, "acknowledged record %" PRIu64 " at offset "
			     "%" PRIu64 ", where %" PRIu64 " was committed",
			     sp->ids[k], o, s->truth[o]);
		if (!s->lossy)
			s->truth[o] = sp->ids[k];
		if (o + 1 > s->truth_end)
			s->truth_end = o + 1;
		s->acked_off[o] = s->lossy ? 0 : sp->ids[k];
	}
}

int sim_append(struct sim *s, uint32_t broker, int acks, uint32_t count)
{
	struct sim_broker *br = &s->b[broker];
	struct sim_produce *sp = NULL;
	uint64_t ids[SIM_BATCH_RECORDS_MAX];
	struct sim_records rec = { count, ids };
	int rc;

	if (!br->alive || br->paused)
		return -ENOTCONN;
	if (acks == -1) {
		for (uint32_t i = 0; i < SIM_PRODUCES_MAX && !sp; i++)
			sp = s->produce[i].used ? NULL : &s->produce[i];
		if (!sp)
			return -EBUSY;
	}
	for (uint32_t k = 0; k < count; k++)
		ids[k] = ++s->next_id;
	if (sp) {
		*sp = (struct sim_produce){ .used = true, .broker = broker,
					    .gen = br->gen, .count = count };
		memcpy(sp->ids, ids, sizeof(ids));
		sp->p.done = produce_done;
	}
	rc = repl_replica_append(&br->r, &rec, acks, sp ? &sp->p : NULL);
	if (rc < 0) {
		if (sp)
			sp->used = false;
		if (acks == -1 && rc == -EAGAIN) {
			for (uint32_t k = 0; k < count &&
			     s->nrefused < SIM_REFUSED_MAX; k++)
				s->refused[s->nrefused++] = ids[k];
			s->stats.refused++;
		}
		return rc;
	}
	if (acks == -1 && br->r.st.nisr < s->cfg.min_insync)
		fail(s, "broker %u took an acks=all append with %u in the "
		     "ISR, fewer than min.insync.replicas %u", broker,
		     br->r.st.nisr, s->cfg.min_insync);
	s->stats.appends[acks < 0 ? 2 : acks]++;
	return 0;
}

/* ---- Faults ---------------------------------------------------------------- */

static void broker_start(struct sim *s, uint32_t b)
{
	struct sim_broker *br = &s->b[b];
	struct repl_config cfg = {
		.broker_id = b,
		.partition = 0,
		.assignment = s->cfg.assignment,
		.min_insync = s->cfg.min_insync,
		.write_caching = s->cfg.write_caching,
		.lag_time_max_ms = s->cfg.lag_time_max_ms,
		.fetch_max_bytes = s->cfg.fetch_max_bytes,
		.fetch_backoff_ms = 5,
		.fetch_timeout_ms = 50,
		.request_timeout_ms = s->cfg.request_timeout_ms,
		.coord_retry_ms = 20,
	};
	struct repl_io io = sim_io;

	io.ctx = br;
	br->alive = true;
	br->paused = false;
	br->stopping = false;
	br->gen++;
	br->sync.active = false;
	br->coord.active = false;
	br->disk_ms = s->cfg.disk_ms;
	br->lead_epoch = 0;
	repl_replica_init(&br->r, &cfg, &io, br->log.hw);
}

void sim_kill(struct sim *s, uint32_t b, bool power_loss)
{
	struct sim_broker *br = &s->b[b];

	if (!br->alive)
		return;
	br->alive = false;
	br->paused = false;
	s->stats.kills++;
	repl_replica_release(&br->r);
	if (power_loss) {
		uint64_t leo = br->log.leo;

		s->stats.power_losses++;
		log_power_loss(&br->log);
		/* write.caching=true promises nothing across a power loss:
		 * records this broker held only in memory are gone, though
		 * its fetches (some maybe still on the wire) told the leader
		 * it had them, and they may commit on that word. They are
		 * lost for good if it leads before it has them again (see
		 * ctrl_write). */
		if (s->cfg.write_caching && br->log.leo < leo)
			br->lost_committed = true;
		if (br->checked > br->log.leo)
			br->checked = br->log.leo;
	}
	trace(s, "broker %u killed%s: log end %" PRIu64, b,
	      power_loss ? " with power loss" : "", br->log.leo);
}

bool sim_restart(struct sim *s, uint32_t b)
{
	if (s->b[b].alive || s->session[b])
		return false; /* its old session must end first */
	broker_start(s, b);
	trace(s, "broker %u restarts: log end %" PRIu64 ", hw %" PRIu64, b,
	      s->b[b].log.leo, s->b[b].log.hw);
	return true;
}

void sim_pause(struct sim *s, uint32_t b, bool paused)
{
	if (s->b[b].alive && s->b[b].paused != paused) {
		s->b[b].paused = paused;
		trace(s, "broker %u %s", b, paused ? "paused" : "resumed");
	}
}

void sim_cut(struct sim *s, uint32_t a, uint32_t b, bool cut)
{
	if (s->cut[a][b] != cut)
		trace(s, "link %u-%u %s", a, b, cut ? "cut" : "healed");
	s->cut[a][b] = s->cut[b][a] = cut;
}

void sim_shutdown(struct sim *s, uint32_t b)
{
	struct sim_broker *br = &s->b[b];
	struct repl_pstate next;
	enum repl_elect_result how;

	if (!br->alive || br->stopping || !s->session[b])
		return;
	how = repl_elect_shutdown(&s->cfg.assignment, &s->st, session_alive, s,
				  b, &next);
	if (how != REPL_ELECT_UNCHANGED)
		ctrl_write(s, &next, how, "controlled shutdown");
	br->stopping = true;
	br->stop_at = s->now + 30;
}

void sim_flush(struct sim *s, uint32_t b)
{
	struct sim_broker *br = &s->b[b];

	if (br->alive && br->log.durable < br->log.leo)
		io_log_sync_to(br, br->log.leo);
}

/* ---- The step -------------------------------------------------------------- */

static void deliver_coord_resp(struct sim_broker *br, const struct sim_msg *m)
{
	if (!br->coord.active || br->coord.op != m->op ||
	    br->coord.cas != m->cas)
		return;
	br->coord.active = false;
	if (m->cas)
		repl_replica_cas_done(&br->r, m->op, m->rc, m->version);
	else
		repl_replica_coord_read_done(&br->r, m->op, 0, &m->st,
					     m->version);
}

static void deliver(struct sim *s, struct sim_msg *m)
{
	struct sim_broker *br = m->to < s->cfg.nbrokers ? &s->b[m->to] : NULL;

	switch (m->kind) {
	case MSG_COORD_REQ:
		coord_apply(s, m);
		break;
	case MSG_COORD_RESP:
		deliver_coord_resp(br, m);
		break;
	case MSG_CTRL:
		if (!s->session[m->to] || m->st.leader_epoch > s->st.leader_epoch)
			break;
		if (m->st.leader_epoch > s->told_epoch[m->to])
			s->told_epoch[m->to] = m->st.leader_epoch;
		trace(s, "broker %u told: epoch %u leader %d (it was in %u)",
		      m->to, m->st.leader_epoch, (int)m->st.leader,
		      repl_replica_epoch(&br->r));
		repl_replica_apply(&br->r, &m->st, m->version);
		break;
	case MSG_REPL:
		repl_replica_receive(&br->r, &m->m);
		break;
	}
}

static void network(struct sim *s)
{
	/* In due order; ties by sending order (deterministic). */
	for (;;) {
		struct sim_msg *next = NULL;

		for (uint32_t i = 0; i < SIM_MSGS_MAX; i++) {
			struct sim_msg *m = &s->msgs[i];

			if (!m->used || m->due > s->now)
				continue;
			if (m->to < s->cfg.nbrokers && s->b[m->to].alive &&
			    s->b[m->to].paused)
				continue; /* waits in its socket buffer */
			if (!next || m->seq < next->seq)
				next = m;
		}
		if (!next)
			return;
		next->used = false; /* its slot may be reused by replies */
		if (!link_ok(s, next->from, next->to))
			continue;
		if (next->to < s->cfg.nbrokers && !s->b[next->to].alive)
			continue;
		s->inbox = *next;
		if (s->inbox.kind == MSG_REPL &&
		    s->inbox.m.type == REPL_MSG_FETCH_RESPONSE)
			s->inbox.m.u.resp.records.bytes = s->inbox.bytes;
		deliver(s, &s->inbox);
	}
}

static void disks_and_timeouts(struct sim *s)
{
	for (uint32_t b = 0; b < s->cfg.nbrokers; b++) {
		struct sim_broker *br = &s->b[b];

		if (!br->alive || br->paused)
			continue;
		if (br->sync.active && s->now >= br->sync.due) {
			/* The fdatasync runs now and takes all written so far
			 * (a sync asked for before a truncation must not leave
			 * the durable offset inside a batch written after). */
			br->sync.active = false;
			br->log.durable = br->log.leo;
			repl_replica_synced(&br->r);
		}
		if (br->coord.active && s->now >= br->coord.deadline) {
			bool cas = br->coord.cas;

			br->coord.active = false;
			if (cas)
				repl_replica_cas_done(&br->r, br->coord.op,
						      -ETIMEDOUT, 0);
			else
				repl_replica_coord_read_done(&br->r,
							     br->coord.op,
							     -ETIMEDOUT, NULL,
							     0);
		}
		if (br->stopping && s->now >= br->stop_at)
			sim_kill(s, b, false);
	}
}

void sim_step(struct sim *s)
{
	s->now++;
	network(s);
	disks_and_timeouts(s);
	sessions(s);
	for (uint32_t b = 0; b < s->cfg.nbrokers; b++) {
		if (s->b[b].alive && !s->b[b].paused)
			repl_replica_tick(&s->b[b].r);
	}
	check_leaders(s);
}

void sim_run(struct sim *s, uint64_t ms)
{
	for (uint64_t i = 0; i < ms && !s->failed; i++)
		sim_step(s);
}

/* ---- Start, heal, final checks ------------------------------------------- */

void sim_init(struct sim *s, const struct sim_config *cfg, uint64_t seed)
{
	bool trace_on = s->trace;

	memset(s, 0, sizeof(*s));
	assert(cfg->assignment.n == cfg->nbrokers); /* one partition on all */
	s->trace = trace_on;
	s->cfg = *cfg;
	s->rng = seed;
	s->now = 1000;
	s->st = (struct repl_pstate){ .leader = cfg->assignment.replicas[0],
				      .leader_epoch = 1,
				      .controller_epoch = 1 };
	for (uint32_t i = 0; i < cfg->assignment.n; i++)
		s->st.isr[s->st.nisr++] = cfg->assignment.replicas[i];
	s->version = 1;
	s->epoch_leader[1] = s->st.leader;
	for (uint32_t b = 0; b < cfg->nbrokers; b++) {
		s->b[b].sim = s;
		s->b[b].id = b;
		s->session[b] = true;
		s->heartbeat[b] = s->now;
		broker_start(s, b);
	}
	/* Everyone hears the first decision at once. */
	for (uint32_t b = 0; b < cfg->nbrokers; b++) {
		repl_replica_apply(&s->b[b].r, &s->st, s->version);
		s->told_epoch[b] = 1;
	}
}

void sim_heal(struct sim *s, uint64_t ms)
{
	s->healing = true;
	for (uint32_t a = 0; a < SIM_NODES; a++) {
		for (uint32_t b = 0; b < SIM_NODES; b++)
			s->cut[a][b] = false;
	}
	s->cfg.drop_per_mille = 0;
	for (uint64_t t = 0; t < ms && !s->failed; t++) {
		for (uint32_t b = 0; b < s->cfg.nbrokers; b++) {
			struct sim_broker *br = &s->b[b];

			br->paused = false;
			br->disk_ms = s->cfg.disk_ms;
			if (!br->alive)
				sim_restart(s, b);
			if (s->cfg.write_caching && t % 50 == 0)
				sim_flush(s, b);
		}
		sim_step(s);
	}
}

static bool same_log(const struct sim_log *a, const struct sim_log *b)
{
	if (a->leo != b->leo || a->start != b->start ||
	    a->nbatches != b->nbatches)
		return false;
	for (uint32_t i = 0; i < a->nbatches; i++) {
		const struct sim_batch *x = &a->batches[i], *y = &b->batches[i];

		if (x->base != y->base || x->count != y->count ||
		    x->epoch != y->epoch ||
		    memcmp(x->ids, y->ids, 8 * (size_t)x->count))
			return false;
	}
	return true;
}

static bool holds(const struct sim_log *l, uint64_t id)
{
	for (uint32_t i = 0; i < l->nbatches; i++) {
		for (uint32_t k = 0; k < l->batches[i].count; k++) {
			if (l->batches[i].ids[k] == id)
				return true;
		}
	}
	return false;
}

static void check_unique(struct sim *s, const struct sim_broker *br)
{
	const struct sim_log *l = &br->log;
	uint64_t prev = 0;

	/* Ids grow with appends, and a leader's log is in append order;
	 * a follower's copies it: so ids in a log only grow. */
	for (uint32_t i = 0; i < l->nbatches; i++) {
		for (uint32_t k = 0; k < l->batches[i].count; k++) {
			if (l->batches[i].ids[k] <= prev)
				fail(s, "broker %u: record %" PRIu64 " after %"
				     PRIu64 " (duplicated or reordered)", br->id,
				     l->batches[i].ids[k], prev);
			prev = l->batches[i].ids[k];
		}
		if (i && l->batches[i].base != batch_end(&l->batches[i - 1]))
			fail(s, "broker %u: offsets not dense at %" PRIu64,
			     br->id, l->batches[i].base);
	}
}

void sim_check_final(struct sim *s)
{
	const struct sim_broker *lead;
	uint32_t leader = s->st.leader;

	if (s->failed)
		return;
	if (leader == REPL_BROKER_NONE) {
		fail(s, "no leader after healing");
		return;
	}
	lead = &s->b[leader];
	if (repl_replica_role(&lead->r) != REPL_ROLE_LEADER)
		fail(s, "broker %u was not told it leads", leader);
	if (s->st.nisr != s->cfg.assignment.n)
		fail(s, "ISR of %u of %u replicas after healing", s->st.nisr,
		     s->cfg.assignment.n);
	for (uint32_t b = 0; b < s->cfg.nbrokers && s->failed; b++) {
		const struct sim_broker *br = &s->b[b];

		trace(s, "broker %u: role %d epoch %u leader %d log end %"
		      PRIu64 " hw %" PRIu64 " durable %" PRIu64
		      " latest epoch %u", b, (int)repl_replica_role(&br->r),
		      repl_replica_epoch(&br->r), (int)repl_replica_leader(&br->r),
		      br->log.leo, br->log.hw, br->log.durable,
		      latest_epoch(&br->log));
	}
	for (uint32_t i = 0; i < s->cfg.assignment.n; i++) {
		const struct sim_broker *br =
			&s->b[s->cfg.assignment.replicas[i]];

		check_unique(s, br);
		if (!same_log(&br->log, &lead->log))
			fail(s, "broker %u's log differs from leader %u's "
			     "(log ends %" PRIu64 " and %" PRIu64 ")", br->id,
			     leader, br->log.leo, lead->log.leo);
		if (br->log.hw != lead->log.leo)
			fail(s, "broker %u: high watermark %" PRIu64 ", log "
			     "end %" PRIu64, br->id, br->log.hw, lead->log.leo);
	}
	for (uint32_t k = 0; k < s->nrefused; k++) {
		if (holds(&lead->log, s->refused[k]))
			fail(s, "refused record %" PRIu64 " was appended",
			     s->refused[k]);
	}
	if (s->lossy)
		return;
	for (uint64_t o = 0; o < SIM_OFFSETS_MAX; o++) {
		uint64_t id = record_at(&lead->log, o);

		if (s->acked_off[o] && s->acked_off[o] != id)
			fail(s, "acknowledged record %" PRIu64 " at offset %"
			     PRIu64 " is lost (%" PRIu64 " there)",
			     s->acked_off[o], o, id);
		if (s->truth[o] && s->truth[o] != id)
			fail(s, "committed record %" PRIu64 " at offset %"
			     PRIu64 " is lost (%" PRIu64 " there)", s->truth[o],
			     o, id);
	}
}
