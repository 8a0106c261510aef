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

const char *fh_where(const struct fh *fh, char *buf, size_t size)
{
	struct node n = { .kind = fh->kind, .t = fh->t,
			  .part = fh->p ? part_index(fh->p) : 0 };

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
 * lengths to fh->lens; *used gets the bytes of whole records (the rest
 * is an incomplete record). -EMSGSIZE if a record (or the incomplete
 * rest) exceeds max.message.bytes, with *tl saying whether it ends here.
 */
static int fh_frame(struct fh *fh, const struct topic_config *cfg,
		    const uint8_t *data, size_t len, size_t *used,
		    struct too_long *tl)
{
	size_t max = cfg->max_message_bytes, at = 0;
	int rc;

	rc = cfg->framing == FRAMING_LINES ?
	     frame_lines(&fh->lens, max, data, len, &at) :
	     frame_binary(&fh->lens, max, data, len, &at);
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

static void fh_note(struct fh *fh, uint32_t part,
		    const struct log_append_info *info)
{
	fh->last.base_offset = info->base_offset;
	fh->last.end_offset = info->end_offset;
	fh->last.partition = part;
	fh->last.records = (uint32_t)(info->end_offset - info->base_offset);
}

/*
 * .produce: send each record to its partition (murmur2 of the key, or
 * one rotating partition for all unkeyed records of this write()),
 * keeping each partition's records in order. Each partition gets its
 * records as pieces of data, one per run of neighbours going to it. The
 * kernel cuts a write() larger than max_write into requests; op_write
 * keeps fh->sticky across them.
 */
static int fh_route(struct fh *fh, const struct topic_config *cfg,
		    const uint8_t *data)
{
	uint32_t n = fh->lens.n;
	uint32_t nparts = topic_partitions(fh->t);
	uint32_t *counts, *lens;
	struct iovec *runs;
	int rc = 0;

	if (grow(&fh->route, &fh->rcap, n, sizeof(*fh->route)) < 0)
		return -ENOMEM;
	for (uint32_t i = 0, at = 0; i < n; at += fh->lens.v[i], i++) {
		const uint8_t *key;
		size_t klen;
		if (record_key(cfg, data + at, fh->lens.v[i], &key, &klen)) {
			fh->route[i] = partition_for_key(key, klen, nparts);
		} else {
			if (fh->sticky == UINT32_MAX)
				fh->sticky = topic_next_sticky(fh->t);
			fh->route[i] = fh->sticky;
		}
	}
	counts = calloc(nparts, sizeof(*counts));
	runs = malloc(n * sizeof(*runs));
	lens = malloc(n * sizeof(*lens));
	if (!counts || !runs || !lens)
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		counts[fh->route[i]]++;
	/* One partition at a time, in partition order. */
	for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
		struct log_append_info info;
		uint32_t k = 0;
		int nruns = 0;

		if (counts[p] == 0)
			continue;
		for (uint32_t i = 0, at = 0; i < n; at += fh->lens.v[i], i++) {
			if (fh->route[i] != p)
				continue;
			if (nruns > 0 && (const uint8_t *)runs[nruns - 1].iov_base +
					 runs[nruns - 1].iov_len == data + at)
				runs[nruns - 1].iov_len += fh->lens.v[i];
			else
				runs[nruns++] = (struct iovec){
					(void *)(data + at), fh->lens.v[i] };
			lens[k++] = fh->lens.v[i];
		}
		rc = part_produce(topic_part(fh->t, p), runs, nruns, lens, k,
				  &info);
		if (rc == 0)
			fh_note(fh, p, &info);
	}
	free(lens);
	free(runs);
	free(counts);
	return rc;
}

/* Append the records of fh->lens, whose bytes lie in the pieces iov. */
static int fh_write_records(struct fh *fh, const struct topic_config *cfg,
			    const struct iovec *iov, int iovcnt)
{
	struct log_append_info info;
	const uint8_t *data = iov[0].iov_base;
	int rc;

	if (fh->kind != K_PRODUCE) {
		rc = part_produce(fh->p, iov, iovcnt, fh->lens.v, fh->lens.n,
				  &info);
		if (rc == 0)
			fh_note(fh, part_index(fh->p), &info);
		return rc;
	}
	if (iovcnt > 1) { /* keys are looked for in whole records */
		size_t len = 0;
		for (int i = 0; i < iovcnt; i++)
			len += iov[i].iov_len;
		if (grow(&fh->scratch, &fh->scap, len, 1) < 0)
			return -ENOMEM;
		for (int i = 0, at = 0; i < iovcnt; at += iov[i].iov_len, i++)
			memcpy(fh->scratch + at, iov[i].iov_base, iov[i].iov_len);
		data = fh->scratch;
	}
	return fh_route(fh, cfg, data);
}

/*
 * How many bytes of buf (*take) complete the partial record that fh holds
 * (fh->plen > 0), and whether they do (*done; if not, all of buf is part
 * of it). -EMSGSIZE if it exceeds max.message.bytes (*tl as fh_frame's).
 */
static int fh_complete(const struct fh *fh, const struct topic_config *cfg,
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
		return fh->plen + *take > max ? -EMSGSIZE : 0;
	}
	/* Binary: the 4-byte length itself may be cut. */
	for (; have < 4 && have < fh->plen; have++)
		h[have] = fh->partial[have];
	for (size_t i = 0; have < 4 && i < size; i++)
		h[have++] = buf[i];
	if (have < 4) {
		*done = false;
		*take = size;
		return 0;
	}
	rec = frame_size(h);
	*done = fh->plen + size >= rec;
	*take = *done ? rec - fh->plen : size;
	*tl = (struct too_long){ .open = !*done,
				 .left = *done ? 0 : rec - fh->plen - size };
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
static int fh_discard(struct fh *fh, const struct topic_config *cfg,
		      const uint8_t *buf, size_t size, bool first)
{
	if (first) {
		fh->discarding = false;
	} else if (cfg->framing == FRAMING_LINES) {
		if (memchr(buf, '\n', size))
			fh->discarding = false;
	} else if (size >= fh->discard_left) {
		fh->discarding = false;
	} else {
		fh->discard_left -= size;
	}
	return -EMSGSIZE;
}

/* Keep len bytes at data after the partial record. */
static int fh_keep(struct fh *fh, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	if (grow(&fh->partial, &fh->pcap, fh->plen + len, 1) < 0)
		return -ENOMEM;
	memcpy(fh->partial + fh->plen, data, len);
	fh->plen += len;
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
static int fh_append(struct fh *fh, const uint8_t *buf, size_t size,
		     bool continues, bool piece)
{
	struct topic_config cfg;
	struct too_long tl = { 0 };
	struct iovec iov[2];
	size_t take = 0, used = 0;
	bool done;
	int rc = 0;

	topic_config(fh->t, &cfg);
	if (fh->discarding)
		return fh_discard(fh, &cfg, buf, size, !continues && piece);
	fh->lens.n = 0;
	if (fh->plen > 0) {
		rc = fh_complete(fh, &cfg, buf, size, &take, &done, &tl);
		if (rc == 0 && !done)
			return fh_keep(fh, buf, size);
		if (rc == 0)
			rc = frame_add(&fh->lens, fh->plen + take, SIZE_MAX);
	}
	if (rc == 0)
		rc = fh_frame(fh, &cfg, buf + take, size - take, &used, &tl);
	if (rc == 0 && fh->lens.n > 0) {
		iov[0] = (struct iovec){ fh->partial, fh->plen };
		iov[1] = (struct iovec){ (void *)buf, take + used };
		rc = fh->plen > 0 ? fh_write_records(fh, &cfg, iov, 2)
				  : fh_write_records(fh, &cfg, iov + 1, 1);
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
			fh->plen = 0;
		if (rc == -EMSGSIZE && tl.open && (continues || !piece)) {
			fh->discarding = true;
			fh->discard_left = tl.left;
		}
		return rc;
	}
	fh->plen = 0; /* if it was not empty, it is a record now */
	return fh_keep(fh, buf + take + used, size - take - used);
}

/* The partial record as a record of its own: a last line without its
 * newline; a binary frame cut short is malformed (-EINVAL) and dropped. */
static int fh_append_partial(struct fh *fh)
{
	struct topic_config cfg;
	struct iovec iov = { fh->partial, fh->plen };
	int rc;

	topic_config(fh->t, &cfg);
	fh->lens.n = 0;
	rc = cfg.framing == FRAMING_BINARY ? -EINVAL :
	     frame_add(&fh->lens, fh->plen, cfg.max_message_bytes);
	if (rc == 0)
		rc = fh_write_records(fh, &cfg, &iov, 1);
	if (rc == 0 || rc == -EMSGSIZE || rc == -EINVAL)
		fh->plen = 0;
	return rc;
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	char where[300];
	int rc;

	(void)ino;
	(void)off; /* every write appends, whatever the file position */
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	fh->owner = fi->lock_owner;
	rc = topic_deleted(fh->t) ? -ENOENT :
	     fh_append(fh, (const uint8_t *)buf, size, fh->last_piece,
		       size >= WRITE_PIECE_MIN);
	fh->last_piece = rc == 0 && size >= WRITE_PIECE_MIN;
	/* A shorter request ends its write(): the next one rotates. */
	if (size < WRITE_PIECE_MIN || rc < 0)
		fh->sticky = UINT32_MAX;
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0) {
		msg(LOG_WARNING, "%s: write of %zu bytes refused: %s",
		    fh_where(fh, where, sizeof(where)), size,
		    rc == -EMSGSIZE ? "a record exceeds max.message.bytes" :
		    rc == -ENOENT ? "the topic was deleted" : strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_reply_write(req, size);
}

/* The partial last record becomes a record (close, fsync, unmount). */
int fh_flush_partial(struct fh *fh)
{
	char where[300];
	int rc = 0;

	pthread_mutex_lock(&fh->lock);
	if (fh->discarding) {
		/* The last record was refused as too long and its end never
		 * came: close() and fsync() say so too. */
		fh->discarding = false;
		rc = -EMSGSIZE;
	} else if (fh->plen > 0) {
		rc = fh_append_partial(fh);
	}
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0)
		msg(LOG_WARNING, "%s: incomplete record at close dropped: %s",
		    fh_where(fh, where, sizeof(where)),
		    rc == -EINVAL ? "binary frame cut short" :
		    rc == -EMSGSIZE ? "it exceeds max.message.bytes" :
		    strerror(-rc));
	return rc;
}

/*
 * close() of a descriptor. The partial last line becomes a record when the
 * process that wrote it closes its descriptor; not when another process
 * closes a copy (a child closing inherited descriptors at exec), which
 * would cut the line in two. The last close (release) flushes in any case.
 */
