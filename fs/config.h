/*
 * Topic configuration: Kafka's topic-level settings by their Kafka names,
 * validated, printed, and stored as a text file of "name=value" lines.
 * Exposed to users as the xattrs "user.topicfs.<name>" of topic
 * directories (docs/CONFIG.md lists them all).
 */
#ifndef TOPICFS_FS_CONFIG_H
#define TOPICFS_FS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define TOPIC_PARTITIONS_MAX 1024u
#define CONFIG_VALUE_MAX 255
#define KEY_SEPARATOR_MAX 8

enum framing { FRAMING_LINES = 0, FRAMING_BINARY = 1 };

struct topic_config {
	uint32_t partitions;
	uint32_t replication_factor;
	uint32_t min_insync_replicas;
	int acks;                       /* 0, 1, or -1 for "all" */
	bool unclean_leader_election;
	int framing;
	char key_separator[KEY_SEPARATOR_MAX + 1]; /* "" = records unkeyed */
	uint32_t max_message_bytes;
	int64_t flush_messages;         /* fsync after this many records */
	int64_t flush_ms;               /* fsync when data is this old */
	bool write_caching;             /* acknowledge before the disk has it */
	struct log_config log;          /* segment.*, retention.*, compression.* */
};

/*
 * A consumer group's settings (docs/GROUPS.md), by Kafka's consumer
 * names, kept in <topic dir>/groups/<g>/config. They go through the same
 * table, parsers and checks as a topic's: the group_config_* functions
 * below behave as the config_* ones do for topics.
 */
enum group_strategy { GROUP_RANGE, GROUP_ROUNDROBIN, GROUP_STICKY };
enum group_reset {
	GROUP_RESET_EARLIEST, GROUP_RESET_LATEST, GROUP_RESET_NONE,
};

struct group_config {
	int strategy;           /* partition.assignment.strategy */
	bool auto_commit;       /* enable.auto.commit */
	int64_t max_poll_ms;    /* max.poll.interval.ms, 1 to 2^31 - 1 */
	int reset;              /* auto.offset.reset */
};

void group_config_default(struct group_config *c);
size_t group_config_count(void);
const char *group_config_name(size_t i);
int group_config_get(const struct group_config *c, const char *name,
		     char *buf, size_t size);
int group_config_set(struct group_config *c, const char *name,
		     const char *value, size_t len);
char *group_config_format(const struct group_config *c);
int group_config_parse(struct group_config *c, const char *text, char *why,
		       size_t why_size);
/* The name of a partition.assignment.strategy value (log lines). */
const char *group_strategy_name(int strategy);

/* Defaults (Kafka's, except where docs/CONFIG.md says otherwise). */
void config_default(struct topic_config *c, uint32_t partitions);

/* Number of settings and the name of setting i (for listxattr). */
size_t config_count(void);
const char *config_name(size_t i);

/*
 * Print setting `name` into buf (NUL-terminated, at most
 * CONFIG_VALUE_MAX + 1 bytes). -ENODATA for an unknown name.
 */
int config_get(const struct topic_config *c, const char *name, char *buf,
	       size_t size);

/*
 * Set `name` to the value (len bytes, not NUL-terminated, one trailing
 * newline tolerated) in c. -ENODATA for an unknown name, -EINVAL for a
 * bad value (c unchanged). `partitions` may only grow.
 */
int config_set(struct topic_config *c, const char *name, const char *value,
	       size_t len);

/* Reset name to its default (removexattr). */
int config_reset(struct topic_config *c, const char *name);

/* Serialise to "name=value\n" lines; returns a malloc'd string. */
char *config_format(const struct topic_config *c);

/*
 * Parse a file written by config_format into c (which holds defaults).
 * An unknown name or a bad value is -EINVAL with the reason in why: a
 * setting this program does not know (a newer topicfs wrote it) is never
 * dropped silently, since its default could, say, delete data sooner.
 */
int config_parse(struct topic_config *c, const char *text, char *why,
		 size_t why_size);

/*
 * Parse an ISO 8601 time into Unix milliseconds:
 * "YYYY-MM-DDTHH:MM[:SS[.fff…]]" then the zone "Z", "±hh:mm", "±hhmm" or
 * "±hh" (the fraction of any length, "." or ",", cut to milliseconds).
 * -EINVAL for anything else: a missing zone, a lowercase "t" or "z", a
 * space for "T", a field out of range (month 13, February 30, hour 24).
 */
int config_parse_time(const char *s, int64_t *ms);

/*
 * A position in a partition, as views (`0@<selector>`) and group offset
 * resets (user.topicfs.offset.<p>) both write it:
 *   <offset>      that offset (one too large to parse: SEL_OFFSET with
 *                 UINT64_MAX, past any end: ERANGE when resolved)
 *   earliest      the log start
 *   latest        the high watermark
 *   -N            the last N records (N too large: every record)
 *   t=<unix ms>   the first record stamped at or after that time
 *   <ISO-8601>    the same, as config_parse_time reads it
 */
enum selector_kind {
	SEL_OFFSET, SEL_EARLIEST, SEL_LATEST, SEL_LAST, SEL_TIME,
};

struct selector {
	enum selector_kind kind;
	uint64_t n;   /* SEL_OFFSET: the offset; SEL_LAST: N */
	int64_t ms;   /* SEL_TIME */
};

/* Parse a selector (pure): -EINVAL if s is not one. */
int selector_parse(const char *s, struct selector *out);

/*
 * The offset sel names in l, at most the high watermark: -ERANGE for an
 * offset outside [log start, high watermark].
 */
int selector_resolve(struct log *l, const struct selector *sel,
		     uint64_t *off);

/* A decimal number: -EINVAL if s is not one, -ERANGE if it is too large
 * (*out is then UINT64_MAX). */
int config_parse_u64(const char *s, uint64_t *out);

#endif
