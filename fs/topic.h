/*
 * The broker: the topics of one data directory and their partitions.
 * No FUSE here; fs.c maps FUSE operations onto these calls.
 *
 *   DATADIR/.lock                    flock'd while mounted
 *   DATADIR/topics/<topic>/config    "name=value" lines (config.h)
 *   DATADIR/topics/<topic>/<p>/      partition p: a log/ directory
 *   DATADIR/trash/<id>-<topic>/      deleted topics, removed when unused
 *
 * Topics and partitions are reference counted through their topic: a
 * caller holding a topic reference may use its partitions. A deleted
 * topic disappears from the name table at once; its files go when the
 * last reference does.
 */
#ifndef TOPICFS_FS_TOPIC_H
#define TOPICFS_FS_TOPIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

#define TOPIC_NAME_MAX 249
/* Kafka's TopicId as printed: 16 bytes in base64 without padding. */
#define TOPIC_UUID_LEN 22
/*
 * Topic ids are given once per data directory and never again; inode
 * numbers are (id << 24 | ...) below the read views' bit 62, so ids stay
 * under 2^38.
 */
#define TOPIC_ID_MAX ((1ull << 38) - 1)

struct broker;
struct topic;

/* Append-latency histogram bucket bounds, in microseconds. */
#define LATENCY_BUCKETS 12
extern const uint64_t latency_bucket_us[LATENCY_BUCKETS];

struct part_stats {
	_Atomic uint64_t bytes_in, records_in, bytes_out, records_out, batches_in;
	_Atomic uint64_t latency_count, latency_sum_us;
	_Atomic uint64_t latency_bucket[LATENCY_BUCKETS + 1];
};

struct part;

struct broker_opts {
	const char *datadir;
	uint32_t num_partitions;
};

/*
 * Lock the data directory (creating it if missing) and open every topic.
 * -EBUSY if another topicfs holds the directory.
 */
int broker_open(const struct broker_opts *o, struct broker **out);

/* Flush and close every partition cleanly, release the lock, free. */
int broker_close(struct broker *b);

const char *broker_datadir(const struct broker *b);

/* Retention and periodic flush; call about once a second. */
void broker_tick(struct broker *b, int64_t now_ms);

/* Check every stored batch not checked since the mount (background). */
void broker_scrub(struct broker *b);

/* Kafka's topic name rule; names starting with '.' are reserved. */
bool topic_name_valid(const char *name);

/*
 * Create a topic with the mount's defaults: -EINVAL for a bad name,
 * -EEXIST if a topic of that name is loaded or stored (one log line when
 * it is stored but failed to load). After a crash at any point the next
 * mount sees the whole topic or none of it.
 */
int broker_topic_create(struct broker *b, const char *name);
int broker_topic_delete(struct broker *b, const char *name);

/* Referenced topic, or NULL. */
struct topic *broker_topic_get(struct broker *b, const char *name);
struct topic *broker_topic_by_id(struct broker *b, uint64_t id);

/*
 * Referenced topics with id > after, in id order, at most max of them:
 * for readdir and .status. Returns the count.
 */
unsigned broker_topics_list(struct broker *b, uint64_t after,
			    struct topic **out, unsigned max);

/* A topic stored in DATADIR that could not be loaded: left untouched on
 * disk, shown in .status with its reason. */
struct topic_failure {
	char name[TOPIC_NAME_MAX + 1];
	char reason[160];
};

/* Copy the failed topics from index `from` on, at most max; the count. */
unsigned broker_failures(struct broker *b, unsigned from,
			 struct topic_failure *out, unsigned max);

void topic_get(struct topic *t);
void topic_put(struct topic *t);

uint64_t topic_id(const struct topic *t);
/* Kafka's TopicId: 16 random bytes given at creation, in URL-safe base64
 * without padding (TOPIC_UUID_LEN characters), as kafka-topics prints. */
const char *topic_uuid(const struct topic *t);
const char *topic_name(const struct topic *t);
bool topic_deleted(const struct topic *t);
uint32_t topic_partitions(struct topic *t);
void topic_config(struct topic *t, struct topic_config *out);

/* Set one setting by name: validate, persist durably, apply. */
int topic_config_set(struct topic *t, const char *name, const char *value,
		     size_t len);
int topic_config_reset(struct topic *t, const char *name);

/* The topic's consumer groups (group.h). */
struct groups *topic_groups(struct topic *t);

/* Next partition for an unkeyed write (sticky per write, rotating). */
uint32_t topic_next_sticky(struct topic *t);

/* Partition i, or NULL if out of range. */
struct part *topic_part(struct topic *t, uint32_t i);

struct log *part_log(struct part *p);
uint32_t part_index(const struct part *p);
struct part_stats *part_stats(struct part *p);

/*
 * Append n records (lens; their bytes back to back in the iovcnt pieces
 * of iov, a record may span pieces) to the partition, combined with
 * whatever other writers append at the same moment into one append
 * (group commit). On return the records are readable (high watermark
 * moved) and *info says which offsets they got.
 */
int part_produce(struct part *p, const struct iovec *iov, int iovcnt,
		 const uint32_t *lens, uint32_t n, struct log_append_info *info);

/* fsync the partition (what fsync(2) on its file does). */
int part_sync(struct part *p);

/* Murmur2 as Kafka's default partitioner uses it (seed 0x9747b28c). */
int32_t murmur2(const void *data, size_t len);

/* Kafka's partition for a key: (murmur2(key) & 0x7fffffff) % n. */
uint32_t partition_for_key(const void *key, size_t len, uint32_t n);

/* Tests only: hook(step) is called at each step of a topic's creation and
 * deletion (tests/test_topic.c kills the process there). */
void broker_set_step_hook(void (*hook)(const char *step));

#endif
