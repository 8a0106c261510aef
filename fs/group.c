#include "group.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "io.h"
#include "msg.h"
#include "part.h"

#define GROUPS_DIR "groups"
#define GROUP_CONFIG_FILE "config"
#define OFFSETS_DIR "offsets"
/* The offsets log keeps a few segments of snapshots, no more. */
#define OFFSETS_SEGMENT_BYTES (1u << 20)
#define OFFSETS_RETENTION_BYTES (2ll << 20)
#define OFFSETS_RECORD_MAX (TOPIC_PARTITIONS_MAX * 32 + 64)

struct member {
	struct group *g;
	uint64_t id;
	char host[MEMBER_HOST_MAX];      /* as kafka-consumer-groups' HOST */
	char client[MEMBER_CLIENT_MAX];  /* ... and CLIENT-ID: "comm[pid]" */
	int64_t last_poll_ms;
	bool evicted;          /* told at its next read, then rejoins */
	bool stale;            /* a truncation invalidated its cursor: out of
				* the group, every read fails (ESTALE) */
	uint32_t rr;           /* partition rotation, for fairness */
	/* A record larger than one read, being delivered in pieces. */
	bool split;
	uint32_t split_p;
	uint64_t split_pos, split_end, split_next;
	/* One cursor per partition: the extents a read returns stay valid
	 * until the member's next read. */
	struct log_cursor **cur;
	uint32_t ncur;
};

struct group {
	struct groups *gs;
	uint32_t index;
	char name[TOPIC_NAME_MAX + 1];
	char *dir;

	pthread_mutex_t lock;  /* protects everything below */
	struct group_config cfg;
	bool stored;
	char broken[200];      /* why its stored files could not be loaded;
				* "" if they were */
	struct log *offsets;
	uint32_t nparts;       /* size of the three arrays below */
	int64_t *committed;    /* per partition, -1 = none */
	int64_t *pos;          /* next offset for the current owner, -1 = unset */
	int64_t *pos_bytes;    /* its byte position if known, else -1 */
	char *commit_buf;      /* one commit record, OFFSETS_RECORD_MAX bytes */
	struct member **owner; /* per partition, NULL = unassigned */
	struct member **members;
	uint32_t nmembers, mcap;
	uint64_t generation;
	uint64_t next_member;
};

struct groups {
	struct topic *t;
	char *dir;
	pthread_mutex_t lock;  /* protects v and n */
	struct group **v;
	uint32_t n, cap;
};

/* ---- storage ------------------------------------------------------------- */

static int group_save_config(struct group *g)
{
	char *text = group_config_format(&g->cfg);
	int dfd, rc;

	if (!text)
		return -ENOMEM;
	dfd = open(g->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = dfd < 0 ? -errno : 0;
	if (rc == 0) {
		rc = io_replace_file(dfd, GROUP_CONFIG_FILE, text, strlen(text));
		close(dfd);
	}
	free(text);
	return rc;
}

static int group_open_offsets(struct group *g)
{
	struct log_config lc;
	char *path;
	int rc;

	log_config_default(&lc);
	lc.segment_bytes = OFFSETS_SEGMENT_BYTES;
	lc.retention_bytes = OFFSETS_RETENTION_BYTES;
	lc.retention_ms = -1;
	if (asprintf(&path, "%s/%s", g->dir, OFFSETS_DIR) < 0)
		return -ENOMEM;
	rc = log_open(path, &lc, &g->offsets);
	free(path);
	if (rc == 0)
		log_set_hw(g->offsets, UINT64_MAX);
	return rc;
}

/* Make the group durable: its directory, config and offsets log. */
static int group_store(struct group *g)
{
	int rc;

	if (g->stored)
		return 0;
	/* Its path names where the topic was, which a new topic of the same
	 * name may have taken since. */
	if (topic_deleted(g->gs->t))
		return -ENOENT;
	if (mkdir(g->gs->dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mkdir(g->dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	rc = group_save_config(g);
	if (rc == 0 && !g->offsets)
		rc = group_open_offsets(g);
	if (rc == 0)
		g->stored = true;
	return rc;
}

/*
 * Append a snapshot of the committed offsets to the offsets log:
 * "<partition>=<offset>" pairs separated by spaces, one line.
 */
static int group_write_commit(struct group *g)
{
	size_t n = 0;
	uint32_t len;
	char *rec;
	int rc;

	if (!g->commit_buf && !(g->commit_buf = malloc(OFFSETS_RECORD_MAX)))
		return -ENOMEM;
	rec = g->commit_buf;
	rc = group_store(g);
	for (uint32_t p = 0; rc == 0 && p < g->nparts; p++) {
		if (g->committed[p] >= 0)
			n += (size_t)snprintf(rec + n, OFFSETS_RECORD_MAX - n,
					      "%s%" PRIu32 "=%" PRId64,
					      n ? " " : "", p, g->committed[p]);
	}
	rec[n++] = '\n';
	len = (uint32_t)n;
	if (rc == 0)
		rc = log_append(g->offsets, rec, n, &len, 1, NULL, NULL);
	if (rc == 0)
		log_set_hw(g->offsets, UINT64_MAX);
	if (rc < 0)
		msg(LOG_ERR, "topic %s group %s: commit failed: %s",
		    topic_name(g->gs->t), g->name, strerror(-rc));
	return rc;
}

static int group_grow(struct group *g, uint32_t n)
{
	int64_t *c, *pos, *pb;
	struct member **o;

	if (n <= g->nparts)
		return 0;
	c = realloc(g->committed, n * sizeof(*c));
	if (c)
		g->committed = c;
	pos = realloc(g->pos, n * sizeof(*pos));
	if (pos)
		g->pos = pos;
	pb = realloc(g->pos_bytes, n * sizeof(*pb));
	if (pb)
		g->pos_bytes = pb;
	o = realloc(g->owner, n * sizeof(*o));
	if (o)
		g->owner = o;
	if (!c || !pos || !pb || !o)
		return -ENOMEM;
	for (uint32_t p = g->nparts; p < n; p++) {
		g->committed[p] = -1;
		g->pos[p] = -1;
		g->pos_bytes[p] = -1;
		g->owner[p] = NULL;
	}
	g->nparts = n;
	return 0;
}

/* Read the newest snapshot of the offsets log into committed[]. */
static int group_load_offsets(struct group *g)
{
	struct log_cursor *c;
	struct log_bounds st;
	uint64_t pos;
	char *rec, *p, *end;
	ssize_t n;
	int rc;

	log_get_bounds(g->offsets, &st);
	if (st.leo == st.start_offset)
		return 0;
	rc = log_offset_to_pos(g->offsets, st.leo - 1, &pos);
	if (rc < 0)
		return rc;
	if (st.leo_pos - pos > OFFSETS_RECORD_MAX)
		return -EIO;
	rec = malloc(OFFSETS_RECORD_MAX + 1);
	if (!rec || log_cursor_new(g->offsets, &c) < 0) {
		free(rec);
		return -ENOMEM;
	}
	n = log_read_copy(c, &pos, rec, (size_t)(st.leo_pos - pos));
	log_cursor_free(c);
	rc = n < 0 ? (int)n : 0;
	if (rc == 0) {
		rec[n] = '\0';
		for (p = rec; *p && *p != '\n';) {
			unsigned long long part = strtoull(p, &end, 10);
			long long off;
			if (end == p || *end != '=' || part >= TOPIC_PARTITIONS_MAX) {
				rc = -EIO;
				break;
			}
			off = strtoll(end + 1, &p, 10);
			if (off < 0 || group_grow(g, (uint32_t)part + 1) < 0) {
				rc = -EIO;
				break;
			}
			g->committed[part] = off;
			while (*p == ' ')
				p++;
		}
	}
	free(rec);
	return rc;
}

/* ---- the table of groups ------------------------------------------------- */

static struct group *group_new(struct groups *gs, const char *name)
{
	struct group *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->gs = gs;
	/* The caller checked the name: it fits (TOPIC_NAME_MAX). */
	memcpy(g->name, name, strnlen(name, TOPIC_NAME_MAX));
	if (asprintf(&g->dir, "%s/%s", gs->dir, name) < 0) {
		free(g);
		return NULL;
	}
	pthread_mutex_init(&g->lock, NULL);
	group_config_default(&g->cfg);
	return g;
}

static void group_free(struct group *g)
{
	for (uint32_t i = 0; i < g->nmembers; i++)
		g->members[i]->g = NULL;
	if (g->offsets)
		log_close(g->offsets);
	pthread_mutex_destroy(&g->lock);
	free(g->committed);
	free(g->pos);
	free(g->pos_bytes);
	free(g->commit_buf);
	free(g->owner);
	free(g->members);
	free(g->dir);
	free(g);
}

/* Add g to the table; gs->lock held. */
static int groups_add(struct groups *gs, struct group *g)
{
	if (gs->n == GROUPS_MAX)
		return -ENOSPC;
	if (gs->n == gs->cap) {
		uint32_t cap = gs->cap ? gs->cap * 2 : 16;
		struct group **v = realloc(gs->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		gs->v = v;
		gs->cap = cap;
	}
	g->index = gs->n;
	gs->v[gs->n++] = g;
	return 0;
}

/*
 * Read g's settings file into g->cfg, as strictly as a topic's: a name
 * this program does not know or a bad value is -EINVAL with the reason
 * in why (never dropped for a default). No file: the defaults.
 */
static int group_read_config(struct group *g, char *why, size_t why_size)
{
	char *text = NULL;
	ssize_t n;
	int dfd, rc;

	dfd = open(g->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(why, why_size, "%s", strerror(errno));
		return -errno;
	}
	n = io_read_file(dfd, GROUP_CONFIG_FILE, 4096, &text);
	close(dfd);
	if (n == -ENOENT)
		return 0;
	if (n < 0) {
		snprintf(why, why_size, "its settings file (%s): %s",
			 GROUP_CONFIG_FILE, strerror((int)-n));
		return (int)n;
	}
	rc = group_config_parse(&g->cfg, text, why, why_size);
	free(text);
	if (rc < 0) {
		char reason[160];
		snprintf(reason, sizeof(reason), "%s", why);
		snprintf(why, why_size, "its settings file (%s): %s",
			 GROUP_CONFIG_FILE, reason);
	}
	return rc;
}

/*
 * Load the stored group name. One that cannot be loaded is still entered
 * in the table, marked broken with its reason, so that nothing replaces
 * its files (a group made afresh under its name would write its config
 * and commits over them): it is listed, and using it fails with EIO.
 */
static int group_load(struct groups *gs, const char *name)
{
	struct group *g = group_new(gs, name);
	char why[200] = "";
	int rc;

	if (!g)
		return -ENOMEM;
	rc = group_read_config(g, why, sizeof(why));
	if (rc == 0) {
		rc = group_open_offsets(g);
		if (rc == 0)
			rc = group_load_offsets(g);
		if (rc < 0)
			snprintf(why, sizeof(why), "its offsets log: %s",
				 strerror(-rc));
	}
	g->stored = true;
	if (rc < 0) {
		msg(LOG_ERR, "topic %s group %s: cannot load: %s; its files are "
		    "left untouched in %s", topic_name(gs->t), name, why, g->dir);
		snprintf(g->broken, sizeof(g->broken), "%s",
			 why[0] ? why : "unknown reason");
		if (g->offsets)
			log_close(g->offsets);
		g->offsets = NULL;
		group_config_default(&g->cfg);
	}
	rc = groups_add(gs, g);
	if (rc < 0)
		group_free(g);
	return rc;
}

int groups_open(struct topic *t, const char *topic_dir, struct groups **out)
{
	struct groups *gs = calloc(1, sizeof(*gs));
	struct dirent *de;
	DIR *d;

	if (!gs)
		return -ENOMEM;
	gs->t = t;
	pthread_mutex_init(&gs->lock, NULL);
	if (asprintf(&gs->dir, "%s/%s", topic_dir, GROUPS_DIR) < 0) {
		free(gs);
		return -ENOMEM;
	}
	d = opendir(gs->dir);
	while (d && (de = readdir(d))) {
		if (topic_name_valid(de->d_name))
			group_load(gs, de->d_name);
	}
	if (d)
		closedir(d);
	*out = gs;
	return 0;
}

void groups_close(struct groups *gs)
{
	if (!gs)
		return;
	for (uint32_t i = 0; i < gs->n; i++)
		group_free(gs->v[i]);
	free(gs->v);
	free(gs->dir);
	pthread_mutex_destroy(&gs->lock);
	free(gs);
}

int groups_lookup(struct groups *gs, const char *name, struct group **out)
{
	struct group *g = NULL;
	int rc = 0;

	if (!topic_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&gs->lock);
	for (uint32_t i = 0; i < gs->n && !g; i++) {
		if (strcmp(gs->v[i]->name, name) == 0)
			g = gs->v[i];
	}
	if (!g) {
		g = group_new(gs, name);
		rc = g ? groups_add(gs, g) : -ENOMEM;
		if (rc < 0 && g) {
			group_free(g);
			g = NULL;
		}
	}
	pthread_mutex_unlock(&gs->lock);
	*out = g;
	return rc;
}

struct group *groups_get(struct groups *gs, uint32_t index)
{
	struct group *g = NULL;

	pthread_mutex_lock(&gs->lock);
	if (index < gs->n)
		g = gs->v[index];
	pthread_mutex_unlock(&gs->lock);
	return g;
}

/* Whether g is listed: stored, or with members at the moment. */
static bool group_listed(struct group *g)
{
	bool listed;

	pthread_mutex_lock(&g->lock);
	listed = g->stored || g->nmembers > 0;
	pthread_mutex_unlock(&g->lock);
	return listed;
}

unsigned groups_list(struct groups *gs, uint32_t from, struct group **out,
		     unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&gs->lock);
	for (uint32_t i = from; i < gs->n && n < max; i++) {
		if (group_listed(gs->v[i]))
			out[n++] = gs->v[i];
	}
	pthread_mutex_unlock(&gs->lock);
	return n;
}

int groups_delete(struct groups *gs, const char *name)
{
	struct group *g = NULL;
	int rc = 0;

	pthread_mutex_lock(&gs->lock);
	for (uint32_t i = 0; i < gs->n && !g; i++) {
		if (strcmp(gs->v[i]->name, name) == 0)
			g = gs->v[i];
	}
	pthread_mutex_unlock(&gs->lock);
	if (!g)
		return -ENOENT;
	pthread_mutex_lock(&g->lock);
	if (g->nmembers > 0) {
		rc = -EBUSY;
	} else if (!g->stored) {
		rc = -ENOENT;
	} else {
		if (g->offsets)
			log_abandon(g->offsets);
		g->offsets = NULL;
		io_remove_tree(g->dir);
		g->stored = false;
		g->broken[0] = '\0';
		group_config_default(&g->cfg);
		for (uint32_t p = 0; p < g->nparts; p++)
			g->committed[p] = g->pos[p] = g->pos_bytes[p] = -1;
		msg(LOG_INFO, "topic %s group %s deleted",
		    topic_name(gs->t), g->name);
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}

const char *group_name(const struct group *g)
{
	return g->name;
}

uint32_t group_index(const struct group *g)
{
	return g->index;
}

bool group_stored(struct group *g)
{
	bool s;

	pthread_mutex_lock(&g->lock);
	s = g->stored;
	pthread_mutex_unlock(&g->lock);
	return s;
}

/*
 * Whether g is a stored group that could not be loaded (group_load): then
 * a request on it fails with EIO, saying so in one log line unless the
 * caller does (quiet). g->lock held.
 */
static int group_unusable(struct group *g, bool quiet)
{
	if (!g->broken[0])
		return 0;
	if (!quiet)
		msg(LOG_ERR, "topic %s group %s: cannot be used: %s (remove it "
		    "with rmdir)", topic_name(g->gs->t), g->name, g->broken);
	return -EIO;
}

/* ---- assignment ---------------------------------------------------------- */

/* Member with the fewest partitions below cap (ties: earliest joined). */
static int least_loaded(const uint32_t *count, uint32_t m, uint32_t cap_hi,
			uint32_t *n_hi, uint32_t want_hi)
{
	int best = -1;

	for (uint32_t i = 0; i < m; i++) {
		uint32_t cap = *n_hi < want_hi ? cap_hi : cap_hi - 1;
		if (count[i] >= cap && !(count[i] < cap_hi && *n_hi < want_hi))
			continue;
		if (best < 0 || count[i] < count[best])
			best = (int)i;
	}
	return best;
}

/*
 * Compute who owns each of n partitions among the m members (in join
 * order). range: consecutive blocks, the first n % m members one more;
 * roundrobin: partition p to member p % m; sticky: every member keeps what
 * it had up to a balanced share, and only the rest moves.
 */
static void assign(struct group *g, uint32_t n, int *who)
{
	uint32_t m = g->nmembers, *count, lo, n_hi = 0, want_hi;

	for (uint32_t p = 0; p < n; p++)
		who[p] = -1;
	if (m == 0)
		return;
	lo = n / m;
	want_hi = n % m;
	if (g->cfg.strategy == GROUP_RANGE) {
		for (uint32_t i = 0, p = 0; i < m; i++) {
			uint32_t take = lo + (i < want_hi);
			for (uint32_t k = 0; k < take; k++)
				who[p++] = (int)i;
		}
		return;
	}
	if (g->cfg.strategy == GROUP_ROUNDROBIN) {
		for (uint32_t p = 0; p < n; p++)
			who[p] = (int)(p % m);
		return;
	}
	count = calloc(m, sizeof(*count));
	if (!count) { /* fall back to round robin */
		for (uint32_t p = 0; p < n; p++)
			who[p] = (int)(p % m);
		return;
	}
	/* Keep current owners up to a fair share. */
	for (uint32_t p = 0; p < n; p++) {
		struct member *o = g->owner[p];
		for (uint32_t i = 0; o && i < m; i++) {
			if (g->members[i] != o)
				continue;
			if (count[i] < lo || (count[i] == lo && n_hi < want_hi)) {
				if (count[i] == lo)
					n_hi++;
				count[i]++;
				who[p] = (int)i;
			}
			break;
		}
	}
	/* Hand out the rest to the least loaded. */
	for (uint32_t p = 0; p < n; p++) {
		int i;
		if (who[p] >= 0)
			continue;
		i = least_loaded(count, m, lo + 1, &n_hi, want_hi);
		if (i < 0)
			i = 0;
		if (count[i] == lo)
			n_hi++;
		count[i]++;
		who[p] = i;
	}
	free(count);
}

/* Commit what owner m has delivered of partition p; g->lock held. */
static bool commit_one(struct group *g, uint32_t p)
{
	if (g->pos[p] >= 0 && g->pos[p] != g->committed[p]) {
		g->committed[p] = g->pos[p];
		return true;
	}
	return false;
}

/* Reassign partitions after a join, leave or eviction; g->lock held. */
static void rebalance(struct group *g)
{
	uint32_t n = topic_partitions(g->gs->t), moved = 0;
	bool changed = false;
	int *who;

	if (group_grow(g, n) < 0)
		return;
	who = malloc((n ? n : 1) * sizeof(*who));
	if (!who)
		return;
	assign(g, n, who);
	for (uint32_t p = 0; p < n; p++) {
		struct member *o = who[p] >= 0 ? g->members[who[p]] : NULL;
		if (o == g->owner[p])
			continue;
		/* As Kafka's consumer does on revocation with auto commit. */
		if (g->owner[p] && g->cfg.auto_commit)
			changed |= commit_one(g, p);
		if (g->owner[p] && g->owner[p]->split &&
		    g->owner[p]->split_p == p)
			g->owner[p]->split = false;
		g->owner[p] = o;
		g->pos[p] = -1; /* the new owner starts from the committed offset */
		g->pos_bytes[p] = -1;
		moved++;
	}
	free(who);
	g->generation++;
	if (changed)
		group_write_commit(g);
	msg(LOG_INFO, "topic %s group %s: rebalanced (%s), %" PRIu32
	    " member(s), %" PRIu32 " partition(s) moved",
	    topic_name(g->gs->t), g->name, group_strategy_name(g->cfg.strategy),
	    g->nmembers, moved);
}

static int member_add(struct group *g, struct member *m)
{
	if (g->nmembers == g->mcap) {
		uint32_t cap = g->mcap ? g->mcap * 2 : 8;
		struct member **v = realloc(g->members, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		g->members = v;
		g->mcap = cap;
	}
	g->members[g->nmembers++] = m;
	m->last_poll_ms = clock_mono_ms();
	return 0;
}

static void member_remove(struct group *g, struct member *m)
{
	for (uint32_t i = 0; i < g->nmembers; i++) {
		if (g->members[i] != m)
			continue;
		memmove(g->members + i, g->members + i + 1,
			(g->nmembers - i - 1) * sizeof(*g->members));
		g->nmembers--;
		break;
	}
}

/*
 * Take m out of the group without a commit (eviction, a stale cursor):
 * it cannot commit, as in Kafka, so what it read since its last commit
 * goes to the next owner, which starts from the committed offset. The
 * caller rebalances. g->lock held.
 */
static void member_drop(struct group *g, struct member *m)
{
	m->evicted = true;
	m->split = false;
	for (uint32_t p = 0; p < g->nparts; p++) {
		if (g->owner[p] == m) {
			g->owner[p] = NULL;
			g->pos[p] = -1;
			g->pos_bytes[p] = -1;
		}
	}
	member_remove(g, m);
}

/*
 * "comm[pid]" of the process that thread tid belongs to, from /proc: the
 * CLIENT-ID of a member. Bytes a column cannot hold (blanks, control
 * characters) become '_'; "?[tid]" if the process is gone.
 */
static void member_client(pid_t tid, char *buf, size_t size)
{
	char path[64], line[128], comm[32] = "?";
	long tgid = tid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)tid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Tgid: %ld", &tgid) == 1)
			break;
	}
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "/proc/%ld/comm", tgid);
	f = fopen(path, "re");
	if (f && fgets(comm, sizeof(comm), f)) {
		comm[strcspn(comm, "\n")] = '\0';
		for (char *c = comm; *c; c++) {
			if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
				*c = '_';
		}
	}
	if (f)
		fclose(f);
	snprintf(buf, size, "%s[%ld]", comm[0] ? comm : "?", tgid);
}

int member_join(struct group *g, pid_t pid, struct member **out)
{
	struct member *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return -ENOMEM;
	m->g = g;
	if (gethostname(m->host, sizeof(m->host)) < 0 || !m->host[0])
		snprintf(m->host, sizeof(m->host), "-");
	m->host[sizeof(m->host) - 1] = '\0';
	member_client(pid, m->client, sizeof(m->client));
	pthread_mutex_lock(&g->lock);
	rc = group_unusable(g, false);
	if (rc < 0) {
		pthread_mutex_unlock(&g->lock);
		free(m);
		return rc;
	}
	m->id = ++g->next_member;
	rc = member_add(g, m);
	if (rc == 0)
		rebalance(g);
	pthread_mutex_unlock(&g->lock);
	if (rc < 0) {
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* Commit every partition m owns; g->lock held. */
static int commit_member(struct group *g, struct member *m)
{
	bool changed = false;

	for (uint32_t p = 0; p < g->nparts; p++) {
		if (g->owner[p] == m)
			changed |= commit_one(g, p);
	}
	return changed ? group_write_commit(g) : 0;
}

void member_leave(struct member *m)
{
	struct group *g = m->g;

	if (g) {
		pthread_mutex_lock(&g->lock);
		if (!m->evicted) {
			if (g->cfg.auto_commit)
				commit_member(g, m);
			member_remove(g, m);
			rebalance(g);
		}
		pthread_mutex_unlock(&g->lock);
	}
	for (uint32_t p = 0; p < m->ncur; p++)
		log_cursor_free(m->cur[p]);
	free(m->cur);
	free(m);
}

int member_commit(struct member *m)
{
	struct group *g = m->g;
	int rc;

	pthread_mutex_lock(&g->lock);
	rc = m->stale ? -ESTALE : m->evicted ? -ETIMEDOUT :
	     commit_member(g, m);
	pthread_mutex_unlock(&g->lock);
	return rc;
}

void groups_tick(struct groups *gs, const struct tick_now *now)
{
	pthread_mutex_lock(&gs->lock);
	for (uint32_t i = 0; i < gs->n; i++) {
		struct group *g = gs->v[i];
		bool evicted = false;

		pthread_mutex_lock(&g->lock);
		for (uint32_t k = 0; k < g->nmembers;) {
			struct member *m = g->members[k];
			if (now->mono_ms - m->last_poll_ms <= g->cfg.max_poll_ms) {
				k++;
				continue;
			}
			msg(LOG_WARNING, "topic %s group %s: member-%" PRIu64
			    " did not read for max.poll.interval.ms (%" PRId64
			    " ms): its partitions go to the others",
			    topic_name(gs->t), g->name, m->id, g->cfg.max_poll_ms);
			member_drop(g, m);
			evicted = true;
		}
		if (evicted)
			rebalance(g);
		if (g->offsets)
			log_retention(g->offsets, now->wall_ms);
		pthread_mutex_unlock(&g->lock);
	}
	pthread_mutex_unlock(&gs->lock);
}

/* ---- reading ------------------------------------------------------------- */

/* The member's cursor on partition p. */
static struct log_cursor *member_cursor(struct member *m, uint32_t p,
					struct log *l)
{
	if (p >= m->ncur) {
		struct log_cursor **c = realloc(m->cur, (p + 1) * sizeof(*c));
		if (!c)
			return NULL;
		memset(c + m->ncur, 0, (p + 1 - m->ncur) * sizeof(*c));
		m->cur = c;
		m->ncur = p + 1;
	}
	if (!m->cur[p] && log_cursor_new(l, &m->cur[p]) < 0)
		return NULL;
	return m->cur[p];
}

/*
 * Describe [pos, end) of partition p as extents (zero copy). Returns the
 * bytes described, which may be fewer (one compressed batch, or out of
 * extents), always ending on a batch boundary.
 */
static ssize_t member_extents(struct member *m, uint32_t p, struct log *l,
			      uint64_t pos, uint64_t end,
			      struct member_read *r)
{
	struct log_cursor *c = member_cursor(m, p, l);
	uint64_t at = pos;
	unsigned n;
	ssize_t got;

	if (!c)
		return -ENOMEM;
	if (r->n == MEMBER_EXTENTS_MAX)
		return 0;
	got = log_read(c, &at, (size_t)(end - pos), r->ext + r->n,
		       MEMBER_EXTENTS_MAX - r->n, &n);
	if (got > 0 && at != pos)
		return -EAGAIN; /* retention moved the start: retry later */
	if (got > 0)
		r->n += n;
	return got;
}

/*
 * Where partition p starts for this read: the owner's position, else the
 * committed offset, else (or if it fell below the log start) the reset
 * policy. The answer becomes the owner's position, so that "latest" is
 * resolved once, not at every read. g->lock held.
 */
static int start_offset(struct group *g, uint32_t p, const struct log_bounds *st,
			int64_t *off)
{
	int64_t o = g->pos[p] >= 0 ? g->pos[p] : g->committed[p];

	if (o >= 0 && (uint64_t)o >= st->start_offset && (uint64_t)o <= st->hw) {
		if (o != g->pos[p])
			g->pos_bytes[p] = -1;
	} else if (o >= 0 && (uint64_t)o > st->hw) {
		o = (int64_t)st->hw;
		g->pos_bytes[p] = -1;
	} else {
		g->pos_bytes[p] = -1;
		switch (g->cfg.reset) {
		case GROUP_RESET_EARLIEST:
			o = (int64_t)st->start_offset;
			break;
		case GROUP_RESET_LATEST:
			o = (int64_t)st->hw;
			break;
		default:
			return -ERANGE;
		}
	}
	g->pos[p] = o;
	*off = o;
	return 0;
}

/* The partition's bytes_out and records_out (.metrics). */
static void count_out(struct group *g, uint32_t p, uint64_t bytes,
		      uint64_t records)
{
	struct part_stats *s = part_stats(topic_part(g->gs->t, p));

	atomic_fetch_add(&s->bytes_out, bytes);
	atomic_fetch_add(&s->records_out, records);
}

/*
 * Describe the next records of the member's partitions, at most size
 * bytes. The group lock is held for the whole read, so that a rebalance
 * never moves a partition while records of it are on their way: every
 * record is delivered once per commit cycle.
 */
static ssize_t member_fill(struct group *g, struct member *m, size_t size,
			   struct member_read *r)
{
	size_t filled = 0;
	ssize_t got;
	int rc = 0;

	r->n = 0;
	/* A record larger than a read goes out in pieces, alone. */
	if (m->split) {
		struct log *l = part_log(topic_part(g->gs->t, m->split_p));
		uint64_t from = m->split_pos;
		uint64_t end = m->split_end - from > size ? from + size :
							    m->split_end;

		got = member_extents(m, m->split_p, l, from, end, r);
		if (got <= 0)
			return got;
		m->split_pos += (uint64_t)got;
		count_out(g, m->split_p, (uint64_t)got,
			  m->split_pos == m->split_end);
		if (m->split_pos == m->split_end) {
			m->split = false;
			if (g->owner[m->split_p] == m) {
				g->pos[m->split_p] = (int64_t)m->split_next;
				g->pos_bytes[m->split_p] = (int64_t)m->split_end;
			}
		}
		return got;
	}
	for (uint32_t i = 0; i < g->nparts && filled < size; i++) {
		uint32_t p = (m->rr + i) % g->nparts;
		struct log *l;
		struct log_bounds st;
		uint64_t pos, end, off_end, rec_pos;
		int64_t start;

		if (g->owner[p] != m)
			continue;
		l = part_log(topic_part(g->gs->t, p));
		log_get_bounds(l, &st);
		rc = start_offset(g, p, &st, &start);
		if (rc < 0) {
			msg(LOG_WARNING, "topic %s group %s partition %" PRIu32
			    ": committed offset below the log start and "
			    "auto.offset.reset=none", topic_name(g->gs->t),
			    g->name, p);
			break;
		}
		if ((uint64_t)start >= st.hw)
			continue;
		if (g->pos_bytes[p] >= 0) {
			pos = (uint64_t)g->pos_bytes[p];
		} else {
			rc = log_offset_to_pos(l, (uint64_t)start, &pos);
			if (rc < 0)
				break;
		}
		end = st.hw_pos;
		off_end = st.hw;
		if (end - pos > size - filled) {
			rc = log_pos_to_offset(l, pos + (size - filled), &off_end,
					       &rec_pos);
			if (rc < 0)
				break;
			end = rec_pos;
		}
		if (end == pos) {
			uint64_t rec_end;
			if (filled > 0)
				break; /* the next read takes it */
			/* One record bigger than the whole read. */
			rc = log_offset_to_pos(l, (uint64_t)start + 1, &rec_end);
			if (rc < 0)
				break;
			got = member_extents(m, p, l, pos, pos + size, r);
			if (got <= 0) {
				rc = (int)got;
				break;
			}
			m->split = true;
			m->split_p = p;
			m->split_pos = pos + (uint64_t)got;
			m->split_end = rec_end;
			m->split_next = (uint64_t)start + 1;
			return got;
		}
		got = member_extents(m, p, l, pos, end, r);
		if (got <= 0) {
			rc = (int)got;
			break;
		}
		if ((uint64_t)got < end - pos) {
			/* It stopped at a batch boundary: a record boundary. */
			rc = log_pos_to_offset(l, pos + (uint64_t)got, &off_end,
					       &rec_pos);
			if (rc < 0 || rec_pos != pos + (uint64_t)got)
				return -EIO;
		}
		filled += (size_t)got;
		count_out(g, p, (uint64_t)got, off_end - (uint64_t)start);
		g->pos[p] = (int64_t)off_end;
		g->pos_bytes[p] = (int64_t)(pos + (uint64_t)got);
		if ((uint64_t)got < end - pos)
			break; /* out of extents */
	}
	m->rr++;
	if (filled > 0)
		return (ssize_t)filled;
	return rc == -EAGAIN ? 0 : rc;
}

ssize_t member_read(struct member *m, size_t size, struct member_read *r)
{
	struct group *g = m->g;
	ssize_t got;
	int rc = 0;

	if (!g)
		return -ENOENT;
	pthread_mutex_lock(&g->lock);
	if (m->stale) {
		pthread_mutex_unlock(&g->lock);
		return -ESTALE;
	}
	if (m->evicted) {
		m->evicted = false;
		m->id = ++g->next_member;
		rc = member_add(g, m);
		if (rc == 0)
			rebalance(g);
		pthread_mutex_unlock(&g->lock);
		msg(LOG_NOTICE, "topic %s group %s: evicted member rejoins as "
		    "member-%" PRIu64, topic_name(g->gs->t), g->name, m->id);
		return rc < 0 ? rc : -ETIMEDOUT;
	}
	m->last_poll_ms = clock_mono_ms();
	if (g->cfg.auto_commit)
		commit_member(g, m);
	if (topic_partitions(g->gs->t) != g->nparts)
		rebalance(g);
	got = member_fill(g, m, size, r);
	if (got == -ESTALE) {
		/* Bytes it was shown were removed by a truncation (KIP-320):
		 * this member is done; its partitions go to the others. */
		m->stale = true;
		member_drop(g, m);
		rebalance(g);
	}
	pthread_mutex_unlock(&g->lock);
	return got;
}

/* ---- attributes ---------------------------------------------------------- */

void group_lag(struct group *g, uint32_t p, int64_t *committed, uint64_t *leo)
{
	struct part *part = topic_part(g->gs->t, p);
	struct log_bounds st;

	pthread_mutex_lock(&g->lock);
	*committed = p < g->nparts ? g->committed[p] : -1;
	pthread_mutex_unlock(&g->lock);
	*leo = 0;
	if (part) {
		log_get_bounds(part_log(part), &st);
		*leo = st.hw;
	}
}

/* "offset.<p>" style names: the kind and the partition. */
static int per_partition(const char *name, const char *kind, uint32_t n,
			 uint32_t *p)
{
	size_t k = strlen(kind);
	unsigned long long v;
	char *end;

	if (strncmp(name, kind, k) != 0 || name[k] != '.' ||
	    name[k + 1] < '0' || name[k + 1] > '9')
		return -ENODATA;
	v = strtoull(name + k + 1, &end, 10);
	if (*end || v >= n)
		return -ENODATA;
	*p = (uint32_t)v;
	return 0;
}

int group_getxattr(struct group *g, const char *name, char *buf, size_t size)
{
	uint32_t n = topic_partitions(g->gs->t), p;
	int64_t committed;
	uint64_t leo;
	int rc;

	pthread_mutex_lock(&g->lock);
	rc = group_unusable(g, false);
	if (rc == 0)
		rc = group_config_get(&g->cfg, name, buf, size);
	if (rc == -ENODATA && per_partition(name, "owner", n, &p) == 0) {
		if (p < g->nparts && g->owner[p])
			snprintf(buf, size, "member-%" PRIu64, g->owner[p]->id);
		else
			snprintf(buf, size, "-");
		rc = 0;
	} else if (rc == -ENODATA && per_partition(name, "member", n, &p) == 0) {
		/* CONSUMER-ID HOST CLIENT-ID, as kafka-consumer-groups. */
		if (p < g->nparts && g->owner[p])
			snprintf(buf, size, "member-%" PRIu64 " %s %s",
				 g->owner[p]->id, g->owner[p]->host,
				 g->owner[p]->client);
		else
			snprintf(buf, size, "-");
		rc = 0;
	}
	pthread_mutex_unlock(&g->lock);
	if (rc != -ENODATA)
		return rc;
	if (per_partition(name, "offset", n, &p) == 0) {
		group_lag(g, p, &committed, &leo);
		if (committed < 0)
			snprintf(buf, size, "-");
		else
			snprintf(buf, size, "%" PRId64, committed);
	} else if (per_partition(name, "log_end_offset", n, &p) == 0) {
		group_lag(g, p, &committed, &leo);
		snprintf(buf, size, "%" PRIu64, leo);
	} else if (per_partition(name, "lag", n, &p) == 0) {
		group_lag(g, p, &committed, &leo);
		if (committed < 0)
			snprintf(buf, size, "-");
		else
			snprintf(buf, size, "%" PRId64,
				 (int64_t)leo > committed ? (int64_t)leo - committed : 0);
	} else {
		return -ENODATA;
	}
	return 0;
}

int group_listxattr(struct group *g, char **out, size_t *len)
{
	static const char *const kinds[] = { "offset", "log_end_offset", "lag",
					     "owner", "member" };
	const size_t nkinds = sizeof(kinds) / sizeof(kinds[0]);
	uint32_t n = topic_partitions(g->gs->t);
	size_t cap = group_config_count() * 64 + (size_t)n * nkinds * 48 + 1;
	size_t at = 0;
	char *buf = malloc(cap);

	int rc;

	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&g->lock);
	rc = group_unusable(g, false);
	pthread_mutex_unlock(&g->lock);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	for (size_t i = 0; i < group_config_count(); i++)
		at += (size_t)snprintf(buf + at, cap - at, "user.topicfs.%s",
				       group_config_name(i)) + 1;
	for (uint32_t p = 0; p < n; p++) {
		for (size_t k = 0; k < nkinds; k++)
			at += (size_t)snprintf(buf + at, cap - at,
					       "user.topicfs.%s.%" PRIu32,
					       kinds[k], p) + 1;
	}
	*out = buf;
	*len = at;
	return 0;
}

/* The offset a reset value names: a selector (config.h), as views take
 * it, or a time after "@" as before. */
static int reset_target(struct log *l, const char *v, uint64_t *off)
{
	struct selector s;
	int rc;

	if (v[0] == '@') /* "@t=<ms>", "@<time>": the older time syntax */
		v++;
	rc = selector_parse(v, &s);
	return rc < 0 ? rc : selector_resolve(l, &s, off);
}

int group_setxattr(struct group *g, const char *name, const char *value,
		   size_t len)
{
	uint32_t n = topic_partitions(g->gs->t), p;
	struct group_config c;
	char v[256];
	uint64_t off;
	int rc;

	if (len > 0 && value[len - 1] == '\n')
		len--;
	if (len >= sizeof(v) || memchr(value, '\0', len))
		return -EINVAL;
	memcpy(v, value, len);
	v[len] = '\0';
	pthread_mutex_lock(&g->lock);
	c = g->cfg;
	rc = group_unusable(g, true); /* the caller logs the refusal */
	if (rc == 0)
		rc = group_config_set(&c, name, v, len);
	if (rc == 0) {
		g->cfg = c;
		rc = group_store(g);
		if (rc == 0)
			rc = group_save_config(g);
		if (rc == 0 && strcmp(name, "partition.assignment.strategy") == 0)
			rebalance(g);
	} else if (rc == -ENODATA && per_partition(name, "offset", n, &p) == 0) {
		if (g->nmembers > 0) {
			rc = -EBUSY;
		} else {
			rc = reset_target(part_log(topic_part(g->gs->t, p)), v,
					  &off);
			if (rc == 0)
				rc = group_grow(g, n);
			if (rc == 0) {
				g->committed[p] = (int64_t)off;
				g->pos[p] = -1;
				g->pos_bytes[p] = -1;
				rc = group_write_commit(g);
			}
		}
	} else if (rc == -ENODATA &&
		   (per_partition(name, "log_end_offset", n, &p) == 0 ||
		    per_partition(name, "lag", n, &p) == 0 ||
		    per_partition(name, "owner", n, &p) == 0 ||
		    per_partition(name, "member", n, &p) == 0)) {
		rc = -EPERM;
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}
