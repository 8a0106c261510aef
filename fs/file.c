/* Open files: open, read, flush, fsync, release, ioctl. */
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

/* ---- open and release --------------------------------------------------- */

/* The record at position pos (the log end and start are allowed). */
static int record_at(struct log *l, uint64_t pos, uint64_t *off,
		     uint64_t *rec_pos)
{
	struct log_bounds b;

	log_get_bounds(l, &b);
	if (pos >= b.hw_pos) {
		*off = b.hw;
		*rec_pos = b.hw_pos;
		return 0;
	}
	if (pos <= b.start_pos) {
		*off = b.start_offset;
		*rec_pos = b.start_pos;
		return 0;
	}
	return log_pos_to_offset(l, pos, off, rec_pos);
}

/*
 * Add the records that lie wholly inside the stretch [cnt_pos, out_pos)
 * this file has read to the partition's records_out, and start the
 * stretch again at the first record not counted. Two lookups per stretch
 * (a sequential reader has one stretch per open), not per read.
 * Called with fh->lock held.
 */
void fh_count_out(struct fh *fh)
{
	struct log *l = part_log(fh->p);
	uint64_t a, apos, b, bpos;

	if (fh->out_pos <= fh->cnt_pos)
		return;
	if (record_at(l, fh->cnt_pos, &a, &apos) < 0 ||
	    record_at(l, fh->out_pos, &b, &bpos) < 0) {
		fh->cnt_pos = fh->out_pos; /* retention took it: uncounted */
		return;
	}
	if (apos < fh->cnt_pos)
		a++; /* its first bytes were not in this stretch */
	if (b > a)
		atomic_fetch_add(&part_stats(fh->p)->records_out, b - a);
	if (bpos > fh->cnt_pos)
		fh->cnt_pos = bpos;
}

/* A read delivered partition bytes [from, to). */
static void fh_note_out(struct fh *fh, uint64_t from, uint64_t to)
{
	atomic_fetch_add(&part_stats(fh->p)->bytes_out, to - from);
	if (from >= fh->cnt_pos && from <= fh->out_pos) {
		if (to > fh->out_pos)
			fh->out_pos = to;
		return;
	}
	fh_count_out(fh);
	fh->cnt_pos = from;
	fh->out_pos = to;
}

void fh_free(struct fh *fh)
{
	if (fh->member)
		member_leave(fh->member);
	if (fh->cur)
		log_cursor_free(fh->cur);
	if (fh->t)
		topic_put(fh->t);
	pthread_mutex_destroy(&fh->lock);
	free(fh->partial);
	free(fh->scratch);
	frame_lens_free(&fh->lens);
	free(fh->route);
	free(fh->bv);
	free(fh->mread);
	free(fh->copy);
	free(fh->text);
	free(fh);
}


/* Why opening n with flags is refused (the errno in *err), or NULL. */
static const char *open_refused(const struct node *n, int flags, int *err)
{
	int acc = flags & O_ACCMODE;

	*err = EACCES;
	if (n->kind == K_PRODUCE && acc != O_WRONLY)
		return "open for reading refused: .produce is write-only "
		       "(read the partitions)";
	if (n->kind != K_PART && n->kind != K_PRODUCE && acc != O_RDONLY)
		return "open for writing refused: this file is read-only";
	/* Partitions cannot be truncated (`>` fails as on chattr +a
	 * files); .produce is a sink, so `>` simply writes records. */
	*err = EPERM;
	if ((flags & O_TRUNC) && acc != O_RDONLY && n->kind == K_PART)
		return "open with O_TRUNC (`>`) refused: partitions are "
		       "append-only, use `>>`";
	return NULL;
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int acc = fi->flags & O_ACCMODE;
	const char *why;
	struct node n;
	struct fh *fh;
	int rc, err;

	rc = node_get(fs, ino, &n);
	if (rc < 0)
		goto out_err;
	rc = -EISDIR;
	if (n.kind == K_ROOT || n.kind == K_TOPIC || n.kind == K_GROUPS)
		goto out_put;
	why = open_refused(&n, fi->flags, &err);
	if (why) {
		refuse(req, &n, err, "%s", why);
		node_put(&n);
		return;
	}
	rc = -ENOMEM;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		goto out_put;
	pthread_mutex_init(&fh->lock, NULL);
	fh->kind = n.kind;
	fh->sticky = UINT32_MAX;
	fh->t = n.t;
	n.t = NULL;
	fh->writable = acc != O_RDONLY;
	fi->nonseekable = 0;
	switch (fh->kind) {
	case K_STATUS:
	case K_METRICS:
		fh->opener = fuse_req_ctx(req)->pid;
		fh->text = report_take(fs, fh->kind, fh->opener, &fh->text_len);
		if (!fh->text)
			goto out_free;
		fi->direct_io = 1;
		break;
	case K_PART:
	case K_VIEW:
		fh->p = topic_part(fh->t, n.part);
		if (log_cursor_new(part_log(fh->p), &fh->cur) < 0)
			goto out_free;
		fh->bv = malloc(sizeof(struct fuse_bufvec) +
				READ_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!fh->bv)
			goto out_free;
		fh->base = fh->kind == K_VIEW ? n.view_start : 0;
		/*
		 * Partition files bypass the kernel's page cache (see
		 * docs/FILESYSTEM.md, "Why direct_io"): a cached write lands
		 * at the offset the kernel guesses, and a cached read that
		 * races with the file growing leaves zeros in the last page.
		 * Reads are still zero copy: spliced from the segment files.
		 */
		fi->direct_io = 1;
		break;
	case K_PRODUCE:
		fh->p = NULL;
		fi->direct_io = 1;
		break;
	case K_GROUP:
		fh->mread = malloc(sizeof(*fh->mread));
		fh->bv = malloc(sizeof(struct fuse_bufvec) +
				MEMBER_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!fh->mread || !fh->bv)
			goto out_free;
		rc = member_join(n.g, fuse_req_ctx(req)->pid, &fh->member);
		if (rc < 0)
			goto out_free_rc;
		fi->direct_io = 1;
		break;
	}
	pthread_mutex_lock(&fs->lock);
	fh->next = fs->open_files;
	if (fs->open_files)
		fs->open_files->prev = fh;
	fs->open_files = fh;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/*
		 * The open was interrupted: the kernel will never release
		 * this handle, so undo the open completely (off the list,
		 * the topic reference dropped, the group left).
		 */
		fi->fh = 0;
		pthread_mutex_lock(&fs->lock);
		if (fh->prev)
			fh->prev->next = fh->next;
		else
			fs->open_files = fh->next;
		if (fh->next)
			fh->next->prev = fh->prev;
		pthread_mutex_unlock(&fs->lock);
		fh_free(fh);
	}
	node_put(&n);
	return;

out_free:
	rc = -ENOMEM;
out_free_rc:
	fh_free(fh);
out_put:
	node_put(&n);
out_err:
	fuse_reply_err(req, -rc);
}

struct fh *fh_of(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	bool mine;

	(void)ino;
	pthread_mutex_lock(&fh->lock);
	mine = fh->owner == fi->lock_owner;
	pthread_mutex_unlock(&fh->lock);
	fuse_reply_err(req, fh->writable && mine ? -fh_flush_partial(fh) : 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	int rc = 0;

	(void)ino;
	(void)datasync;
	if (fh->writable)
		rc = fh_flush_partial(fh);
	if (fh->member) {
		rc = member_commit(fh->member);
	} else if (rc == 0 && fh->p) {
		rc = part_sync(fh->p);
	} else if (rc == 0 && fh->kind == K_PRODUCE) {
		for (uint32_t p = 0; rc == 0 && p < topic_partitions(fh->t); p++)
			rc = part_sync(topic_part(fh->t, p));
	}
	fuse_reply_err(req, -rc);
}

void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fh *fh = fh_of(fi);

	(void)ino;
	if (fh->writable)
		fh_flush_partial(fh);
	if (fh->cur) {
		pthread_mutex_lock(&fh->lock);
		fh_count_out(fh);
		pthread_mutex_unlock(&fh->lock);
	}
	pthread_mutex_lock(&fs->lock);
	if (fh->prev)
		fh->prev->next = fh->next;
	else
		fs->open_files = fh->next;
	if (fh->next)
		fh->next->prev = fh->prev;
	pthread_mutex_unlock(&fs->lock);
	fh_free(fh);
	fuse_reply_err(req, 0);
}

void fs_flush_open_files(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh; fh = fh->next) {
		if (fh->writable)
			fh_flush_partial(fh);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- reading ------------------------------------------------------------ */

static void read_text(fuse_req_t req, struct fh *fh, size_t size, off_t off)
{
	if ((size_t)off >= fh->text_len)
		size = 0;
	else if (size > fh->text_len - (size_t)off)
		size = fh->text_len - (size_t)off;
	fuse_reply_buf(req, fh->text + (size ? off : 0), size);
}

/* Reply to a read with extents: fd ranges are spliced, memory copied. */
static void reply_extents(fuse_req_t req, struct fh *fh,
			  const struct log_extent *ext, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct fuse_buf *b = &fh->bv->buf[i];
		memset(b, 0, sizeof(*b));
		b->size = ext[i].len;
		if (ext[i].mem) {
			b->mem = (void *)ext[i].mem;
		} else {
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			b->fd = ext[i].fd;
			b->pos = (off_t)ext[i].off;
		}
	}
	fh->bv->count = n;
	fh->bv->idx = 0;
	fh->bv->off = 0;
	if (n == 0)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_data(req, fh->bv, FUSE_BUF_SPLICE_MOVE);
}

/* A group member's read: the next whole records of its partitions. */
static void read_member(fuse_req_t req, struct fh *fh, size_t size)
{
	struct member_read *r = fh->mread;
	ssize_t got;

	pthread_mutex_lock(&fh->lock);
	got = member_read(fh->member, size, r);
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		reply_extents(req, fh, r->ext, got ? r->n : 0);
	pthread_mutex_unlock(&fh->lock);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct log_extent ext[READ_EXTENTS_MAX];
	uint64_t want, pos;
	unsigned n = 0;
	ssize_t got;
	char where[300];

	(void)ino;
	if (fh->text) {
		read_text(req, fh, size, off);
		return;
	}
	if (fh->member) {
		read_member(req, fh, size);
		return;
	}
	if (!fh->cur) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	want = fh->base + fh->skew + (uint64_t)off;
	pos = want;
	got = log_read(fh->cur, &pos, size, ext, READ_EXTENTS_MAX, &n);
	/*
	 * A read that stopped early although more is there (one
	 * decompressed batch per call, or more segments than extents) is
	 * completed by copying: pread() and dd expect full reads.
	 */
	if (got > 0 && (size_t)got < size &&
	    (ext[0].mem || n == READ_EXTENTS_MAX)) {
		if (grow(&fh->copy, &fh->copy_cap, size, 1) < 0) {
			got = -ENOMEM;
		} else {
			pos = want;
			got = log_read_copy(fh->cur, &pos, fh->copy, size);
			if (got > 0) {
				ext[0] = (struct log_extent){ .mem = fh->copy,
							      .len = (size_t)got };
				n = 1;
			}
		}
	}
	if (got > 0 && pos != want) {
		/* Retention removed the bytes asked for: the file offsets of
		 * this open file shift so that reading goes on at the log
		 * start. */
		fh->skew += pos - want;
	}
	if (got < 0) {
		pthread_mutex_unlock(&fh->lock);
		if (got == -EIO)
			msg(LOG_ERR, "%s: read at position %" PRIu64 ": stored "
			    "bytes failed their checksum",
			    fh_where(fh, where, sizeof(where)), want);
		fuse_reply_err(req, (int)-got);
		return;
	}
	if (got > 0)
		fh_note_out(fh, pos, pos + (uint64_t)got);
	reply_extents(req, fh, ext, n);
	pthread_mutex_unlock(&fh->lock);
}

/* ---- ioctl -------------------------------------------------------------- */

void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct fh *fh = fh_of(fi);
	struct topicfs_last_write w;

	(void)ino;
	(void)arg;
	(void)in_buf;
	(void)in_bufsz;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (cmd != TOPICFS_IOC_LAST_WRITE || out_bufsz < sizeof(w) ||
	    (fh->kind != K_PART && fh->kind != K_PRODUCE)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	w = fh->last;
	pthread_mutex_unlock(&fh->lock);
	fuse_reply_ioctl(req, 0, &w, sizeof(w));
}
