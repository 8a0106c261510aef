/* Writes: records framed per open file, .produce's partitioner. */
#include "adapter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "msg.h"
#include "partitioner.h"

/* ---- answering from completions -------------------------------------- */

/*
 * A write, flush or fsync answered once its records are committed as the
 * topic's acks and write.caching ask (docs/DESIGN.md, "The path of a
 * write"): the FUSE thread appends and returns; the reply is sent by
 * whichever thread completes the last wait (this one when nothing has to
 * be waited for, a sync thread when the disk must have the records).
 */
struct op_wait {
	struct part_wait pw;
	struct write_op *op;
};

struct write_op {
	fuse_req_t req;
	size_t size;             /* a write's reply; flush and fsync: 0 */
	bool is_write;
	bool logged;             /* the error has had its log line */
	struct topic *t;         /* referenced: for the log line */
	uint32_t part;           /* a partition file's; UINT32_MAX: .produce */
	_Atomic unsigned pending; /* waits not done, + 1 while submitting */
	_Atomic int rc;          /* the first error */
	_Atomic unsigned ok, failed; /* partitions whose part is done, or not */
	struct op_wait *waits;   /* cap of them */
	unsigned nwaits, cap;
	struct op_wait one;      /* waits when cap is 1 */
};

static struct write_op *op_new(fuse_req_t req, struct writer *w,
			       size_t size, bool is_write)
{
	struct write_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->req = req;
	op->size = size;
	op->is_write = is_write;
	topic_get(w->t);
	op->t = w->t;
	op->part = w->p ? part_index(w->p) : UINT32_MAX;
	op->pending = 1;
	op->waits = &op->one;
	op->cap = 1;
	return op;
}

/* Room for n more waits (.produce: one per partition written). */
static int op_reserve(struct write_op *op, unsigned n)
{
	struct op_wait *v;

	if (op->nwaits + n <= op->cap)
		return 0;
	if (op->nwaits > 0)
		return -EINVAL; /* reserved once, before anything waits */
	v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	op->waits = v;
	op->cap = n;
	return 0;
}

static void op_fail(struct write_op *op, int rc)
{
	int none = 0;

	atomic_compare_exchange_strong(&op->rc, &none, rc);
	atomic_fetch_add(&op->failed, 1);
}

/* The reply, and one log line if it is an error. */
static void op_finish(struct write_op *op)
{
	int rc = atomic_load(&op->rc);
	struct node n = { .kind = op->part == UINT32_MAX ? K_PRODUCE : K_PART,
			  .t = op->t, .part = op->part };
	char where[300];

	if (rc < 0 && op->logged) {
		/* said already */
	} else if (rc < 0 && atomic_load(&op->ok) > 0) {
		/* .produce: some partitions have their records, some not. */
		msg(LOG_WARNING, "%s: %s of %zu bytes partly stored: %u "
		    "partition(s) have their records, %u failed: %s",
		    node_where(&n, where, sizeof(where)),
		    op->is_write ? "write" : "flush", op->size,
		    atomic_load(&op->ok), atomic_load(&op->failed),
		    strerror(-rc));
		rc = -ENOTRECOVERABLE;
	} else if (rc < 0) {
		msg(LOG_WARNING, "%s: %s of %zu bytes refused: %s",
		    node_where(&n, where, sizeof(where)),
		    op->is_write ? "write" : "flush", op->size,
		    rc == -EMSGSIZE ? "a record exceeds max.message.bytes" :
		    rc == -ENOENT ? "the topic was deleted" : strerror(-rc));
	}
	if (rc < 0)
		fuse_reply_err(op->req, -rc);
	else if (op->is_write)
		fuse_reply_write(op->req, op->size);
	else
		fuse_reply_err(op->req, 0);
	topic_put(op->t);
	if (op->waits != &op->one)
		free(op->waits);
	free(op);
}

static void op_put(struct write_op *op)
{
	if (atomic_fetch_sub(&op->pending, 1) == 1)
		op_finish(op);
}

static void op_wait_done(struct part_wait *pw, int rc)
{
	struct op_wait *ow = (struct op_wait *)(void *)pw;

	if (rc < 0)
		op_fail(ow->op, rc);
	else
		atomic_fetch_add(&ow->op->ok, 1);
	op_put(ow->op);
}

/* op also waits for p's records below end (room reserved). */
static void op_wait(struct write_op *op, struct part *p, uint64_t end,
		    bool durable)
{
	struct op_wait *ow = &op->waits[op->nwaits++];

	ow->op = op;
	ow->pw.done = op_wait_done;
	atomic_fetch_add(&op->pending, 1);
	part_wait_commit(p, end, durable, &ow->pw);
}

/* Submitting is over (rc: how appending went): reply if nothing waits. */
static void op_submitted(struct write_op *op, int rc)
{
	if (rc < 0)
		op_fail(op, rc);
	op_put(op);
}

/*
 * Records of w ending at end were appended to partition p (index i):
 * remember it for fsync, and make w's request wait for their commit if
 * it must.
 */
static void writer_stored(struct writer *w, struct part *p, uint32_t i,
			  uint64_t end)
{
	struct write_op *op = w->op;

	if (w->p)
		i = 0;
	if (i < w->nends && end > w->ends[i])
		w->ends[i] = end;
	if (!op)
		return;
	if (!w->acks_all && !w->durable) { /* acks=1: appended is enough */
		atomic_fetch_add(&op->ok, 1);
		return;
	}
	op_wait(op, p, end, w->durable);
}

/* ---- writing ------------------------------------------------------------ */

const char *writer_where(const struct writer *w, char *buf, size_t size)
{
	struct node n = { .kind = w->p ? K_PART : K_PRODUCE, .t = w->t,
			  .part = w->p ? part_index(w->p) : 0 };

	return node_where(&n, buf, size);
}

/*
 * A record refused as too long (-EMSGSIZE): whether it goes on past the
 * bytes at hand (open), and for a binary frame how many of its bytes are
 * still to come (left).
 */
struct too_long {
	bool open;
	uint64_t left;
};

/*
 * Cut data (len bytes) into records by the topic's framing, adding their
 * lengths to w->lens; *used gets the bytes of whole records (the rest
 * is an incomplete record). -EMSGSIZE if a record (or the incomplete
 * rest) exceeds max.message.bytes, with *tl saying whether it ends here.
 */
static int writer_frame(struct writer *w, const struct topic_config *cfg,
		    const uint8_t *data, size_t len, size_t *used,
		    struct too_long *tl)
{
	size_t max = cfg->max_message_bytes, at = 0;
	int rc;

	rc = cfg->framing == FRAMING_LINES ?
	     frame_lines(&w->lens, max, data, len, &at) :
	     frame_binary(&w->lens, max, data, len, &at);
	if (rc == -EMSGSIZE && cfg->framing == FRAMING_BINARY) {
		/* frame_binary stopped at the bad frame's length field. */
		uint64_t rec = frame_size(data + at);
		tl->open = at + rec > len;
		tl->left = tl->open ? at + rec - len : 0;
	}
	if (rc < 0)
		return rc; /* a line too long ends at its newline, here */
	/* The incomplete rest: a line without its newline, or a frame. */
	if (len - at > (cfg->framing == FRAMING_LINES ? max : max + 4)) {
		tl->open = true;
		tl->left = 0;
		return -EMSGSIZE;
	}
	*used = at;
	return 0;
}

/* The key of a record: the bytes before the first separator, if any. */
static bool record_key(const struct topic_config *cfg, const uint8_t *rec,
		       uint32_t len, const uint8_t **key, size_t *klen)
{
	size_t slen = strlen(cfg->key_separator);
	const uint8_t *body = rec;
	size_t blen = len;

	if (slen == 0)
		return false;
	if (cfg->framing == FRAMING_BINARY) {
		body += 4;
		blen -= 4;
	} else if (blen > 0 && body[blen - 1] == '\n') {
		blen--;
	}
	for (size_t i = 0; i + slen <= blen; i++) {
		if (memcmp(body + i, cfg->key_separator, slen) == 0) {
			*key = body;
			*klen = i;
			return true;
		}
	}
	return false;
}

static void writer_note(struct writer *w, struct part *p, uint32_t part,
			const struct log_append_info *info)
{
	w->last.base_offset = info->base_offset;
	w->last.end_offset = info->end_offset;
	w->last.partition = part;
	w->last.records = (uint32_t)(info->end_offset - info->base_offset);
	writer_stored(w, p, part, info->end_offset);
}

/*
 * .produce: send each record to its partition (murmur2 of the key, or
 * one rotating partition for all unkeyed records of this write()),
 * keeping each partition's records in order. Each partition gets its
 * records as pieces of data, one per run of neighbours going to it. The
 * kernel cuts a write() larger than max_write into requests; op_write
 * keeps w->sticky across them.
 */
static int writer_route(struct writer *w, const struct topic_config *cfg,
		    const uint8_t *data)
{
	uint32_t n = w->lens.n;
	uint32_t nparts = topic_partitions(w->t);
	uint32_t *counts, *lens;
	struct iovec *runs;
	int rc = 0;

	if (grow(&w->route, &w->rcap, n, sizeof(*w->route)) < 0)
		return -ENOMEM;
	for (uint32_t i = 0, at = 0; i < n; at += w->lens.v[i], i++) {
		const uint8_t *key;
		size_t klen;
		if (record_key(cfg, data + at, w->lens.v[i], &key, &klen)) {
			w->route[i] = partition_for_key(key, klen, nparts);
		} else {
			if (w->sticky == UINT32_MAX)
				w->sticky = topic_next_sticky(w->t);
			w->route[i] = w->sticky;
		}
	}
	counts = calloc(nparts, sizeof(*counts));
	runs = malloc(n * sizeof(*runs));
	lens = malloc(n * sizeof(*lens));
	if (!counts || !runs || !lens)
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		counts[w->route[i]]++;
	if (rc == 0 && w->op) {
		unsigned touched = 0;
		for (uint32_t p = 0; p < nparts; p++)
			touched += counts[p] > 0;
		rc = op_reserve(w->op, touched);
	}
	/* One partition at a time, in partition order. */
	for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
		struct log_append_info info;
		uint32_t k = 0;
		int nruns = 0;

		if (counts[p] == 0)
			continue;
		for (uint32_t i = 0, at = 0; i < n; at += w->lens.v[i], i++) {
			if (w->route[i] != p)
				continue;
			if (nruns > 0 && (const uint8_t *)runs[nruns - 1].iov_base +
					 runs[nruns - 1].iov_len == data + at)
				runs[nruns - 1].iov_len += w->lens.v[i];
			else
				runs[nruns++] = (struct iovec){
					(void *)(data + at), w->lens.v[i] };
			lens[k++] = w->lens.v[i];
		}
		rc = part_produce(topic_part(w->t, p), runs, nruns, lens, k,
				  &info);
		if (rc == 0)
			writer_note(w, topic_part(w->t, p), p, &info);
	}
	free(lens);
	free(runs);
	free(counts);
	return rc;
}

/* Room in w->ends for every partition w may append to. */
static int writer_ends_reserve(struct writer *w)
{
	uint32_t n = w->p ? 1 : topic_partitions(w->t);
	uint64_t *v;

	if (n <= w->nends)
		return 0;
	v = realloc(w->ends, n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(v + w->nends, 0, (n - w->nends) * sizeof(*v));
	w->ends = v;
	w->nends = n;
	return 0;
}

/* Append the records of w->lens, whose bytes lie in the pieces iov. */
static int writer_put(struct writer *w, const struct topic_config *cfg,
			    const struct iovec *iov, int iovcnt)
{
	struct log_append_info info;
	const uint8_t *data = iov[0].iov_base;
	int rc = writer_ends_reserve(w);

	if (rc < 0)
		return rc;

	if (w->p) {
		rc = part_produce(w->p, iov, iovcnt, w->lens.v, w->lens.n,
				  &info);
		if (rc == 0)
			writer_note(w, w->p, part_index(w->p), &info);
		return rc;
	}
	if (iovcnt > 1) { /* keys are looked for in whole records */
		size_t len = 0;
		for (int i = 0; i < iovcnt; i++)
			len += iov[i].iov_len;
		if (grow(&w->scratch, &w->scap, len, 1) < 0)
			return -ENOMEM;
		for (int i = 0, at = 0; i < iovcnt; at += iov[i].iov_len, i++)
			memcpy(w->scratch + at, iov[i].iov_base, iov[i].iov_len);
		data = w->scratch;
	}
	return writer_route(w, cfg, data);
}

/*
 * How many bytes of buf (*take) complete the partial record that w holds
 * (w->plen > 0), and whether they do (*done; if not, all of buf is part
 * of it). -EMSGSIZE if it exceeds max.message.bytes (*tl as writer_frame's).
 */
static int writer_complete(const struct writer *w, const struct topic_config *cfg,
		       const uint8_t *buf, size_t size, size_t *take,
		       bool *done, struct too_long *tl)
{
	size_t max = cfg->max_message_bytes, rec;
	uint8_t h[4];
	size_t have = 0;

	if (cfg->framing == FRAMING_LINES) {
		const uint8_t *nl = memchr(buf, '\n', size);
		*done = nl != NULL;
		*take = nl ? (size_t)(nl - buf) + 1 : size;
		*tl = (struct too_long){ .open = !*done };
		return w->plen + *take > max ? -EMSGSIZE : 0;
	}
	/* Binary: the 4-byte length itself may be cut. */
	for (; have < 4 && have < w->plen; have++)
		h[have] = w->partial[have];
	for (size_t i = 0; have < 4 && i < size; i++)
		h[have++] = buf[i];
	if (have < 4) {
		*done = false;
		*take = size;
		return 0;
	}
	rec = frame_size(h);
	*done = w->plen + size >= rec;
	*take = *done ? rec - w->plen : size;
	*tl = (struct too_long){ .open = !*done,
				 .left = *done ? 0 : rec - w->plen - size };
	return rec - 4 > max ? -EMSGSIZE : 0;
}

/*
 * The request is refused as the rest of a record refused earlier: count
 * off its bytes, and stop refusing at the record's end (lines: the
 * newline). A request holding the end and more is refused whole. So is
 * one that begins a write() the kernel cut (first): the kernel then
 * fails the whole write() and never sends the rest of it, so the
 * writer's next write() starts a new record.
 */
static int writer_discard(struct writer *w, const struct topic_config *cfg,
		      const uint8_t *buf, size_t size, bool first)
{
	if (first) {
		w->discarding = false;
	} else if (cfg->framing == FRAMING_LINES) {
		if (memchr(buf, '\n', size))
			w->discarding = false;
	} else if (size >= w->discard_left) {
		w->discarding = false;
	} else {
		w->discard_left -= size;
	}
	return -EMSGSIZE;
}

/* Keep len bytes at data after the partial record. */
static int writer_keep(struct writer *w, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	if (grow(&w->partial, &w->pcap, w->plen + len, 1) < 0)
		return -ENOMEM;
	memcpy(w->partial + w->plen, data, len);
	w->plen += len;
	return 0;
}

/*
 * Append the whole records among the partial record and buf, and keep
 * the rest as the partial record. Nothing is copied on the way: the
 * record that completes the partial one is written from both places.
 * continues: this request carries on a write() whose earlier request
 * was accepted (the kernel cut it); piece: this one is nearly max_write,
 * so the write() may go on in another request.
 */
static int writer_append(struct writer *w, const struct topic_config *cfgp,
			 const uint8_t *buf, size_t size, bool continues,
			 bool piece)
{
	struct topic_config cfg = *cfgp;
	struct too_long tl = { 0 };
	struct iovec iov[2];
	size_t take = 0, used = 0;
	bool done;
	int rc = 0;

	if (w->discarding)
		return writer_discard(w, &cfg, buf, size, !continues && piece);
	w->lens.n = 0;
	if (w->plen > 0) {
		rc = writer_complete(w, &cfg, buf, size, &take, &done, &tl);
		if (rc == 0 && !done)
			return writer_keep(w, buf, size);
		if (rc == 0)
			rc = frame_add(&w->lens, w->plen + take, SIZE_MAX);
	}
	if (rc == 0)
		rc = writer_frame(w, &cfg, buf + take, size - take, &used, &tl);
	if (rc == 0 && w->lens.n > 0) {
		iov[0] = (struct iovec){ w->partial, w->plen };
		iov[1] = (struct iovec){ (void *)buf, take + used };
		rc = w->plen > 0 ? writer_put(w, &cfg, iov, 2)
				  : writer_put(w, &cfg, iov + 1, 1);
	}
	if (rc < 0) {
		/*
		 * Bad input: drop the record being built (the writer is told).
		 * A record too long that goes on past this request is refused
		 * to its end, as the writer sends the rest (after a short
		 * count, or in its next write()s); except when this request
		 * began a write() the kernel cut: the kernel fails that whole
		 * write() and never sends the rest of it.
		 * Anything else (ENOSPC): keep the partial record as it was
		 * before this write, which is refused whole.
		 */
		if (rc == -EMSGSIZE || rc == -EINVAL)
			w->plen = 0;
		if (rc == -EMSGSIZE && tl.open && (continues || !piece)) {
			w->discarding = true;
			/* After a later request of a write() is refused the
			 * kernel returns a short count and the writer sends
			 * this request's bytes again: count them as to come. */
			w->discard_left = tl.left + (continues ? size : 0);
		}
		return rc;
	}
	w->plen = 0; /* if it was not empty, it is a record now */
	return writer_keep(w, buf + take + used, size - take - used);
}

/* The partial record as a record of its own: a last line without its
 * newline; a binary frame cut short is malformed (-EINVAL) and dropped. */
static int writer_append_partial(struct writer *w,
				 const struct topic_config *cfg)
{
	struct iovec iov = { w->partial, w->plen };
	int rc;

	w->lens.n = 0;
	rc = cfg->framing == FRAMING_BINARY ? -EINVAL :
	     frame_add(&w->lens, w->plen, cfg->max_message_bytes);
	if (rc == 0)
		rc = writer_put(w, cfg, &iov, 1);
	if (rc == 0 || rc == -EMSGSIZE || rc == -EINVAL)
		w->plen = 0;
	return rc;
}

/* What the topic's settings ask of w's next request (fh locked). */
static void writer_ask(struct writer *w, const struct topic_config *cfg,
		       struct write_op *op)
{
	w->op = op;
	w->acks_all = cfg->acks == -1;
	w->durable = !cfg->write_caching || w->sync_writes;
}

/*
 * A request of a write(): framed, appended, answered when its records
 * are committed (writer_stored). With acks=0 the answer comes first: the
 * bytes are framed and about to be appended, and an error reaches only
 * the log. The handle's lock is held across the append, so one file's
 * requests are appended in the order they came even when answered
 * before (acks=0).
 */
void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
	      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct writer *w = fh_writer(fh);
	struct topic_config cfg;
	struct write_op *op = NULL;
	char where[300];
	int rc;

	(void)ino;
	(void)off; /* every write appends, whatever the file position */
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	topic_config(w->t, &cfg);
	if (cfg.acks != 0) {
		op = op_new(req, w, size, true);
		if (!op) {
			msg(LOG_WARNING, "%s: write of %zu bytes refused: %s",
			    writer_where(w, where, sizeof(where)), size,
			    strerror(ENOMEM));
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	pthread_mutex_lock(&fh->lock);
	w->owner = fi->lock_owner;
	if (!op)
		fuse_reply_write(req, size);
	writer_ask(w, &cfg, op);
	rc = topic_deleted(w->t) ? -ENOENT :
	     writer_append(w, &cfg, (const uint8_t *)buf, size,
			   w->last_piece, size >= WRITE_PIECE_MIN);
	w->op = NULL;
	w->last_piece = rc == 0 && size >= WRITE_PIECE_MIN;
	/* A shorter request ends its write(): the next one rotates. */
	if (size < WRITE_PIECE_MIN || rc < 0)
		w->sticky = UINT32_MAX;
	pthread_mutex_unlock(&fh->lock);
	if (op)
		op_submitted(op, rc);
	else if (rc < 0)
		msg(LOG_WARNING, "%s: acks=0 write of %zu bytes lost: %s",
		    writer_where(w, where, sizeof(where)), size,
		    rc == -EMSGSIZE ? "a record exceeds max.message.bytes" :
		    rc == -ENOENT ? "the topic was deleted" : strerror(-rc));
}

/*
 * The partial last record becomes a record (close, fsync, unmount), its
 * commit waited for by w->op if set. fh locked.
 */
static int writer_flush_locked(struct writer *w)
{
	struct topic_config cfg;

	if (w->discarding) {
		/* The last record was refused as too long and its end never
		 * came: close() and fsync() say so too. */
		w->discarding = false;
		return -EMSGSIZE;
	}
	if (w->plen == 0)
		return 0;
	topic_config(w->t, &cfg);
	return writer_append_partial(w, &cfg);
}

static void writer_flush_log(struct writer *w, int rc)
{
	char where[300];

	msg(LOG_WARNING, "%s: incomplete record at close dropped: %s",
	    writer_where(w, where, sizeof(where)),
	    rc == -EINVAL ? "binary frame cut short" :
	    rc == -EMSGSIZE ? "it exceeds max.message.bytes" :
	    strerror(-rc));
}

/* writer_flush without waiting for a commit (release, unmount). */
int writer_flush(struct fh *fh)
{
	struct writer *w = fh_writer(fh);
	int rc;

	pthread_mutex_lock(&fh->lock);
	rc = writer_flush_locked(w);
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0)
		writer_flush_log(w, rc);
	return rc;
}

/*
 * Answer a flush (close) or fsync of a writer from completions: the
 * partial record appended, then for fsync every partition this file
 * appended to synced up to what it appended (already durable: at once;
 * concurrent fsyncs share a sync).
 */
static void writer_settle(fuse_req_t req, struct fh *fh, bool sync)
{
	struct writer *w = fh_writer(fh);
	struct topic_config cfg;
	struct write_op *op = op_new(req, w, 0, false);
	int rc = 0;

	if (!op) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	topic_config(w->t, &cfg);
	pthread_mutex_lock(&fh->lock);
	writer_ask(w, &cfg, op);
	w->durable |= sync;
	rc = writer_ends_reserve(w);
	if (rc == 0 && sync)
		rc = op_reserve(op, w->p ? 2 : w->nends + 1);
	if (rc == 0)
		rc = writer_flush_locked(w);
	if (rc == -EMSGSIZE || rc == -EINVAL) {
		writer_flush_log(w, rc);
		op->logged = true;
	}
	for (uint32_t i = 0; rc == 0 && sync && i < w->nends; i++) {
		if (w->ends[i] > 0)
			op_wait(op, w->p ? w->p : topic_part(w->t, i),
				w->ends[i], true);
	}
	w->op = NULL;
	pthread_mutex_unlock(&fh->lock);
	op_submitted(op, rc);
}

void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct writer *w = fh_writer(fh);
	bool mine = false;

	(void)ino;
	if (w) {
		pthread_mutex_lock(&fh->lock);
		mine = w->owner == fi->lock_owner;
		pthread_mutex_unlock(&fh->lock);
	}
	if (mine)
		writer_settle(req, fh, false);
	else
		fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	      struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);

	(void)ino;
	(void)datasync;
	if (fh_writer(fh)) {
		writer_settle(req, fh, true);
		return;
	}
	/* A reader wrote nothing; a group member commits its offsets. */
	fuse_reply_err(req, fh_member(fh) ?
			    -member_commit(fh_member(fh)->member) : 0);
}

void writer_init(struct writer *w, struct topic *t, struct part *p,
		 int flags)
{
	w->t = t;
	w->p = p;
	w->sticky = UINT32_MAX;
	w->sync_writes = (flags & O_DSYNC) != 0;
}

/* Free what a writer holds. */
void writer_release(struct writer *w)
{
	free(w->partial);
	free(w->scratch);
	frame_lens_free(&w->lens);
	free(w->route);
	free(w->ends);
}
