/*
 * The scrub's record of a partition: which stretch of which segment the
 * background scrub (log_scrub_pass) has checked, and when, kept in the
 * partition directory as "scrub-checkpoint" (docs/FORMAT.md section 5)
 * so that a restart does not check it all again.
 *
 * An entry says: the segment with this base offset and creation time was
 * checked from its first batch up to end_offset, where its .meta and .log
 * were meta_bytes and data_bytes long and the last batch checked had the
 * header checksum last_hdr_crc. A segment matches its entry only if all
 * of that still holds; one cut and rewritten (truncation, recovery) or
 * made again under the same name does not, and is checked again.
 *
 * Used by one thread at a time (the scrubber); no lock.
 */
#ifndef TOPICFS_LOG_SCRUB_H
#define TOPICFS_LOG_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "segment.h"

#define SCRUB_FILE "scrub-checkpoint"

struct scrub_entry {
	uint64_t base_offset;
	int64_t created_ms;     /* the segment header's */
	uint64_t end_offset;    /* checked below this offset */
	uint64_t meta_bytes, data_bytes; /* .meta and .log ends there */
	uint32_t last_hdr_crc;  /* hdr_crc of the last batch checked */
	uint32_t bad;           /* bad batches found in that stretch */
	int64_t checked_ms;     /* wall time the check of its start began */
	bool seen;              /* (memory) met by the current pass */
	bool fresh;             /* (memory) checked or matched this process */
};

struct scrub_record {
	struct scrub_entry *v;  /* sorted by base_offset */
	uint32_t n, cap;
	bool loaded;
};

/*
 * Read dir_fd's scrub-checkpoint into r (empty before). A missing file
 * gives an empty record; so does one that does not parse or whose
 * checksum fails (-EIO: the caller logs it; everything is checked
 * again).
 */
int scrub_record_load(struct scrub_record *r, int dir_fd);

/* Replace dir_fd's scrub-checkpoint durably by r. */
int scrub_record_save(const struct scrub_record *r, int dir_fd);

/* The entry for base, made (zeroed) if missing; NULL on ENOMEM. */
struct scrub_entry *scrub_record_get(struct scrub_record *r, uint64_t base);
struct scrub_entry *scrub_record_find(struct scrub_record *r, uint64_t base);

/* Drop the entries the finished pass did not meet and clear seen; the
 * number dropped. */
uint32_t scrub_record_prune(struct scrub_record *r);

void scrub_record_free(struct scrub_record *r);

/*
 * Whether s still begins with the stretch e says was checked; if so *at
 * is set just past it (where checking goes on).
 */
bool scrub_entry_matches(const struct scrub_entry *e, struct seg *s,
			 struct seg_scrub_at *at);

/* Describe in e what was checked of s: from its start up to at (at least
 * one batch). -EIO if no batch ends at at. */
int scrub_entry_set(struct scrub_entry *e, struct seg *s,
		    const struct seg_scrub_at *at);

#endif
