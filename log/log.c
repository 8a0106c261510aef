/*
 * A partition: the table of segments, checkpoints, recovery, appends,
 * retention, truncation and the read path.
 *
 * Locks, in the order they are taken:
 *   flush_lock   serialises syncs, checkpoint writes, retention,
 *                truncation and moves of the log start
 *   append_lock  one appender; guards cfg, the codec scratch and every
 *                write to the segment table and to the epoch cache
 *   epoch_lock   guards the epoch cache for readers (log_epoch_end):
 *                writers hold append_lock and take it to change the cache
 *   seg_lock     guards the segment table for readers looking a segment
 *                up, and the truncation history
 *   seg->verify_lock
 *   wait_lock    waiters for the change sequence (log_wait_change)
 *   (files.h)   a segment's or the directory's slot lock, then the
 *                budget's: taken inside any of the above, taking none
 * Readers take seg_lock only to find a segment they do not already hold;
 * reading bytes inside a held segment takes no lock (see read_ends).
 * State queries (log_get_state, log_get_bounds) never take append_lock.
 */
#include "log.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "epoch.h"
#include "files.h"
#include "format.h"
#include "io.h"
#include "scrub.h"
#include "segment.h"

_Static_assert(LOG_RECORD_BYTES_MAX == LOG_BATCH_BYTES_MAX,
	       "log.h and format.h disagree on the largest record");

#define CHECKPOINT_FILE "checkpoint"
#define CHECKPOINT_MAGIC "topicfs-partition-checkpoint 1\n"
#define CLEAN_FILE "clean-shutdown"
#define CHECKPOINT_BYTES_MAX 4096
/* Segments one cursor can hold, and so extents one read can return. */
#define CURSOR_HOLD_MAX 8
/* Truncations remembered for cursors that have not read since. */
#define TRUNC_HISTORY_MAX 16

/* A truncation: generation gen removed every byte at or past pos. */
struct trunc_rec {
	uint64_t gen, pos;
};

/*
 * The ends readers need, published together under a sequence counter so
 * a reader never pairs an offset with a position from another append.
 */
struct log_ends {
	_Atomic uint64_t leo, leo_pos, hw, hw_pos;
};

struct ends {
	uint64_t leo, leo_pos, hw, hw_pos;
};

struct log {
	char *path;
	struct files_dir dir;           /* closed while idle (files.h) */
	bool has_dir;                   /* dir was set up (log_free) */

	pthread_mutex_t flush_lock;
	pthread_mutex_t append_lock;
	pthread_mutex_t seg_lock;

	struct log_config cfg;          /* append_lock */
	struct seg **segs;              /* writes: append_lock + seg_lock */
	uint32_t nsegs, segs_cap;       /* as segs */

	atomic_uint ends_seq;           /* odd while ends are being changed */
	struct log_ends ends;
	_Atomic uint64_t start_offset, start_pos;
	_Atomic uint64_t recovery_point;
	atomic_int sticky;              /* 0 or positive errno */

	struct epoch_cache epochs;      /* append_lock to write, and
					   epoch_lock to change or read */
	pthread_mutex_t epoch_lock;
	_Atomic uint32_t pub_epoch;     /* newest epoch, for log_get_state */

	/* Truncations (seg_lock): trunc_gen counts them, hist[] holds the
	 * newest, trunc_lost_pos the lowest position of those dropped. */
	_Atomic uint64_t trunc_gen;
	struct trunc_rec hist[TRUNC_HISTORY_MAX];
	uint32_t nhist;
	uint64_t trunc_lost_pos;

	/* Wake-ups (log_wait_change). */
	_Atomic uint64_t change_seq;
	atomic_uint waiters;
	pthread_mutex_t wait_lock;
	pthread_cond_t wait_cond;       /* on CLOCK_MONOTONIC */

	struct codec_ctx *codec;        /* append_lock */
	uint8_t *zbuf;                  /* append_lock, compression output */
	size_t zcap;
	uint8_t *gather;                /* append_lock, a batch copied together */
	size_t gather_cap;
	int64_t last_ts;                /* append_lock */
	_Atomic int64_t pub_max_ts;     /* last_ts as published to readers */
	bool dir_dirty;                 /* append_lock: names not yet synced */
	struct ends ckpt;               /* flush_lock: as last checkpointed */
	uint64_t ckpt_start;            /* flush_lock */
	uint64_t ckpt_rp;               /* flush_lock */
	struct scrub_record scrub;      /* the one scrubbing thread's */
};

struct log_cursor {
	struct log *log;
	struct seg *held[CURSOR_HOLD_MAX];
	unsigned nheld;
	/* Truncation checks (see log_read in log.h): the generation seen,
	 * the highest position asked for or shown, and where reads now
	 * stop (UINT64_MAX: nowhere). */
	uint64_t gen, known_end, stale_pos;
	/* The last decompressed batch (compressed segments only). */
	struct seg *zseg;
	uint64_t zpos;
	uint32_t zlen;
	struct codec_ctx *codec; /* this reader's own decompression context */
	uint8_t *zbuf;      /* logical bytes, LOG_BATCH_BYTES_MAX at most */
	uint8_t *zstored;   /* stored bytes of that batch */
	uint32_t *zlens;
	size_t zbuf_cap, zstored_cap, zlens_cap; /* grown to the largest batch */
};

/* ---- logging ----------------------------------------------------------- */

static void log_default_logger(int priority, const char *msg, void *arg)
{
	(void)priority;
	(void)arg;
	fprintf(stderr, "topicfs: %s\n", msg);
}

static log_logger_fn *log_logger = log_default_logger;
static void *log_logger_arg;

void log_set_logger(log_logger_fn *fn, void *arg)
{
	log_logger = fn ? fn : log_default_logger;
	log_logger_arg = arg;
}

__attribute__((format(printf, 3, 4)))
static void log_msg(const struct log *l, int priority, const char *fmt, ...)
{
	char msg[512];
	int n;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "%s: ", l ? l->path : "log");
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	log_logger(priority, msg, log_logger_arg);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ----------------------------------------------------- */

void log_config_default(struct log_config *c)
{
	*c = (struct log_config){
		.segment_bytes = 1ull << 30,
		.segment_ms = 7ll * 24 * 3600 * 1000,
		.index_bytes = 10u << 20,
		.index_interval_bytes = 4096,
		.retention_ms = 7ll * 24 * 3600 * 1000,
		.retention_bytes = -1,
		.codec = LOG_CODEC_NONE,
		.zstd_level = 3,
		.batch_bytes = 1u << 20,
	};
}

int log_config_check(const struct log_config *c)
{
	if (c->segment_bytes < LOG_SEGMENT_BYTES_MIN ||
	    c->segment_bytes > LOG_SEGMENT_BYTES_MAX)
		return -EINVAL;
	if (c->segment_ms < 1 || c->index_interval_bytes < 1)
		return -EINVAL;
	if (c->index_bytes < LOG_INDEX_BYTES_MIN ||
	    c->index_bytes > LOG_INDEX_BYTES_MAX)
		return -EINVAL;
	if (c->retention_ms < -1 || c->retention_bytes < -1)
		return -EINVAL;
	if (!codec_name(c->codec))
		return -EINVAL;
	if (c->zstd_level < 1 || c->zstd_level > 22)
		return -EINVAL;
	if (c->batch_bytes < 1 || c->batch_bytes > LOG_BATCH_BYTES_MAX)
		return -EINVAL;
	return 0;
}

static uint32_t log_idx_cap(const struct log *l)
{
	return l->cfg.index_bytes / INDEX_ENTRY_SIZE;
}

/* ---- published ends ---------------------------------------------------- */

static void read_ends(struct log *l, struct ends *e)
{
	unsigned seq;

	do {
		while ((seq = atomic_load_explicit(&l->ends_seq,
						   memory_order_acquire)) & 1)
			;
		e->leo = atomic_load_explicit(&l->ends.leo, memory_order_relaxed);
		e->leo_pos = atomic_load_explicit(&l->ends.leo_pos,
						  memory_order_relaxed);
		e->hw = atomic_load_explicit(&l->ends.hw, memory_order_relaxed);
		e->hw_pos = atomic_load_explicit(&l->ends.hw_pos,
						 memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
	} while (atomic_load_explicit(&l->ends_seq, memory_order_relaxed) != seq);
}

/*
 * Move the change sequence and wake the waiters of log_wait_change, if
 * any. The sequence is stored before the waiter count is read, and a
 * waiter counts itself before it reads the sequence (both sequentially
 * consistent), so either the notifier sees the waiter or the waiter sees
 * the new sequence: no wake-up is lost, and an append with nobody
 * waiting costs two atomic operations.
 */
static void log_notify(struct log *l)
{
	atomic_fetch_add(&l->change_seq, 1);
	if (atomic_load(&l->waiters) == 0)
		return;
	pthread_mutex_lock(&l->wait_lock);
	pthread_cond_broadcast(&l->wait_cond);
	pthread_mutex_unlock(&l->wait_lock);
}

/* Called with append_lock held (the only writer). */
static void write_ends(struct log *l, const struct ends *e)
{
	unsigned seq = atomic_load_explicit(&l->ends_seq, memory_order_relaxed);

	atomic_store_explicit(&l->ends_seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&l->ends.leo, e->leo, memory_order_relaxed);
	atomic_store_explicit(&l->ends.leo_pos, e->leo_pos, memory_order_relaxed);
	atomic_store_explicit(&l->ends.hw, e->hw, memory_order_relaxed);
	atomic_store_explicit(&l->ends.hw_pos, e->hw_pos, memory_order_relaxed);
	atomic_store_explicit(&l->ends_seq, seq + 2, memory_order_release);
	log_notify(l);
}

static struct seg *log_active(const struct log *l)
{
	return l->segs[l->nsegs - 1];
}

/* ---- segment table ----------------------------------------------------- */

static int log_segs_push(struct log *l, struct seg *s)
{
	if (l->nsegs == l->segs_cap) {
		uint32_t cap = l->segs_cap ? l->segs_cap * 2 : 8;
		struct seg **n = malloc(cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		if (l->nsegs)
			memcpy(n, l->segs, l->nsegs * sizeof(*n));
		pthread_mutex_lock(&l->seg_lock);
		free(l->segs);
		l->segs = n;
		l->segs_cap = cap;
		pthread_mutex_unlock(&l->seg_lock);
	}
	pthread_mutex_lock(&l->seg_lock);
	l->segs[l->nsegs++] = s;
	pthread_mutex_unlock(&l->seg_lock);
	return 0;
}

/*
 * Take segments [from, to) out of the table and drop them: their files
 * are renamed to *.deleted at once and unlinked when the last reader lets
 * go, so a new segment may reuse the name meanwhile.
 */
static void log_segs_drop(struct log *l, uint32_t from, uint32_t to)
{
	struct seg *gone[64];
	uint32_t n = to - from;

	while (n > 0) {
		uint32_t k = n < 64 ? n : 64;
		pthread_mutex_lock(&l->seg_lock);
		memcpy(gone, l->segs + from, k * sizeof(*gone));
		memmove(l->segs + from, l->segs + from + k,
			(l->nsegs - from - k) * sizeof(*gone));
		l->nsegs -= k;
		pthread_mutex_unlock(&l->seg_lock);
		for (uint32_t i = 0; i < k; i++)
			seg_doom(gone[i]);
		n -= k;
	}
	l->dir_dirty = true;
}

/* Index of the last segment whose key <= want (0 if none). seg_lock. */
static uint32_t log_seg_floor(struct log *l, bool by_pos, uint64_t want)
{
	uint32_t lo = 0, hi = l->nsegs;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint64_t key = by_pos ? l->segs[mid]->base_pos :
				       l->segs[mid]->base_offset;
		if (key <= want)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : 0;
}

/* A referenced segment holding offset or position want. */
static struct seg *log_seg_get(struct log *l, bool by_pos, uint64_t want)
{
	struct seg *s;

	pthread_mutex_lock(&l->seg_lock);
	s = l->segs[log_seg_floor(l, by_pos, want)];
	seg_ref(s);
	pthread_mutex_unlock(&l->seg_lock);
	return s;
}

/* The i-th segment of the table, referenced, or NULL past the last (for
 * walks that must not hold seg_lock while they work on a segment). */
static struct seg *log_seg_nth(struct log *l, uint32_t i)
{
	struct seg *s = NULL;

	pthread_mutex_lock(&l->seg_lock);
	if (i < l->nsegs) {
		s = l->segs[i];
		seg_ref(s);
	}
	pthread_mutex_unlock(&l->seg_lock);
	return s;
}

/* log_seg_get with the segment's files pinned (seg_release ends it). */
static int log_seg_use(struct log *l, bool by_pos, uint64_t want,
		       struct seg **out)
{
	struct seg *s = log_seg_get(l, by_pos, want);
	int rc = seg_pin(s);

	if (rc < 0) {
		seg_unref(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Unpin the segments [from, to) of the table; append_lock held. */
static void log_unpin_segs(struct log *l, uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++)
		seg_unpin(l->segs[i]);
}

/*
 * The partition directory's descriptor, pinned (files.h): every use of it
 * lies between log_dir_pin and log_dir_unpin, since an idle partition's
 * directory may be closed. -EMFILE and the like are returned, never
 * taken for a failed sync.
 */
static int log_dir_pin(struct log *l)
{
	return files_dir_pin(&l->dir);
}

static void log_dir_unpin(struct log *l)
{
	files_dir_unpin(&l->dir);
}

static int log_epoch_save(struct log *l)
{
	int dfd = log_dir_pin(l), rc;

	if (dfd < 0)
		return dfd;
	rc = epoch_save(&l->epochs, dfd);
	log_dir_unpin(l);
	return rc;
}

/* ---- checkpoints ------------------------------------------------------- */

/* The checkpoint file's text for recovery point *rp (clamped to the log
 * end) into buf; its length. *e gets the ends it names. */
static int log_checkpoint_format(struct log *l, uint64_t *rp, struct ends *e,
				 char buf[CHECKPOINT_BYTES_MAX])
{
	uint64_t start = atomic_load(&l->start_offset);
	uint64_t start_pos = atomic_load(&l->start_pos);
	int n;

	read_ends(l, e);
	if (*rp > e->leo)
		*rp = e->leo;
	n = snprintf(buf, CHECKPOINT_BYTES_MAX,
		     CHECKPOINT_MAGIC
		     "log_start_offset %" PRIu64 "\n"
		     "log_start_pos %" PRIu64 "\n"
		     "recovery_point %" PRIu64 "\n"
		     "high_watermark %" PRIu64 "\n",
		     start, start_pos, *rp, e->hw);
	n += snprintf(buf + n, CHECKPOINT_BYTES_MAX - (size_t)n,
		      "crc32c %08x\n", crc32c(0, buf, (size_t)n));
	return n;
}

/* Write the checkpoint file; flush_lock held. */
static int log_checkpoint_write(struct log *l, uint64_t rp)
{
	char buf[CHECKPOINT_BYTES_MAX];
	uint64_t start = atomic_load(&l->start_offset);
	struct ends e;
	int n, dfd, rc;

	n = log_checkpoint_format(l, &rp, &e, buf);
	dfd = log_dir_pin(l);
	if (dfd < 0)
		return dfd; /* no descriptor: not a failed write (EMFILE) */
	rc = io_replace_file(dfd, CHECKPOINT_FILE, buf, (size_t)n);
	log_dir_unpin(l);
	if (rc < 0) {
		log_msg(l, LOG_ERR, "writing checkpoint: %s", strerror(-rc));
		return rc;
	}
	atomic_store(&l->recovery_point, rp);
	l->ckpt = e;
	l->ckpt_start = start;
	l->ckpt_rp = rp;
	return 0;
}

struct checkpoint {
	uint64_t start, start_pos, rp, hw;
};

static int log_checkpoint_read(struct log *l, struct checkpoint *ck)
{
	char *buf, *crc_line;
	unsigned long long v[4];
	unsigned crc;
	ssize_t n;
	int rc = -EIO;

	n = io_read_file(l->dir.fd, CHECKPOINT_FILE, CHECKPOINT_BYTES_MAX, &buf);
	if (n < 0)
		return (int)n;
	crc_line = strstr(buf, "crc32c ");
	if (crc_line && sscanf(crc_line, "crc32c %8x", &crc) == 1 &&
	    crc == crc32c(0, buf, (size_t)(crc_line - buf)) &&
	    sscanf(buf, CHECKPOINT_MAGIC "log_start_offset %llu\n"
			"log_start_pos %llu\nrecovery_point %llu\n"
			"high_watermark %llu\n",
		   &v[0], &v[1], &v[2], &v[3]) == 4 &&
	    v[0] <= INT64_MAX && v[1] <= INT64_MAX && v[2] <= INT64_MAX &&
	    v[3] <= INT64_MAX) {
		/* Offsets and positions are Kafka's int64: a larger one would
		 * start a log with no room to grow (fuzz_index found it). */
		*ck = (struct checkpoint){ v[0], v[1], v[2], v[3] };
		rc = 0;
	}
	free(buf);
	return rc;
}

/* ---- opening ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * List the base offsets of the segments in the directory (those with a
 * .meta file), sorted, and remove leftovers: *.tmp, *.deleted, and .log
 * or .index files whose .meta never got written. At open: the directory
 * is pinned (as in every function up to log_open).
 */
static int log_list_segments(struct log *l, uint64_t **out, uint32_t *n_out)
{
	uint64_t *bases = NULL;
	uint32_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	fd = files_openat(l->dir.fd, ".", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		const char *name = de->d_name, *dot = strchr(name, '.');
		size_t len = strlen(name);
		char *end;
		uint64_t base;

		if (len > 4 && (strcmp(name + len - 4, ".tmp") == 0 ||
				(len > 8 && strcmp(name + len - 8, ".deleted") == 0))) {
			unlinkat(l->dir.fd, name, 0);
			continue;
		}
		if (!dot || dot - name != 20)
			continue;
		base = strtoull(name, &end, 10);
		if (end != dot)
			continue;
		if (strcmp(dot, ".meta") != 0) {
			char meta[64];
			struct stat st;
			seg_file_name(meta, sizeof(meta), base, "meta");
			if ((strcmp(dot, ".log") == 0 || strcmp(dot, ".index") == 0) &&
			    fstatat(l->dir.fd, meta, &st, 0) < 0 && errno == ENOENT)
				unlinkat(l->dir.fd, name, 0);
			continue;
		}
		if (n == cap) {
			uint64_t *nb;
			cap = cap ? cap * 2 : 16;
			nb = realloc(bases, cap * sizeof(*bases));
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			bases = nb;
		}
		bases[n++] = base;
	}
	closedir(d);
	if (rc < 0) {
		free(bases);
		return rc;
	}
	if (n)
		qsort(bases, n, sizeof(*bases), cmp_u64);
	*out = bases;
	*n_out = n;
	return 0;
}

static void log_remove_segment_files(struct log *l, uint64_t base)
{
	seg_unlink_files(l->dir.fd, base, "");
	l->dir_dirty = true;
}

/* Remove the segments with these bases from disk (after a cut). */
static void log_remove_bases(struct log *l, const uint64_t *bases, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		log_msg(l, LOG_WARNING,
			"segment %020" PRIu64 ": removed, it follows the point "
			"where the log was cut", bases[i]);
		log_remove_segment_files(l, bases[i]);
	}
}

/*
 * Open and load every segment. Segments that lie wholly below the log
 * start are deleted; the ones at or after the recovery point are checked
 * batch by batch unless the shutdown was clean.
 */
static int log_load_segments(struct log *l, const struct checkpoint *ck,
			     bool clean)
{
	uint64_t *bases = NULL;
	uint32_t n = 0, i = 0;
	void *scratch = NULL;
	int rc;

	rc = log_list_segments(l, &bases, &n);
	if (rc < 0)
		return rc;
	/* Segments that end at or below the log start were retained away. */
	while (i + 1 < n && bases[i + 1] <= ck->start) {
		log_remove_segment_files(l, bases[i]);
		i++;
	}
	for (; i < n; i++) {
		bool recover = !clean &&
			       (i + 1 == n || bases[i + 1] > ck->rp);
		struct seg *s;
		bool cut = false;

		rc = seg_open(&l->dir, bases[i], log_idx_cap(l), &s);
		if (rc == 0 && l->nsegs > 0) {
			struct seg *prev = log_active(l);
			if (s->base_offset != prev->w.end_offset ||
			    s->base_pos != prev->w.end_pos) {
				seg_release(s);
				rc = -EIO;
			}
		}
		/* Only damage cuts the log: running out of descriptors or
		 * memory fails the open and leaves every file as it is. */
		if (rc < 0) {
			if ((rc == -EIO || rc == -ENOENT) &&
			    (recover || (!clean && bases[i] >= ck->rp))) {
				log_msg(l, LOG_WARNING, "segment %020" PRIu64
					": unreadable header (%s), cutting the "
					"log here", bases[i], strerror(-rc));
				log_remove_bases(l, bases + i, n - i);
				rc = 0;
				break;
			}
			log_msg(l, LOG_ERR, "segment %020" PRIu64 ": %s",
				bases[i], strerror(-rc));
			goto out;
		}
		if (!recover) {
			rc = seg_load(s, l->cfg.index_interval_bytes);
			if (rc == -EUCLEAN) {
				log_msg(l, LOG_WARNING, "segment %020" PRIu64
					": files do not end after the last "
					"batch; recovering it", bases[i]);
				recover = true;
			} else if (rc < 0) {
				log_msg(l, LOG_ERR, "segment %020" PRIu64
					": %s", bases[i], strerror(-rc));
				seg_release(s);
				goto out;
			}
		}
		if (recover) {
			if (!scratch)
				scratch = malloc(LOG_BATCH_BYTES_MAX +
						 4ull * LOG_BATCH_RECORDS_MAX);
			rc = scratch ? seg_recover(s, ck->rp,
						   l->cfg.index_interval_bytes,
						   scratch, &cut) : -ENOMEM;
			if (rc < 0) {
				log_msg(l, LOG_ERR, "segment %020" PRIu64
					": recovery failed: %s", bases[i],
					strerror(-rc));
				seg_release(s);
				goto out;
			}
		}
		rc = log_segs_push(l, s);
		if (rc < 0) {
			seg_release(s);
			goto out;
		}
		seg_unpin(s); /* closed again if the budget needs it */
		if (cut) {
			log_msg(l, LOG_WARNING, "segment %020" PRIu64
				": cut at offset %" PRIu64 " (position %" PRIu64
				"), the first batch that is torn or fails its "
				"checksum", bases[i], s->w.end_offset,
				s->w.end_pos);
			log_remove_bases(l, bases + i + 1, n - i - 1);
			break;
		}
	}
out:
	free(scratch);
	free(bases);
	return rc;
}

/* ---- batches: opening and closing many partitions at once ------------- */

/*
 * A mount opens every partition and an unmount closes every one; doing
 * each one's syncs in turn (three at an open, eight at a close) took
 * seconds per thousand partitions. In a batch the syncs are left to
 * syncfs(2) of the file system, once at the end (log.h, log_batch_begin,
 * and docs/DESIGN.md "Durability and recovery").
 */
/* A partition closed in a batch: its directory, and whether it staged a
 * new checkpoint ("checkpoint.tmp"). */
struct batch_closed {
	char *dir;
	bool staged;
};

struct log_batch {
	dev_t dev;          /* partitions on this file system take part */
	int fs_fd;          /* a descriptor on it, for syncfs */
	struct batch_closed *closed; /* the partitions closed */
	size_t nclosed, cap;
};

/* Each thread has its own: a batch is what one thread opens or closes. */
static _Thread_local struct log_batch *log_batch_cur;

/* The batch the calling thread runs, if l's directory takes part. */
static struct log_batch *log_batch_for(const struct log *l)
{
	struct log_batch *b = log_batch_cur;

	return b && b->dev == l->dir.dev ? b : NULL;
}

int log_batch_begin(int fs_fd)
{
	struct log_batch *b;
	struct stat st;

	if (log_batch_cur)
		return -EBUSY;
	if (fstat(fs_fd, &st) < 0)
		return -errno;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->dev = st.st_dev;
	b->fs_fd = fs_fd;
	log_batch_cur = b;
	return 0;
}

/* Note that the partition in dir was closed in batch b. */
static int log_batch_note(struct log_batch *b, const char *dir, bool staged)
{
	char *d;

	if (b->nclosed == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct batch_closed *n = realloc(b->closed, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->closed = n;
		b->cap = cap;
	}
	d = strdup(dir);
	if (!d)
		return -ENOMEM;
	b->closed[b->nclosed++] = (struct batch_closed){ d, staged };
	return 0;
}

/*
 * The second step of a batched close, once everything the partition in
 * dir wrote is durable: its staged checkpoint takes the checkpoint's
 * name and the clean-shutdown marker is made. A failure leaves the
 * partition to be recovered at its next open (one log line).
 */
static void log_batch_commit(const char *dir, bool staged)
{
	int dfd, fd, rc = 0;

	dfd = files_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0);
	if (dfd < 0)
		rc = dfd;
	if (rc == 0 && staged && renameat(dfd, CHECKPOINT_FILE ".tmp", dfd,
					  CHECKPOINT_FILE) < 0)
		rc = -errno;
	if (rc == 0) {
		fd = files_openat(dfd, CLEAN_FILE, O_WRONLY | O_CREAT | O_TRUNC,
				  0644);
		if (fd < 0)
			rc = fd;
		else
			close(fd);
	}
	if (dfd >= 0)
		close(dfd);
	if (rc < 0) {
		char m[PATH_MAX + 128];
		snprintf(m, sizeof(m), "%s: unclean close: clean-shutdown "
			 "marker not written (%s)", dir, strerror(-rc));
		log_logger(LOG_ERR, m, log_logger_arg);
	}
}

int log_batch_end(void)
{
	struct log_batch *b = log_batch_cur;
	int rc = 0;

	if (!b)
		return 0;
	log_batch_cur = NULL;
	if (syncfs(b->fs_fd) < 0)
		rc = -errno;
	/* Only now is everything before the markers durable. */
	for (size_t i = 0; i < b->nclosed && rc == 0; i++)
		log_batch_commit(b->closed[i].dir, b->closed[i].staged);
	if (rc == 0 && b->nclosed > 0 && syncfs(b->fs_fd) < 0)
		rc = -errno;
	if (rc < 0) {
		char m[160];
		snprintf(m, sizeof(m), "syncing the file system of %zu "
			 "partition(s) failed (%s)%s", b->nclosed, strerror(-rc),
			 b->nclosed ? ": they will be recovered at their next "
			 "open" : "");
		log_logger(LOG_ERR, m, log_logger_arg);
	}
	for (size_t i = 0; i < b->nclosed; i++)
		free(b->closed[i].dir);
	free(b->closed);
	free(b);
	return rc;
}

static int log_alloc(const char *dir, const struct log_config *cfg,
		     struct log **out)
{
	struct log *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;

	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	pthread_mutex_init(&l->flush_lock, NULL);
	pthread_mutex_init(&l->append_lock, NULL);
	pthread_mutex_init(&l->seg_lock, NULL);
	pthread_mutex_init(&l->epoch_lock, NULL);
	pthread_mutex_init(&l->wait_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->wait_cond, &ca);
	pthread_condattr_destroy(&ca);
	l->path = strdup(dir);
	l->codec = codec_ctx_new();
	l->last_ts = -1;
	l->trunc_lost_pos = UINT64_MAX;
	*out = l;
	if (!l->path || !l->codec)
		return -ENOMEM;
	return 0;
}

static void log_free(struct log *l)
{
	scrub_record_free(&l->scrub);
	for (uint32_t i = 0; i < l->nsegs; i++)
		seg_unref(l->segs[i]);
	free(l->segs);
	if (l->has_dir)
		files_dir_close(&l->dir);
	codec_ctx_free(l->codec);
	epoch_free(&l->epochs);
	free(l->zbuf);
	free(l->gather);
	free(l->path);
	pthread_mutex_destroy(&l->flush_lock);
	pthread_mutex_destroy(&l->append_lock);
	pthread_mutex_destroy(&l->seg_lock);
	pthread_mutex_destroy(&l->epoch_lock);
	pthread_mutex_destroy(&l->wait_lock);
	pthread_cond_destroy(&l->wait_cond);
	free(l);
}

int log_open(const char *dir, const struct log_config *cfg, struct log **out)
{
	struct checkpoint ck = { 0, 0, 0, 0 };
	struct ends e;
	struct log *l = NULL;
	struct seg *act;
	bool clean, batched;
	int rc;

	if (log_config_check(cfg) < 0)
		return -EINVAL;
	rc = log_alloc(dir, cfg, &l);
	if (rc < 0)
		goto out_free;
	/* Pinned until the end of the open (every step below uses it). */
	l->has_dir = true;
	rc = files_dir_open(&l->dir, dir, true);
	if (rc < 0)
		goto out_free;
	batched = log_batch_for(l) != NULL;
	clean = faccessat(l->dir.fd, CLEAN_FILE, F_OK, 0) == 0;
	/* Only damage is recovered from; running out of descriptors or
	 * memory fails the open and changes nothing. */
	rc = log_checkpoint_read(l, &ck);
	if (rc == -EIO) {
		log_msg(l, LOG_WARNING, "checkpoint unreadable, recovering "
			"the whole log");
		clean = false;
	} else if (rc < 0 && rc != -ENOENT) {
		goto out_free;
	}
	rc = epoch_load(&l->epochs, l->dir.fd);
	if (rc == -EIO)
		log_msg(l, LOG_WARNING, "leader-epoch checkpoint unreadable, "
			"starting an empty one");
	else if (rc < 0)
		goto out_free;

	rc = log_load_segments(l, &ck, clean);
	if (rc < 0)
		goto out_free;
	if (l->nsegs == 0) {
		struct seg *s;
		rc = seg_create(&l->dir, ck.start, ck.start_pos, l->cfg.codec,
				now_ms(), log_idx_cap(l), &s);
		if (rc < 0)
			goto out_free;
		seg_unpin(s);
		rc = log_segs_push(l, s);
		if (rc < 0) {
			seg_doom(s);
			goto out_free;
		}
		l->dir_dirty = true;
	}
	/* Sealed segments found on disk: their indexes were synced when
	 * they were sealed, or rebuilt and synced by recovery below. */
	for (uint32_t i = 0; i + 1 < l->nsegs; i++)
		l->segs[i]->idx_synced = true;
	act = log_active(l);
	e.leo = act->w.end_offset;
	e.leo_pos = act->w.end_pos;
	if (ck.start < l->segs[0]->base_offset || ck.start > e.leo)
		ck.start = l->segs[0]->base_offset;
	atomic_store(&l->start_offset, ck.start);
	if (ck.start == l->segs[0]->base_offset) {
		atomic_store(&l->start_pos, l->segs[0]->base_pos);
	} else {
		write_ends(l, &(struct ends){ e.leo, e.leo_pos, e.leo, e.leo_pos });
		rc = log_offset_to_pos(l, ck.start, &ck.start_pos);
		if (rc < 0)
			goto out_free;
		atomic_store(&l->start_pos, ck.start_pos);
	}
	e.hw = ck.hw < ck.start ? ck.start : ck.hw > e.leo ? e.leo : ck.hw;
	e.hw_pos = e.leo_pos;
	write_ends(l, &e);
	if (e.hw < e.leo) {
		rc = log_offset_to_pos(l, e.hw, &e.hw_pos);
		if (rc < 0)
			goto out_free;
		write_ends(l, &e);
	}
	for (uint32_t i = 0; i < l->nsegs; i++) {
		int64_t ts = atomic_load(&l->segs[i]->max_ts);
		if (ts > l->last_ts)
			l->last_ts = ts;
	}
	atomic_store(&l->pub_max_ts, l->last_ts);
	/* Both truncations run; either one changing the cache saves it. */
	if ((int)epoch_truncate_end(&l->epochs, e.leo + 1) |
	    (int)epoch_truncate_start(&l->epochs, ck.start)) {
		rc = log_epoch_save(l);
		if (rc < 0)
			goto out_free;
	}
	atomic_store(&l->pub_epoch, epoch_latest(&l->epochs));

	/* Recovered bytes become durable, and the marker goes, before any
	 * append can change the log: here, or in a batch (a mount) by the
	 * sync of the whole file system that ends it (log_batch_end),
	 * before anything can be appended. A batched open writes no
	 * checkpoint: the one on disk stays until log_checkpoint, and it
	 * names a recovery point at or below the durable one. */
	atomic_store(&l->recovery_point, clean ? e.leo : ck.rp);
	pthread_mutex_lock(&l->flush_lock);
	rc = 0;
	if (!clean && !batched) {
		for (uint32_t i = 0; i < l->nsegs && rc == 0; i++) {
			if (l->segs[i]->w.end_offset <= ck.rp &&
			    i + 1 < l->nsegs)
				continue;
			rc = seg_pin(l->segs[i]);
			if (rc == 0) {
				rc = seg_sync(l->segs[i]);
				seg_unpin(l->segs[i]);
			}
		}
	}
	if (rc == 0 && unlinkat(l->dir.fd, CLEAN_FILE, 0) < 0 && errno != ENOENT)
		rc = -errno;
	if (rc == 0 && batched) {
		atomic_store(&l->recovery_point, e.leo);
		l->ckpt = (struct ends){ .hw = ck.hw };
		l->ckpt_start = ck.start;
		l->ckpt_rp = ck.rp;
	} else if (rc == 0) {
		rc = io_fsync_dir(l->dir.fd);
		/* On a full disk the old checkpoint stays: it is only older. */
		if (rc == 0 && log_checkpoint_write(l, e.leo) < 0)
			log_msg(l, LOG_WARNING, "checkpoint not updated at open; "
				"the next recovery may check more");
	}
	l->dir_dirty = false;
	pthread_mutex_unlock(&l->flush_lock);
	if (rc < 0)
		goto out_free;
	log_dir_unpin(l);
	*out = l;
	return 0;

out_free:
	if (l) {
		log_msg(l, LOG_ERR, "cannot open partition: %s", strerror(-rc));
		log_free(l);
	}
	return rc;
}

const char *log_path(const struct log *l)
{
	return l->path;
}

int log_set_config(struct log *l, const struct log_config *cfg)
{
	if (log_config_check(cfg) < 0)
		return -EINVAL;
	pthread_mutex_lock(&l->append_lock);
	l->cfg = *cfg;
	pthread_mutex_unlock(&l->append_lock);
	return 0;
}

/* ---- appending --------------------------------------------------------- */

static bool log_should_roll(const struct log *l, const struct seg *s,
			    int codec, uint32_t stored_len, uint32_t count,
			    int64_t now)
{
	const struct seg_tail *t = &s->w;

	if (t->end_offset == s->base_offset)
		return false;
	return s->codec != codec ||
	       t->data_end + stored_len > l->cfg.segment_bytes ||
	       t->meta_end + batch_meta_size(count) > l->cfg.segment_bytes ||
	       t->idx_count >= s->idx_cap ||
	       now - s->first_ts >= l->cfg.segment_ms;
}

static int log_roll(struct log *l, int codec, int64_t now)
{
	struct seg *old = log_active(l), *s;
	int rc;

	/* Pinned for the rest of the append, as the old active is. */
	rc = seg_create(&l->dir, old->w.end_offset, old->w.end_pos,
			codec, now, log_idx_cap(l), &s);
	if (rc < 0)
		return rc;
	rc = log_segs_push(l, s);
	if (rc < 0) {
		seg_unpin(s);
		seg_doom(s);
		return rc;
	}
	l->dir_dirty = true;
	return 0;
}

/* A read position in an append's pieces. */
struct iov_cursor {
	const struct iovec *iov;
	size_t off; /* into iov[0] */
};

/* The next bytes at c, at most max of them (some must remain). */
static struct iovec iov_next(struct iov_cursor *c, size_t max)
{
	struct iovec v;

	while (c->off == c->iov->iov_len) { /* empty pieces too */
		c->iov++;
		c->off = 0;
	}
	v.iov_base = (uint8_t *)c->iov->iov_base + c->off;
	v.iov_len = c->iov->iov_len - c->off < max ? c->iov->iov_len - c->off
						    : max;
	c->off += v.iov_len;
	return v;
}

/*
 * The next len bytes at c as at most max pieces in out (*pieces of them),
 * or else copied together into l->gather as one. Advances c.
 */
static int log_take(struct log *l, struct iov_cursor *c, size_t len,
		    int max, struct iovec *out, int *pieces)
{
	struct iov_cursor from = *c;
	size_t rest;
	int k = 0, rc;

	for (rest = len; rest > 0 && k <= max; k++) {
		struct iovec v = iov_next(c, rest);
		if (k < max)
			out[k] = v;
		rest -= v.iov_len;
	}
	if (rest == 0 && k <= max) {
		*pieces = k;
		return 0;
	}
	/* The largest batch copied so far: batch_bytes, or one record. */
	rc = io_buf_reserve((void **)&l->gather, &l->gather_cap, len);
	if (rc < 0)
		return rc;
	*c = from;
	for (rest = 0; rest < len;) {
		struct iovec v = iov_next(c, len - rest);
		memcpy(l->gather + rest, v.iov_base, v.iov_len);
		rest += v.iov_len;
	}
	out[0] = (struct iovec){ l->gather, len };
	*pieces = 1;
	return 0;
}

/* Write one batch of n records (lens; len bytes at c) into the active
 * segment, rolling first if it is full. append_lock held. */
static int log_write_batch(struct log *l, struct iov_cursor *c, uint32_t len,
			   const uint32_t *lens, uint32_t n, uint32_t epoch,
			   int64_t ts, int64_t now)
{
	int codec = l->cfg.codec;
	struct iovec stored[SEG_BATCH_PIECES];
	uint32_t stored_len = len;
	struct batch_hdr h;
	struct seg *s;
	int pieces, rc;

	/* A compressor takes its input in one piece. */
	rc = log_take(l, c, len, codec == LOG_CODEC_NONE ? SEG_BATCH_PIECES : 1,
		      stored, &pieces);
	if (rc < 0)
		return rc;
	if (codec != LOG_CODEC_NONE) {
		ssize_t z;
		/* Grown to the largest batch compressed so far, no more. */
		rc = io_buf_reserve((void **)&l->zbuf, &l->zcap,
				 codec_bound(codec, len));
		if (rc < 0)
			return rc;
		z = codec_compress(l->codec, codec, l->cfg.zstd_level, l->zbuf,
				   l->zcap, stored[0].iov_base, len);
		if (z < 0)
			return (int)z;
		stored[0] = (struct iovec){ l->zbuf, (size_t)z };
		stored_len = (uint32_t)z;
	}
	if (log_should_roll(l, log_active(l), codec, stored_len, n, now)) {
		rc = log_roll(l, codec, now);
		if (rc < 0)
			return rc;
	}
	s = log_active(l);
	if (s->codec != codec) { /* empty, so it was not rolled */
		rc = seg_set_codec(s, codec);
		if (rc < 0)
			return rc;
	}
	h = (struct batch_hdr){
		.base_offset = s->w.end_offset,
		.pos = s->w.end_pos,
		.max_ts = ts,
		.count = n,
		.stored_len = stored_len,
		.logical_len = len,
		.epoch = epoch,
		.codec = (uint8_t)codec,
	};
	return seg_write_batch(s, &h, lens, stored, pieces,
			       l->cfg.index_interval_bytes);
}

/*
 * What an append may change in the epoch cache, to undo it: entries are
 * only added at the log end, and an entry that started there (an epoch
 * begun by log_begin_epoch that wrote nothing) may be replaced.
 */
struct epoch_undo {
	uint32_t n;
	struct epoch_entry last;
};

static void epoch_undo_save(const struct log *l, struct epoch_undo *u)
{
	u->n = l->epochs.n;
	u->last = u->n ? l->epochs.e[u->n - 1] : (struct epoch_entry){ 0, 0 };
}

/* Room for k more epoch entries (append_lock held): the array may move,
 * so under epoch_lock, which readers take. 0 or -ENOMEM. */
static int log_epoch_reserve(struct log *l, uint32_t k)
{
	int rc;

	pthread_mutex_lock(&l->epoch_lock);
	rc = epoch_reserve(&l->epochs, l->epochs.n + k);
	pthread_mutex_unlock(&l->epoch_lock);
	return rc;
}

/* Change the cache (append_lock held) under epoch_lock; publish. */
static bool log_epoch_assign(struct log *l, uint32_t epoch, uint64_t start)
{
	bool changed;

	pthread_mutex_lock(&l->epoch_lock);
	changed = epoch_assign(&l->epochs, epoch, start);
	pthread_mutex_unlock(&l->epoch_lock);
	atomic_store(&l->pub_epoch, epoch_latest(&l->epochs));
	return changed;
}

static void log_epoch_restore(struct log *l, const struct epoch_undo *u)
{
	/* An assign removed at most the last entry and added one. */
	pthread_mutex_lock(&l->epoch_lock);
	l->epochs.n = u->n;
	if (u->n)
		l->epochs.e[u->n - 1] = u->last;
	pthread_mutex_unlock(&l->epoch_lock);
	atomic_store(&l->pub_epoch, epoch_latest(&l->epochs));
}

static bool epoch_undo_differs(const struct log *l, const struct epoch_undo *u)
{
	return l->epochs.n != u->n ||
	       (u->n && memcmp(&l->epochs.e[u->n - 1], &u->last,
			       sizeof(u->last)) != 0);
}

/* Undo a failed append: drop new segments, cut the old active back.
 * The segments the append pinned are unpinned. */
static int log_append_undo(struct log *l, uint32_t nsegs,
			   const struct seg_tail *saved,
			   const struct epoch_undo *eu)
{
	int rc = 0;

	log_unpin_segs(l, nsegs, l->nsegs);
	if (l->nsegs > nsegs) {
		/* The names must go, or the next open would find them. */
		rc = log_dir_pin(l);
		if (rc >= 0) {
			log_segs_drop(l, nsegs, l->nsegs);
			log_dir_unpin(l);
			rc = 0;
		}
	}
	if (rc == 0)
		rc = seg_cut(log_active(l), saved);
	seg_unpin(l->segs[nsegs - 1]);
	if (rc == 0 && epoch_undo_differs(l, eu)) {
		log_epoch_restore(l, eu);
		rc = log_epoch_save(l);
	}
	return rc;
}

/* Whether rc means no descriptor (or memory) could be had: nothing was
 * written, so it is no failed durable write. */
static bool log_err_no_fd(int rc)
{
	return rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM;
}

static void log_stick(struct log *l, int err, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&l->sticky, &expected, err))
		log_msg(l, LOG_CRIT, "%s failed (%s): refusing appends until "
			"the partition is reopened", what, strerror(err));
}

int log_append(struct log *l, const void *payload, size_t len,
	       const uint32_t *lens, uint32_t n,
	       const struct log_append_opts *opts,
	       struct log_append_info *info)
{
	struct iovec v = { (void *)payload, len };

	return log_appendv(l, &v, 1, lens, n, opts, info);
}

/*
 * End an append that began with nsegs segments at the log end saved: if
 * rc says it failed, undo it whole (the caller reports the failure; only
 * worse news is ours); else seal the segments it rolled over, publish
 * them and move the log end, ts being its newest timestamp, and fill
 * info. Either way the segments the append pinned (the active one it
 * began with and those it rolled to) are unpinned. Returns rc, or 0.
 * Append lock held.
 */
static int log_append_finish(struct log *l, int rc, uint32_t nsegs,
			     const struct seg_tail *saved,
			     const struct epoch_undo *eu, int64_t ts,
			     struct log_append_info *info)
{
	struct ends e;

	if (rc < 0) {
		int urc = log_append_undo(l, nsegs, saved, eu);
		if (urc < 0)
			log_stick(l, -urc, "undoing a failed append");
		return rc;
	}
	for (uint32_t i = nsegs - 1; i < l->nsegs; i++) {
		if (i + 1 < l->nsegs) {
			rc = seg_seal(l->segs[i]);
			if (rc < 0)
				log_stick(l, -rc, "sealing a segment");
		}
		seg_publish(l->segs[i]);
	}
	log_unpin_segs(l, nsegs - 1, l->nsegs);
	l->last_ts = ts;
	atomic_store(&l->pub_max_ts, ts);
	read_ends(l, &e);
	e.leo = log_active(l)->w.end_offset;
	e.leo_pos = log_active(l)->w.end_pos;
	write_ends(l, &e);
	if (info) {
		info->base_offset = saved->end_offset;
		info->end_offset = e.leo;
		info->base_pos = saved->end_pos;
		info->end_pos = e.leo_pos;
		info->timestamp_ms = ts;
	}
	return 0;
}

int log_appendv(struct log *l, const struct iovec *iov, int iovcnt,
		const uint32_t *lens, uint32_t n,
		const struct log_append_opts *opts,
		struct log_append_info *info)
{
	struct iov_cursor c = { iov, 0 };
	uint64_t sum = 0, len = 0;
	struct seg_tail saved;
	struct epoch_undo eu;
	uint32_t nsegs, epoch, i;
	int64_t now, ts;
	int rc;

	if (n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (lens[i] == 0 || lens[i] > LOG_BATCH_BYTES_MAX)
			return lens[i] ? -EMSGSIZE : -EINVAL;
		sum += lens[i];
	}
	for (int k = 0; k < iovcnt; k++)
		len += iov[k].iov_len;
	if (sum != len)
		return -EINVAL;

	pthread_mutex_lock(&l->append_lock);
	rc = -atomic_load(&l->sticky);
	if (rc < 0) {
		rc = -EROFS;
		goto out_unlock;
	}
	epoch = opts ? opts->epoch : epoch_latest(&l->epochs);
	if (l->epochs.n && epoch < epoch_latest(&l->epochs)) {
		log_msg(l, LOG_ERR, "append with leader epoch %" PRIu32
			" below the current %" PRIu32, epoch,
			epoch_latest(&l->epochs));
		rc = -EINVAL;
		goto out_unlock;
	}
	now = now_ms();
	ts = opts && opts->timestamp_ms > 0 ? opts->timestamp_ms : now;
	if (ts < l->last_ts)
		ts = l->last_ts;

	rc = log_epoch_reserve(l, 1);
	if (rc < 0)
		goto out_unlock;
	/* The active segment's files stay open until log_append_finish. */
	rc = seg_pin(log_active(l));
	if (rc < 0)
		goto out_unlock;
	nsegs = l->nsegs;
	saved = log_active(l)->w;
	epoch_undo_save(l, &eu);
	if (log_epoch_assign(l, epoch, saved.end_offset)) {
		rc = log_epoch_save(l);
		if (rc < 0) {
			log_epoch_restore(l, &eu);
			seg_unpin(log_active(l));
			goto out_unlock;
		}
	}
	for (i = 0; i < n && rc == 0;) {
		uint32_t j = i, blen = 0;

		while (j < n && j - i < LOG_BATCH_RECORDS_MAX &&
		       (j == i || blen + lens[j] <= l->cfg.batch_bytes))
			blen += lens[j++];
		rc = log_write_batch(l, &c, blen, lens + i, j - i, epoch, ts,
				     now);
		i = j;
	}
	rc = log_append_finish(l, rc, nsegs, &saved, &eu, ts, info);
out_unlock:
	pthread_mutex_unlock(&l->append_lock);
	return rc;
}

int log_set_hw(struct log *l, uint64_t hw)
{
	uint64_t start = atomic_load(&l->start_offset);
	struct ends e;
	int rc = 0;

	pthread_mutex_lock(&l->append_lock);
	read_ends(l, &e);
	if (hw < start)
		hw = start;
	if (hw >= e.leo) {
		e.hw = e.leo;
		e.hw_pos = e.leo_pos;
	} else {
		rc = log_offset_to_pos(l, hw, &e.hw_pos);
		e.hw = hw;
	}
	if (rc == 0)
		write_ends(l, &e);
	pthread_mutex_unlock(&l->append_lock);
	return rc;
}

/* ---- flushing ---------------------------------------------------------- */

/*
 * Sync the segments holding offsets at or past the recovery point rp,
 * oldest first, at most FLUSH_SEGS_MAX per round: the .log and .meta of
 * each, the .index of a sealed one not yet synced (a sealed segment's
 * index is trusted at open; the active one's is rebuilt by recovery), and
 * the directory if names changed. Returns in *new_rp the written end the
 * round covered.
 */
#define FLUSH_SEGS_MAX 64

static int log_flush_round(struct log *l, uint64_t rp, uint64_t *new_rp)
{
	struct seg *todo[FLUSH_SEGS_MAX];
	bool index[FLUSH_SEGS_MAX];
	uint32_t n = 0, i;
	bool dir;
	int rc, pin_rc = 0;

	pthread_mutex_lock(&l->append_lock);
	if (atomic_load(&l->sticky)) {
		pthread_mutex_unlock(&l->append_lock);
		return -EROFS;
	}
	dir = l->dir_dirty;
	l->dir_dirty = false;
	for (i = l->nsegs; i > 0 && l->segs[i - 1]->w.end_offset > rp; i--)
		;
	if (i == l->nsegs)
		i = l->nsegs - 1;
	/* The segment just below rp may have been sealed since it was
	 * synced: its trimmed index is not durable yet. */
	if (i > 0 && !l->segs[i - 1]->idx_synced)
		i--;
	for (; i < l->nsegs && n < FLUSH_SEGS_MAX; i++) {
		seg_ref(l->segs[i]);
		index[n] = i + 1 < l->nsegs && !l->segs[i]->idx_synced;
		todo[n++] = l->segs[i];
	}
	*new_rp = todo[n - 1]->w.end_offset;
	pthread_mutex_unlock(&l->append_lock);
	rc = 0;
	for (i = 0; i < n; i++) {
		bool data = todo[i]->w.end_offset > rp;
		/* Syncing a closed file's inode needs a descriptor again: a
		 * failure to get one is no failed sync (not sticky). */
		if (rc == 0 && (data || index[i])) {
			rc = pin_rc = seg_pin(todo[i]);
			if (rc == 0 && data)
				rc = seg_sync_data(todo[i]);
			if (rc == 0 && index[i]) {
				rc = seg_sync_index(todo[i]);
				todo[i]->idx_synced = rc == 0;
			}
			if (pin_rc == 0)
				seg_unpin(todo[i]);
		}
		seg_unref(todo[i]);
	}
	if (rc == 0 && dir) {
		int dfd = pin_rc = log_dir_pin(l);
		if (dfd >= 0) {
			rc = io_fsync_dir(dfd);
			log_dir_unpin(l);
		} else {
			rc = dfd;
		}
	}
	if (pin_rc < 0) {
		pthread_mutex_lock(&l->append_lock);
		l->dir_dirty |= dir;
		pthread_mutex_unlock(&l->append_lock);
		return pin_rc;
	}
	if (rc < 0) {
		/* The page cache may have dropped the failed pages: nothing
		 * written since the last good flush can be trusted. */
		log_stick(l, -rc, "fsync");
		return -EIO;
	}
	return 0;
}

int log_sync_to(struct log *l, uint64_t offset)
{
	uint64_t rp, want;
	struct ends e;
	int rc = 0;

	read_ends(l, &e);
	want = offset < e.leo ? offset : e.leo;
	if (atomic_load(&l->recovery_point) >= want)
		return 0;
	/* Concurrent callers queue here; each round syncs everything
	 * written so far, so the next in line usually finds its offset
	 * covered and returns without a system call. */
	pthread_mutex_lock(&l->flush_lock);
	rp = atomic_load(&l->recovery_point);
	while (rc == 0 && rp < want) {
		rc = log_flush_round(l, rp, &rp);
		if (rc == 0)
			atomic_store(&l->recovery_point, rp);
	}
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

int log_checkpoint(struct log *l)
{
	int rc = 0;

	pthread_mutex_lock(&l->flush_lock);
	if (l->ckpt_rp != atomic_load(&l->recovery_point) ||
	    l->ckpt.hw != atomic_load(&l->ends.hw) ||
	    l->ckpt_start != atomic_load(&l->start_offset)) {
		/* A checkpoint that could not be made durable is a failed
		 * durable write like any other: no retry-and-hope. */
		rc = log_checkpoint_write(l, atomic_load(&l->recovery_point));
		if (rc < 0 && !log_err_no_fd(rc))
			log_stick(l, -rc, "checkpointing the recovery point");
	}
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

int log_flush(struct log *l)
{
	int rc;

	if (atomic_load(&l->sticky))
		return -EROFS;
	rc = log_sync_to(l, UINT64_MAX);
	if (rc == 0)
		rc = log_checkpoint(l);
	return rc;
}

/* ---- closing ----------------------------------------------------------- */

/* Trim the active segment's index to its entries, and sync it if sync. */
static int log_seal_active(struct log *l, bool sync)
{
	struct seg *s = log_active(l);
	int rc = seg_pin(s);

	if (rc < 0)
		return rc;
	rc = seg_seal(s);
	if (rc == 0 && sync)
		rc = seg_sync(s);
	seg_unpin(s);
	return rc;
}

/* Make the clean-shutdown marker, durably. */
static int log_write_marker(struct log *l)
{
	int dfd = log_dir_pin(l), fd, rc;

	if (dfd < 0)
		return dfd;
	fd = files_openat(dfd, CLEAN_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	rc = fd < 0 ? fd : io_fsync(fd);
	if (fd >= 0)
		close(fd);
	if (rc == 0)
		rc = io_fsync_dir(dfd);
	log_dir_unpin(l);
	return rc;
}

/*
 * The first step of a close in batch b: no sync here. The index is
 * trimmed and the checkpoint, naming the log end as the recovery point,
 * is written to "checkpoint.tmp"; once syncfs has made all of it durable,
 * log_batch_end renames it into place and makes the marker
 * (log_batch_commit). Without that, the next open finds no marker and
 * the old checkpoint, and recovers: it never trusts bytes that might
 * not be on disk.
 */
static int log_close_staged(struct log *l, struct log_batch *b)
{
	char buf[CHECKPOINT_BYTES_MAX];
	uint64_t rp = UINT64_MAX;
	struct ends e;
	int n, dfd, rc;

	struct seg *act = log_active(l);
	bool staged;

	if (atomic_load(&l->sticky))
		return -EROFS;
	/* A partition left alone since it was loaded needs neither: its
	 * files need not even be reopened. */
	if (act->w.idx_alloc != (uint64_t)act->w.idx_count * INDEX_ENTRY_SIZE) {
		rc = log_seal_active(l, false);
		if (rc < 0)
			return rc;
	}
	n = log_checkpoint_format(l, &rp, &e, buf);
	staged = l->ckpt_rp != rp || l->ckpt.hw != e.hw ||
		 l->ckpt_start != atomic_load(&l->start_offset);
	if (staged) {
		dfd = log_dir_pin(l);
		if (dfd < 0)
			return dfd;
		rc = io_write_file(dfd, CHECKPOINT_FILE ".tmp", buf, (size_t)n);
		log_dir_unpin(l);
		if (rc < 0)
			return rc;
	}
	return log_batch_note(b, l->dir.path, staged);
}

int log_close(struct log *l)
{
	struct log_batch *b = log_batch_for(l);
	int rc;

	if (b) {
		rc = log_close_staged(l, b);
	} else {
		rc = log_flush(l);
		if (rc == 0)
			rc = log_seal_active(l, true);
		if (rc == 0)
			rc = log_write_marker(l);
	}
	if (rc < 0)
		log_msg(l, LOG_ERR, "unclean close: %s", strerror(-rc));
	log_free(l);
	return rc;
}

void log_abandon(struct log *l)
{
	log_free(l);
}

/* ---- retention and truncation ------------------------------------------ */

static uint64_t seg_size(struct seg *s)
{
	return s->w.data_end;
}

/* Change the epoch cache under epoch_lock (append_lock held); publish. */
static bool log_epoch_cut(struct log *l, bool at_end, uint64_t offset)
{
	bool changed;

	pthread_mutex_lock(&l->epoch_lock);
	changed = at_end ? epoch_truncate_end(&l->epochs, offset) :
			   epoch_truncate_start(&l->epochs, offset);
	pthread_mutex_unlock(&l->epoch_lock);
	atomic_store(&l->pub_epoch, epoch_latest(&l->epochs));
	return changed;
}

/*
 * Move the log start up to (start, start_pos) and delete the first k
 * segments, which lie wholly below it. The new start is durable before
 * any file goes. flush_lock and append_lock held.
 */
static int log_move_start(struct log *l, uint64_t start, uint64_t start_pos,
			  uint32_t k)
{
	int rc;

	/* Every step below needs the directory: have it before the first. */
	rc = log_dir_pin(l);
	if (rc < 0)
		return rc;
	rc = 0;
	atomic_store(&l->start_pos, start_pos);
	atomic_store(&l->start_offset, start);
	if (log_epoch_cut(l, false, start))
		rc = log_epoch_save(l);
	if (rc == 0)
		rc = log_checkpoint_write(l, atomic_load(&l->recovery_point));
	if (rc == 0 && k > 0)
		log_segs_drop(l, 0, k);
	log_dir_unpin(l);
	if (rc < 0)
		return rc;
	log_notify(l);
	return 0;
}

int log_retention(struct log *l, int64_t now)
{
	uint64_t total = 0, start, start_pos;
	struct ends e;
	uint32_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&l->flush_lock);
	pthread_mutex_lock(&l->append_lock);
	read_ends(l, &e);
	for (uint32_t i = 0; i < l->nsegs; i++)
		total += seg_size(l->segs[i]);
	while (k + 1 < l->nsegs) {
		struct seg *s = l->segs[k];
		int64_t ts = s->w.max_ts;
		bool by_time = l->cfg.retention_ms >= 0 && ts >= 0 &&
			       now - ts > l->cfg.retention_ms;
		bool by_size = l->cfg.retention_bytes >= 0 &&
			       total - seg_size(s) >= (uint64_t)l->cfg.retention_bytes;

		if (!(by_time || by_size) || s->w.end_offset > e.hw)
			break;
		total -= seg_size(s);
		k++;
	}
	if (k == 0)
		goto out_unlock;
	start = l->segs[k]->base_offset;
	start_pos = l->segs[k]->base_pos;
	if (start < atomic_load(&l->start_offset)) {
		start = atomic_load(&l->start_offset);
		start_pos = atomic_load(&l->start_pos);
	}
	rc = log_move_start(l, start, start_pos, k);
	if (rc < 0)
		goto out_unlock;
	log_msg(l, LOG_INFO, "retention: deleting %" PRIu32 " segment(s), "
		"log start now %" PRIu64, k, start);
	rc = (int)k;
out_unlock:
	pthread_mutex_unlock(&l->append_lock);
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

/* Tail of segment s cut just before batch b. */
static int log_tail_before(struct seg *s, const struct seg_batch *b,
			   struct seg_tail *t)
{
	uint32_t lo = 0, hi = atomic_load(&s->idx_count);

	*t = (struct seg_tail){
		.end_offset = b->h.base_offset,
		.end_pos = b->h.pos,
		.data_end = b->h.data_pos,
		.meta_end = b->meta_pos,
		.max_ts = -1,
	};
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct index_entry e;
		index_entry_decode(s->idx_map + (size_t)mid * INDEX_ENTRY_SIZE, &e);
		if (e.meta_pos < b->meta_pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	t->idx_count = lo;
	if (b->h.base_offset > s->base_offset) {
		struct seg_batch prev;
		int rc = seg_find_offset(s, b->h.base_offset - 1, &prev);
		if (rc < 0)
			return rc;
		t->max_ts = prev.h.max_ts;
		t->last_epoch = prev.h.epoch;
	}
	return 0;
}

/*
 * Remember that a truncation removed every byte at or past pos, for the
 * cursors' checks (cursor_apply). Called after the table shows the cut
 * and before the new ends are published or anything is appended again,
 * so that a reader that misses the new generation cannot find the
 * removed bytes, and one that could have found them sees it.
 */
static void log_trunc_record(struct log *l, uint64_t pos)
{
	uint64_t gen;

	pthread_mutex_lock(&l->seg_lock);
	if (l->nhist == TRUNC_HISTORY_MAX) {
		if (l->hist[0].pos < l->trunc_lost_pos)
			l->trunc_lost_pos = l->hist[0].pos;
		memmove(l->hist, l->hist + 1, (l->nhist - 1) * sizeof(l->hist[0]));
		l->nhist--;
	}
	gen = atomic_load(&l->trunc_gen) + 1;
	l->hist[l->nhist++] = (struct trunc_rec){ gen, pos };
	atomic_store(&l->trunc_gen, gen);
	pthread_mutex_unlock(&l->seg_lock);
}

/*
 * Cut segment k back to tail t, never under a reader. With seg_lock held
 * and the table's reference the only one, no cursor holds the segment or
 * can take it, so its files are cut in place; otherwise the kept prefix
 * is cloned into new files that replace it (seg_clone_prefix) and the
 * holders keep the old ones. The segment is pinned by the caller; on
 * success the one now in the table at k is (the clone is returned
 * pinned, and the old one unpinned). append_lock held.
 */
static int log_cut_segment(struct log *l, uint32_t k, const struct seg_tail *t)
{
	struct seg *s = l->segs[k], *n;
	int rc;

	pthread_mutex_lock(&l->seg_lock);
	if (atomic_load(&s->refs) == 1) {
		rc = seg_cut(s, t);
		pthread_mutex_unlock(&l->seg_lock);
		return rc;
	}
	pthread_mutex_unlock(&l->seg_lock);
	rc = seg_clone_prefix(s, t, &n);
	if (rc < 0)
		return rc;
	log_msg(l, LOG_INFO, "segment %020" PRIu64 ": a reader holds it, "
		"truncated by copying its first %" PRIu64 " bytes", s->base_offset,
		t->data_end);
	pthread_mutex_lock(&l->seg_lock);
	l->segs[k] = n;
	pthread_mutex_unlock(&l->seg_lock);
	seg_release(s);
	return 0;
}

/* seg_sync, pinning the segment for it. */
static int log_seal_sync(struct seg *s)
{
	int rc = seg_pin(s);

	if (rc == 0) {
		rc = seg_sync(s);
		seg_unpin(s);
	}
	return rc;
}

int log_truncate(struct log *l, uint64_t offset, uint64_t *leo_out)
{
	uint64_t start = atomic_load(&l->start_offset), cut_pos;
	struct seg_tail t;
	struct seg_batch b;
	struct ends e;
	uint32_t k;
	struct seg *s;
	bool dir_pinned = false;
	int rc = 0;

	pthread_mutex_lock(&l->flush_lock);
	pthread_mutex_lock(&l->append_lock);
	read_ends(l, &e);
	if (offset >= e.leo)
		goto out_done;
	if (offset < start) {
		rc = -ERANGE;
		goto out_unlock;
	}
	/* Names are dropped below: have the directory before changing
	 * anything. */
	rc = log_dir_pin(l);
	if (rc < 0)
		goto out_unlock;
	dir_pinned = true;
	rc = 0;
	k = log_seg_floor(l, false, offset);
	s = l->segs[k];
	if (offset == s->base_offset && k > 0) {
		cut_pos = s->base_pos;
		log_segs_drop(l, k, l->nsegs);
	} else {
		rc = seg_pin(s);
		if (rc < 0)
			goto out_unlock;
		rc = seg_find_offset(s, offset, &b);
		if (rc == 0)
			rc = log_tail_before(s, &b, &t);
		if (rc < 0) {
			seg_unpin(s);
			goto out_unlock;
		}
		cut_pos = b.h.pos;
		if (k + 1 < l->nsegs)
			log_segs_drop(l, k + 1, l->nsegs);
		rc = log_cut_segment(l, k, &t);
		if (rc < 0) {
			seg_unpin(s);
			log_trunc_record(l, cut_pos);
			log_stick(l, -rc, "truncating a segment");
			goto out_unlock;
		}
		seg_unpin(l->segs[k]);
	}
	log_trunc_record(l, cut_pos);
	s = log_active(l);
	s->idx_synced = false; /* it grows again */
	l->last_ts = s->w.max_ts;
	atomic_store(&l->pub_max_ts, l->last_ts);
	e.leo = s->w.end_offset;
	e.leo_pos = s->w.end_pos;
	if (e.hw > e.leo) {
		e.hw = e.leo;
		e.hw_pos = e.leo_pos;
	}
	write_ends(l, &e);
	if (atomic_load(&l->recovery_point) > e.leo)
		atomic_store(&l->recovery_point, e.leo);
	if (log_epoch_cut(l, true, e.leo))
		rc = log_epoch_save(l);
	if (rc == 0)
		rc = log_seal_sync(s);
	if (rc == 0)
		rc = io_fsync_dir(l->dir.fd);
	if (rc == 0)
		rc = log_checkpoint_write(l, atomic_load(&l->recovery_point));
	log_msg(l, LOG_NOTICE, "truncated to offset %" PRIu64, e.leo);
out_done:
	*leo_out = e.leo;
out_unlock:
	if (dir_pinned)
		log_dir_unpin(l);
	pthread_mutex_unlock(&l->append_lock);
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

int log_truncate_fully(struct log *l, uint64_t offset, uint64_t pos)
{
	struct seg **table = NULL, *s = NULL;
	uint64_t old_start_pos;
	uint32_t n, hidden = 0;
	bool dir_pinned = false;
	struct ends e;
	int rc;

	pthread_mutex_lock(&l->flush_lock);
	pthread_mutex_lock(&l->append_lock);
	rc = atomic_load(&l->sticky) ? -EROFS : 0;
	if (rc == 0)
		rc = log_dir_pin(l); /* before the first name changes */
	if (rc < 0)
		goto out_unlock;
	dir_pinned = true;
	rc = 0;
	n = l->nsegs;
	table = malloc(sizeof(*table));
	if (!table) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	/* The old names go first, so that the new segment may take one. */
	for (hidden = 0; hidden < n && rc == 0; hidden++)
		rc = seg_hide(l->segs[hidden]);
	if (rc == 0)
		rc = seg_create(&l->dir, offset, pos, l->cfg.codec, now_ms(),
				log_idx_cap(l), &s);
	if (rc < 0)
		goto out_unhide;
	old_start_pos = atomic_load(&l->start_pos);
	table[0] = s;
	pthread_mutex_lock(&l->seg_lock);
	{
		struct seg **old = l->segs;
		l->segs = table;
		l->nsegs = 1;
		l->segs_cap = 1;
		table = old;
	}
	pthread_mutex_unlock(&l->seg_lock);
	for (uint32_t i = 0; i < n; i++)
		seg_doom_hidden(table[i]);
	l->dir_dirty = true;
	atomic_store(&l->start_pos, pos);
	atomic_store(&l->start_offset, offset);
	log_trunc_record(l, old_start_pos < pos ? old_start_pos : pos);
	l->last_ts = -1;
	atomic_store(&l->pub_max_ts, -1);
	e = (struct ends){ offset, pos, offset, pos };
	write_ends(l, &e);
	atomic_store(&l->recovery_point, offset);
	pthread_mutex_lock(&l->epoch_lock);
	l->epochs.n = 0;
	pthread_mutex_unlock(&l->epoch_lock);
	atomic_store(&l->pub_epoch, 0);
	rc = log_epoch_save(l);
	if (rc == 0)
		rc = seg_sync(s);
	seg_unpin(s);
	if (rc == 0)
		rc = io_fsync_dir(l->dir.fd);
	if (rc == 0)
		rc = log_checkpoint_write(l, offset);
	if (rc < 0)
		log_stick(l, -rc, "restarting the log");
	log_msg(l, LOG_NOTICE, "truncated fully, log restarts at offset %"
		PRIu64 " (position %" PRIu64 ")", offset, pos);
	goto out_unlock;

out_unhide:
	while (hidden-- > 0) {
		if (seg_unhide(l->segs[hidden]) < 0)
			log_stick(l, EIO, "restoring segment names");
	}
out_unlock:
	if (dir_pinned)
		log_dir_unpin(l);
	free(table);
	pthread_mutex_unlock(&l->append_lock);
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

int log_advance_start(struct log *l, uint64_t offset)
{
	uint64_t pos;
	struct ends e;
	uint32_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&l->flush_lock);
	pthread_mutex_lock(&l->append_lock);
	if (offset <= atomic_load(&l->start_offset))
		goto out_unlock;
	read_ends(l, &e);
	if (offset > e.hw) {
		rc = -ERANGE;
		goto out_unlock;
	}
	rc = log_offset_to_pos(l, offset, &pos);
	if (rc < 0)
		goto out_unlock;
	while (k + 1 < l->nsegs && l->segs[k + 1]->base_offset <= offset)
		k++;
	rc = log_move_start(l, offset, pos, k);
	if (rc == 0)
		log_msg(l, LOG_INFO, "log start moved to %" PRIu64 " (%" PRIu32
			" segment(s) deleted)", offset, k);
out_unlock:
	pthread_mutex_unlock(&l->append_lock);
	pthread_mutex_unlock(&l->flush_lock);
	return rc;
}

int log_begin_epoch(struct log *l, uint32_t epoch)
{
	struct epoch_undo eu;
	int rc = 0;

	if (epoch == LOG_EPOCH_UNDEFINED)
		return -EINVAL;
	pthread_mutex_lock(&l->append_lock);
	if (atomic_load(&l->sticky)) {
		rc = -EROFS;
		goto out_unlock;
	}
	if (l->epochs.n && epoch < epoch_latest(&l->epochs)) {
		rc = -EINVAL;
		goto out_unlock;
	}
	epoch_undo_save(l, &eu);
	rc = log_epoch_reserve(l, 1);
	if (rc == 0 && log_epoch_assign(l, epoch, log_active(l)->w.end_offset)) {
		rc = log_epoch_save(l);
		if (rc < 0)
			log_epoch_restore(l, &eu);
	}
out_unlock:
	pthread_mutex_unlock(&l->append_lock);
	return rc;
}

/* ---- state and lookups ------------------------------------------------- */

void log_get_state(struct log *l, struct log_state *st)
{
	struct ends e;

	read_ends(l, &e);
	st->start_offset = atomic_load(&l->start_offset);
	st->start_pos = atomic_load(&l->start_pos);
	st->hw = e.hw;
	st->hw_pos = e.hw_pos;
	st->leo = e.leo;
	st->leo_pos = e.leo_pos;
	st->recovery_point = atomic_load(&l->recovery_point);
	st->sticky_error = atomic_load(&l->sticky);
	st->size_bytes = 0;
	st->max_ts = -1;
	pthread_mutex_lock(&l->seg_lock);
	st->segments = l->nsegs;
	for (uint32_t i = 0; i < l->nsegs; i++) {
		int64_t ts = atomic_load(&l->segs[i]->max_ts);
		st->size_bytes += atomic_load(&l->segs[i]->data_end);
		if (ts > st->max_ts)
			st->max_ts = ts;
	}
	pthread_mutex_unlock(&l->seg_lock);
	st->leader_epoch = atomic_load(&l->pub_epoch);
}

void log_get_bounds(struct log *l, struct log_bounds *b)
{
	struct ends e;

	b->start_offset = atomic_load(&l->start_offset);
	b->start_pos = atomic_load(&l->start_pos);
	read_ends(l, &e);
	b->hw = e.hw;
	b->hw_pos = e.hw_pos;
	b->leo = e.leo;
	b->leo_pos = e.leo_pos;
	b->max_ts = atomic_load(&l->pub_max_ts);
}

int log_offset_to_pos(struct log *l, uint64_t offset, uint64_t *pos)
{
	struct seg_batch b;
	struct ends e;
	struct seg *s;
	uint64_t off;
	int rc;

	read_ends(l, &e);
	if (offset == e.leo) {
		*pos = e.leo_pos;
		return 0;
	}
	if (offset > e.leo || offset < atomic_load(&l->start_offset))
		return -ERANGE;
	rc = log_seg_use(l, false, offset, &s);
	if (rc < 0)
		return rc;
	rc = seg_find_offset(s, offset, &b);
	if (rc == 0)
		rc = seg_batch_locate(s, &b, offset, 0, &off, pos);
	seg_release(s);
	return rc;
}

int log_pos_to_offset(struct log *l, uint64_t pos, uint64_t *offset,
		      uint64_t *rec_pos)
{
	struct seg_batch b;
	struct ends e;
	struct seg *s;
	int rc;

	read_ends(l, &e);
	if (pos >= e.leo_pos || pos < atomic_load(&l->start_pos))
		return -ERANGE;
	rc = log_seg_use(l, true, pos, &s);
	if (rc < 0)
		return rc;
	rc = seg_find_pos(s, pos, &b);
	if (rc == 0)
		rc = seg_batch_locate(s, &b, UINT64_MAX, pos, offset, rec_pos);
	seg_release(s);
	return rc;
}

int log_time_to_offset(struct log *l, int64_t ts, uint64_t *offset)
{
	uint64_t start = atomic_load(&l->start_offset);
	struct seg_batch b;
	struct ends e;
	struct seg *s = NULL;
	int rc;

	read_ends(l, &e);
	pthread_mutex_lock(&l->seg_lock);
	for (uint32_t i = 0; i < l->nsegs; i++) {
		if (atomic_load(&l->segs[i]->max_ts) >= ts) {
			s = l->segs[i];
			seg_ref(s);
			break;
		}
	}
	pthread_mutex_unlock(&l->seg_lock);
	if (!s) {
		*offset = e.leo;
		return 0;
	}
	rc = seg_pin(s);
	if (rc == 0) {
		rc = seg_find_time(s, ts, &b);
		seg_unpin(s);
	}
	seg_unref(s);
	if (rc == -ENOENT) {
		*offset = e.leo;
		return 0;
	}
	if (rc < 0)
		return rc;
	*offset = b.h.base_offset < start ? start : b.h.base_offset;
	if (*offset > e.leo)
		*offset = e.leo;
	return 0;
}

int log_epoch_end(struct log *l, uint32_t epoch, uint32_t *found_epoch,
		  uint64_t *end_offset)
{
	struct ends e;

	pthread_mutex_lock(&l->epoch_lock);
	read_ends(l, &e);
	epoch_end_offset(&l->epochs, epoch, e.leo, found_epoch, end_offset);
	pthread_mutex_unlock(&l->epoch_lock);
	return 0;
}

/* ---- reading ----------------------------------------------------------- */

int log_cursor_new(struct log *l, struct log_cursor **out)
{
	struct log_cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->log = l;
	c->gen = atomic_load_explicit(&l->trunc_gen, memory_order_acquire);
	c->stale_pos = UINT64_MAX;
	*out = c;
	return 0;
}

/*
 * Take in the truncations made since the cursor last looked: the lowest
 * position they removed bytes from (UINT64_MAX if none). One that lies
 * below the cursor's known end makes reads at or past it stale.
 */
static uint64_t cursor_apply(struct log_cursor *c)
{
	struct log *l = c->log;
	uint64_t g = atomic_load_explicit(&l->trunc_gen, memory_order_acquire);
	uint64_t low = UINT64_MAX;

	if (g == c->gen)
		return low;
	pthread_mutex_lock(&l->seg_lock);
	g = atomic_load(&l->trunc_gen);
	/* Some of them may have left the history: assume the worst. */
	if (l->nhist == 0 || l->hist[0].gen > c->gen + 1)
		low = l->trunc_lost_pos;
	for (uint32_t i = 0; i < l->nhist; i++) {
		if (l->hist[i].gen > c->gen && l->hist[i].pos < low)
			low = l->hist[i].pos;
	}
	pthread_mutex_unlock(&l->seg_lock);
	c->gen = g;
	if (low < c->known_end && low < c->stale_pos)
		c->stale_pos = low;
	return low;
}

/* Keep only the first len bytes of the n extents; returns the new n. */
static unsigned ext_trim(struct log_extent *ext, unsigned n, size_t len)
{
	size_t sum = 0;

	for (unsigned i = 0; i < n; i++) {
		if (sum + ext[i].len >= len) {
			ext[i].len = len - sum;
			return ext[i].len ? i + 1 : i;
		}
		sum += ext[i].len;
	}
	return n;
}

static void cursor_drop_zcache(struct log_cursor *c)
{
	if (c->zseg)
		seg_unref(c->zseg);
	c->zseg = NULL;
}

void log_cursor_free(struct log_cursor *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nheld; i++)
		seg_release(c->held[i]);
	cursor_drop_zcache(c);
	codec_ctx_free(c->codec);
	free(c->zbuf);
	free(c->zstored);
	free(c->zlens);
	free(c);
}

static bool seg_covers(struct seg *s, uint64_t pos)
{
	return !atomic_load(&s->doomed) && s->base_pos <= pos &&
	       pos < atomic_load_explicit(&s->end_pos, memory_order_acquire);
}

/*
 * The segment holding pos, referenced and pinned in c->held (the
 * extents a read returns stay valid until the next: their descriptors
 * must not be closed meanwhile). The segments the last read held (old[])
 * are reused first, so that sequential reads within a segment take no
 * lock. -EAGAIN if a truncation raced, or the pin's error.
 */
static int cursor_seg(struct log_cursor *c, struct seg **old, unsigned *nold,
		      uint64_t pos, struct seg **out)
{
	struct seg *s;
	int rc;

	for (unsigned i = 0; i < c->nheld; i++) {
		if (seg_covers(c->held[i], pos)) {
			*out = c->held[i];
			return 0;
		}
	}
	for (unsigned i = 0; i < *nold; i++) {
		if (seg_covers(old[i], pos)) {
			s = old[i];
			old[i] = old[--*nold];
			c->held[c->nheld++] = s;
			*out = s;
			return 0;
		}
	}
	s = log_seg_get(c->log, true, pos);
	rc = seg_covers(s, pos) ? seg_pin(s) : -EAGAIN;
	if (rc < 0) {
		seg_unref(s);
		return rc;
	}
	c->held[c->nheld++] = s;
	*out = s;
	return 0;
}

/* Make the cursor's cache hold the batch of compressed segment s with pos. */
static int cursor_load_batch(struct log_cursor *c, struct seg *s, uint64_t pos)
{
	struct seg_batch b;
	int rc;

	if (c->zseg == s && !atomic_load(&s->doomed) && c->zpos <= pos &&
	    pos < c->zpos + c->zlen)
		return 0;
	cursor_drop_zcache(c);
	if (!c->codec && !(c->codec = codec_ctx_new()))
		return -ENOMEM;
	rc = seg_find_pos(s, pos, &b);
	/* The header is checked: these sizes are within the batch limits. */
	if (rc == 0)
		rc = io_buf_reserve((void **)&c->zbuf, &c->zbuf_cap,
				 b.h.logical_len);
	if (rc == 0)
		rc = io_buf_reserve((void **)&c->zstored, &c->zstored_cap,
				 b.h.stored_len);
	if (rc == 0)
		rc = io_buf_reserve((void **)&c->zlens, &c->zlens_cap,
				 4ull * b.h.count);
	if (rc == 0)
		rc = seg_read_batch(s, &b, c->zlens, c->zstored);
	if (rc == 0)
		rc = codec_decompress(c->codec, b.h.codec, c->zbuf,
				      b.h.logical_len, c->zstored,
				      b.h.stored_len);
	if (rc < 0)
		return rc; /* reported by the caller */
	seg_ref(s);
	c->zseg = s;
	c->zpos = b.h.pos;
	c->zlen = b.h.logical_len;
	return 0;
}

ssize_t log_read(struct log_cursor *c, uint64_t *pos, size_t len,
		 struct log_extent *ext, unsigned max_ext, unsigned *n_ext)
{
	struct log *l = c->log;
	struct seg *old[CURSOR_HOLD_MAX];
	unsigned nold = c->nheld, n = 0;
	uint64_t start = atomic_load(&l->start_pos), at;
	size_t total = 0;
	struct ends e;
	int rc = 0;

	if (*pos < start)
		*pos = start;
	if (*pos > c->known_end)
		c->known_end = *pos;
	cursor_apply(c);
	if (*pos >= c->stale_pos)
		return -ESTALE;
	memcpy(old, c->held, sizeof(old));
	c->nheld = 0;
	read_ends(l, &e);
	if (max_ext > CURSOR_HOLD_MAX)
		max_ext = CURSOR_HOLD_MAX;
	if (*pos >= e.hw_pos)
		len = 0;
	else if (len > e.hw_pos - *pos)
		len = (size_t)(e.hw_pos - *pos);
	if (len > c->stale_pos - *pos)
		len = (size_t)(c->stale_pos - *pos);
	at = *pos;
	while (total < len && n < max_ext) {
		struct seg *s;
		uint64_t end;

		rc = cursor_seg(c, old, &nold, at, &s);
		if (rc < 0)
			break; /* raced with truncation, or no descriptor */
		end = atomic_load_explicit(&s->end_pos, memory_order_acquire);
		if (end > at + (len - total))
			end = at + (len - total);
		if (s->codec == LOG_CODEC_NONE) {
			/* A failure is the caller's to report (one line). */
			rc = seg_verify_range(s, at, end);
			if (rc < 0)
				break;
			ext[n++] = (struct log_extent){
				.fd = s->log_fd,
				.off = at - s->base_pos,
				.len = (size_t)(end - at),
			};
		} else {
			rc = cursor_load_batch(c, s, at);
			if (rc < 0)
				break;
			if (end > c->zpos + c->zlen)
				end = c->zpos + c->zlen;
			ext[n++] = (struct log_extent){
				.fd = -1,
				.mem = c->zbuf + (at - c->zpos),
				.len = (size_t)(end - at),
			};
			total += (size_t)(end - at);
			break; /* one cached batch per read */
		}
		total += (size_t)(end - at);
		at = end;
	}
	for (unsigned i = 0; i < nold; i++)
		seg_release(old[i]);
	/* A truncation during the read: what it removed may be in the
	 * extents (old bytes, or new ones appended since). Stop before. */
	if (atomic_load_explicit(&l->trunc_gen, memory_order_acquire) != c->gen) {
		uint64_t low = cursor_apply(c);
		if (low < *pos + total) {
			total = low > *pos ? (size_t)(low - *pos) : 0;
			n = ext_trim(ext, n, total);
		}
		if (total == 0 && *pos >= c->stale_pos)
			rc = -ESTALE;
	}
	if (*pos + total > c->known_end)
		c->known_end = *pos + total;
	*n_ext = n;
	if (total > 0)
		return (ssize_t)total;
	return rc;
}

ssize_t log_read_copy(struct log_cursor *c, uint64_t *pos, void *buf,
		      size_t len)
{
	struct log_extent ext[CURSOR_HOLD_MAX];
	uint8_t *out = buf;
	uint64_t at = *pos;
	size_t done = 0;
	bool first = true;

	while (done < len) {
		unsigned n;
		uint64_t want = at;
		ssize_t got = log_read(c, &want, len - done, ext,
				       CURSOR_HOLD_MAX, &n);
		if (got < 0) {
			if (done == 0)
				return got;
			break;
		}
		if (got == 0)
			break;
		if (first)
			*pos = want;
		else if (want != at)
			break; /* retention moved the start under us */
		first = false;
		for (unsigned i = 0; i < n; i++) {
			if (ext[i].mem) {
				memcpy(out + done, ext[i].mem, ext[i].len);
			} else {
				int rc = io_pread_full(ext[i].fd, out + done,
						       ext[i].len, ext[i].off);
				if (rc < 0)
					return done ? (ssize_t)done : rc;
			}
			done += ext[i].len;
		}
		at = want + (uint64_t)got;
	}
	return (ssize_t)done;
}

int log_scrub(struct log *l)
{
	uint32_t bad = 0;

	for (uint32_t i = 0;; i++) {
		struct seg *s = log_seg_nth(l, i);
		uint64_t end;

		if (!s)
			break;
		end = atomic_load_explicit(&s->end_pos, memory_order_acquire);
		/* A segment checked already needs no descriptor. */
		if (atomic_load(&s->verified_pos) < end) {
			int rc = seg_pin(s);
			if (rc == 0) {
				rc = seg_verify_range(s, s->base_pos, end);
				seg_unpin(s);
			}
			if (rc == -ENOMEM || log_err_no_fd(rc)) {
				seg_unref(s);
				return rc;
			}
		}
		bad += seg_bad_count(s);
		seg_unref(s);
	}
	return (int)bad;
}

/* ---- the background scrub ---------------------------------------------- */

/* The record is written after this much reading, and at a pass's end, so
 * that a restart in the middle of a long pass loses little of it. */
#define SCRUB_SAVE_BYTES (256ull << 20)

/* What one pass has done so far. */
struct scrub_pass {
	const struct log_scrub_ctl *ctl;
	uint64_t unsaved;      /* payload bytes checked since the last save */
	bool changed;          /* the record changed since the last save */
	bool stop;             /* pace said stop */
};

/*
 * Whether s's entry e lets the pass go on where the last check of s
 * stopped (*at), rather than at s's start: s still begins with what was
 * checked, the check began less than recheck_ms ago, and no bad batch
 * was found in it by an earlier open (those are checked again, and so
 * reported, once per open).
 */
static bool scrub_resumes(const struct scrub_entry *e, struct seg *s,
			  const struct log_scrub_ctl *ctl,
			  struct seg_scrub_at *at)
{
	if (e->end_offset == 0 || e->bad > 0)
		return false;
	if (ctl->recheck_ms > 0 && ctl->now_ms - e->checked_ms >= ctl->recheck_ms)
		return false;
	return scrub_entry_matches(e, s, at);
}

/*
 * Check s from where its entry says up to its end as published now, in
 * chunks paced by ctl->pace, and record what was checked. Returns the
 * bad batches found, or a negative errno.
 */
static int scrub_segment(struct log *l, struct seg *s, struct scrub_pass *ps)
{
	const struct log_scrub_ctl *ctl = ps->ctl;
	struct seg_scrub_at at = { s->base_pos, SEG_HDR_SIZE };
	uint64_t upto = atomic_load_explicit(&s->end_pos, memory_order_acquire);
	struct scrub_entry *e = scrub_record_get(&l->scrub, s->base_offset);
	int64_t started = ctl->now_ms;
	uint32_t bad_before;
	uint64_t from;
	int64_t n = 0;
	int found;

	if (!e)
		return -ENOMEM;
	e->seen = true;
	if (upto == s->base_pos || (e->fresh && e->bad > 0))
		return 0; /* empty; bad, and said so since the open */
	if (scrub_resumes(e, s, ctl, &at))
		started = e->checked_ms;
	else
		*e = (struct scrub_entry){ .base_offset = s->base_offset,
					   .seen = true };
	e->fresh = true;
	if (at.pos >= upto)
		return 0;
	from = at.pos;
	bad_before = seg_bad_count(s);
	ps->stop = !ctl->pace(0, ctl->arg);
	while (!ps->stop) {
		n = seg_scrub_step(s, &at, upto, ctl->chunk_bytes);
		if (n <= 0)
			break;
		ps->unsaved += (uint64_t)n;
		ps->stop = !ctl->pace((uint64_t)n, ctl->arg);
	}
	if (n < 0)
		return (int)n;
	found = (int)(seg_bad_count(s) - bad_before);
	if (at.pos == from)
		return found;
	/* A segment whose framing broke keeps its entry in memory only. */
	if (scrub_entry_set(e, s, &at) < 0)
		e->end_offset = 0;
	e->checked_ms = started;
	e->bad += (uint32_t)found;
	ps->changed = true;
	return found;
}

/* Write the record if it changed; a failure is logged, not fatal (the
 * next pass checks more, that is all). */
static void scrub_save(struct log *l, struct scrub_pass *ps)
{
	int rc;

	if (!ps->changed)
		return;
	rc = log_dir_pin(l);
	if (rc >= 0) {
		int dfd = rc;
		rc = scrub_record_save(&l->scrub, dfd);
		log_dir_unpin(l);
	}
	if (rc < 0)
		log_msg(l, LOG_WARNING, "writing %s: %s", SCRUB_FILE,
			strerror(-rc));
	ps->changed = false;
	ps->unsaved = 0;
}

int log_scrub_pass(struct log *l, const struct log_scrub_ctl *ctl)
{
	struct scrub_pass ps = { .ctl = ctl };
	int found = 0, rc = 0;

	if (!l->scrub.loaded) {
		rc = log_dir_pin(l);
		if (rc >= 0) {
			int dfd = rc;
			rc = scrub_record_load(&l->scrub, dfd);
			log_dir_unpin(l);
		}
		if (rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE)
			return rc;
		if (rc < 0)
			log_msg(l, LOG_WARNING, "%s unreadable (%s): every "
				"segment is scrubbed again", SCRUB_FILE,
				strerror(-rc));
		rc = 0;
	}
	for (uint32_t i = 0; !ps.stop; i++) {
		struct seg *s = log_seg_nth(l, i);

		if (!s)
			break;
		rc = scrub_segment(l, s, &ps);
		seg_unref(s);
		if (rc < 0)
			break;
		found += rc;
		rc = 0;
		if (ps.unsaved >= SCRUB_SAVE_BYTES)
			scrub_save(l, &ps);
	}
	if (rc == 0 && !ps.stop && scrub_record_prune(&l->scrub) > 0)
		ps.changed = true; /* segments gone since: their entries go */
	scrub_save(l, &ps);
	return rc < 0 ? rc : found;
}

/* ---- replication ------------------------------------------------------- */

/*
 * The segment holding offset, as the cursor's only held segment (the
 * ones the last read held are let go), referenced and pinned. -EAGAIN if
 * a truncation raced, or the pin's error.
 */
static int cursor_hold_offset(struct log_cursor *c, uint64_t offset,
			      struct seg **out)
{
	struct seg *s = NULL;
	int rc = 0;

	for (unsigned i = 0; i < c->nheld && !s; i++) {
		struct seg *h = c->held[i];
		if (!atomic_load(&h->doomed) && h->base_offset <= offset &&
		    offset < atomic_load_explicit(&h->end_offset,
						  memory_order_acquire)) {
			s = h;
			seg_ref(s);
		}
	}
	if (!s) {
		s = log_seg_get(c->log, false, offset);
		if (atomic_load(&s->doomed) || offset < s->base_offset ||
		    offset >= atomic_load_explicit(&s->end_offset,
						   memory_order_acquire))
			rc = -EAGAIN;
	}
	if (rc == 0)
		rc = seg_pin(s); /* still open if it was held */
	if (rc < 0) {
		seg_unref(s);
		s = NULL;
	}
	for (unsigned i = 0; i < c->nheld; i++)
		seg_release(c->held[i]);
	c->nheld = 0;
	if (s)
		c->held[c->nheld++] = s;
	*out = s;
	return rc;
}

int log_read_batches(struct log_cursor *c, uint64_t offset,
		     enum log_upto upto, size_t max_bytes,
		     struct log_batch_run *run)
{
	struct log *l = c->log;
	struct seg_batch b;
	struct seg_run r;
	struct ends e;
	struct seg *s;
	uint64_t limit;
	int rc;

	*run = (struct log_batch_run){
		.base_offset = offset,
		.end_offset = offset,
		.meta = { .fd = -1 },
		.data = { .fd = -1 },
	};
	read_ends(l, &e);
	if (offset < atomic_load(&l->start_offset) || offset > e.leo)
		return -ERANGE;
	limit = upto == LOG_UPTO_LEO ? e.leo : e.hw;
	if (offset >= limit)
		return 0;
	rc = cursor_hold_offset(c, offset, &s);
	if (rc < 0)
		return rc; /* raced with truncation, or no descriptor */
	rc = seg_find_offset(s, offset, &b);
	if (rc == 0)
		rc = seg_scan_run(s, &b, limit, max_bytes, &r);
	/* Never ship bytes that fail their checksum (checked once). */
	if (rc == 0 && r.batches > 0)
		rc = seg_verify_range(s, b.h.pos, r.end_pos);
	if (rc < 0 || r.batches == 0)
		return rc;
	*run = (struct log_batch_run){
		.base_offset = b.h.base_offset,
		.end_offset = r.end_offset,
		.base_pos = b.h.pos,
		.end_pos = r.end_pos,
		.batches = r.batches,
		.first_epoch = r.first_epoch,
		.last_epoch = r.last_epoch,
		.max_ts = r.max_ts,
		.meta = { .fd = s->meta_fd, .off = r.meta_pos,
			  .len = (size_t)r.meta_len },
		.data = { .fd = s->log_fd, .off = r.data_pos,
			  .len = (size_t)r.data_len },
	};
	return 0;
}

/* Where the checks of an incoming run start: this log's end. */
struct run_expect {
	uint64_t offset, pos;
	uint32_t epoch;
	int64_t ts;
	bool any_epoch; /* the epoch cache is empty */
};

/*
 * Check one batch of an incoming run at meta/data (rest_meta and
 * rest_data bytes left) against what must come next. 0, -EBADMSG or
 * -EINVAL (see log_append_batches); on success *h is the batch.
 */
static int run_check_batch(const uint8_t *meta, size_t rest_meta,
			   const uint8_t *data, size_t rest_data,
			   const struct run_expect *x, bool first,
			   struct batch_hdr *h)
{
	struct iovec v;

	if (rest_meta < BATCH_HDR_SIZE || batch_hdr_decode(meta, h) < 0)
		return -EBADMSG;
	if (batch_meta_size(h->count) > rest_meta || h->stored_len > rest_data)
		return -EBADMSG;
	v = (struct iovec){ (void *)data, h->stored_len };
	if (batch_crc((const uint32_t *)(const void *)(meta + BATCH_HDR_SIZE),
		      h->count, &v, 1) != h->crc)
		return -EBADMSG;
	for (uint32_t i = 0, sum = 0; i < h->count; i++) {
		uint32_t len = fmt_get32(meta + BATCH_HDR_SIZE + 4ull * i);
		if (len == 0 || len > h->logical_len - sum)
			return -EBADMSG;
		sum += len;
		if (i + 1 == h->count && sum != h->logical_len)
			return -EBADMSG;
	}
	if (h->base_offset != x->offset || h->pos != x->pos ||
	    (!x->any_epoch && h->epoch < x->epoch) || h->max_ts < x->ts)
		return first ? -EINVAL : -EBADMSG;
	return 0;
}

/*
 * Check a whole incoming run (nothing is written before it passes) and
 * count its batches. append_lock held.
 */
static int log_check_run(struct log *l, const uint8_t *meta, size_t meta_len,
			 const uint8_t *data, size_t data_len, uint32_t *nb)
{
	const struct seg *s = log_active(l);
	struct run_expect x = {
		.offset = s->w.end_offset,
		.pos = s->w.end_pos,
		.epoch = epoch_latest(&l->epochs),
		.ts = l->last_ts,
		.any_epoch = l->epochs.n == 0,
	};
	size_t mo = 0, dof = 0;
	struct batch_hdr h;
	int rc;

	*nb = 0;
	while (mo < meta_len) {
		rc = run_check_batch(meta + mo, meta_len - mo, data + dof,
				     data_len - dof, &x, *nb == 0, &h);
		if (rc < 0)
			return rc;
		mo += batch_meta_size(h.count);
		dof += h.stored_len;
		x.offset += h.count;
		x.pos += h.logical_len;
		x.epoch = h.epoch;
		x.ts = h.max_ts;
		x.any_epoch = false;
		(*nb)++;
	}
	return dof == data_len ? 0 : -EBADMSG;
}

/* Write one checked batch as stored, rolling first if due. */
static int log_write_stored(struct log *l, const struct batch_hdr *hin,
			    const uint8_t *meta, const uint8_t *stored,
			    int64_t now)
{
	struct iovec v = { (void *)stored, hin->stored_len };
	struct batch_hdr h = *hin;
	struct seg *s;
	int rc;

	if (log_should_roll(l, log_active(l), h.codec, h.stored_len, h.count,
			    now)) {
		rc = log_roll(l, h.codec, now);
		if (rc < 0)
			return rc;
	}
	s = log_active(l);
	if (s->codec != h.codec) { /* empty, so it was not rolled */
		rc = seg_set_codec(s, h.codec);
		if (rc < 0)
			return rc;
	}
	rc = seg_write_batch(s, &h,
			     (const uint32_t *)(const void *)(meta + BATCH_HDR_SIZE),
			     &v, 1, l->cfg.index_interval_bytes);
	assert(rc < 0 || h.crc == hin->crc);
	return rc;
}

int log_append_batches(struct log *l, const void *meta, size_t meta_len,
		       const void *data, size_t data_len,
		       struct log_append_info *info)
{
	const uint8_t *m = meta, *d = data;
	struct seg_tail saved;
	struct epoch_undo eu;
	uint32_t nsegs, nb, i;
	size_t mo = 0, dof = 0;
	bool epochs_changed = false;
	struct batch_hdr h;
	int64_t now;
	int rc;

	if (meta_len == 0)
		return -EINVAL;
	pthread_mutex_lock(&l->append_lock);
	if (atomic_load(&l->sticky)) {
		rc = -EROFS;
		goto out_unlock;
	}
	rc = log_check_run(l, m, meta_len, d, data_len, &nb);
	if (rc < 0)
		goto out_unlock;

	now = now_ms();
	rc = log_epoch_reserve(l, nb);
	if (rc == 0)
		rc = seg_pin(log_active(l)); /* until log_append_finish */
	if (rc < 0)
		goto out_unlock;
	nsegs = l->nsegs;
	saved = log_active(l)->w;
	epoch_undo_save(l, &eu);
	/* The epochs the run starts are durable before its batches. */
	for (i = 0; i < nb; i++) {
		batch_hdr_decode(m + mo, &h);
		epochs_changed |= log_epoch_assign(l, h.epoch, h.base_offset);
		mo += batch_meta_size(h.count);
	}
	if (epochs_changed) {
		rc = log_epoch_save(l);
		if (rc < 0) {
			log_epoch_restore(l, &eu);
			seg_unpin(log_active(l));
			goto out_unlock;
		}
	}
	for (i = 0, mo = 0; i < nb && rc == 0; i++) {
		batch_hdr_decode(m + mo, &h);
		rc = log_write_stored(l, &h, m + mo, d + dof, now);
		mo += batch_meta_size(h.count);
		dof += h.stored_len;
	}
	rc = log_append_finish(l, rc, nsegs, &saved, &eu, h.max_ts, info);
out_unlock:
	pthread_mutex_unlock(&l->append_lock);
	return rc;
}

uint64_t log_change_seq(struct log *l)
{
	return atomic_load(&l->change_seq);
}

void log_wake(struct log *l)
{
	log_notify(l);
}

int log_wait_change(struct log *l, uint64_t seen,
		    const struct timespec *deadline)
{
	int rc = 0;

	pthread_mutex_lock(&l->wait_lock);
	atomic_fetch_add(&l->waiters, 1);
	while (atomic_load(&l->change_seq) == seen && rc == 0) {
		rc = deadline ? pthread_cond_timedwait(&l->wait_cond,
						       &l->wait_lock, deadline) :
				pthread_cond_wait(&l->wait_cond, &l->wait_lock);
	}
	rc = atomic_load(&l->change_seq) != seen ? 0 : -ETIMEDOUT;
	atomic_fetch_sub(&l->waiters, 1);
	pthread_mutex_unlock(&l->wait_lock);
	return rc;
}

void log_thread_release(void)
{
	seg_thread_release();
}

/* ---- descriptors --------------------------------------------------------- */

int log_moved(struct log *l, const char *dir)
{
	return files_dir_move(&l->dir, dir);
}

void log_set_fd_budget(unsigned fds)
{
	files_set_budget(fds);
}

void log_get_fd_stats(struct log_fd_stats *st)
{
	struct files_stats fs;

	files_get_stats(&fs);
	*st = (struct log_fd_stats){ fs.budget, fs.open_fds, fs.reopens,
				     fs.closes };
}
