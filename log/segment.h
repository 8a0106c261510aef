/*
 * One segment of a partition: the three files <base>.log, <base>.meta and
 * <base>.index described in format.h and docs/FORMAT.md.
 *
 * A segment is reference counted. The partition holds one reference while
 * the segment is in its table; each reader cursor holds one on the
 * segments its last read returned extents of. A segment removed by
 * retention or truncation is marked doomed and its files are unlinked when
 * the last reference goes, so a reader in the middle of it never loses the
 * bytes under its feet.
 *
 * Descriptors. A segment's three files and its index mapping are a
 * slot of the descriptor budget (files.h): they are open only while the
 * slot is open, and stay open only while it is pinned (seg_pin). Every
 * function below that reads or writes the files, or the index mapping,
 * needs the caller to hold a pin (so do extents handed to readers);
 * seg_create, seg_open and seg_clone_prefix return the segment pinned
 * once. Creating, renaming and unlinking files pin the directory
 * themselves. A segment closed while idle is reopened by its names, and
 * only if they still name its files (inode numbers checked): a segment
 * removed meanwhile gives -ESTALE, never another segment's bytes.
 *
 * Fields marked (appender) are only touched by the thread holding the
 * partition's append lock. Fields marked (published) are written by the
 * appender with release stores after the bytes they describe are in the
 * files, and read by anyone with acquire loads: this is the only
 * synchronisation between the appender and readers.
 */
#ifndef TOPICFS_LOG_SEGMENT_H
#define TOPICFS_LOG_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "files.h"
#include "format.h"

/* Bad ranges remembered per segment; past this the rest is all bad. */
#define SEG_BAD_MAX 8

struct codec_ctx;

/* A segment's end: what the appender has written, or what is published. */
struct seg_tail {
	uint64_t end_offset, end_pos, data_end, meta_end;
	int64_t max_ts;
	uint32_t idx_count, last_epoch;
	uint64_t idx_alloc; /* .index file size: entries, then allocated zeros */
};

struct seg_bad {
	uint64_t start, end; /* partition positions, end exclusive */
};

struct seg {
	atomic_int refs;
	atomic_bool doomed;
	atomic_bool replaced; /* set with doomed: a clone took the names */
	struct files_dir *dir; /* the partition's, which outlives it */
	struct files_slot files; /* the descriptors below (files.h) */
	ino_t ino[3];          /* of .meta, .index, .log: reopen checks */

	uint64_t base_offset;
	uint64_t base_pos;
	int64_t created_ms;
	int codec;

	int log_fd, meta_fd, idx_fd; /* (files) valid while pinned */
	const uint8_t *idx_map; /* (files) idx_cap entries of address space */
	uint32_t idx_cap;

	_Atomic uint32_t idx_count;   /* (published) */
	_Atomic uint64_t end_offset;  /* (published) next offset */
	_Atomic uint64_t end_pos;     /* (published) partition position */
	_Atomic uint64_t data_end;    /* (published) .log bytes */
	_Atomic uint64_t meta_end;    /* (published) .meta bytes */
	_Atomic int64_t max_ts;       /* (published) -1 while empty */
	_Atomic uint32_t last_epoch;  /* (published) epoch of the last batch */

	bool idx_synced;        /* (flush_lock) sealed, and its index synced */

	struct seg_tail w;      /* (appender) written, maybe not yet published */
	int64_t first_ts;       /* (appender) timestamp of the first batch */
	uint64_t idx_last_pos;  /* (appender) payload position at last entry */
	uint64_t idx_last_meta; /* (appender) .meta position at last entry */

	/*
	 * Lazy verification of uncompressed segments, protected by
	 * verify_lock: every batch below verified_pos (and in the window) has had its CRC
	 * checked (when appended in this process, by recovery, by a read or
	 * by a scrub); the ones that failed are listed in bad[].
	 */
	pthread_mutex_t verify_lock;
	_Atomic uint64_t verified_pos;
	uint64_t verify_meta;
	/* One more verified stretch [win_start, win_end) beyond the prefix,
	 * so that a read near the end (tail) checks only what it reads. */
	bool win_valid;
	uint64_t win_start, win_end, win_meta;
	_Atomic uint32_t n_bad;
	struct seg_bad bad[SEG_BAD_MAX];
};

/* A batch found by a lookup: its header and where it sits in .meta. */
struct seg_batch {
	struct batch_hdr h;
	uint64_t meta_pos;
};

/* Name of a segment file: 20-digit base offset plus extension. */
void seg_file_name(char *buf, size_t size, uint64_t base_offset,
		   const char *ext);

/* Unlink a segment's three files, their names ending in suffix ("" or
 * ".deleted"); missing files are ignored. */
void seg_unlink_files(int dir_fd, uint64_t base, const char *suffix);

/* Create an empty segment's files (replacing stale ones of that name);
 * the segment is returned pinned once. */
int seg_create(struct files_dir *dir, uint64_t base_offset, uint64_t base_pos, int codec,
	       int64_t now_ms, uint32_t idx_cap, struct seg **out);

/*
 * Open an existing segment's files and check its header; the end state is
 * not known until seg_load or seg_recover. -ENOENT if the .meta file is
 * missing, -EIO if its header is bad or names another base offset.
 */
int seg_open(struct files_dir *dir, uint64_t base_offset, uint32_t idx_cap,
	     struct seg **out);

/*
 * Learn the end of a segment written by a clean shutdown (or flushed
 * below the recovery point) without reading payload: the index is checked
 * (and rebuilt from .meta headers if missing or inconsistent), then the
 * headers after the last index entry are read. Returns -EUCLEAN if the
 * files do not end exactly after the last batch, -EIO if a header cannot
 * be decoded.
 */
int seg_load(struct seg *s, uint32_t interval);

/*
 * Validate every batch from the start of the segment, or from the batch
 * that starts at offset from_offset (headers before it are only decoded),
 * checking header checksums, contiguity, lengths and payload CRC. The
 * segment is cut at the first invalid batch and its index rebuilt.
 * *cut is set when something was cut off. scratch must hold
 * LOG_BATCH_BYTES_MAX + 4 * LOG_BATCH_RECORDS_MAX bytes.
 */
int seg_recover(struct seg *s, uint64_t from_offset, uint32_t interval,
		void *scratch, bool *cut);

/*
 * Append one batch whose header fields (base_offset, pos, max_ts, count,
 * logical_len, epoch, codec) are filled in; data_pos, stored_len and crc
 * are set here. stored is the payload as stored (compressed or not), in
 * at most SEG_BATCH_PIECES pieces written back to back. The new end is not
 * published: call seg_publish after all batches of an append are written.
 * On error the files may hold a partial batch; the caller undoes with
 * seg_cut.
 */
#define SEG_BATCH_PIECES 8
int seg_write_batch(struct seg *s, struct batch_hdr *h, const uint32_t *lens,
		    const struct iovec *stored, int pieces, uint32_t interval);

/* Make the appender's tail s->w visible to readers. Batches between the
 * old published end and the new one were checksummed as they were
 * written, so they count as verified. */
void seg_publish(struct seg *s);

/*
 * Cut the segment back to the state t (an earlier copy of s->w), dropping
 * everything written after it, including index entries, and publish. The
 * index file gets t->idx_alloc bytes (0: just its entries), never more
 * than it has now.
 */
int seg_cut(struct seg *s, const struct seg_tail *t);

/*
 * Change the codec of an empty segment (rewrites its header): a segment's
 * batches all share its codec.
 */
int seg_set_codec(struct seg *s, int codec);

/* Trim the index file to its entries: the segment will not grow. */
int seg_seal(struct seg *s);

/*
 * The entries in the first size bytes of an index file, idx. The index of
 * the segment being appended to is allocated ahead and only trimmed to its
 * entries when the segment is sealed or closed, so the file of a live
 * partition (or of one whose daemon died) ends in zeros, the last chunk
 * possibly cut inside a slot: the entries end where the all-zero slots
 * begin (no entry is all zeros: its .meta position is past the segment
 * header). Found by binary search, O(log n) slots read, so a zero slot
 * among the entries is left to the checks of the entries themselves.
 * *tail_zero says whether every byte after the entries is zero; if not,
 * the file is not an index as topicfs writes it. Shared by seg_load and
 * `topicfs dump-log`.
 */
uint64_t seg_index_entries(const uint8_t *idx, uint64_t size,
			   bool *tail_zero);

/* fdatasync all three files; seg_sync_data: .log and .meta only (what
 * a commit needs); seg_sync_index: .index only. */
int seg_sync(struct seg *s);
int seg_sync_data(struct seg *s);
int seg_sync_index(struct seg *s);

/* Batch containing offset (base_offset <= off < end_offset). */
int seg_find_offset(struct seg *s, uint64_t off, struct seg_batch *b);
/* Batch containing position (base_pos <= pos < end_pos). */
int seg_find_pos(struct seg *s, uint64_t pos, struct seg_batch *b);
/* First batch whose timestamp is >= ts; -ENOENT if none. */
int seg_find_time(struct seg *s, int64_t ts, struct seg_batch *b);

/*
 * Walk the first records of batch b: with want_off, return in *pos the
 * position of record offset want_off; with want_pos (and want_off =
 * UINT64_MAX), return in *off and *pos the record containing want_pos.
 */
int seg_batch_locate(struct seg *s, const struct seg_batch *b,
		     uint64_t want_off, uint64_t want_pos, uint64_t *off,
		     uint64_t *pos);

/* Read and check a whole batch's lengths and stored payload. */
int seg_read_batch(struct seg *s, const struct seg_batch *b, uint32_t *lens,
		   void *stored);

/*
 * Make sure batches up to position upto are CRC-checked (uncompressed
 * segments) and report whether [a, b) touches a bad batch: 0, or -EIO.
 */
int seg_verify_range(struct seg *s, uint64_t a, uint64_t b);

/* Number of bad batches found so far (scrub report). */
uint32_t seg_bad_count(struct seg *s);

/* Where a scrub stands in a segment: the next batch's partition position
 * and .meta offset ({base_pos, SEG_HDR_SIZE} at the segment's start). */
struct seg_scrub_at {
	uint64_t pos, meta;
};

/*
 * The scrub's read: check the batches from *at on, whatever was verified
 * before (it looks for bytes that went bad on the disk since they were
 * checked), until at least `bytes` of payload were checked or position
 * upto is reached. A bad batch is remembered as by seg_verify_range (its
 * reads fail with EIO from then on). *at moves past what was checked.
 * Returns the payload bytes checked (0: *at is at upto or at the end), or
 * -ENOMEM or an I/O error.
 */
int64_t seg_scrub_step(struct seg *s, struct seg_scrub_at *at, uint64_t upto,
		       uint64_t bytes);

/* A run of whole batches in one segment (see log_read_batches). */
struct seg_run {
	uint64_t meta_pos, meta_len; /* in .meta */
	uint64_t data_pos, data_len; /* in .log */
	uint64_t end_offset, end_pos;
	uint32_t batches, first_epoch, last_epoch;
	int64_t max_ts;
};

/*
 * Walk the published batches from b on, while each ends at or below
 * offset limit and the run stays within max_bytes of .meta and .log
 * together (the first batch is taken whatever its size, if it ends at or
 * below limit). r->batches is 0 if b itself ends past limit. -EIO if a
 * header cannot be decoded or does not follow on.
 */
int seg_scan_run(struct seg *s, const struct seg_batch *b, uint64_t limit,
		 uint64_t max_bytes, struct seg_run *r);

/*
 * Make a new segment holding only the prefix t of s (an earlier tail of
 * it): its files are written as "<name>.tmp", synced and renamed over
 * s's names, so that readers holding s keep its files, now nameless and
 * unchanged, until they let go. On success s is marked doomed and
 * replaced (its last unref unlinks nothing) and *out is the clone with
 * one reference; the caller drops the table's reference to s. On failure
 * s is untouched and the temporary files are removed. After a crash at
 * any point the segment's files hold, name by name, either s or the
 * clone: both end in the same prefix, which recovery keeps.
 */
int seg_clone_prefix(struct seg *s, const struct seg_tail *t,
		     struct seg **out);

/* Keep the segment's files open (reopening them if closed) until
 * seg_unpin: 0, or -errno (-EMFILE, -ESTALE if it was removed). */
static inline int seg_pin(struct seg *s)
{
	return files_pin(&s->files);
}

static inline void seg_unpin(struct seg *s)
{
	files_unpin(&s->files);
}

static inline void seg_ref(struct seg *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/*
 * Remove the segment: rename its files to *.deleted at once (so a new
 * segment may take the name) and drop the caller's reference; the files
 * are unlinked when the last reader lets go.
 */
void seg_doom(struct seg *s);

/* seg_doom in two steps: rename the files to *.deleted (seg_unhide
 * renames them back), then mark doomed and drop the reference. */
int seg_hide(struct seg *s);
int seg_unhide(struct seg *s);
void seg_doom_hidden(struct seg *s);

/* Drop a reference; the last one closes (and unlinks a doomed segment). */
void seg_unref(struct seg *s);

/* seg_unpin and seg_unref. */
static inline void seg_release(struct seg *s)
{
	seg_unpin(s);
	seg_unref(s);
}

/* Free the calling thread's verification buffer (log_thread_release). */
void seg_thread_release(void);

#endif
