/*
 * Segment files: creation, loading, recovery, appends and lookups.
 * The byte layout is in format.h and docs/FORMAT.md.
 */
#include "segment.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "crc32c.h"
#include "io.h"

/* Bytes of .meta read at once while walking batch headers. */
#define META_SCAN_BYTES 8192
#define META_SCAN_FIRST_BYTES 512
/* Record lengths read at once while walking inside a batch. */
#define LENS_CHUNK 1024
/* Payload bytes read at once while verifying a batch's CRC. */
#define VERIFY_CHUNK_BYTES (128u << 10)

void seg_file_name(char *buf, size_t size, uint64_t base_offset,
		   const char *ext)
{
	snprintf(buf, size, "%020" PRIu64 ".%s", base_offset, ext);
}

/* Open a segment file, "<base>.<ext><suffix>". */
static int seg_open_file(int dir_fd, uint64_t base, const char *ext,
			 const char *suffix, int flags)
{
	char name[64], full[80];

	seg_file_name(name, sizeof(name), base, ext);
	snprintf(full, sizeof(full), "%s%s", name, suffix);
	return files_openat(dir_fd, full, flags | O_RDWR, 0644);
}

/* The three files, in the order of seg->ino[]. */
static const char *const seg_exts[] = { "meta", "index", "log" };

static int *seg_fd(struct seg *s, size_t i)
{
	return i == 0 ? &s->meta_fd : i == 1 ? &s->idx_fd : &s->log_fd;
}

void seg_unlink_files(int dir_fd, uint64_t base, const char *suffix)
{
	char name[64], full[80];

	for (size_t i = 0; i < 3; i++) {
		seg_file_name(name, sizeof(name), base, seg_exts[i]);
		snprintf(full, sizeof(full), "%s%s", name, suffix);
		unlinkat(dir_fd, full, 0);
	}
}

/* Rename a segment's files from suffix `from` to suffix `to`. */
static int seg_rename_files(struct seg *s, const char *from, const char *to)
{
	char name[64], a[80], b[80];
	int dfd, rc = 0;

	dfd = files_dir_pin(s->dir);
	if (dfd < 0)
		return dfd;
	for (size_t i = 0; i < 3; i++) {
		seg_file_name(name, sizeof(name), s->base_offset, seg_exts[i]);
		snprintf(a, sizeof(a), "%s%s", name, from);
		snprintf(b, sizeof(b), "%s%s", name, to);
		if (renameat(dfd, a, dfd, b) < 0 && rc == 0)
			rc = -errno;
	}
	files_dir_unpin(s->dir);
	return rc;
}

int seg_hide(struct seg *s)
{
	return seg_rename_files(s, "", ".deleted");
}

int seg_unhide(struct seg *s)
{
	return seg_rename_files(s, ".deleted", "");
}

void seg_doom_hidden(struct seg *s)
{
	atomic_store(&s->doomed, true);
	seg_unref(s);
}

void seg_doom(struct seg *s)
{
	seg_hide(s);
	seg_doom_hidden(s);
}

static int seg_map_index(struct seg *s, uint32_t cap);

/* Remember the inode numbers of the open files (for seg_reopen). */
static int seg_note_inodes(struct seg *s)
{
	struct stat st;

	for (size_t i = 0; i < 3; i++) {
		if (fstat(*seg_fd(s, i), &st) < 0)
			return -errno;
		s->ino[i] = st.st_ino;
	}
	return 0;
}

static void seg_close_files(struct seg *s)
{
	if (s->idx_map)
		munmap((void *)s->idx_map, (size_t)s->idx_cap * INDEX_ENTRY_SIZE);
	s->idx_map = NULL;
	for (size_t i = 0; i < 3; i++) {
		int *fd = seg_fd(s, i);
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
}

/* Open the three files named with suffix, if they are this segment's. */
static int seg_reopen_as(struct seg *s, int dfd, const char *suffix)
{
	struct stat st;
	int rc = 0;

	for (size_t i = 0; i < 3 && rc == 0; i++) {
		int *fd = seg_fd(s, i);
		rc = *fd = seg_open_file(dfd, s->base_offset, seg_exts[i],
					 suffix, 0);
		if (rc >= 0) {
			rc = fstat(*fd, &st) < 0 ? -errno : 0;
			if (rc == 0 && st.st_ino != s->ino[i])
				rc = -ESTALE;
		}
	}
	if (rc == 0)
		rc = seg_map_index(s, s->idx_cap);
	if (rc < 0)
		seg_close_files(s);
	return rc;
}

/*
 * The slot's reopen: by the segment's names, or, for a segment removed
 * (renamed to *.deleted) that a reader still holds, by those. A segment
 * whose names were taken by a clone has no names left: -ESTALE.
 */
static int seg_reopen(struct files_slot *slot)
{
	struct seg *s = (struct seg *)((char *)slot - offsetof(struct seg, files));
	int dfd, rc;

	if (atomic_load(&s->replaced))
		return -ESTALE;
	dfd = files_dir_pin(s->dir);
	if (dfd < 0)
		return dfd;
	rc = seg_reopen_as(s, dfd, "");
	if ((rc == -ENOENT || rc == -ESTALE) && atomic_load(&s->doomed))
		rc = seg_reopen_as(s, dfd, ".deleted");
	if (rc == -ENOENT)
		rc = -ESTALE;
	files_dir_unpin(s->dir);
	return rc;
}

static void seg_slot_close(struct files_slot *slot)
{
	seg_close_files((struct seg *)((char *)slot -
				       offsetof(struct seg, files)));
}

static const struct files_ops seg_files_ops = {
	.reopen = seg_reopen,
	.close = seg_slot_close,
};

static struct seg *seg_alloc(struct files_dir *dir, uint64_t base_offset)
{
	struct seg *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->refs, 1);
	s->dir = dir;
	s->base_offset = base_offset;
	s->log_fd = s->meta_fd = s->idx_fd = -1;
	s->first_ts = -1;
	files_slot_init(&s->files, &seg_files_ops, 3);
	pthread_mutex_init(&s->verify_lock, NULL);
	return s;
}

static void seg_free(struct seg *s)
{
	files_slot_destroy(&s->files);
	seg_close_files(s);
	pthread_mutex_destroy(&s->verify_lock);
	free(s);
}

void seg_unref(struct seg *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (atomic_load(&s->doomed) && !atomic_load(&s->replaced)) {
		/* If the directory cannot be opened, the next open of the
		 * partition removes the *.deleted files. */
		int dfd = files_dir_pin(s->dir);
		if (dfd >= 0) {
			seg_unlink_files(dfd, s->base_offset, ".deleted");
			files_dir_unpin(s->dir);
		}
	}
	seg_free(s);
}

/*
 * Map idx_cap entries of the index. The mapping may extend past the end of
 * the file; readers touch only entries below the published count, and the
 * appender writes entries only below idx_alloc, which seg_idx_reserve has
 * allocated on disk first: a full disk gives ENOSPC there, never SIGBUS.
 */
static int seg_map_index(struct seg *s, uint32_t cap)
{
	void *m;

	if (cap == 0)
		cap = 1;
	m = mmap(NULL, (size_t)cap * INDEX_ENTRY_SIZE, PROT_READ | PROT_WRITE,
		 MAP_SHARED, s->idx_fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	s->idx_map = m;
	s->idx_cap = cap;
	return 0;
}

static void seg_idx_get(const struct seg *s, uint32_t i, struct index_entry *e)
{
	index_entry_decode(s->idx_map + (size_t)i * INDEX_ENTRY_SIZE, e);
}

static void seg_store_end(struct seg *s, const struct seg_tail *t);

static void seg_tail_empty(const struct seg *s, struct seg_tail *t)
{
	*t = (struct seg_tail){
		.end_offset = s->base_offset,
		.end_pos = s->base_pos,
		.data_end = 0,
		.meta_end = SEG_HDR_SIZE,
		.max_ts = -1,
	};
}

int seg_create(struct files_dir *dir, uint64_t base_offset, uint64_t base_pos,
	       int codec, int64_t now_ms, uint32_t idx_cap, struct seg **out)
{
	struct seg_hdr sh = { base_offset, base_pos, now_ms, (uint32_t)codec };
	uint8_t hdr[SEG_HDR_SIZE];
	struct seg *s;
	int dfd, rc;

	dfd = files_dir_pin(dir);
	if (dfd < 0)
		return dfd;
	s = seg_alloc(dir, base_offset);
	if (!s) {
		files_dir_unpin(dir);
		return -ENOMEM;
	}
	s->base_pos = base_pos;
	s->created_ms = now_ms;
	s->codec = codec;
	/* .meta last: a segment exists once its .meta does. */
	for (size_t k = 3; k-- > 0;) {
		rc = *seg_fd(s, k) = seg_open_file(dfd, base_offset, seg_exts[k],
						   "", O_CREAT | O_TRUNC);
		if (rc < 0)
			goto out_unlink;
	}
	seg_hdr_encode(&sh, hdr);
	rc = io_pwrite_full(s->meta_fd, hdr, sizeof(hdr), 0);
	if (rc == 0)
		rc = seg_note_inodes(s);
	if (rc == 0)
		rc = seg_map_index(s, idx_cap);
	if (rc < 0)
		goto out_unlink;
	seg_tail_empty(s, &s->w);
	seg_store_end(s, &s->w);
	atomic_store(&s->verified_pos, base_pos);
	s->verify_meta = SEG_HDR_SIZE;
	files_dir_unpin(dir);
	files_slot_opened(&s->files);
	*out = s;
	return 0;

out_unlink:
	seg_unlink_files(dfd, base_offset, "");
	files_dir_unpin(dir);
	seg_free(s);
	return rc;
}

int seg_open(struct files_dir *dir, uint64_t base_offset, uint32_t idx_cap,
	     struct seg **out)
{
	uint8_t hdr[SEG_HDR_SIZE];
	struct seg_hdr sh;
	struct seg *s;
	int64_t isize;
	int dfd, rc;

	dfd = files_dir_pin(dir);
	if (dfd < 0)
		return dfd;
	s = seg_alloc(dir, base_offset);
	if (!s) {
		files_dir_unpin(dir);
		return -ENOMEM;
	}
	rc = s->meta_fd = seg_open_file(dfd, base_offset, "meta", "", 0);
	if (rc < 0)
		goto out_free;
	rc = io_pread_full(s->meta_fd, hdr, sizeof(hdr), 0);
	if (rc == 0)
		rc = seg_hdr_decode(hdr, &sh);
	if (rc == 0 && sh.base_offset != base_offset)
		rc = -EIO;
	if (rc < 0)
		goto out_free;
	s->base_pos = sh.base_pos;
	s->created_ms = sh.created_ms;
	s->codec = (int)sh.codec;
	rc = s->log_fd = seg_open_file(dfd, base_offset, "log", "", 0);
	if (rc == -ENOENT)
		rc = -EIO;
	if (rc < 0)
		goto out_free;
	rc = s->idx_fd = seg_open_file(dfd, base_offset, "index", "", O_CREAT);
	if (rc < 0)
		goto out_free;
	rc = seg_note_inodes(s);
	if (rc < 0)
		goto out_free;
	isize = io_fsize(s->idx_fd);
	if (isize < 0) {
		rc = (int)isize;
		goto out_free;
	}
	if ((uint64_t)isize / INDEX_ENTRY_SIZE > idx_cap)
		idx_cap = (uint32_t)((uint64_t)isize / INDEX_ENTRY_SIZE);

	rc = seg_map_index(s, idx_cap);
	if (rc < 0)
		goto out_free;
	files_dir_unpin(dir);
	files_slot_opened(&s->files);
	*out = s;
	return 0;

out_free:
	files_dir_unpin(dir);
	seg_free(s);
	return rc;
}

/* ---- appender state ---------------------------------------------------- */

/* Store t as the published end, without touching verification state. */
static void seg_store_end(struct seg *s, const struct seg_tail *t)
{
	atomic_store_explicit(&s->idx_count, t->idx_count, memory_order_release);
	atomic_store_explicit(&s->max_ts, t->max_ts, memory_order_release);
	atomic_store_explicit(&s->last_epoch, t->last_epoch, memory_order_release);
	atomic_store_explicit(&s->meta_end, t->meta_end, memory_order_release);
	atomic_store_explicit(&s->data_end, t->data_end, memory_order_release);
	atomic_store_explicit(&s->end_offset, t->end_offset, memory_order_release);
	atomic_store_explicit(&s->end_pos, t->end_pos, memory_order_release);
}

void seg_publish(struct seg *s)
{
	uint64_t old_end = atomic_load_explicit(&s->end_pos,
						memory_order_relaxed);

	pthread_mutex_lock(&s->verify_lock);
	if (atomic_load(&s->verified_pos) == old_end &&
	    s->w.end_pos >= old_end) {
		s->verify_meta = s->w.meta_end;
		atomic_store(&s->verified_pos, s->w.end_pos);
	} else if (s->win_valid && s->win_end == old_end &&
		   s->w.end_pos >= old_end) {
		s->win_meta = s->w.meta_end;
		s->win_end = s->w.end_pos;
	}
	pthread_mutex_unlock(&s->verify_lock);
	seg_store_end(s, &s->w);
}

/* Whether the batch starting at (pos, meta_pos) gets an index entry. */
static bool seg_idx_due(const struct seg *s, const struct seg_tail *t,
			uint64_t pos, uint64_t meta_pos, uint32_t interval)
{
	if (t->idx_count >= s->idx_cap)
		return false;
	return t->idx_count == 0 || pos - s->idx_last_pos >= interval ||
	       meta_pos - s->idx_last_meta >= interval;
}

static void seg_idx_note(struct seg *s, struct seg_tail *t,
			 const struct batch_hdr *h, uint64_t meta_pos,
			 struct index_entry *e)
{
	e->rel_offset = (uint32_t)(h->base_offset - s->base_offset);
	e->meta_pos = (uint32_t)meta_pos;
	e->rel_pos = h->pos - s->base_pos;
	e->ts = h->max_ts;
	s->idx_last_pos = h->pos;
	s->idx_last_meta = meta_pos;
	t->idx_count++;
}

/* Advance tail t past batch h, which starts at t->meta_end. */
static void seg_tail_advance(struct seg *s, struct seg_tail *t,
			     const struct batch_hdr *h)
{
	if (t->end_offset == s->base_offset)
		s->first_ts = h->max_ts;
	t->end_offset += h->count;
	t->end_pos += h->logical_len;
	t->data_end += h->stored_len;
	t->meta_end += batch_meta_size(h->count);
	t->max_ts = h->max_ts;
	t->last_epoch = h->epoch;
}

/* Bytes of .index allocated at a time as the index grows. */
#define IDX_ALLOC_CHUNK_BYTES (64u << 10)

/*
 * Make sure the first `end` bytes of the index file are allocated, so that
 * entries can be stored through the mapping: one fallocate per chunk
 * instead of one pwrite per entry. The file is trimmed to its entries
 * when the segment is sealed or closed.
 */
static int seg_idx_reserve(struct seg *s, uint64_t end)
{
	uint64_t want, cap = (uint64_t)s->idx_cap * INDEX_ENTRY_SIZE;
	int rc;

	if (end <= s->w.idx_alloc)
		return 0;
	want = (end + IDX_ALLOC_CHUNK_BYTES - 1) / IDX_ALLOC_CHUNK_BYTES *
	       IDX_ALLOC_CHUNK_BYTES;
	if (want > cap)
		want = cap;
	rc = posix_fallocate(s->idx_fd, (off_t)s->w.idx_alloc,
			     (off_t)(want - s->w.idx_alloc));
	if (rc != 0)
		return -rc;
	s->w.idx_alloc = want;
	return 0;
}

int seg_write_batch(struct seg *s, struct batch_hdr *h, const uint32_t *lens,
		    const struct iovec *stored, int pieces, uint32_t interval)
{
	struct seg_tail *t = &s->w;
	uint8_t hdr[BATCH_HDR_SIZE];
	struct iovec iov[SEG_BATCH_PIECES];
	int rc;

	assert(h->base_offset == t->end_offset && h->pos == t->end_pos);
	assert(h->count >= 1 && h->count <= LOG_BATCH_RECORDS_MAX);
	assert(pieces >= 1 && pieces <= SEG_BATCH_PIECES);
	if (t->meta_end + batch_meta_size(h->count) > UINT32_MAX)
		return -EFBIG;
	h->data_pos = t->data_end;
	h->crc = batch_crc(lens, h->count, stored, pieces);
	batch_hdr_encode(h, hdr);

	memcpy(iov, stored, pieces * sizeof(*iov)); /* pwritev_full moves it */
	rc = io_pwritev_full(s->log_fd, iov, pieces, t->data_end);
	if (rc < 0)
		return rc;
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ (void *)lens, 4ull * h->count };
	rc = io_pwritev_full(s->meta_fd, iov, 2, t->meta_end);
	if (rc < 0)
		return rc;
	if (seg_idx_due(s, t, h->pos, t->meta_end, interval)) {
		uint8_t ent[INDEX_ENTRY_SIZE];
		struct index_entry e;
		uint32_t slot = t->idx_count;

		rc = seg_idx_reserve(s, ((uint64_t)slot + 1) * INDEX_ENTRY_SIZE);
		if (rc < 0)
			return rc;
		seg_idx_note(s, t, h, t->meta_end, &e);
		index_entry_encode(&e, ent);
		memcpy((uint8_t *)s->idx_map + (size_t)slot * INDEX_ENTRY_SIZE,
		       ent, sizeof(ent));
	}
	seg_tail_advance(s, t, h);
	return 0;
}

/* Restore the appender's index bookkeeping from the last entry kept. */
static void seg_idx_reload_last(struct seg *s, uint32_t count)
{
	struct index_entry e;

	if (count == 0) {
		s->idx_last_pos = s->base_pos;
		s->idx_last_meta = SEG_HDR_SIZE;
		return;
	}
	seg_idx_get(s, count - 1, &e);
	s->idx_last_pos = s->base_pos + e.rel_pos;
	s->idx_last_meta = e.meta_pos;
}

int seg_cut(struct seg *s, const struct seg_tail *t)
{
	int rc;

	uint64_t keep = (uint64_t)t->idx_count * INDEX_ENTRY_SIZE;
	uint64_t size = t->idx_alloc > keep ? t->idx_alloc : keep;

	if (size > s->w.idx_alloc) /* never grow: growth must be allocated */
		size = keep > s->w.idx_alloc ? keep : s->w.idx_alloc;
	if (size > keep) /* entries written since t go back to zeros */
		memset((uint8_t *)s->idx_map + keep, 0, (size_t)(size - keep));
	rc = io_ftruncate(s->idx_fd, size);
	if (rc == 0)
		rc = io_ftruncate(s->meta_fd, t->meta_end);
	if (rc == 0)
		rc = io_ftruncate(s->log_fd, t->data_end);
	if (rc < 0)
		return rc;
	seg_idx_reload_last(s, t->idx_count);
	if (t->end_offset == s->base_offset)
		s->first_ts = -1;
	pthread_mutex_lock(&s->verify_lock);
	if (atomic_load(&s->verified_pos) > t->end_pos) {
		atomic_store(&s->verified_pos, t->end_pos);
		s->verify_meta = t->meta_end;
	}
	s->win_valid = false;
	pthread_mutex_unlock(&s->verify_lock);
	s->w = *t;
	s->w.idx_alloc = size;
	seg_store_end(s, t);
	return 0;
}

int seg_set_codec(struct seg *s, int codec)
{
	struct seg_hdr sh = { s->base_offset, s->base_pos, s->created_ms,
			      (uint32_t)codec };
	uint8_t hdr[SEG_HDR_SIZE];
	int rc;

	assert(s->w.end_offset == s->base_offset);
	seg_hdr_encode(&sh, hdr);
	rc = io_pwrite_full(s->meta_fd, hdr, sizeof(hdr), 0);
	if (rc == 0)
		s->codec = codec;
	return rc;
}

int seg_seal(struct seg *s)
{
	uint64_t len = (uint64_t)s->w.idx_count * INDEX_ENTRY_SIZE;
	int rc = io_ftruncate(s->idx_fd, len);

	if (rc == 0)
		s->w.idx_alloc = len;
	return rc;
}

static bool seg_idx_slot_zero(const uint8_t *idx, uint64_t i)
{
	static const uint8_t zero[INDEX_ENTRY_SIZE];

	return memcmp(idx + i * INDEX_ENTRY_SIZE, zero, INDEX_ENTRY_SIZE) == 0;
}

uint64_t seg_index_entries(const uint8_t *idx, uint64_t size,
			   bool *tail_zero)
{
	uint64_t lo = 0, hi = size / INDEX_ENTRY_SIZE;

	/* Entries, then zero slots: find the first zero slot. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (seg_idx_slot_zero(idx, mid))
			hi = mid;
		else
			lo = mid + 1;
	}
	*tail_zero = true;
	for (uint64_t i = lo * INDEX_ENTRY_SIZE; i < size; i++) {
		if (idx[i] != 0) {
			*tail_zero = false;
			break;
		}
	}
	return lo;
}

int seg_sync(struct seg *s)
{
	int rc = seg_sync_data(s);

	if (rc == 0)
		rc = io_fdatasync(s->idx_fd);
	return rc;
}

struct sync_arg {
	int fd;
	int rc;
};

static void *sync_main(void *arg)
{
	struct sync_arg *a = arg;

	a->rc = io_fdatasync(a->fd);
	return NULL;
}

/*
 * The payload and the batch headers are synced at once, .meta by a
 * thread of its own: a durable commit waits for the slower of the two
 * fdatasyncs, not for their sum (a thread costs far less than a sync).
 */
int seg_sync_data(struct seg *s)
{
	struct sync_arg meta = { s->meta_fd, 0 };
	pthread_t t;
	bool threaded = pthread_create(&t, NULL, sync_main, &meta) == 0;
	int rc = io_fdatasync(s->log_fd);

	if (threaded)
		pthread_join(t, NULL);
	else
		meta.rc = io_fdatasync(s->meta_fd);
	return rc < 0 ? rc : meta.rc;
}

int seg_sync_index(struct seg *s)
{
	return io_fdatasync(s->idx_fd);
}

/* ---- walking batch headers --------------------------------------------- */

/* A buffered reader of consecutive batch headers in .meta. */
struct meta_scan {
	struct seg *s;
	uint64_t end;
	uint64_t buf_pos;
	size_t buf_len;
	uint8_t buf[META_SCAN_BYTES];
};

static void meta_scan_init(struct meta_scan *m, struct seg *s, uint64_t end)
{
	m->s = s;
	m->end = end;
	m->buf_pos = 0;
	m->buf_len = 0;
}

/*
 * Decode the batch header at meta_pos. -EIO if it is not a valid header
 * or its lengths array runs past the end; -ENOENT exactly at the end.
 */
static int meta_scan_hdr(struct meta_scan *m, uint64_t meta_pos,
			 struct batch_hdr *h)
{
	int rc;

	if (meta_pos == m->end)
		return -ENOENT;
	if (meta_pos + BATCH_HDR_SIZE > m->end)
		return -EIO;
	if (meta_pos < m->buf_pos ||
	    meta_pos + BATCH_HDR_SIZE > m->buf_pos + m->buf_len) {
		/* A lookup usually needs one header: read little first. */
		size_t n = m->buf_len ? META_SCAN_BYTES : META_SCAN_FIRST_BYTES;
		if (n > m->end - meta_pos)
			n = (size_t)(m->end - meta_pos);
		rc = io_pread_full(m->s->meta_fd, m->buf, n, meta_pos);
		if (rc < 0)
			return rc;
		m->buf_pos = meta_pos;
		m->buf_len = n;
	}
	rc = batch_hdr_decode(m->buf + (meta_pos - m->buf_pos), h);
	if (rc < 0)
		return rc;
	if (meta_pos + batch_meta_size(h->count) > m->end)
		return -EIO;
	return 0;
}

/* Whether h continues tail t: offsets, positions and data contiguous. */
static bool seg_batch_follows(const struct seg *s, const struct seg_tail *t,
			      const struct batch_hdr *h)
{
	return h->base_offset == t->end_offset && h->pos == t->end_pos &&
	       h->data_pos == t->data_end && h->codec == s->codec &&
	       (t->max_ts < 0 || h->max_ts >= t->max_ts);
}

/* Read and check lengths and payload of batch h at meta_pos. */
static int seg_check_batch(struct seg *s, const struct batch_hdr *h,
			   uint64_t meta_pos, void *scratch)
{
	uint32_t *lens = scratch;
	uint8_t *stored = (uint8_t *)scratch + 4ull * LOG_BATCH_RECORDS_MAX;
	struct seg_batch b = { *h, meta_pos };

	return seg_read_batch(s, &b, lens, stored);
}

/*
 * Walk all batches from the segment header on, rebuilding the index. From
 * the batch holding full_from on, payloads are read and checked too.
 * Stops at the first batch that is invalid or does not follow; *t is the
 * tail after the last good batch. *whole is set when the walk consumed
 * the .meta file exactly and the .log file holds exactly the data.
 */
static int seg_walk(struct seg *s, uint64_t full_from, uint32_t interval,
		    void *scratch, struct seg_tail *t, bool *whole)
{
	struct meta_scan *m;
	uint8_t ent[64 * INDEX_ENTRY_SIZE];
	uint32_t pending = 0, written = 0;
	int64_t msize, dsize;
	struct batch_hdr h;
	int rc;

	msize = io_fsize(s->meta_fd);
	dsize = io_fsize(s->log_fd);
	if (msize < 0 || dsize < 0)
		return msize < 0 ? (int)msize : (int)dsize;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	meta_scan_init(m, s, (uint64_t)msize);
	seg_tail_empty(s, t);
	s->first_ts = -1;
	seg_idx_reload_last(s, 0);
	rc = io_ftruncate(s->idx_fd, 0);
	for (;;) {
		if (rc < 0)
			break;
		rc = meta_scan_hdr(m, t->meta_end, &h);
		if (rc == -ENOENT) {
			rc = 0;
			break;
		}
		if (rc == -EIO || (rc == 0 && !seg_batch_follows(s, t, &h)) ||
		    (rc == 0 && h.data_pos + h.stored_len > (uint64_t)dsize)) {
			rc = 0;
			break;
		}
		if (rc < 0)
			break;
		if (h.base_offset + h.count > full_from) {
			rc = seg_check_batch(s, &h, t->meta_end, scratch);
			if (rc == -EIO) {
				rc = 0;
				break;
			}
			if (rc < 0)
				break;
		}
		if (seg_idx_due(s, t, h.pos, t->meta_end, interval)) {
			struct index_entry e;
			seg_idx_note(s, t, &h, t->meta_end, &e);
			index_entry_encode(&e, ent + pending * INDEX_ENTRY_SIZE);
			if (++pending == 64) {
				rc = io_pwrite_full(s->idx_fd, ent, sizeof(ent),
					(uint64_t)written * INDEX_ENTRY_SIZE);
				written += pending;
				pending = 0;
			}
		}
		seg_tail_advance(s, t, &h);
	}
	if (rc == 0 && pending)
		rc = io_pwrite_full(s->idx_fd, ent, pending * INDEX_ENTRY_SIZE,
				    (uint64_t)written * INDEX_ENTRY_SIZE);
	t->idx_alloc = (uint64_t)(written + pending) * INDEX_ENTRY_SIZE;
	*whole = t->meta_end == (uint64_t)msize && t->data_end == (uint64_t)dsize;
	free(m);
	return rc;
}

int seg_recover(struct seg *s, uint64_t from_offset, uint32_t interval,
		void *scratch, bool *cut)
{
	struct seg_tail t;
	bool whole;
	int rc;

	rc = seg_walk(s, from_offset, interval, scratch, &t, &whole);
	if (rc < 0)
		return rc;
	*cut = !whole;
	if (!whole) {
		rc = io_ftruncate(s->meta_fd, t.meta_end);
		if (rc == 0)
			rc = io_ftruncate(s->log_fd, t.data_end);
		if (rc < 0)
			return rc;
	}
	s->w = t;
	seg_store_end(s, &t);
	/* From from_offset on, every batch was checked just now. */
	if (from_offset <= s->base_offset) {
		atomic_store(&s->verified_pos, t.end_pos);
		s->verify_meta = t.meta_end;
	} else {
		atomic_store(&s->verified_pos, s->base_pos);
		s->verify_meta = SEG_HDR_SIZE;
	}
	return 0;
}

/* Sanity check of an index found on disk (Kafka checks the same ends). */
static bool seg_index_plausible(struct seg *s, struct meta_scan *m,
				uint32_t count)
{
	struct index_entry e;
	struct batch_hdr h;

	if (count == 0)
		return m->end == SEG_HDR_SIZE;
	seg_idx_get(s, 0, &e);
	if (e.rel_offset != 0 || e.rel_pos != 0 || e.meta_pos != SEG_HDR_SIZE)
		return false;
	seg_idx_get(s, count - 1, &e);
	if (e.meta_pos >= m->end || meta_scan_hdr(m, e.meta_pos, &h) < 0)
		return false;
	return h.base_offset == s->base_offset + e.rel_offset &&
	       h.pos == s->base_pos + e.rel_pos && h.max_ts == e.ts;
}

int seg_load(struct seg *s, uint32_t interval)
{
	struct meta_scan *m;
	int64_t msize, dsize, isize;
	struct index_entry e;
	struct seg_tail t;
	struct batch_hdr h;
	uint32_t count;
	bool whole, tail_zero;
	int rc;

	msize = io_fsize(s->meta_fd);
	dsize = io_fsize(s->log_fd);
	isize = io_fsize(s->idx_fd);
	if (msize < 0 || dsize < 0 || isize < 0)
		return -EIO;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	meta_scan_init(m, s, (uint64_t)msize);
	/* Trimmed at close; zeros allocated ahead if the segment was not. */
	count = 0;
	tail_zero = false;
	if ((uint64_t)isize <= (uint64_t)s->idx_cap * INDEX_ENTRY_SIZE)
		count = (uint32_t)seg_index_entries(s->idx_map, (uint64_t)isize,
						    &tail_zero);
	if (!tail_zero || !seg_index_plausible(s, m, count)) {
		free(m);
		rc = seg_walk(s, UINT64_MAX, interval, NULL, &t, &whole);
		if (rc < 0)
			return rc;
		if (!whole)
			return -EUCLEAN;
		goto out_store;
	}

	/* Start from the last indexed batch and read the headers after it. */
	seg_tail_empty(s, &t);
	t.idx_count = count;
	t.idx_alloc = (uint64_t)isize;
	rc = 0;
	if (count > 0) {
		seg_idx_get(s, count - 1, &e);
		rc = meta_scan_hdr(m, e.meta_pos, &h);
		if (rc == 0) {
			t.end_offset = h.base_offset;
			t.end_pos = h.pos;
			t.data_end = h.data_pos;
			t.meta_end = e.meta_pos;
		}
		if (rc == 0 && e.meta_pos > SEG_HDR_SIZE) {
			struct batch_hdr first;
			rc = meta_scan_hdr(m, SEG_HDR_SIZE, &first);
			s->first_ts = first.max_ts;
		}
	}
	while (rc == 0) {
		rc = meta_scan_hdr(m, t.meta_end, &h);
		if (rc == -ENOENT) {
			rc = 0;
			break;
		}
		if (rc == 0 && (!seg_batch_follows(s, &t, &h) ||
				h.data_pos + h.stored_len > (uint64_t)dsize))
			rc = -EUCLEAN;
		if (rc == 0)
			seg_tail_advance(s, &t, &h);
	}
	free(m);
	if (rc == -EIO)
		rc = -EUCLEAN;
	if (rc < 0)
		return rc;
	if (t.data_end != (uint64_t)dsize)
		return -EUCLEAN;
	seg_idx_reload_last(s, count);
out_store:
	/* Nothing was checksummed: reads will verify lazily. */
	s->w = t;
	seg_store_end(s, &t);
	atomic_store(&s->verified_pos, s->base_pos);
	s->verify_meta = SEG_HDR_SIZE;
	return 0;
}

/* ---- lookups ----------------------------------------------------------- */

enum seg_key { KEY_OFFSET, KEY_POS, KEY_TIME };

static uint64_t seg_entry_key(const struct seg *s, const struct index_entry *e,
			      enum seg_key k)
{
	switch (k) {
	case KEY_OFFSET:
		return s->base_offset + e->rel_offset;
	case KEY_POS:
		return s->base_pos + e->rel_pos;
	default:
		return (uint64_t)e->ts;
	}
}

/*
 * Binary search the index for the last entry whose key is <= want (for
 * time: < want) and return its .meta position, or the first batch's.
 */
static uint64_t seg_idx_floor(const struct seg *s, uint32_t count,
			      enum seg_key k, uint64_t want)
{
	uint32_t lo = 0, hi = count; /* answer in [lo-1, hi) */
	struct index_entry e;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint64_t key;
		bool below;

		seg_idx_get(s, mid, &e);
		key = seg_entry_key(s, &e, k);
		below = k == KEY_TIME ? (int64_t)key < (int64_t)want : key <= want;
		if (below)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return SEG_HDR_SIZE;
	seg_idx_get(s, lo - 1, &e);
	return e.meta_pos;
}

static bool seg_batch_matches(const struct batch_hdr *h, enum seg_key k,
			      uint64_t want)
{
	switch (k) {
	case KEY_OFFSET:
		return want < h->base_offset + h->count;
	case KEY_POS:
		return want < h->pos + h->logical_len;
	default:
		return h->max_ts >= (int64_t)want;
	}
}

static int seg_find(struct seg *s, enum seg_key k, uint64_t want,
		    struct seg_batch *b)
{
	uint64_t meta_end = atomic_load_explicit(&s->meta_end,
						 memory_order_acquire);
	uint32_t count = atomic_load_explicit(&s->idx_count,
					      memory_order_acquire);
	struct meta_scan m; /* on the stack: lookups allocate nothing */
	uint64_t meta_pos;
	int rc;

	meta_scan_init(&m, s, meta_end);
	meta_pos = seg_idx_floor(s, count, k, want);
	for (;;) {
		rc = meta_scan_hdr(&m, meta_pos, &b->h);
		if (rc < 0)
			break;
		if (seg_batch_matches(&b->h, k, want)) {
			b->meta_pos = meta_pos;
			break;
		}
		meta_pos += batch_meta_size(b->h.count);
	}
	if (rc == -ENOENT && k != KEY_TIME)
		rc = -EIO; /* the caller checked the range: lookups must hit */
	/* An index entry not checked by seg_load can point past the batch
	 * wanted: the batch found must start at or before it. */
	if (rc == 0 && (k == KEY_OFFSET ? b->h.base_offset > want :
			k == KEY_POS && b->h.pos > want))
		rc = -EIO;
	return rc;
}

int seg_find_offset(struct seg *s, uint64_t off, struct seg_batch *b)
{
	if (off < s->base_offset ||
	    off >= atomic_load_explicit(&s->end_offset, memory_order_acquire))
		return -ERANGE;
	return seg_find(s, KEY_OFFSET, off, b);
}

int seg_find_pos(struct seg *s, uint64_t pos, struct seg_batch *b)
{
	if (pos < s->base_pos ||
	    pos >= atomic_load_explicit(&s->end_pos, memory_order_acquire))
		return -ERANGE;
	return seg_find(s, KEY_POS, pos, b);
}

int seg_find_time(struct seg *s, int64_t ts, struct seg_batch *b)
{
	atomic_load_explicit(&s->end_pos, memory_order_acquire);
	return seg_find(s, KEY_TIME, (uint64_t)ts, b);
}

int seg_batch_locate(struct seg *s, const struct seg_batch *b,
		     uint64_t want_off, uint64_t want_pos, uint64_t *off,
		     uint64_t *pos)
{
	uint32_t lens[LENS_CHUNK];
	uint64_t cur_off = b->h.base_offset, cur_pos = b->h.pos;
	uint64_t end_pos = b->h.pos + b->h.logical_len;
	uint32_t i = 0;

	while (i < b->h.count) {
		uint32_t n = b->h.count - i;
		int rc;

		if (n > LENS_CHUNK)
			n = LENS_CHUNK;
		rc = io_pread_full(s->meta_fd, lens, 4ull * n,
				   b->meta_pos + BATCH_HDR_SIZE + 4ull * i);
		if (rc < 0)
			return rc;
		for (uint32_t j = 0; j < n; j++) {
			/* Unverified lengths (a clean open reads none) must
			 * not place a record outside its batch. */
			if (lens[j] == 0 || lens[j] > end_pos - cur_pos)
				return -EIO;
			if (want_off != UINT64_MAX ? cur_off == want_off :
			    want_pos < cur_pos + lens[j]) {
				*off = cur_off;
				*pos = cur_pos;
				return 0;
			}
			cur_off++;
			cur_pos += lens[j];
		}
		i += n;
	}
	return -EIO;
}

int seg_read_batch(struct seg *s, const struct seg_batch *b, uint32_t *lens,
		   void *stored)
{
	int rc;

	rc = io_pread_full(s->meta_fd, lens, 4ull * b->h.count,
			   b->meta_pos + BATCH_HDR_SIZE);
	if (rc == 0)
		rc = io_pread_full(s->log_fd, stored, b->h.stored_len,
				   b->h.data_pos);
	if (rc < 0)
		return rc;
	struct iovec v = { stored, b->h.stored_len };
	if (batch_crc(lens, b->h.count, &v, 1) != b->h.crc)
		return -EIO;
	return batch_check_lengths(&b->h, lens);
}

/* ---- lazy verification ------------------------------------------------- */

/* Remember [start, end) as bad; the last slot covers everything after. */
static void seg_mark_bad(struct seg *s, uint64_t start, uint64_t end)
{
	uint32_t n = atomic_load(&s->n_bad);

	if (n == SEG_BAD_MAX)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (s->bad[i].start == start)
			return; /* found again by another walk */
	}
	if (n == SEG_BAD_MAX - 1)
		end = UINT64_MAX;
	s->bad[n] = (struct seg_bad){ start, end };
	atomic_store_explicit(&s->n_bad, n + 1, memory_order_release);
}

/* Where a verification walk is: a batch's position and its header. */
struct verify_at {
	uint64_t pos, meta;
};

/*
 * Check the batch at v and step v past it; verify_lock held. A batch that
 * fails is remembered in bad[]; a header that cannot be decoded loses the
 * framing, so everything after it is bad and v jumps to end_pos.
 */
static int seg_verify_one(struct seg *s, struct verify_at *v,
			  uint64_t meta_end, uint64_t end_pos, uint8_t *buf)
{
	uint8_t hdr[BATCH_HDR_SIZE];
	struct batch_hdr h;
	uint32_t crc, sum_ok;
	uint64_t sum = 0;
	int rc;

	rc = io_pread_full(s->meta_fd, hdr, sizeof(hdr), v->meta);
	if (rc == 0)
		rc = batch_hdr_decode(hdr, &h);
	if (rc == 0 && (h.pos != v->pos ||
			v->meta + batch_meta_size(h.count) > meta_end))
		rc = -EIO;
	if (rc == -EIO) {
		seg_mark_bad(s, v->pos, UINT64_MAX);
		v->pos = end_pos;
		v->meta = meta_end;
		return 0;
	}
	if (rc < 0)
		return rc;

	crc = 0;
	sum_ok = 1;
	for (uint64_t i = 0; i < h.count;) {
		uint64_t n = h.count - i;
		if (n > VERIFY_CHUNK_BYTES / 4)
			n = VERIFY_CHUNK_BYTES / 4;
		rc = io_pread_full(s->meta_fd, buf, 4 * n,
				   v->meta + BATCH_HDR_SIZE + 4 * i);
		if (rc < 0)
			goto out_bad;
		for (uint64_t j = 0; j < n; j++) {
			uint32_t len;
			memcpy(&len, buf + 4 * j, 4);
			sum += len;
			sum_ok &= len != 0;
		}
		crc = crc32c(crc, buf, 4 * n);
		i += n;
	}
	for (uint64_t done = 0; done < h.stored_len;) {
		uint64_t n = h.stored_len - done;
		if (n > VERIFY_CHUNK_BYTES)
			n = VERIFY_CHUNK_BYTES;
		rc = io_pread_full(s->log_fd, buf, n, h.data_pos + done);
		if (rc < 0)
			goto out_bad;
		crc = crc32c(crc, buf, n);
		done += n;
	}
	if (crc != h.crc || !sum_ok || sum != h.logical_len)
		rc = -EIO;
out_bad:
	if (rc == -EIO)
		seg_mark_bad(s, h.pos, h.pos + h.logical_len);
	else if (rc < 0)
		return rc;
	v->meta += batch_meta_size(h.count);
	v->pos = h.pos + h.logical_len;
	return 0;
}

/* Walk v forward until it reaches upto (or the end); verify_lock held. */
static int seg_verify_walk(struct seg *s, struct verify_at *v, uint64_t upto,
			   uint8_t *buf)
{
	uint64_t meta_end = atomic_load_explicit(&s->meta_end,
						 memory_order_acquire);
	uint64_t end_pos = atomic_load_explicit(&s->end_pos,
						memory_order_acquire);
	int rc = 0;

	while (rc == 0 && v->pos < upto && v->meta < meta_end)
		rc = seg_verify_one(s, v, meta_end, end_pos, buf);
	return rc;
}

/*
 * Verify what [a, b) needs; verify_lock held. The prefix grows when the
 * read starts inside it; otherwise the window does (a new window starts at
 * the batch holding a), so a read near the end of a big cold segment
 * checks only the batches it reads. A window that reaches the prefix is
 * merged into it.
 */
static int seg_verify_locked(struct seg *s, uint64_t a, uint64_t b,
			     uint8_t *buf)
{
	struct verify_at v;
	int rc;

	if (a <= atomic_load(&s->verified_pos)) {
		v = (struct verify_at){ atomic_load(&s->verified_pos),
					s->verify_meta };
		rc = seg_verify_walk(s, &v, b, buf);
		s->verify_meta = v.meta;
		atomic_store(&s->verified_pos, v.pos);
	} else {
		if (!s->win_valid || a < s->win_start || a > s->win_end) {
			struct seg_batch bt;
			rc = seg_find_pos(s, a, &bt);
			if (rc < 0) { /* no framing here: walk from the prefix */
				v = (struct verify_at){
					atomic_load(&s->verified_pos),
					s->verify_meta };
				rc = seg_verify_walk(s, &v, b, buf);
				s->verify_meta = v.meta;
				atomic_store(&s->verified_pos, v.pos);
				return rc;
			}
			s->win_valid = true;
			s->win_start = s->win_end = bt.h.pos;
			s->win_meta = bt.meta_pos;
		}
		v = (struct verify_at){ s->win_end, s->win_meta };
		rc = seg_verify_walk(s, &v, b, buf);
		s->win_end = v.pos;
		s->win_meta = v.meta;
	}
	if (s->win_valid && s->win_start <= atomic_load(&s->verified_pos)) {
		if (s->win_end > atomic_load(&s->verified_pos)) {
			s->verify_meta = s->win_meta;
			atomic_store(&s->verified_pos, s->win_end);
		}
		s->win_valid = false;
	}
	return rc;
}

/*
 * The buffer a verification reads payload through: one per thread,
 * allocated at its first verification and freed when the thread ends,
 * so that reads allocate nothing per call.
 */
static pthread_key_t verify_buf_key;
static pthread_once_t verify_buf_once = PTHREAD_ONCE_INIT;
static bool verify_buf_key_ok;

static void verify_buf_key_make(void)
{
	verify_buf_key_ok = pthread_key_create(&verify_buf_key, free) == 0;
}

static uint8_t *verify_buf(void)
{
	uint8_t *buf;

	pthread_once(&verify_buf_once, verify_buf_key_make);
	if (!verify_buf_key_ok)
		return NULL;
	buf = pthread_getspecific(verify_buf_key);
	if (buf)
		return buf;
	buf = malloc(VERIFY_CHUNK_BYTES);
	if (buf && pthread_setspecific(verify_buf_key, buf) != 0) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

void seg_thread_release(void)
{
	if (!verify_buf_key_ok)
		return;
	free(pthread_getspecific(verify_buf_key));
	pthread_setspecific(verify_buf_key, NULL);
}

int seg_verify_range(struct seg *s, uint64_t a, uint64_t b)
{
	uint32_t n;
	int rc = 0;

	if (atomic_load_explicit(&s->verified_pos, memory_order_acquire) < b) {
		pthread_mutex_lock(&s->verify_lock);
		if (!(s->win_valid && s->win_start <= a && b <= s->win_end) &&
		    atomic_load(&s->verified_pos) < b) {
			uint8_t *buf = verify_buf();
			rc = buf ? seg_verify_locked(s, a, b, buf) : -ENOMEM;
		}
		pthread_mutex_unlock(&s->verify_lock);
		if (rc < 0)
			return rc;
	}
	n = atomic_load_explicit(&s->n_bad, memory_order_acquire);
	for (uint32_t i = 0; i < n; i++) {
		if (a < s->bad[i].end && s->bad[i].start < b)
			return -EIO;
	}
	return 0;
}

uint32_t seg_bad_count(struct seg *s)
{
	return atomic_load_explicit(&s->n_bad, memory_order_acquire);
}

int64_t seg_scrub_step(struct seg *s, struct seg_scrub_at *at, uint64_t upto,
		       uint64_t bytes)
{
	uint64_t meta_end = atomic_load_explicit(&s->meta_end,
						 memory_order_acquire);
	uint64_t end_pos = atomic_load_explicit(&s->end_pos,
						memory_order_acquire);
	struct verify_at v = { at->pos, at->meta };
	uint8_t *buf = verify_buf();
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	if (upto > end_pos)
		upto = end_pos;
	pthread_mutex_lock(&s->verify_lock);
	while (rc == 0 && v.pos < upto && v.meta < meta_end &&
	       v.pos - at->pos < bytes)
		rc = seg_verify_one(s, &v, meta_end, end_pos, buf);
	pthread_mutex_unlock(&s->verify_lock);
	if (rc < 0)
		return rc;
	bytes = v.pos - at->pos;
	*at = (struct seg_scrub_at){ v.pos, v.meta };
	return (int64_t)bytes;
}

/* ---- replication ------------------------------------------------------- */

int seg_scan_run(struct seg *s, const struct seg_batch *b, uint64_t limit,
		 uint64_t max_bytes, struct seg_run *r)
{
	uint64_t meta_end = atomic_load_explicit(&s->meta_end,
						 memory_order_acquire);
	struct meta_scan m; /* on the stack: fetches allocate nothing */
	uint64_t meta_pos = b->meta_pos;
	struct batch_hdr h = b->h;
	int rc = 0;

	*r = (struct seg_run){
		.meta_pos = b->meta_pos,
		.data_pos = b->h.data_pos,
		.end_offset = b->h.base_offset,
		.end_pos = b->h.pos,
		.first_epoch = b->h.epoch,
	};
	meta_scan_init(&m, s, meta_end);
	for (;;) {
		uint64_t msize = batch_meta_size(h.count);

		if (h.base_offset + h.count > limit)
			break;
		if (r->batches > 0 &&
		    r->meta_len + msize + r->data_len + h.stored_len > max_bytes)
			break;
		/* Stored batches are contiguous (checked at load): a header
		 * that says otherwise is damage, reported not shipped. */
		if (h.base_offset != r->end_offset || h.pos != r->end_pos ||
		    h.data_pos != r->data_pos + r->data_len)
			return -EIO;
		r->meta_len += msize;
		r->data_len += h.stored_len;
		r->end_offset += h.count;
		r->end_pos += h.logical_len;
		r->last_epoch = h.epoch;
		r->max_ts = h.max_ts;
		r->batches++;
		meta_pos += msize;
		rc = meta_scan_hdr(&m, meta_pos, &h);
		if (rc == -ENOENT)
			return 0; /* the end of the segment */
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A file of the clone being made: "<base>.<ext>.tmp". */
static int seg_open_tmp(int dir_fd, uint64_t base, const char *ext)
{
	return seg_open_file(dir_fd, base, ext, ".tmp", O_CREAT | O_TRUNC);
}

/* Rename the clone's three files over the segment's names. */
static int seg_rename_tmp(int dir_fd, uint64_t base)
{
	char name[64], tmp[80];

	for (size_t i = 0; i < 3; i++) {
		seg_file_name(name, sizeof(name), base, seg_exts[i]);
		snprintf(tmp, sizeof(tmp), "%s.tmp", name);
		if (renameat(dir_fd, tmp, dir_fd, name) < 0)
			return -errno;
	}
	return 0;
}

/* Carry s's verification of the prefix t over to its clone n. */
static void seg_clone_verified(struct seg *s, const struct seg_tail *t,
			       struct seg *n)
{
	uint32_t nbad;

	pthread_mutex_lock(&s->verify_lock);
	if (atomic_load(&s->verified_pos) >= t->end_pos) {
		atomic_store(&n->verified_pos, t->end_pos);
		n->verify_meta = t->meta_end;
	} else {
		atomic_store(&n->verified_pos, atomic_load(&s->verified_pos));
		n->verify_meta = s->verify_meta;
	}
	nbad = atomic_load(&s->n_bad);
	for (uint32_t i = 0; i < nbad; i++) {
		if (s->bad[i].start < t->end_pos)
			n->bad[n->n_bad++] = s->bad[i];
	}
	pthread_mutex_unlock(&s->verify_lock);
}

/* Copy the prefix t of s into the clone n's new files and sync them. */
static int seg_clone_fill(struct seg *s, const struct seg_tail *t,
			  struct seg *n, int dfd)
{
	uint64_t idx_len = (uint64_t)t->idx_count * INDEX_ENTRY_SIZE;
	int rc;

	rc = n->log_fd = seg_open_tmp(dfd, s->base_offset, "log");
	if (rc >= 0)
		rc = n->idx_fd = seg_open_tmp(dfd, s->base_offset, "index");
	if (rc >= 0)
		rc = n->meta_fd = seg_open_tmp(dfd, s->base_offset, "meta");
	if (rc >= 0)
		rc = io_copy_range(n->meta_fd, s->meta_fd, t->meta_end);
	if (rc >= 0)
		rc = io_copy_range(n->log_fd, s->log_fd, t->data_end);
	if (rc >= 0 && idx_len > 0)
		rc = io_pwrite_full(n->idx_fd, s->idx_map, idx_len, 0);
	if (rc >= 0)
		rc = seg_note_inodes(n);
	if (rc >= 0)
		rc = seg_map_index(n, s->idx_cap);
	if (rc >= 0)
		rc = seg_sync(n);
	return rc < 0 ? rc : 0;
}

int seg_clone_prefix(struct seg *s, const struct seg_tail *t,
		     struct seg **out)
{
	uint64_t idx_len = (uint64_t)t->idx_count * INDEX_ENTRY_SIZE;
	struct seg *n;
	int dfd, rc;

	dfd = files_dir_pin(s->dir);
	if (dfd < 0)
		return dfd;
	n = seg_alloc(s->dir, s->base_offset);
	if (!n) {
		files_dir_unpin(s->dir);
		return -ENOMEM;
	}
	n->base_pos = s->base_pos;
	n->created_ms = s->created_ms;
	n->codec = s->codec;
	rc = seg_clone_fill(s, t, n, dfd);
	if (rc == 0)
		rc = seg_rename_tmp(dfd, s->base_offset);
	if (rc < 0)
		goto out_unlink;
	files_dir_unpin(s->dir);
	n->w = *t;
	n->w.idx_alloc = idx_len;
	n->first_ts = t->end_offset > s->base_offset ? s->first_ts : -1;
	seg_idx_reload_last(n, t->idx_count);
	seg_clone_verified(s, t, n);
	seg_store_end(n, &n->w);
	files_slot_opened(&n->files);
	/* s's names now belong to n: its last reader unlinks nothing, and
	 * once closed it cannot be reopened. */
	atomic_store(&s->replaced, true);
	atomic_store(&s->doomed, true);
	*out = n;
	return 0;

out_unlink:
	seg_unlink_files(dfd, s->base_offset, ".tmp");
	files_dir_unpin(s->dir);
	seg_free(n);
	return rc;
}
