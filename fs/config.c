#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "msg.h"

enum config_type {
	CT_U32,       /* unsigned in [min, max] */
	CT_I64,       /* signed in [min, max] */
	CT_U64,
	CT_BOOL,      /* true / false */
	CT_ACKS,      /* 1 / all / -1 */
	CT_CODEC,     /* none / lz4 / zstd */
	CT_FRAMING,   /* lines / binary */
	CT_SEPARATOR, /* 0 to KEY_SEPARATOR_MAX bytes, C escapes allowed */
	CT_POLICY,    /* delete */
	CT_ENUM,      /* one of a list of names, stored as its index (int) */
};

/*
 * One setting: its Kafka name, its type, where it lives in its settings
 * struct (a topic_config or a group_config), and its range (numbers) or,
 * for CT_ENUM, its list of names (min: an enum config_names). The types
 * from CT_ACKS to CT_POLICY are the topic's own and appear in the topic
 * table only.
 */
struct config_desc {
	const char *name;
	enum config_type type;
	size_t off;
	int64_t min, max;
};

/* The lists of names of CT_ENUM settings. */
enum config_names { NAMES_STRATEGY, NAMES_RESET };

/*
 * A kind of settings: its table, and the rules that tie one setting to
 * another (NULL: none), checked on the whole new struct against the old
 * one before a change is kept. Topics and groups are two of them; every
 * function below works on either.
 */
struct config_kind {
	const struct config_desc *table;
	size_t count;
	size_t size;                /* of the settings struct */
	const char *header;         /* first line of its file, or NULL */
	int (*check)(const void *old, const void *new);
};

/* Room for a copy of either kind of settings (config_set works on one). */
union config_any {
	struct topic_config topic;
	struct group_config group;
};

#define F(field) offsetof(struct topic_config, field)

static const struct config_desc config_table[] = {
	{ "partitions", CT_U32, F(partitions), 1, TOPIC_PARTITIONS_MAX },
	{ "replication.factor", CT_U32, F(replication_factor), 1, 1 },
	{ "min.insync.replicas", CT_U32, F(min_insync_replicas), 1, 1 },
	{ "acks", CT_ACKS, F(acks), 0, 0 },
	{ "unclean.leader.election.enable", CT_BOOL,
	  F(unclean_leader_election), 0, 0 },
	{ "framing", CT_FRAMING, F(framing), 0, 0 },
	{ "key.separator", CT_SEPARATOR, F(key_separator), 0, 0 },
	{ "cleanup.policy", CT_POLICY, 0, 0, 0 },
	{ "max.message.bytes", CT_U32, F(max_message_bytes), 1,
	  LOG_RECORD_BYTES_MAX },
	{ "flush.messages", CT_I64, F(flush_messages), 1, INT64_MAX },
	{ "flush.ms", CT_I64, F(flush_ms), 1, INT64_MAX },
	{ "write.caching", CT_BOOL, F(write_caching), 0, 0 },
	{ "segment.bytes", CT_U64, F(log.segment_bytes),
	  (int64_t)LOG_SEGMENT_BYTES_MIN, (int64_t)LOG_SEGMENT_BYTES_MAX },
	{ "segment.ms", CT_I64, F(log.segment_ms), 1, INT64_MAX },
	{ "segment.index.bytes", CT_U32, F(log.index_bytes),
	  LOG_INDEX_BYTES_MIN, LOG_INDEX_BYTES_MAX },
	{ "index.interval.bytes", CT_U32, F(log.index_interval_bytes), 1,
	  INT32_MAX },
	{ "retention.ms", CT_I64, F(log.retention_ms), -1, INT64_MAX },
	{ "retention.bytes", CT_I64, F(log.retention_bytes), -1, INT64_MAX },
	{ "compression.type", CT_CODEC, F(log.codec), 0, 0 },
	{ "compression.zstd.level", CT_U32, F(log.zstd_level), 1, 22 },
};

#define CONFIG_COUNT (sizeof(config_table) / sizeof(config_table[0]))

#undef F
#define F(field) offsetof(struct group_config, field)

/* Each list ends with NULL; a value is stored as its index. */
static const char *const strategy_names[] = {
	[GROUP_RANGE] = "range", [GROUP_ROUNDROBIN] = "roundrobin",
	[GROUP_STICKY] = "sticky", NULL,
};
static const char *const reset_names[] = {
	[GROUP_RESET_EARLIEST] = "earliest", [GROUP_RESET_LATEST] = "latest",
	[GROUP_RESET_NONE] = "none", NULL,
};
static const char *const *const enum_names[] = {
	[NAMES_STRATEGY] = strategy_names,
	[NAMES_RESET] = reset_names,
};

/* A consumer group's settings: Kafka's consumer names (GROUPS.md). */
static const struct config_desc group_table[] = {
	{ "partition.assignment.strategy", CT_ENUM, F(strategy),
	  NAMES_STRATEGY, 0 },
	{ "enable.auto.commit", CT_BOOL, F(auto_commit), 0, 0 },
	/* Kafka's is an int, at least 1. */
	{ "max.poll.interval.ms", CT_I64, F(max_poll_ms), 1, INT32_MAX },
	{ "auto.offset.reset", CT_ENUM, F(reset), NAMES_RESET, 0 },
};

#undef F

static int topic_check(const void *old, const void *new);

static const struct config_kind topic_kind = {
	config_table, CONFIG_COUNT, sizeof(struct topic_config),
	"# topicfs topic configuration", topic_check,
};

static const struct config_kind group_kind = {
	group_table, sizeof(group_table) / sizeof(group_table[0]),
	sizeof(struct group_config), NULL, NULL,
};

void config_default(struct topic_config *c, uint32_t partitions)
{
	memset(c, 0, sizeof(*c));
	c->partitions = partitions;
	c->replication_factor = 1;
	c->min_insync_replicas = 1;
	c->acks = -1;            /* Kafka's producer default since 3.0 */
	c->framing = FRAMING_LINES;
	c->max_message_bytes = 1048588; /* Kafka's default */
	c->flush_messages = INT64_MAX;
	c->flush_ms = 10000;
	c->write_caching = true; /* Redpanda's default: as Kafka acknowledges */
	log_config_default(&c->log);
}

void group_config_default(struct group_config *c)
{
	*c = (struct group_config){
		.strategy = GROUP_RANGE,
		.auto_commit = true,
		.max_poll_ms = 300000,  /* Kafka's default: 5 minutes */
		.reset = GROUP_RESET_EARLIEST,
	};
}

const char *group_strategy_name(int strategy)
{
	return strategy_names[strategy];
}

size_t config_count(void)
{
	return topic_kind.count;
}

const char *config_name(size_t i)
{
	return i < topic_kind.count ? topic_kind.table[i].name : NULL;
}

size_t group_config_count(void)
{
	return group_kind.count;
}

const char *group_config_name(size_t i)
{
	return i < group_kind.count ? group_kind.table[i].name : NULL;
}

static const struct config_desc *config_find(const struct config_kind *k,
					     const char *name)
{
	for (size_t i = 0; i < k->count; i++) {
		if (strcmp(k->table[i].name, name) == 0)
			return &k->table[i];
	}
	return NULL;
}

/* Print a separator with C escapes for control characters. */
static void config_escape(const char *s, char *buf, size_t size)
{
	size_t n = 0;

	for (; *s && n + 5 < size; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '\t')
			n += (size_t)snprintf(buf + n, size - n, "\\t");
		else if (ch == '\\')
			n += (size_t)snprintf(buf + n, size - n, "\\\\");
		else if (ch < 0x20 || ch == 0x7f)
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", ch);
		else
			buf[n++] = (char)ch;
	}
	buf[n] = '\0';
}

/* Undo config_escape; -EINVAL on a bad escape or a too-long result. */
static int config_unescape(const char *v, char *out, size_t size)
{
	size_t n = 0;

	for (; *v; v++) {
		char ch = *v;
		if (ch == '\\') {
			v++;
			if (*v == 't')
				ch = '\t';
			else if (*v == 'n')
				ch = '\n';
			else if (*v == '\\')
				ch = '\\';
			else if (*v == 'x' && isxdigit((unsigned char)v[1]) &&
				 isxdigit((unsigned char)v[2])) {
				char hex[3] = { v[1], v[2], 0 };
				ch = (char)strtoul(hex, NULL, 16);
				v += 2;
			} else
				return -EINVAL;
		}
		if (ch == '\0' || n + 1 >= size)
			return -EINVAL;
		out[n++] = ch;
	}
	out[n] = '\0';
	return 0;
}

/* Print setting d of the settings at cfg into buf. */
static void value_get(const struct config_desc *d, const void *cfg,
		      char *buf, size_t size)
{
	const struct topic_config *c = cfg; /* the topic's own types */
	const char *base = cfg;

	switch (d->type) {
	case CT_U32:
		snprintf(buf, size, "%" PRIu32,
			 *(const uint32_t *)(const void *)(base + d->off));
		break;
	case CT_U64:
		snprintf(buf, size, "%" PRIu64,
			 *(const uint64_t *)(const void *)(base + d->off));
		break;
	case CT_I64:
		snprintf(buf, size, "%" PRId64,
			 *(const int64_t *)(const void *)(base + d->off));
		break;
	case CT_BOOL:
		snprintf(buf, size, "%s",
			 *(const bool *)(const void *)(base + d->off) ? "true" : "false");
		break;
	case CT_ACKS:
		if (c->acks == -1)
			snprintf(buf, size, "all");
		else
			snprintf(buf, size, "%d", c->acks);
		break;
	case CT_CODEC:
		snprintf(buf, size, "%s", codec_name(c->log.codec));
		break;
	case CT_FRAMING:
		snprintf(buf, size, "%s",
			 c->framing == FRAMING_BINARY ? "binary" : "lines");
		break;
	case CT_SEPARATOR:
		config_escape(c->key_separator, buf, size);
		break;
	case CT_POLICY:
		snprintf(buf, size, "delete");
		break;
	case CT_ENUM:
		snprintf(buf, size, "%s", enum_names[d->min]
			 [*(const int *)(const void *)(base + d->off)]);
		break;
	}
}

static int kind_get(const struct config_kind *k, const void *cfg,
		    const char *name, char *buf, size_t size)
{
	const struct config_desc *d = config_find(k, name);

	if (!d)
		return -ENODATA;
	value_get(d, cfg, buf, size);
	return 0;
}

int config_get(const struct topic_config *c, const char *name, char *buf,
	       size_t size)
{
	return kind_get(&topic_kind, c, name, buf, size);
}

int group_config_get(const struct group_config *c, const char *name,
		     char *buf, size_t size)
{
	return kind_get(&group_kind, c, name, buf, size);
}

static int parse_i64(const char *v, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long x;

	if (!*v || isspace((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno || *end || x < min || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

/* The index of v in names (NULL-terminated), or -EINVAL. */
static int name_index(const char *const *names, const char *v)
{
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], v) == 0)
			return i;
	}
	return -EINVAL;
}

/* Set setting d of the settings at cfg to v: 0, or -EINVAL for a value
 * of the wrong form (cfg may then be changed: work on a copy). */
static int value_set(const struct config_desc *d, void *cfg, const char *v)
{
	struct topic_config *c = cfg; /* the topic's own types */
	char *base = cfg;
	int64_t x;
	int rc = 0;

	switch (d->type) {
	case CT_U32:
		rc = parse_i64(v, d->min, d->max, &x);
		if (rc == 0)
			*(uint32_t *)(void *)(base + d->off) = (uint32_t)x;
		break;
	case CT_U64:
		rc = parse_i64(v, d->min, d->max, &x);
		if (rc == 0)
			*(uint64_t *)(void *)(base + d->off) = (uint64_t)x;
		break;
	case CT_I64:
		rc = parse_i64(v, d->min, d->max, &x);
		if (rc == 0)
			*(int64_t *)(void *)(base + d->off) = x;
		break;
	case CT_BOOL:
		if (strcmp(v, "true") && strcmp(v, "false"))
			return -EINVAL;
		*(bool *)(void *)(base + d->off) = strcmp(v, "true") == 0;
		break;
	case CT_ACKS:
		if (strcmp(v, "0") == 0)
			c->acks = 0;
		else if (strcmp(v, "1") == 0)
			c->acks = 1;
		else if (strcmp(v, "all") == 0 || strcmp(v, "-1") == 0)
			c->acks = -1;
		else
			return -EINVAL;
		break;
	case CT_CODEC:
		rc = codec_parse(v);
		if (rc >= 0) {
			c->log.codec = rc;
			rc = 0;
		}
		break;
	case CT_FRAMING:
		if (strcmp(v, "lines") == 0)
			c->framing = FRAMING_LINES;
		else if (strcmp(v, "binary") == 0)
			c->framing = FRAMING_BINARY;
		else
			return -EINVAL;
		break;
	case CT_SEPARATOR:
		rc = config_unescape(v, c->key_separator,
				      sizeof(c->key_separator));
		if (rc == 0 && strchr(c->key_separator, '\n'))
			rc = -EINVAL;
		break;
	case CT_POLICY:
		/* Only deletion is implemented; compaction is refused. */
		if (strcmp(v, "delete") != 0)
			return -EINVAL;
		break;
	case CT_ENUM:
		rc = name_index(enum_names[d->min], v);
		if (rc >= 0) {
			*(int *)(void *)(base + d->off) = rc;
			rc = 0;
		}
		break;
	}
	return rc < 0 ? -EINVAL : 0;
}

/* The rules between a topic's settings: partitions only grow, and so on. */
static int topic_check(const void *old, const void *new)
{
	const struct topic_config *o = old, *n = new;

	if (n->partitions < o->partitions || n->min_insync_replicas >
	    n->replication_factor || log_config_check(&n->log) < 0)
		return -EINVAL;
	return 0;
}

/*
 * Set name to the value (len bytes, one trailing newline tolerated) in
 * cfg, a settings struct of kind k: all or nothing. -ENODATA for a name
 * k does not have, -EINVAL for a bad value.
 */
static int kind_set(const struct config_kind *k, void *cfg, const char *name,
		    const char *value, size_t len)
{
	const struct config_desc *d = config_find(k, name);
	char v[CONFIG_VALUE_MAX + 1];
	union config_any n;

	if (!d)
		return -ENODATA;
	if (len > 0 && value[len - 1] == '\n')
		len--;
	if (len > CONFIG_VALUE_MAX || memchr(value, '\0', len))
		return -EINVAL;
	memcpy(v, value, len);
	v[len] = '\0';
	memcpy(&n, cfg, k->size);
	if (value_set(d, &n, v) < 0 || (k->check && k->check(cfg, &n) < 0))
		return -EINVAL;
	memcpy(cfg, &n, k->size);
	return 0;
}

int config_set(struct topic_config *c, const char *name, const char *value,
	       size_t len)
{
	return kind_set(&topic_kind, c, name, value, len);
}

int group_config_set(struct group_config *c, const char *name,
		     const char *value, size_t len)
{
	return kind_set(&group_kind, c, name, value, len);
}

int config_reset(struct topic_config *c, const char *name)
{
	struct topic_config def;
	char buf[CONFIG_VALUE_MAX + 1];
	int rc;

	if (strcmp(name, "partitions") == 0)
		return -EPERM;
	config_default(&def, c->partitions);
	rc = config_get(&def, name, buf, sizeof(buf));
	if (rc == 0)
		rc = config_set(c, name, buf, strlen(buf));
	return rc;
}

/* Every setting of cfg (kind k) as "name=value" lines, after k's header
 * line; malloc'd. */
static char *kind_format(const struct config_kind *k, const void *cfg)
{
	size_t cap = k->count * (64 + CONFIG_VALUE_MAX) + 64, n = 0;
	char *out = malloc(cap), v[CONFIG_VALUE_MAX + 1];

	if (!out)
		return NULL;
	out[0] = '\0';
	if (k->header)
		n += (size_t)snprintf(out, cap, "%s\n", k->header);
	for (size_t i = 0; i < k->count; i++) {
		value_get(&k->table[i], cfg, v, sizeof(v));
		n += (size_t)snprintf(out + n, cap - n, "%s=%s\n",
				      k->table[i].name, v);
	}
	return out;
}

char *config_format(const struct topic_config *c)
{
	return kind_format(&topic_kind, c);
}

char *group_config_format(const struct group_config *c)
{
	return kind_format(&group_kind, c);
}

/*
 * Parse a settings file of kind k into cfg (which holds defaults): lines
 * "name=value", "#" comments and empty lines. An unknown name, a bad
 * value or a line of another form is -EINVAL with the reason in why;
 * cfg may then hold some of the file's settings.
 */
static int kind_parse(const struct config_kind *k, void *cfg,
		      const char *text, char *why, size_t why_size)
{
	const char *p = text;
	unsigned line = 0;

	for (; *p; line++) {
		const char *eol = strchr(p, '\n'), *eq;
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char name[64];

		eq = memchr(p, '=', len);
		if (*p != '#' && len > 0) {
			size_t nlen = eq ? (size_t)(eq - p) : 0;
			int rc;
			if (!eq || nlen >= sizeof(name)) {
				snprintf(why, why_size, "settings line %u is "
					 "not name=value", line + 1);
				return -EINVAL;
			}
			memcpy(name, p, nlen);
			name[nlen] = '\0';
			rc = kind_set(k, cfg, name, eq + 1, len - nlen - 1);
			if (rc < 0) {
				snprintf(why, why_size, rc == -ENODATA ?
					 "unknown setting '%s'" :
					 "bad value for setting '%s'", name);
				return -EINVAL;
			}
		}
		p += len + (eol ? 1 : 0);
	}
	return 0;
}

int config_parse(struct topic_config *c, const char *text, char *why,
		 size_t why_size)
{
	return kind_parse(&topic_kind, c, text, why, why_size);
}

int group_config_parse(struct group_config *c, const char *text, char *why,
		       size_t why_size)
{
	return kind_parse(&group_kind, c, text, why, why_size);
}

/* Exactly n digits at *p, as a number, and *p moved past them; -1 if not. */
static int time_digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return v;
}

/* Whether *p starts with c; if so *p is moved past it. */
static bool time_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

static int time_days_in_month(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31 };
	bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);

	return month == 2 && leap ? 29 : days[month - 1];
}

/*
 * The ISO 8601 forms people write, strictly: digits exactly where the
 * standard puts them, every field in its range, nothing before or after.
 * A time without a zone is refused (the daemon's local time is nobody's
 * intent); a fraction finer than a millisecond is cut to the millisecond.
 */
int config_parse_time(const char *s, int64_t *ms)
{
	struct tm tm;
	const char *p = s;
	int64_t frac = 0, offset = 0, scale = 100;
	int year, month, day, hour, min, sec = 0;

	year = time_digits(&p, 4);
	if (year < 0 || !time_char(&p, '-'))
		return -EINVAL;
	month = time_digits(&p, 2);
	if (month < 1 || month > 12 || !time_char(&p, '-'))
		return -EINVAL;
	day = time_digits(&p, 2);
	if (day < 1 || day > time_days_in_month(year, month) ||
	    !time_char(&p, 'T'))
		return -EINVAL;
	hour = time_digits(&p, 2);
	if (hour < 0 || hour > 23 || !time_char(&p, ':'))
		return -EINVAL;
	min = time_digits(&p, 2);
	if (min < 0 || min > 59)
		return -EINVAL;
	if (time_char(&p, ':')) {
		sec = time_digits(&p, 2);
		if (sec < 0 || sec > 59)
			return -EINVAL;
		if (time_char(&p, '.') || time_char(&p, ',')) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
				frac += (*p - '0') * scale;
		}
	}
	if (time_char(&p, '+') || time_char(&p, '-')) {
		int sign = p[-1] == '+' ? 1 : -1, oh, om = 0;

		oh = time_digits(&p, 2);
		if (oh < 0 || oh > 23)
			return -EINVAL;
		if (*p != '\0') {
			time_char(&p, ':');
			om = time_digits(&p, 2);
			if (om < 0 || om > 59)
				return -EINVAL;
		}
		offset = sign * (oh * 60 + om) * 60;
	} else if (!time_char(&p, 'Z')) {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	*ms = ((int64_t)timegm(&tm) - offset) * 1000 + frac;
	return 0;
}

/* ---- selectors ----------------------------------------------------------- */

int config_parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	return errno == ERANGE ? -ERANGE : 0;
}

int selector_parse(const char *s, struct selector *out)
{
	uint64_t u;

	memset(out, 0, sizeof(*out));
	if (strcmp(s, "earliest") == 0) {
		out->kind = SEL_EARLIEST;
	} else if (strcmp(s, "latest") == 0) {
		out->kind = SEL_LATEST;
	} else if (s[0] == '-') {
		out->kind = SEL_LAST;
		if (config_parse_u64(s + 1, &out->n) == -EINVAL)
			return -EINVAL; /* too large: every record */
	} else if (strncmp(s, "t=", 2) == 0) {
		out->kind = SEL_TIME;
		if (config_parse_u64(s + 2, &u) == -EINVAL)
			return -EINVAL;
		out->ms = u > INT64_MAX ? INT64_MAX : (int64_t)u;
	} else if (strchr(s, 'T')) {
		out->kind = SEL_TIME;
		if (config_parse_time(s, &out->ms) < 0)
			return -EINVAL;
	} else {
		out->kind = SEL_OFFSET;
		if (config_parse_u64(s, &out->n) == -EINVAL)
			return -EINVAL; /* too large: past the end */
	}
	return 0;
}

int selector_resolve(struct log *l, const struct selector *sel,
		     uint64_t *off)
{
	struct log_bounds st;
	int rc = 0;

	log_get_bounds(l, &st);
	switch (sel->kind) {
	case SEL_EARLIEST:
		*off = st.start_offset;
		break;
	case SEL_LATEST:
		*off = st.hw;
		break;
	case SEL_LAST:
		*off = st.hw - st.start_offset > sel->n ? st.hw - sel->n :
		       st.start_offset;
		break;
	case SEL_TIME:
		rc = log_time_to_offset(l, sel->ms, off);
		if (rc == 0 && *off > st.hw)
			*off = st.hw;
		break;
	case SEL_OFFSET:
		if (sel->n < st.start_offset || sel->n > st.hw)
			rc = -ERANGE;
		else
			*off = sel->n;
		break;
	}
	return rc;
}
