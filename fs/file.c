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
 * Called with the handle's lock held.
 */
void reader_count_out(struct reader *r)
{
	struct log *l = part_log(r->p);
	uint64_t a, apos, b, bpos;

	if (r->out_pos <= r->cnt_pos)
		return;
	if (record_at(l, r->cnt_pos, &a, &apos) < 0 ||
	    record_at(l, r->out_pos, &b, &bpos) < 0) {
		r->cnt_pos = r->out_pos; /* retention took it: uncounted */
		return;
	}
	if (apos < r->cnt_pos)
		a++; /* its first bytes were not in this stretch */
	if (b > a)
		atomic_fetch_add(&part_stats(r->p)->records_out, b - a);
	if (bpos > r->cnt_pos)
		r->cnt_pos = bpos;
}

/* A read delivered partition bytes [from, to). */
static void reader_note_out(struct reader *r, uint64_t from, uint64_t to)
{
	atomic_fetch_add(&part_stats(r->p)->bytes_out, to - from);
	if (from >= r->cnt_pos && from <= r->out_pos) {
		if (to > r->out_pos)
			r->out_pos = to;
		return;
	}
	reader_count_out(r);
	r->cnt_pos = from;
	r->out_pos = to;
}

void fh_free(struct fh *fh)
{
	struct part_fh *pf = fh_part(fh);
	struct report_fh *rf = fh_report(fh);
	struct member_fh *mf = fh_member(fh);

	if (pf) {
		if (pf->r.cur)
			log_cursor_free(pf->r.cur);
		free(pf->r.bv);
		free(pf->r.copy);
	}
	if (fh_writer(fh))
		writer_release(fh_writer(fh));
	if (rf)
		free(rf->text);
	if (mf) {
		if (mf->member)
			member_leave(mf->member);
		free(mf->mread);
		free(mf->bv);
	}
	if (fh->t)
		topic_put(fh->t);
	pthread_mutex_destroy(&fh->lock);
	free(fh);
}

/* A new handle of the kind n names, with its topic reference taken over. */
static struct fh *fh_new(struct node *n)
{
	size_t size = n->kind == K_PART || n->kind == K_VIEW ?
		      sizeof(struct part_fh) :
		      n->kind == K_PRODUCE ? sizeof(struct produce_fh) :
		      n->kind == K_GROUP ? sizeof(struct member_fh) :
		      sizeof(struct report_fh);
	struct fh *fh = calloc(1, size);

	if (!fh)
		return NULL;
	pthread_mutex_init(&fh->lock, NULL);
	fh->kind = n->kind;
	fh->t = n->t;
	n->t = NULL;
	return fh;
}

/* Open the handle's own state; -ENOMEM and the like. */
static int fh_open(fuse_req_t req, struct fh *fh, const struct node *n,
		   int flags)
{
	struct part_fh *pf = fh_part(fh);
	struct report_fh *rf = fh_report(fh);
	struct member_fh *mf = fh_member(fh);

	if (rf) {
		rf->opener = fuse_req_ctx(req)->pid;
		rf->text = report_take(fs_of(req), fh->kind, rf->opener,
				       &rf->len);
		return rf->text ? 0 : -ENOMEM;
	}
	if (pf) {
		pf->r.p = topic_part(fh->t, n->part);
		pf->r.base = fh->kind == K_VIEW ? n->view_start : 0;
		pf->writable = (flags & O_ACCMODE) != O_RDONLY;
		if (pf->writable)
			writer_init(&pf->w, fh->t, pf->r.p, flags);
		pf->r.bv = malloc(sizeof(struct fuse_bufvec) +
				  READ_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!pf->r.bv)
			return -ENOMEM;
		return log_cursor_new(part_log(pf->r.p), &pf->r.cur);
	}
	if (mf) {
		mf->mread = malloc(sizeof(*mf->mread));
		mf->bv = malloc(sizeof(struct fuse_bufvec) +
				MEMBER_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!mf->mread || !mf->bv)
			return -ENOMEM;
		mf->g = n->g;
		return member_join(n->g, fuse_req_ctx(req)->pid, &mf->member);
	}
	writer_init(&FH_AS(fh, produce_fh)->w, fh->t, NULL, flags);
	return 0;
}

static void fs_add_open(struct fs *fs, struct fh *fh)
{
	pthread_mutex_lock(&fs->lock);
	fh->next = fs->open_files;
	if (fs->open_files)
		fs->open_files->prev = fh;
	fs->open_files = fh;
	pthread_mutex_unlock(&fs->lock);
}

static void fs_remove_open(struct fs *fs, struct fh *fh)
{
	pthread_mutex_lock(&fs->lock);
	if (fh->prev)
		fh->prev->next = fh->next;
	else
		fs->open_files = fh->next;
	if (fh->next)
		fh->next->prev = fh->prev;
	pthread_mutex_unlock(&fs->lock);
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
	fh = fh_new(&n);
	if (!fh)
		goto out_put;
	rc = fh_open(req, fh, &n, fi->flags);
	if (rc < 0)
		goto out_free;
	/*
	 * Every file bypasses the kernel's page cache (docs/FILESYSTEM.md,
	 * "Why direct_io"): a cached write lands at the offset the kernel
	 * guesses, and a cached read that races with the file growing
	 * leaves zeros in the last page. Reads of partitions are still
	 * zero copy: spliced from the segment files.
	 */
	fi->direct_io = 1;
	fi->nonseekable = 0;
	fs_add_open(fs, fh);
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The open was interrupted and the kernel will send no
		 * release: undo it whole. */
		fs_remove_open(fs, fh);
		fh_free(fh);
		fi->fh = 0;
	}
	node_put(&n);
	return;

out_free:
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

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct part_fh *pf = fh_part(fh);

	(void)ino;
	if (fh_writer(fh))
		writer_flush(fh);
	if (pf) {
		pthread_mutex_lock(&fh->lock);
		reader_count_out(&pf->r);
		pthread_mutex_unlock(&fh->lock);
	}
	fs_remove_open(fs_of(req), fh);
	fh_free(fh);
	fuse_reply_err(req, 0);
}

void fs_flush_open_files(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh; fh = fh->next) {
		if (fh_writer(fh))
			writer_flush(fh);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- reading ------------------------------------------------------------ */

static void read_text(fuse_req_t req, struct report_fh *rf, size_t size,
		      off_t off)
{
	char *copy;

	if ((size_t)off >= rf->len)
		size = 0;
	else if (size > rf->len - (size_t)off)
		size = rf->len - (size_t)off;
	/*
	 * Reply from a copy this call owns: once the reply is written the
	 * reader may close the file, and its release (another FUSE thread)
	 * frees rf->text while this thread is still returning from writev
	 * (AddressSanitizer checks the buffer after the call and saw it).
	 */
	copy = malloc(size ? size : 1);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, rf->text + (size ? off : 0), size);
	fuse_reply_buf(req, copy, size);
	free(copy);
}

/* Reply to a read with extents: fd ranges are spliced, memory copied. */
static void reply_extents(fuse_req_t req, struct fuse_bufvec *bv,
			  const struct log_extent *ext, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct fuse_buf *b = &bv->buf[i];
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
	bv->count = n;
	bv->idx = 0;
	bv->off = 0;
	if (n == 0)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
}

/*
 * A read of fh failed with ESTALE: a truncation removed bytes this open
 * file was shown (KIP-320). Every later read fails the same way until the
 * file is reopened, so this is said once per open file. fh->lock held.
 */
static void read_stale(struct fh *fh, const struct node *nd,
		       const char *what)
{
	char where[300];

	if (fh->told_stale)
		return;
	fh->told_stale = true;
	msg(LOG_WARNING, "%s: %s: a truncation removed bytes this open file "
	    "was shown%s; its reads fail with ESTALE until it is reopened",
	    node_where(nd, where, sizeof(where)), what,
	    nd->kind == K_GROUP ? " (the member left the group)" : "");
}

/* A group member's read: the next whole records of its partitions. */
static void read_member(fuse_req_t req, struct member_fh *mf, size_t size)
{
	struct member_read *r = mf->mread;
	ssize_t got;

	pthread_mutex_lock(&mf->fh.lock);
	got = member_read(mf->member, size, r);
	if (got == -ESTALE) {
		struct node nd = { .kind = K_GROUP, .t = mf->fh.t, .g = mf->g };
		read_stale(&mf->fh, &nd, "read");
	}
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		reply_extents(req, mf->bv, r->ext, got ? r->n : 0);
	pthread_mutex_unlock(&mf->fh.lock);
}

/* A read of a partition file or view at file offset off. */
static void read_part(fuse_req_t req, struct part_fh *pf, size_t size,
		      off_t off)
{
	struct reader *r = &pf->r;
	struct log_extent ext[READ_EXTENTS_MAX];
	uint64_t want, pos;
	unsigned n = 0;
	ssize_t got;

	pthread_mutex_lock(&pf->fh.lock);
	want = r->base + r->skew + (uint64_t)off;
	pos = want;
	got = log_read(r->cur, &pos, size, ext, READ_EXTENTS_MAX, &n);
	/*
	 * A read that stopped early although more is there (one
	 * decompressed batch per call, or more segments than extents) is
	 * completed by copying: pread() and dd expect full reads.
	 */
	if (got > 0 && (size_t)got < size &&
	    (ext[0].mem || n == READ_EXTENTS_MAX)) {
		if (grow(&r->copy, &r->copy_cap, size, 1) < 0) {
			got = -ENOMEM;
		} else {
			pos = want;
			got = log_read_copy(r->cur, &pos, r->copy, size);
			if (got > 0) {
				ext[0] = (struct log_extent){ .mem = r->copy,
							      .len = (size_t)got };
				n = 1;
			}
		}
	}
	if (got > 0 && pos != want) {
		/* Retention removed the bytes asked for: the file offsets of
		 * this open file shift so that reading goes on at the log
		 * start. */
		r->skew += pos - want;
	}
	if (got < 0) {
		struct node nd = { .kind = pf->fh.kind, .t = pf->fh.t,
				   .part = part_index(r->p) };
		char where[300], what[64];

		snprintf(what, sizeof(what), "read at position %" PRIu64, want);
		if (got == -ESTALE)
			read_stale(&pf->fh, &nd, what);
		else if (got == -EIO || got == -EMFILE || got == -ENFILE)
			msg(LOG_ERR, "%s: %s: %s",
			    node_where(&nd, where, sizeof(where)), what,
			    got == -EIO ? "stored bytes failed their checksum" :
			    "no file descriptor left for its segment");
		pthread_mutex_unlock(&pf->fh.lock);
		fuse_reply_err(req, (int)-got);
		return;
	}
	if (got > 0)
		reader_note_out(r, pos, pos + (uint64_t)got);
	reply_extents(req, r->bv, ext, n);
	pthread_mutex_unlock(&pf->fh.lock);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);

	(void)ino;
	if (fh_report(fh))
		read_text(req, fh_report(fh), size, off);
	else if (fh_member(fh))
		read_member(req, fh_member(fh), size);
	else if (fh_part(fh))
		read_part(req, fh_part(fh), size, off);
	else
		fuse_reply_err(req, EBADF);
}

/* ---- ioctl -------------------------------------------------------------- */

void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
	      void *arg, struct fuse_file_info *fi, unsigned flags,
	      const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct fh *fh = fh_of(fi);
	struct writer *wr = fh_writer(fh);
	struct topicfs_last_write w;

	(void)ino;
	(void)arg;
	(void)in_buf;
	(void)in_bufsz;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (cmd != TOPICFS_IOC_LAST_WRITE || out_bufsz < sizeof(w) || !wr) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	w = wr->last;
	pthread_mutex_unlock(&fh->lock);
	fuse_reply_ioctl(req, 0, &w, sizeof(w));
}
