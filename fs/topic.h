/*
 * A topic: its settings and its partitions, reference counted. No FUSE
 * here; the broker (broker.h) keeps the table of topics and their files,
 * the FUSE adapter (fs.c) uses topics through the calls below.
 *
 *   <dir>/identity   id and TopicId (broker.c writes it)
 *   <dir>/config     "name=value" lines (config.h)
 *   <dir>/<p>/       partition p (part.h): a log/ directory
 *
 * A caller holding a topic reference may use its partitions. A deleted
 * topic's files go when the last reference does.
 *
 * Lock: a topic's lock protects its settings and partition creation; it
 * is taken after the broker's and before a partition's.
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
#define TOPIC_CONFIG_FILE "config"

struct topic;
struct part;
struct groups;

/* Kafka's topic name rule; names starting with '.' are reserved. */
bool topic_name_valid(const char *name);

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

/*
 * Set one setting by name: validate, persist durably, apply. All or
 * nothing: growing `partitions` opens the new partitions first and
 * stores the settings after; a failure leaves both as they were.
 */
int topic_config_set(struct topic *t, const char *name, const char *value,
		     size_t len);
int topic_config_reset(struct topic *t, const char *name);

/* The topic's consumer groups (group.h). */
struct groups *topic_groups(struct topic *t);

/* Next partition for an unkeyed write (sticky per write, rotating). */
uint32_t topic_next_sticky(struct topic *t);

/* Partition i, or NULL if out of range. */
struct part *topic_part(struct topic *t, uint32_t i);

/* ---- for the broker ---- */

/* A topic in memory only, named name, its files in dir, settings cfg;
 * one reference. */
struct topic *topic_new(const char *name, const char *dir,
			const struct topic_config *cfg);
void topic_set_identity(struct topic *t, uint64_t id, const char *uuid);
/* Store its settings in its directory (durable replace). */
int topic_save_config(struct topic *t);
/* Open its partitions; all or nothing (*failed: the one that failed, or
 * UINT32_MAX if none did). */
int topic_start(struct topic *t, uint32_t *failed);
const char *topic_dir(const struct topic *t);
/* Its files now live in dir (malloc'd, taken over; the topic lock is
 * taken, so a settings change sees the old path or the new one). */
void topic_move(struct topic *t, char *dir);
/* Deleted: its directory is removed with the last reference. */
void topic_set_deleted(struct topic *t, bool deleted);
/* Its groups, closed by close() with the last reference. */
void topic_set_groups(struct topic *t, struct groups *gs,
		      void (*close)(struct groups *gs));

#endif
