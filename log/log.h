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
#include <time.h>

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
	uint32_t leader_epoch;              /* of the newest epoch entry, 0
					       if none */
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

/*
 * The partition's directory was renamed to dir (a topic moved into the
 * trash, say): its files are reopened from there from now on. An idle
 * partition's directory may be closed (see log_set_fd_budget) and is
 * then reopened by name; a reopen that finds another directory at the
 * old name fails with -ESTALE instead. -ENOMEM changes nothing.
 */
int log_moved(struct log *l, const char *dir);

/*
 * ---- Descriptors -------------------------------------------------------
 *
 * Each partition holds descriptors: its directory and, per segment, the
 * .log, .meta and .index files (and a mapping of the index). With a
 * budget set, the engine keeps at most about that many of them open: the
 * files of idle segments and idle directories are closed, least
 * recently used first, and reopened by name when next used, which no
 * caller sees. Files in use are never closed: an append, a sync, a
 * lookup, or a cursor whose last read handed out extents (the FUSE layer
 * splices from them later) holds them open, so in-use files may pass
 * the budget. 0 (the default) means no limit.
 *
 * Running out of descriptors (EMFILE, ENFILE) closes every idle file
 * and tries again once; if that fails too, the call that needed the
 * descriptor fails with -EMFILE (or -ENFILE) and nothing else does: no
 * partition turns read-only for it, and an open never takes it for
 * damage (the log is not cut, the files are left as they are).
 */
void log_set_fd_budget(unsigned fds);

struct log_fd_stats {
	unsigned budget;       /* 0: no limit */
	unsigned open;         /* descriptors held by open files now */
	unsigned long long reopens, closes; /* files reopened, closed idle */
};

void log_get_fd_stats(struct log_fd_stats *st);

/*
 * ---- Batches -----------------------------------------------------------
 *
 * Opening or closing many partitions at once (a mount, an unmount): the
 * calling thread's log_open and log_close calls between log_batch_begin
 * and log_batch_end, for partitions on the file system of fs_fd, leave
 * their syncs to one syncfs(2) of that file system at the end.
 *
 * An open in a batch makes what recovery changed, and the removal of the
 * clean-shutdown marker, durable only at log_batch_end: nothing may be
 * appended to those partitions before it returns 0. A close in a batch
 * writes everything but syncs nothing; log_batch_end syncs the file
 * system, then (only if that succeeded) puts each partition's new
 * checkpoint in place and makes its clean-shutdown marker, and syncs
 * again. A marker therefore only exists once everything before it is on
 * disk; after a crash or a failed sync the partitions without one are
 * recovered at their next open, as after any crash.
 *
 * fs_fd must stay open until log_batch_end, and should have been opened
 * before the partitions were written to (syncfs reports the write-back
 * errors of the file system since the descriptor was opened). -EBUSY if
 * the thread already runs a batch. log_batch_end returns 0 or the error
 * of the sync (then logged, one line).
 */
int log_batch_begin(int fs_fd);
int log_batch_end(void);

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

/*
 * Make everything appended so far durable and checkpoint the recovery
 * point (log_sync_to of the log end, then log_checkpoint).
 */
int log_flush(struct log *l);

/*
 * Set the high watermark (readers see records below it only); it is
 * clamped to [log start, log end]. Checkpointed at the next flush.
 */
int log_set_hw(struct log *l, uint64_t hw);

/*
 * Remove every record at or after offset. Only whole batches are removed,
 * so the log may end below offset if it falls inside a batch; the new end
 * is returned in *leo. The high watermark and recovery point follow, and
 * so does the epoch cache (entries starting at or past the new end go).
 * -ERANGE if offset is below the log start.
 *
 * A segment no reader holds is cut in place (ftruncate). A segment some
 * cursor holds (it may be splicing from extents of it) is never cut:
 * its kept prefix is copied into new files that are renamed over its
 * names, and the holders keep the old files, unchanged, until they let
 * go. That costs a copy of at most one segment, only when a reader sits
 * in the segment being cut. Cursors that were shown removed bytes get
 * -ESTALE on their next read there (see log_read). Durable on return.
 */
int log_truncate(struct log *l, uint64_t offset, uint64_t *leo);

/*
 * Delete whole segments (never the active one) whose newest record is
 * older than retention.ms before now_ms, or that lie wholly beyond
 * retention.bytes from the end. Returns the number deleted.
 */
int log_retention(struct log *l, int64_t now_ms);

/* A snapshot of the partition's state. Takes no lock an append holds:
 * it never waits behind an append. */
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

/* Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET (both -1 there). */
#define LOG_EPOCH_UNDEFINED UINT32_MAX
#define LOG_OFFSET_UNDEFINED UINT64_MAX

/*
 * Kafka's OffsetForLeaderEpoch, answered exactly as Kafka's
 * LeaderEpochFileCache.endOffsetFor(epoch, log end offset) does, from the
 * cache (epoch, start offset) entries e[0..n):
 *
 *   epoch == LOG_EPOCH_UNDEFINED            UNDEFINED, UNDEFINED
 *   epoch == the newest entry's epoch       epoch, the log end offset
 *   no entry has a larger epoch (this also
 *   covers the empty cache)                 UNDEFINED, UNDEFINED
 *   epoch older than e[0].epoch             epoch (as asked), e[0].start
 *   otherwise                               the largest epoch <= epoch,
 *                                           start of the next entry
 *
 * where UNDEFINED is LOG_EPOCH_UNDEFINED for *found_epoch and
 * LOG_OFFSET_UNDEFINED for *end_offset. Always returns 0. Takes a lock
 * of its own (never waits behind an append).
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
 *
 * Truncation (Kafka's KIP-320): a cursor never returns different bytes
 * at a position than it may have returned before. It remembers the
 * highest position it was asked for or returned (its known end) and the
 * truncation generation it last saw. When a truncation (log_truncate,
 * log_truncate_fully) removed bytes at or past position t below the
 * known end, every later read through this cursor at a position >= t
 * fails with -ESTALE, and a read below t stops at t; the cursor must be
 * freed and a new one made (the FUSE layer answers ESTALE). A truncation
 * at or above the known end changes nothing for the cursor. The file
 * bytes of extents already handed out are never cut or overwritten: a
 * segment a reader holds is truncated by replacing its files (see
 * log_truncate).
 */
ssize_t log_read(struct log_cursor *c, uint64_t *pos, size_t len,
		 struct log_extent *ext, unsigned max_ext, unsigned *n_ext);

/* Like log_read, but copies the bytes into buf. */
ssize_t log_read_copy(struct log_cursor *c, uint64_t *pos, void *buf,
		      size_t len);

/*
 * ---- Replication ------------------------------------------------------
 *
 * The calls below are what repl/ builds on: batches moved as stored
 * between replicas (docs/FORMAT.md section 10 gives the byte stream),
 * leader epochs, truncation, durability by offset and wake-ups. All of
 * them may be called from any thread; the ones that change the log
 * serialise with appends.
 */

/* Which end a batch read stops at. */
enum log_upto {
	LOG_UPTO_HW = 0,  /* a consumer, or a follower's readers */
	LOG_UPTO_LEO = 1, /* a follower fetching from its leader */
};

/*
 * A run of whole batches as stored, consecutive in one segment: the
 * bytes of the run are the meta extent (each batch's 64-byte header and
 * record lengths, as in the .meta file) followed by the data extent (the
 * batches' stored payloads, as in the .log file, compressed or not).
 * Both extents are file ranges (fd, off, len; mem is NULL) valid until
 * the cursor's next read or its end, like log_read's.
 */
struct log_batch_run {
	uint64_t base_offset, end_offset; /* offsets [base, end) */
	uint64_t base_pos, end_pos;       /* partition positions */
	uint32_t batches;                 /* 0: nothing to read */
	uint32_t first_epoch, last_epoch;
	int64_t max_ts;                   /* of the last batch */
	struct log_extent meta, data;
};

/*
 * Describe the whole batches from the one holding offset on, up to
 * (never past) the high watermark or the log end as upto says, as stored:
 * at most max_bytes of meta and data together, except that the first
 * batch is returned whole however large it is (Kafka's rule: a fetch
 * always makes progress). A batch that ends past the limit offset is
 * not returned, so a high watermark inside a batch holds the batch back.
 * The run stops at the end of a segment; the next call goes on.
 *
 * Returns 0 with run->batches >= 1, or 0 with run->batches == 0 when
 * offset is at the limit (nothing to read yet); -ERANGE if offset is
 * below the log start or above the log end (Kafka's
 * OFFSET_OUT_OF_RANGE); -EIO if a batch in the run failed its checksum
 * (the run is not returned). Batches are checked like log_read's bytes
 * (lazily, once per open), so corrupt bytes are never shipped.
 *
 * Reads by offset are not subject to the truncation check of log_read:
 * a follower fences its fetches by leader epoch (log_epoch_end).
 */
int log_read_batches(struct log_cursor *c, uint64_t offset,
		     enum log_upto upto, size_t max_bytes,
		     struct log_batch_run *run);

/*
 * Append batches as stored (a leader's run, section 10 of FORMAT.md):
 * meta is the run's meta bytes, data its data bytes. Every batch is
 * checked before anything is written: header checksum and limits, record
 * lengths, and the CRC of lengths and payload; within the run offsets,
 * positions, epochs and timestamps must follow on. The first batch must
 * start at the log end offset and position, with an epoch no lower than
 * the newest epoch entry and a timestamp no lower than the newest stored.
 * Batch boundaries, record lengths, epochs, timestamps, codec and the
 * stored (compressed) bytes are kept as they are; a batch whose codec is
 * not the active segment's rolls the segment. A batch with a new epoch
 * adds an epoch entry at its base offset.
 *
 * Errors, each leaving the log exactly as before:
 *   -EBADMSG  the bytes are not a well-formed run (framing, a checksum,
 *             lengths, or offsets/positions/epochs/timestamps that do
 *             not follow on inside the run, or bytes left over)
 *   -EINVAL   a well-formed run that does not continue this log (base
 *             offset or position is not the log end, epoch or timestamp
 *             lower than this log's newest), or meta_len == 0
 *   -EROFS, -ENOSPC, -EIO as for log_append
 * info (may be NULL) is filled as by log_append, timestamp_ms being the
 * last batch's.
 */
int log_append_batches(struct log *l, const void *meta, size_t meta_len,
		       const void *data, size_t data_len,
		       struct log_append_info *info);

/*
 * A new leader records where its epoch starts: epoch begins at the log
 * end offset, without appending anything (Kafka PR #5678, KAFKA-7415),
 * so that a follower asking for the end of the previous epoch gets the
 * right answer before the new leader has written a record. Durable when
 * it returns (the epoch checkpoint is replaced). An epoch equal to the
 * newest is a no-op; -EINVAL if lower. An entry for an earlier epoch
 * that starts at the same offset (it wrote nothing) is replaced, as
 * Kafka's cache does.
 */
int log_begin_epoch(struct log *l, uint32_t epoch);

/*
 * Kafka's truncateFullyAndStartAt: remove every record and restart the
 * log empty at offset, whose first byte will be at partition position pos
 * (the leader's log start: both must be the leader's, so that offsets
 * and partition streams stay identical across replicas). The epoch
 * cache is emptied; the high watermark and recovery point become offset.
 * For a follower whose log lies wholly behind the leader's start (or
 * diverges from it entirely). Readers that were shown removed bytes get
 * -ESTALE (see log_read).
 */
int log_truncate_fully(struct log *l, uint64_t offset, uint64_t pos);

/*
 * Kafka's maybeIncrementLogStartOffset: move the log start up to offset
 * (a follower following its leader's log start). Whole segments below
 * the new start are deleted once the new start is checkpointed; a start
 * inside a segment hides the records below it. No-op if offset is at or
 * below the log start; -ERANGE if above the high watermark.
 */
int log_advance_start(struct log *l, uint64_t offset);

/*
 * Make every record below offset durable. Returns 0 at once, without a
 * system call, if they already are (the recovery point is at or past
 * offset). Otherwise fdatasyncs the .log and .meta files of the segments
 * from the recovery point to the current log end (everything appended so
 * far, so that concurrent callers share one sync: they wait on the
 * partition's flush lock and find their offset covered), the .index of a
 * sealed segment once, and the directory only if segments were created
 * or removed since the last sync. An append-only commit in the active
 * segment thus costs two fdatasyncs. The new recovery point is kept in
 * memory; the checkpoint file is written by log_checkpoint. An offset
 * past the log end syncs to the log end. A failed sync sets the sticky
 * error (-EIO, then -EROFS).
 */
int log_sync_to(struct log *l, uint64_t offset);

/*
 * Write the checkpoint file (log start, recovery point, high watermark)
 * if any of them changed since it was last written; nothing otherwise.
 * The broker calls it on its own schedule (every 5 s and at shutdown, as
 * Kafka checkpoints its high watermark), not per commit. After a crash
 * the log is recovered from the recovery point last checkpointed, which
 * may be older than the durable one: recovery then checks more, and
 * loses nothing that was synced.
 */
int log_checkpoint(struct log *l);

/*
 * Wake-ups. The change sequence grows whenever the log end offset, the
 * high watermark or the log start moves (appends, log_set_hw,
 * truncations), and when log_wake is called. A long-polling fetch reads
 * it, finds nothing to send, and waits for it to move past what it saw:
 * log_wait_change returns 0 as soon as the sequence differs from seen
 * (at once if it already does), or -ETIMEDOUT at deadline, a
 * CLOCK_MONOTONIC time (NULL: no deadline). No polling: a condition
 * variable, signalled only when someone waits.
 */
uint64_t log_change_seq(struct log *l);
int log_wait_change(struct log *l, uint64_t seen,
		    const struct timespec *deadline);
/* Move the sequence and wake every waiter (shutdown, leadership change). */
void log_wake(struct log *l);

/*
 * Check the checksum of every stored batch not yet checked since open,
 * at once, remembering nothing (tests, tools; the background scrub is
 * log_scrub_pass). Returns the number of bad batches found in the whole
 * log; reporting them is the caller's.
 */
int log_scrub(struct log *l);

/*
 * The background scrub, paced and remembered across opens. A pass walks
 * every segment and checks (reads, CRC) the batches the scrub has not
 * checked yet: a segment is checked once, from its first batch on, and
 * what was checked is recorded in the partition directory
 * (scrub-checkpoint, docs/FORMAT.md section 5), so a later pass, also
 * after a restart, goes on where the last one stopped (the active
 * segment's new batches, new segments) instead of reading everything
 * again. A segment that no longer begins with what was recorded (cut by
 * a truncation or recovery and written again, or made again under its
 * name) is checked again from its start; so is one whose check began
 * recheck_ms or more before now_ms (latent corruption of bytes checked
 * long ago), and one in which bad batches were found, once per open (so
 * each mount reports it). A bad batch is remembered: its reads fail with
 * EIO from then on.
 *
 * Reading goes in chunks of about chunk_bytes of payload; before each,
 * pace(bytes read since the last call, arg) is called, which may wait
 * (the caller's rate limit) and returns false to stop the pass at once.
 * Only one thread may run passes on a log at a time.
 *
 * Returns the number of bad batches this pass found, or a negative errno
 * (-ENOMEM; an I/O error). A record file that cannot be read is logged
 * and ignored (everything is checked again).
 */
struct log_scrub_ctl {
	int64_t now_ms;        /* wall clock: when this pass checks */
	int64_t recheck_ms;    /* check again after this long; <= 0: never */
	uint64_t chunk_bytes;  /* payload bytes between two calls of pace */
	bool (*pace)(uint64_t bytes, void *arg);
	void *arg;
};

int log_scrub_pass(struct log *l, const struct log_scrub_ctl *ctl);

/*
 * Free what the engine keeps for the calling thread (the buffer that
 * verifications read through, otherwise freed when the thread ends): for
 * a leak check in a thread that lives on.
 */
void log_thread_release(void);

#endif
