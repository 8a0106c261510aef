/* Writes: records framed per open file, .produce's partitioner. */
#include "adapter.h"

#include <errno.h>
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

static void writer_note(struct writer *w, uint32_t part,
		    const struct log_append_info *info)
{
	w->last.base_offset = info->base_offset;
	w->last.end_offset = info->end_offset;
	w->last.partition = part;
	w->last.records = (uint32_t)(info->end_offset - info->base_offset);
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
			writer_note(w, p, &info);
	}
	free(lens);
	free(runs);
	free(counts);
	return rc;
}

/* Append the records of w->lens, whose bytes lie in the pieces iov. */
static int writer_put(struct writer *w, const struct topic_config *cfg,
			    const struct iovec *iov, int iovcnt)
{
	struct log_append_info info;
	const uint8_t *data = iov[0].iov_base;
	int rc;

	if (w->p) {
		rc = part_produce(w->p, iov, iovcnt, w->lens.v, w->lens.n,
				  &info);
		if (rc == 0)
			writer_note(w, part_index(w->p), &info);
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
static int writer_append(struct writer *w, const uint8_t *buf, size_t size,
		     bool continues, bool piece)
{
	struct topic_config cfg;
	struct too_long tl = { 0 };
	struct iovec iov[2];
	size_t take = 0, used = 0;
	bool done;
	int rc = 0;

	topic_config(w->t, &cfg);
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
static int writer_append_partial(struct writer *w)
{
	struct topic_config cfg;
	struct iovec iov = { w->partial, w->plen };
	int rc;

	topic_config(w->t, &cfg);
	w->lens.n = 0;
	rc = cfg.framing == FRAMING_BINARY ? -EINVAL :
	     frame_add(&w->lens, w->plen, cfg.max_message_bytes);
	if (rc == 0)
		rc = writer_put(w, &cfg, &iov, 1);
	if (rc == 0 || rc == -EMSGSIZE || rc == -EINVAL)
		w->plen = 0;
	return rc;
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
	      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct writer *w = fh_writer(fh);
	char where[300];
	int rc;

	(void)ino;
	(void)off; /* every write appends, whatever the file position */
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	w->owner = fi->lock_owner;
	rc = topic_deleted(w->t) ? -ENOENT :
	     writer_append(w, (const uint8_t *)buf, size, w->last_piece,
			   size >= WRITE_PIECE_MIN);
	w->last_piece = rc == 0 && size >= WRITE_PIECE_MIN;
	/* A shorter request ends its write(): the next one rotates. */
	if (size < WRITE_PIECE_MIN || rc < 0)
		w->sticky = UINT32_MAX;
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0) {
		msg(LOG_WARNING, "%s: write of %zu bytes refused: %s",
		    writer_where(w, where, sizeof(where)), size,
		    rc == -EMSGSIZE ? "a record exceeds max.message.bytes" :
		    rc == -ENOENT ? "the topic was deleted" : strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_reply_write(req, size);
}

/* The partial last record becomes a record (close, fsync, unmount). */
int writer_flush(struct fh *fh)
{
	struct writer *w = fh_writer(fh);
	char where[300];
	int rc = 0;

	pthread_mutex_lock(&fh->lock);
	if (w->discarding) {
		/* The last record was refused as too long and its end never
		 * came: close() and fsync() say so too. */
		w->discarding = false;
		rc = -EMSGSIZE;
	} else if (w->plen > 0) {
		rc = writer_append_partial(w);
	}
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0)
		msg(LOG_WARNING, "%s: incomplete record at close dropped: %s",
		    writer_where(w, where, sizeof(where)),
		    rc == -EINVAL ? "binary frame cut short" :
		    rc == -EMSGSIZE ? "it exceeds max.message.bytes" :
		    strerror(-rc));
	return rc;
}

/* Free what a writer holds. */
void writer_release(struct writer *w)
{
	free(w->partial);
	free(w->scratch);
	frame_lens_free(&w->lens);
	free(w->route);
}
