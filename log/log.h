/*
 * The log engine: one partition of a topic as a directory of segments.
 *
 * A partition is an ordered, append-only sequence of records. Each record
 * has an offset (0, 1, 2, ... never reused) and a byte position: the
 * partition's payload bytes laid end to end form one growing "file", and a
 * record's position is where its first byte lies in it. Positions never
 * change; retention removes whole segments from the head and the log start
 * moves up.
 *
 * Threads: any number of readers at once, one appender at a time (the
 * engine serialises appenders itself). Readers see a prefix that only
 * grows: nothing a reader was shown is ever changed, except by
 * log_truncate (replication) and retention.
 *
 * Errors: every function that can fail returns 0 (or a count) on success
 * and a negative errno on failure. The most important ones:
 *   -EINVAL  bad arguments (a record of 0 bytes, a bad config value)
 *   -ERANGE  an offset, position or time outside the log
 *   -EIO     stored bytes failed their checksum, or an I/O error
 *   -ENOSPC  the disk is full; the log is exactly as before the call
 *   -EROFS   a previous fsync, checkpoint or cleanup failed: the
 *            partition refuses appends until it is reopened (the
 *            "sticky" error)
 * Failures of appends and reads are returned, not logged: the caller
 * reports them (one line, with its own names for the partition). The
 * engine logs what only it sees: recovery, cuts, truncation, retention,
 * and the sticky error.
 */
#ifndef TOPICFS_LOG_LOG_H
#define TOPICFS_LOG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "codec.h"

struct log;
struct log_cursor;

/* Limits on configuration values. */
#define LOG_SEGMENT_BYTES_MIN 4096ull
#define LOG_SEGMENT_BYTES_MAX (2ull << 30)
#define LOG_INDEX_BYTES_MIN 240u
#define LOG_INDEX_BYTES_MAX (1u << 30)
/* The largest record (and batch payload) the engine stores. */
#define LOG_RECORD_BYTES_MAX (16u << 20)

/* Per-partition settings, Kafka's names in the comments. */
struct log_config {
	uint64_t segment_bytes;        /* segment.bytes, default 1 GiB */
	int64_t segment_ms;            /* segment.ms, default 7 days */
	uint32_t index_bytes;          /* segment.index.bytes, default 10 MiB */
	uint32_t index_interval_bytes; /* index.interval.bytes, default 4096 */
	int64_t retention_ms;          /* retention.ms, -1 = keep forever */
	int64_t retention_bytes;       /* retention.bytes, -1 = no limit */
	int codec;                     /* compression.type, enum log_codec */
	int zstd_level;                /* compression.zstd.level, default 3 */
	uint32_t batch_bytes;          /* payload bytes per batch, at most */
};

void log_config_default(struct log_config *c);

/* 0 if every value is within its limits, else -EINVAL. */
int log_config_check(const struct log_config *c);

/* Where a partition stands; a snapshot, fields read one by one. */
struct log_state {
	uint64_t start_offset, start_pos;   /* log start */
	uint64_t hw, hw_pos;                /* high watermark */
	uint64_t leo, leo_pos;              /* log end */
	uint64_t recovery_point;            /* flushed below this offset */
	uint64_t size_bytes;                /* payload bytes stored (.log) */
	uint32_t segments;
	uint32_t leader_epoch;              /* of the newest epoch entry */
	int64_t max_ts;                     /* newest timestamp, -1 if empty */
	int sticky_error;                   /* 0 or the errno that stuck */
};

/*
 * Messages the engine logs (recovery, corruption, I/O errors) go to this
 * function; priority is a syslog priority. The default prints to stderr.
 */
typedef void log_logger_fn(int priority, const char *msg, void *arg);
void log_set_logger(log_logger_fn *fn, void *arg);

/*
 * Open the partition in directory dir (created if missing). After a clean
 * shutdown nothing is scanned; otherwise the segments past the recovery
 * point are validated batch by batch and the log is cut at the first
 * invalid one. On success *out is the partition.
 */
int log_open(const char *dir, const struct log_config *cfg, struct log **out);

/*
 * Flush, write the checkpoint and the clean-shutdown marker, and free.
 * All cursors must have been freed. Returns the first error met; the
 * partition is freed in any case.
 */
int log_close(struct log *l);

/*
 * Free without flushing or marking a clean shutdown, as if the process
 * died here (what is in the page cache stays there). For tests.
 */
void log_abandon(struct log *l);

/* Change settings; a codec change takes effect in the next segment. */
int log_set_config(struct log *l, const struct log_config *cfg);

/* What one append is tagged with. */
struct log_append_opts {
	uint32_t epoch;       /* leader epoch; never lower than the last one */
	int64_t timestamp_ms; /* 0: now. Clamped to be non-decreasing. */
};

struct log_append_info {
	uint64_t base_offset, end_offset; /* offsets [base, end) were given */
	uint64_t base_pos, end_pos;       /* their bytes lie in [base, end) */
	int64_t timestamp_ms;
};

/*
 * Append n records whose bytes lie back to back in payload (len bytes),
 * lens[i] being the length of record i (at least 1). The records get the
 * next offsets and are cut into batches of at most batch_bytes. Either
 * all records are appended or none (on error the files are cut back).
 * opts may be NULL (epoch 0 or the current one, timestamp now).
 */
int log_append(struct log *l, const void *payload, size_t len,
	       const uint32_t *lens, uint32_t n,
	       const struct log_append_opts *opts,
	       struct log_append_info *info);

/*
 * log_append with the payload in pieces (iovcnt of them, the records'
 * bytes being their concatenation; a record may span pieces). A batch
 * is written straight from the pieces it spans when there are few of
 * them; one spanning many small pieces, or to be compressed from several,
 * is copied together first.
 */
int log_appendv(struct log *l, const struct iovec *iov, int iovcnt,
		const uint32_t *lens, uint32_t n,
		const struct log_append_opts *opts,
		struct log_append_info *info);

/* fsync everything appended so far and checkpoint the recovery point. */
int log_flush(struct log *l);

/*
 * Set the high watermark (readers see records below it only); it is
 * clamped to [log start, log end]. Checkpointed at the next flush.
 */
int log_set_hw(struct log *l, uint64_t hw);

/*
 * Remove every record at or after offset. Only whole batches are removed,
 * so the log may end below offset if it falls inside a batch; the new end
 * is returned in *leo. The high watermark and recovery point follow.
 */
int log_truncate(struct log *l, uint64_t offset, uint64_t *leo);

/*
 * Delete whole segments (never the active one) whose newest record is
 * older than retention.ms before now_ms, or that lie wholly beyond
 * retention.bytes from the end. Returns the number deleted.
 */
int log_retention(struct log *l, int64_t now_ms);

void log_get_state(struct log *l, struct log_state *st);

/* The ends of the log, read without taking any lock (the hot subset of
 * log_state, for stat and readers). */
struct log_bounds {
	uint64_t start_offset, start_pos;
	uint64_t hw, hw_pos;
	uint64_t leo, leo_pos;
	int64_t max_ts;                     /* newest timestamp, -1 if empty */
};

void log_get_bounds(struct log *l, struct log_bounds *b);
const char *log_path(const struct log *l);

/* Position of record `offset`; offset == log end gives the end position. */
int log_offset_to_pos(struct log *l, uint64_t offset, uint64_t *pos);

/* The record containing position pos: its offset and its first byte. */
int log_pos_to_offset(struct log *l, uint64_t pos, uint64_t *offset,
		      uint64_t *rec_pos);

/* First record with timestamp >= ts; the log end if there is none. */
int log_time_to_offset(struct log *l, int64_t ts, uint64_t *offset);

/*
 * Kafka's OffsetForLeaderEpoch: the largest epoch <= epoch that this log
 * knows, and the offset where it ended (the start of the next epoch, or
 * the log end for the newest). -ERANGE if epoch is older than them all.
 */
int log_epoch_end(struct log *l, uint32_t epoch, uint32_t *found_epoch,
		  uint64_t *end_offset);

/*
 * Reading. A cursor belongs to one thread at a time; it keeps the
 * segments it returned extents of alive until its next read or its end.
 */
int log_cursor_new(struct log *l, struct log_cursor **out);
void log_cursor_free(struct log_cursor *c);

/*
 * Where bytes are: either in a file (fd, off) or, for compressed batches,
 * in memory owned by the cursor (mem). Valid until the cursor's next read.
 */
struct log_extent {
	int fd;
	uint64_t off;
	size_t len;
	const void *mem;
};

/*
 * Describe up to len bytes from position *pos, never past the high
 * watermark, as at most max_ext extents. A *pos below the log start is
 * moved up to the log start. Returns the number of bytes described (0 at
 * the end), *n_ext extents; or -EIO if the range holds a batch that
 * failed its checksum.
 */
ssize_t log_read(struct log_cursor *c, uint64_t *pos, size_t len,
		 struct log_extent *ext, unsigned max_ext, unsigned *n_ext);

/* Like log_read, but copies the bytes into buf. */
ssize_t log_read_copy(struct log_cursor *c, uint64_t *pos, void *buf,
		      size_t len);

/*
 * Check the checksum of every stored batch not yet checked since open
 * (what a background scrub does once per mount). Returns the number of
 * bad batches found in the whole log; reporting them is the caller's.
 */
int log_scrub(struct log *l);

#endif
