/* .status (kafka-topics --describe) and .metrics (Prometheus). */
#include "adapter.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "io.h"
#include "msg.h"
#include "partitioner.h"

/* ---- .status and .metrics ----------------------------------------------- */

/*
 * .status and .metrics are rendered anew for every open, so that each
 * reader sees the present, and their st_size is the length of the text
 * the asking thread reads (tar, shutil.copyfile, sendfile and
 * http.server trust st_size):
 *
 *   stat, then open   the stat renders the text and keeps it for that
 *                     thread; its open within REPORT_REUSE_MS takes it
 *   open, then fstat  while the thread has the file open, a stat reports
 *                     the length of its open file's text
 *
 * Each open file keeps its text until it is closed.
 */
#define REPORT_REUSE_MS 1000
/* Topics, failures or groups fetched per call while walking them. */
#define REPORT_BATCH 64

struct text {
	char *buf;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3)))
static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		if (grow(&t->buf, &t->cap, t->len + (size_t)n + 4096, 1) < 0) {
			t->failed = true;
			return;
		}
	}
}

static char *text_done(struct text *t, size_t *len)
{
	if (t->failed) {
		free(t->buf);
		return NULL;
	}
	*len = t->len;
	return t->buf ? t->buf : strdup("");
}

/*
 * Every live topic (referenced) and every topic that failed to load, both
 * sorted by name: what .status and .metrics walk.
 */
struct topic_list {
	struct topic **live;
	size_t nlive, live_cap;
	struct topic_failure *failed;
	size_t nfailed, failed_cap;
};

static int topic_cmp(const void *a, const void *b)
{
	return strcmp(topic_name(*(struct topic *const *)a),
		      topic_name(*(struct topic *const *)b));
}

static int failure_cmp(const void *a, const void *b)
{
	return strcmp(((const struct topic_failure *)a)->name,
		      ((const struct topic_failure *)b)->name);
}

/* Drop l's topic references and free its arrays. */
static void topic_list_release(struct topic_list *l)
{
	for (size_t i = 0; i < l->nlive; i++)
		topic_put(l->live[i]);
	free(l->live);
	free(l->failed);
	memset(l, 0, sizeof(*l));
}

/* Fill l (released by topic_list_release); 0 or -ENOMEM, l empty then. */
static int topic_list_fill(struct fs *fs, struct topic_list *l)
{
	struct topic *ts[REPORT_BATCH];
	uint64_t after = 0;
	unsigned n, from = 0;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	while ((n = broker_topics_list(fs->broker, after, ts, REPORT_BATCH)) > 0) {
		after = topic_id(ts[n - 1]);
		for (unsigned i = 0; i < n; i++) {
			if (rc == 0)
				rc = grow(&l->live, &l->live_cap, l->nlive + 1,
					  sizeof(*l->live));
			if (rc == 0)
				l->live[l->nlive++] = ts[i];
			else
				topic_put(ts[i]);
		}
	}
	for (;;) {
		if (rc == 0)
			rc = grow(&l->failed, &l->failed_cap,
				  l->nfailed + REPORT_BATCH, sizeof(*l->failed));
		if (rc < 0)
			break;
		n = broker_failures(fs->broker, from, l->failed + l->nfailed,
				    REPORT_BATCH);
		l->nfailed += n;
		from += n;
		if (n < REPORT_BATCH)
			break;
	}
	if (rc < 0) {
		topic_list_release(l);
		return rc;
	}
	if (l->nlive > 1)
		qsort(l->live, l->nlive, sizeof(*l->live), topic_cmp);
	if (l->nfailed > 1)
		qsort(l->failed, l->nfailed, sizeof(*l->failed), failure_cmp);
	return 0;
}

/*
 * The settings of t that differ from the defaults, as Kafka's describe
 * prints them: "name=value,name=value" (values escaped as getfattr shows
 * them). partitions and replication.factor have columns of their own.
 */
static void status_configs(struct text *out, const struct topic_config *cfg)
{
	struct topic_config def;
	char v[CONFIG_VALUE_MAX + 1], d[CONFIG_VALUE_MAX + 1];
	const char *sep = "";

	config_default(&def, cfg->partitions);
	for (size_t i = 0; i < config_count(); i++) {
		const char *name = config_name(i);
		if (strcmp(name, "partitions") == 0 ||
		    strcmp(name, "replication.factor") == 0)
			continue;
		if (config_get(cfg, name, v, sizeof(v)) < 0 ||
		    config_get(&def, name, d, sizeof(d)) < 0 ||
		    strcmp(v, d) == 0)
			continue;
		text_add(out, "%s%s=%s", sep, name, v);
		sep = ",";
	}
}

/* One live topic in kafka-topics --describe's layout, plus our fields. */
static void status_topic(struct text *out, struct topic *t)
{
	uint32_t n = topic_partitions(t); /* one count for both: it grows */
	struct topic_config cfg;
	struct log_state st;
	char leader[64], replicas[256], isr[256];

	topic_config(t, &cfg);
	text_add(out, "Topic: %s\tTopicId: %s\tPartitionCount: %" PRIu32
		 "\tReplicationFactor: %" PRIu32 "\tConfigs: ", topic_name(t),
		 topic_uuid(t), n, cfg.replication_factor);
	status_configs(out, &cfg);
	text_add(out, "\n");
	for (uint32_t p = 0; p < n; p++) {
		struct part *part = topic_part(t, p);
		log_get_state(part_log(part), &st);
		part_attr(part, "leader", leader, sizeof(leader));
		part_attr(part, "replicas", replicas, sizeof(replicas));
		part_attr(part, "isr", isr, sizeof(isr));
		text_add(out, "\tTopic: %s\tPartition: %" PRIu32 "\tLeader: %s"
			 "\tReplicas: %s\tIsr: %s\tLogStartOffset: %" PRIu64
			 "\tHighWatermark: %" PRIu64 "\tLogEndOffset: %" PRIu64
			 "\tSize: %" PRIu64 "\tSegments: %" PRIu32 "\tCodec: %s\n",
			 topic_name(t), p, leader, replicas, isr, st.start_offset,
			 st.hw, st.leo, st.size_bytes, st.segments,
			 codec_name(cfg.log.codec));
	}
}

/* A topic that failed to load: its name, its state and why. */
static void status_failed(struct text *out, const struct topic_failure *f)
{
	char reason[sizeof(f->reason)];
	size_t i;

	/* One line whatever the reason holds: no tabs, no newlines. */
	for (i = 0; i < sizeof(reason) - 1 && f->reason[i]; i++)
		reason[i] = (unsigned char)f->reason[i] < 0x20 ? ' ' : f->reason[i];
	reason[i] = '\0';
	text_add(out, "Topic: %.*s\tTopicId: unknown\tPartitionCount: 0"
		 "\tReplicationFactor: 0\tConfigs: \tState: failed\tReason: %s\n",
		 TOPIC_NAME_MAX, f->name, reason);
}

/* .status: every topic by name, live or failed (docs/FILESYSTEM.md). */
static char *status_text(struct fs *fs, size_t *len)
{
	struct text t = { 0 };
	struct topic_list l;
	size_t a = 0, b = 0;

	if (topic_list_fill(fs, &l) < 0)
		return NULL;
	while (a < l.nlive || b < l.nfailed) {
		if (b == l.nfailed || (a < l.nlive &&
		    strcmp(topic_name(l.live[a]), l.failed[b].name) <= 0))
			status_topic(&t, l.live[a++]);
		else
			status_failed(&t, &l.failed[b++]);
	}
	topic_list_release(&l);
	return text_done(&t, len);
}

/* What .metrics shows of one partition, read once for every family. */
struct metrics_part {
	struct topic *t;
	uint32_t p;
	struct log_state st;
	uint64_t bytes_in, records_in, batches_in, bytes_out, records_out;
	uint64_t latency_count, latency_sum_us;
	uint64_t latency_bucket[LATENCY_BUCKETS + 1];
};

/* ... and of one partition of one group. */
struct metrics_group {
	struct topic *t;
	struct group *g;
	uint32_t p;
	int64_t committed;
	uint64_t leo;
};

struct metrics_snap {
	struct metrics_part *parts;
	size_t nparts, parts_cap;
	struct metrics_group *groups;
	size_t ngroups, groups_cap;
	uint64_t fsyncs;
};

enum metrics_field {
	MF_BYTES_IN, MF_RECORDS_IN, MF_BATCHES_IN, MF_BYTES_OUT,
	MF_RECORDS_OUT, MF_LOG_START, MF_HW, MF_LEO, MF_SIZE, MF_LATENCY,
};

/*
 * The per-partition families, in the order printed. Each is printed as
 * one group (HELP, TYPE, then all its samples), as the exposition format
 * requires.
 */
static const struct {
	const char *name, *type, *help;
	enum metrics_field field;
} metrics_families[] = {
	{ "topicfs_bytes_in_total", "counter", "Bytes appended.", MF_BYTES_IN },
	{ "topicfs_records_in_total", "counter", "Records appended.",
	  MF_RECORDS_IN },
	{ "topicfs_batches_in_total", "counter",
	  "Batches written (group commits).", MF_BATCHES_IN },
	{ "topicfs_bytes_out_total", "counter",
	  "Bytes read (partition files, views, group members).", MF_BYTES_OUT },
	{ "topicfs_records_out_total", "counter",
	  "Records read whole (partition files, views, group members).",
	  MF_RECORDS_OUT },
	{ "topicfs_log_start_offset", "gauge", "First retained offset.",
	  MF_LOG_START },
	{ "topicfs_high_watermark", "gauge",
	  "Offset below which records are readable.", MF_HW },
	{ "topicfs_log_end_offset", "gauge", "Next offset to be written.",
	  MF_LEO },
	{ "topicfs_size_bytes", "gauge", "Payload bytes stored.", MF_SIZE },
	{ "topicfs_append_latency_seconds", "histogram",
	  "Time from write to append.", MF_LATENCY },
};
#define METRICS_FAMILIES (sizeof(metrics_families) / sizeof(metrics_families[0]))

/* The value of field f in m (not MF_LATENCY, which is several). */
static uint64_t metrics_value(const struct metrics_part *m,
			      enum metrics_field f)
{
	switch (f) {
	case MF_BYTES_IN:
		return m->bytes_in;
	case MF_RECORDS_IN:
		return m->records_in;
	case MF_BATCHES_IN:
		return m->batches_in;
	case MF_BYTES_OUT:
		return m->bytes_out;
	case MF_RECORDS_OUT:
		return m->records_out;
	case MF_LOG_START:
		return m->st.start_offset;
	case MF_HW:
		return m->st.hw;
	case MF_LEO:
		return m->st.leo;
	case MF_SIZE:
		return m->st.size_bytes;
	default:
		return 0;
	}
}

/* Read one partition's counters and state into m. */
static void metrics_read_part(struct metrics_part *m, struct topic *t,
			      uint32_t p)
{
	struct part_stats *s = part_stats(topic_part(t, p));

	m->t = t;
	m->p = p;
	log_get_state(part_log(topic_part(t, p)), &m->st);
	m->bytes_in = atomic_load(&s->bytes_in);
	m->records_in = atomic_load(&s->records_in);
	m->batches_in = atomic_load(&s->batches_in);
	m->bytes_out = atomic_load(&s->bytes_out);
	m->records_out = atomic_load(&s->records_out);
	m->latency_count = atomic_load(&s->latency_count);
	m->latency_sum_us = atomic_load(&s->latency_sum_us);
	for (unsigned b = 0; b <= LATENCY_BUCKETS; b++)
		m->latency_bucket[b] = atomic_load(&s->latency_bucket[b]);
}

/* The committed offsets of every stored group of t. */
static int metrics_read_groups(struct metrics_snap *s, struct topic *t)
{
	struct group *gs[REPORT_BATCH];
	uint32_t from = 0;
	unsigned k;

	while ((k = groups_list(topic_groups(t), from, gs, REPORT_BATCH)) > 0) {
		from = group_index(gs[k - 1]) + 1;
		for (unsigned j = 0; j < k; j++) {
			for (uint32_t p = 0; p < topic_partitions(t); p++) {
				struct metrics_group mg = { .t = t, .g = gs[j],
							    .p = p };
				group_lag(gs[j], p, &mg.committed, &mg.leo);
				if (mg.committed < 0)
					continue;
				if (grow(&s->groups, &s->groups_cap,
					 s->ngroups + 1, sizeof(*s->groups)) < 0)
					return -ENOMEM;
				s->groups[s->ngroups++] = mg;
			}
		}
	}
	return 0;
}

static int metrics_read(struct topic_list *l, struct metrics_snap *s)
{
	s->fsyncs = io_sync_count();
	for (size_t i = 0; i < l->nlive; i++) {
		struct topic *t = l->live[i];
		uint32_t n = topic_partitions(t);
		if (grow(&s->parts, &s->parts_cap, s->nparts + n,
			 sizeof(*s->parts)) < 0)
			return -ENOMEM;
		for (uint32_t p = 0; p < n; p++)
			metrics_read_part(&s->parts[s->nparts++], t, p);
		if (metrics_read_groups(s, t) < 0)
			return -ENOMEM;
	}
	return 0;
}

#define LBL "{topic=\"%s\",partition=\"%" PRIu32 "\"}"

/* The samples of one histogram series: cumulative buckets, sum, count. */
static void metrics_histogram(struct text *out, const char *name,
			      const struct metrics_part *m)
{
	const char *t = topic_name(m->t);
	uint64_t cum = 0;

	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		cum += m->latency_bucket[b];
		text_add(out, "%s_bucket{topic=\"%s\",partition=\"%" PRIu32
			 "\",le=\"%g\"} %" PRIu64 "\n", name, t, m->p,
			 (double)latency_bucket_us[b] / 1e6, cum);
	}
	cum += m->latency_bucket[LATENCY_BUCKETS];
	text_add(out, "%s_bucket{topic=\"%s\",partition=\"%" PRIu32
		 "\",le=\"+Inf\"} %" PRIu64 "\n", name, t, m->p, cum);
	text_add(out, "%s_sum" LBL " %g\n", name, t, m->p,
		 (double)m->latency_sum_us / 1e6);
	text_add(out, "%s_count" LBL " %" PRIu64 "\n", name, t, m->p,
		 m->latency_count);
}

/* Committed offset and lag of every stored group, per partition. */
static void metrics_groups(struct text *out, const struct metrics_snap *s)
{
#define GLBL "{topic=\"%s\",group=\"%s\",partition=\"%" PRIu32 "\"}"
	text_add(out, "# HELP topicfs_group_committed_offset Offset the group "
		 "committed.\n# TYPE topicfs_group_committed_offset gauge\n");
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct metrics_group *g = &s->groups[i];
		text_add(out, "topicfs_group_committed_offset" GLBL " %" PRId64
			 "\n", topic_name(g->t), group_name(g->g), g->p,
			 g->committed);
	}
	text_add(out, "# HELP topicfs_group_lag Records between the committed "
		 "offset and the high watermark.\n"
		 "# TYPE topicfs_group_lag gauge\n");
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct metrics_group *g = &s->groups[i];
		text_add(out, "topicfs_group_lag" GLBL " %" PRId64 "\n",
			 topic_name(g->t), group_name(g->g), g->p,
			 (int64_t)g->leo > g->committed ?
			 (int64_t)g->leo - g->committed : 0);
	}
#undef GLBL
}

/* The background scrub's progress (broker_scrub). */
static void metrics_scrub(struct text *out, struct broker *b)
{
	struct broker_scrub_stats st;

	broker_scrub_stats(b, &st);
	text_add(out, "# HELP topicfs_scrub_bytes_total Stored payload bytes "
		 "the background scrub has read and checked since the mount.\n"
		 "# TYPE topicfs_scrub_bytes_total counter\n"
		 "topicfs_scrub_bytes_total %" PRIu64 "\n", st.bytes);
	text_add(out, "# HELP topicfs_scrub_passes_total Scrub passes over "
		 "every partition finished since the mount.\n"
		 "# TYPE topicfs_scrub_passes_total counter\n"
		 "topicfs_scrub_passes_total %" PRIu64 "\n", st.passes);
}

/*
 * The daemon's own families, one unlabelled sample each. Every sync of
 * the daemon goes through log/io.c, whose count this is: a benchmark
 * divides its growth by the records appended meanwhile (syncs per
 * record, docs/PERFORMANCE.md).
 */
static void metrics_process(struct text *out, const struct metrics_snap *s)
{
	text_add(out, "# HELP topicfs_fsyncs_total fsync and fdatasync calls "
		 "made (segment files, indexes, checkpoints, directories).\n"
		 "# TYPE topicfs_fsyncs_total counter\n"
		 "topicfs_fsyncs_total %" PRIu64 "\n", s->fsyncs);
}

/* Bring records_out up to date with what open files have read. */
static void count_open_reads(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh; fh = fh->next) {
		if (!fh_part(fh))
			continue;
		pthread_mutex_lock(&fh->lock);
		reader_count_out(&fh_part(fh)->r);
		pthread_mutex_unlock(&fh->lock);
	}
	pthread_mutex_unlock(&fs->lock);
}

/*
 * .metrics: every family as one group (HELP, TYPE, its samples), the
 * samples of all partitions read once beforehand so that the families
 * agree with each other. Topics by name, partitions in order.
 */
static char *metrics_text(struct fs *fs, size_t *len)
{
	struct metrics_snap s = { 0 };
	struct text t = { 0 };
	struct topic_list l;
	char *text = NULL;

	count_open_reads(fs);
	if (topic_list_fill(fs, &l) < 0)
		return NULL;
	if (metrics_read(&l, &s) < 0)
		goto out_free;
	for (size_t f = 0; f < METRICS_FAMILIES; f++) {
		const char *name = metrics_families[f].name;
		text_add(&t, "# HELP %s %s\n# TYPE %s %s\n", name,
			 metrics_families[f].help, name, metrics_families[f].type);
		for (size_t i = 0; i < s.nparts; i++) {
			const struct metrics_part *m = &s.parts[i];
			if (metrics_families[f].field == MF_LATENCY)
				metrics_histogram(&t, name, m);
			else
				text_add(&t, "%s" LBL " %" PRIu64 "\n", name,
					 topic_name(m->t), m->p,
					 metrics_value(m, metrics_families[f].field));
		}
	}
	metrics_groups(&t, &s);
	metrics_scrub(&t, fs->broker);
	metrics_process(&t, &s);
	text = text_done(&t, len);
	t.buf = NULL;
out_free:
	free(t.buf);
	free(s.parts);
	free(s.groups);
	topic_list_release(&l);
	return text;
}

#undef LBL

/*
 * The slot of the text kept for a stat by thread pid: its own if any,
 * else a free one, else the oldest. fs->report_lock held.
 */
static struct report *report_slot(struct fs *fs, int kind, pid_t pid)
{
	struct report *slots = fs->reports[kind == K_STATUS ? 0 : 1];
	struct report *r = NULL;

	for (size_t i = 0; i < REPORT_SLOTS && !r; i++) {
		if (slots[i].text && slots[i].pid == pid)
			r = &slots[i];
	}
	for (size_t i = 0; i < REPORT_SLOTS && !r; i++) {
		if (!slots[i].text)
			r = &slots[i];
	}
	if (!r) {
		r = &slots[0];
		for (size_t i = 1; i < REPORT_SLOTS; i++) {
			if (slots[i].made_ms < r->made_ms)
				r = &slots[i];
		}
	}
	return r;
}

static char *report_render(struct fs *fs, int kind, size_t *len)
{
	return kind == K_STATUS ? status_text(fs, len) : metrics_text(fs, len);
}

/* Whether the slot holds a text for pid young enough to be reused. */
static bool report_fresh(const struct report *r, pid_t pid)
{
	return r->text && r->pid == pid &&
	       clock_mono_ms() - r->made_ms < REPORT_REUSE_MS;
}

/*
 * The st_size of .status or .metrics for the thread asking (lookup,
 * stat, fstat): while it has the file open, the length of the text its
 * open file reads; otherwise the length of the text its next open will
 * read, rendered now and kept for it (REPORT_REUSE_MS). Other files:
 * nothing to do.
 */
void report_stat(fuse_req_t req, const struct node *n,
			struct stat *st)
{
	struct fs *fs = fs_of(req);
	pid_t pid = fuse_req_ctx(req)->pid;
	struct report *r;
	bool open = false;

	if (n->kind != K_STATUS && n->kind != K_METRICS)
		return;
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh && !open; fh = fh->next) {
		struct report_fh *rf = fh_report(fh);
		open = rf && fh->kind == n->kind && rf->opener == pid;
		if (open)
			st->st_size = (off_t)rf->len;
	}
	pthread_mutex_unlock(&fs->lock);
	if (open)
		return;
	pthread_mutex_lock(&fs->report_lock);
	r = report_slot(fs, n->kind, pid);
	if (!report_fresh(r, pid)) {
		free(r->text);
		*r = (struct report){ .pid = pid, .made_ms = clock_mono_ms() };
		r->text = report_render(fs, n->kind, &r->len);
	}
	st->st_size = r->text ? (off_t)r->len : 0;
	pthread_mutex_unlock(&fs->report_lock);
}

/*
 * The text an open of .status or .metrics by thread pid reads, the
 * caller's to free: the one its stat just sized, if young enough
 * (report_stat), else a new one. NULL if out of memory.
 */
char *report_take(struct fs *fs, int kind, pid_t pid, size_t *len)
{
	struct report *r;
	char *text = NULL;

	pthread_mutex_lock(&fs->report_lock);
	r = report_slot(fs, kind, pid);
	if (report_fresh(r, pid)) {
		text = r->text;
		*len = r->len;
		*r = (struct report){ 0 };
	}
	if (!text)
		text = report_render(fs, kind, len);
	pthread_mutex_unlock(&fs->report_lock);
	return text;
}
