/*
 * The leader-epoch cache of a partition: for each leader epoch the offset
 * of its first record, as Kafka's leader-epoch-checkpoint. Followers use
 * it to find where their log diverges from a new leader's (by epoch, not
 * only by high watermark). Stored as text, see docs/FORMAT.md:
 *
 *     topicfs-leader-epochs 1
 *     <count>
 *     <epoch> <start offset>      (count lines, epochs increasing)
 *     crc32c <8 hex digits over all bytes before this line>
 */
#ifndef TOPICFS_LOG_EPOCH_H
#define TOPICFS_LOG_EPOCH_H

#include <stdbool.h>
#include <stdint.h>

#define EPOCH_FILE "leader-epoch-checkpoint"
/* Epoch entries kept; the oldest are dropped past this. */
#define EPOCH_ENTRIES_MAX 1024u

struct epoch_entry {
	uint32_t epoch;
	uint64_t start;
};

/*
 * The entries live in an array grown on demand (most partitions have one
 * or two epochs; a fixed array of EPOCH_ENTRIES_MAX cost 16 KiB per
 * partition). epoch_assign never allocates: room is made first with
 * epoch_reserve, which is where memory can run out.
 */
struct epoch_cache {
	uint32_t n, cap;
	struct epoch_entry *e;
};

/* Room for want entries (at most EPOCH_ENTRIES_MAX): 0 or -ENOMEM. */
int epoch_reserve(struct epoch_cache *c, uint32_t want);
void epoch_free(struct epoch_cache *c);

/* Load from dir_fd; a missing file is an empty cache, a bad one -EIO. */
int epoch_load(struct epoch_cache *c, int dir_fd);
int epoch_save(const struct epoch_cache *c, int dir_fd);

/*
 * Record that epoch starts at offset; false if nothing changed (epoch not
 * above the newest). Room for one more entry must have been reserved. Entries starting at or past offset are dropped
 * first: an epoch that wrote nothing is replaced by the next one.
 */
bool epoch_assign(struct epoch_cache *c, uint32_t epoch, uint64_t start);

/* Drop entries starting at or after end (log truncated to end). */
bool epoch_truncate_end(struct epoch_cache *c, uint64_t end);

/* Log start moved to start: older entries collapse into one at start. */
bool epoch_truncate_start(struct epoch_cache *c, uint64_t start);

/* Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET (log.h repeats). */
#define EPOCH_UNDEFINED UINT32_MAX
#define EPOCH_OFFSET_UNDEFINED UINT64_MAX

/* See log_epoch_end in log.h: leo is the log end offset. */
void epoch_end_offset(const struct epoch_cache *c, uint32_t epoch,
		      uint64_t leo, uint32_t *found, uint64_t *end);

static inline uint32_t epoch_latest(const struct epoch_cache *c)
{
	return c->n ? c->e[c->n - 1].epoch : 0;
}

#endif
