#include "topic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include "msg.h"
#include <time.h>
#include <unistd.h>

#include "group.h"
#include "io.h"

/* A group commit appends at most this many payload bytes (one request
 * alone may be larger). */
#define GROUP_BYTES_MAX (8u << 20)
#define TOPICS_DIR "topics"
#define TRASH_DIR "trash"
#define CONFIG_FILE "config"

const uint64_t latency_bucket_us[LATENCY_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 500000,
	2000000,
};

/* One writer's records waiting to be appended (group commit). */
struct append_req {
	const struct iovec *iov; /* the records' bytes, in pieces */
	int iovcnt;
	size_t len;
	const uint32_t *lens;
	uint32_t n;
	int rc;
	bool done;
	struct log_append_info info;
	struct append_req *next;
};

struct part {
	struct topic *topic;
	uint32_t index;
	struct log *log;
	struct part_stats stats;

	pthread_mutex_t q_lock;   /* protects the fields below */
	pthread_cond_t q_cond;
	struct append_req *q_head, **q_tail;
	bool appending;           /* a leader is committing a group */
	struct iovec *giov;       /* the leader's: every request's pieces */
	uint32_t *glens;          /* and their record lengths */
	size_t giov_bytes, glens_bytes;
	uint64_t unflushed;       /* records since the last flush */
	int64_t last_flush_ms;
};

struct topic {
	atomic_int refs;
	atomic_bool deleted;
	uint64_t id;
	char name[TOPIC_NAME_MAX + 1];
	char *dir;
	struct broker *broker;

	pthread_mutex_t lock;           /* protects cfg and part creation */
	struct topic_config cfg;
	_Atomic uint32_t nparts;
	struct part *parts[TOPIC_PARTITIONS_MAX];
	atomic_uint sticky;
	struct groups *groups;          /* consumer groups (group.h) */
};

struct broker {
	char *datadir;
	int lock_fd;
	uint32_t num_partitions;
	pthread_rwlock_t lock;          /* protects topics[] and ntopics */
	struct topic **topics;          /* by id - 1; NULL once deleted */
	uint64_t ntopics, cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static char *path_join(const char *a, const char *b)
{
	char *p;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

/* ---- murmur2 ------------------------------------------------------------ */

int32_t murmur2(const void *data, size_t len)
{
	const uint8_t *d = data;
	const uint32_t m = 0x5bd1e995;
	const int r = 24;
	uint32_t h = 0x9747b28cu ^ (uint32_t)len;
	size_t n4 = len / 4;

	for (size_t i = 0; i < n4; i++) {
		uint32_t k = (uint32_t)d[i * 4] | (uint32_t)d[i * 4 + 1] << 8 |
			     (uint32_t)d[i * 4 + 2] << 16 |
			     (uint32_t)d[i * 4 + 3] << 24;
		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}
	switch (len % 4) {
	case 3:
		h ^= (uint32_t)d[(len & ~3u) + 2] << 16;
		/* fall through */
	case 2:
		h ^= (uint32_t)d[(len & ~3u) + 1] << 8;
		/* fall through */
	case 1:
		h ^= d[len & ~3u];
		h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32_t)h;
}

uint32_t partition_for_key(const void *key, size_t len, uint32_t n)
{
	return ((uint32_t)murmur2(key, len) & 0x7fffffffu) % n;
}

/* ---- partitions --------------------------------------------------------- */

static int part_open(struct topic *t, uint32_t index, struct part **out)
{
	struct part *p = calloc(1, sizeof(*p));
	char name[16], *dir;
	int rc;

	if (!p)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%" PRIu32, index);
	dir = path_join(t->dir, name);
	if (!dir) {
		free(p);
		return -ENOMEM;
	}
	rc = log_open(dir, &t->cfg.log, &p->log);
	free(dir);
	if (rc < 0) {
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": cannot open: %s", t->name, index, strerror(-rc));
		free(p);
		return rc;
	}
	/* One replica: everything appended is committed. */
	log_set_hw(p->log, UINT64_MAX);
	p->topic = t;
	p->index = index;
	p->q_tail = &p->q_head;
	p->last_flush_ms = now_ms();
	pthread_mutex_init(&p->q_lock, NULL);
	pthread_cond_init(&p->q_cond, NULL);
	*out = p;
	return 0;
}

static int part_close(struct part *p, bool clean)
{
	int rc = 0;

	if (clean)
		rc = log_close(p->log);
	else
		log_abandon(p->log);
	pthread_mutex_destroy(&p->q_lock);
	pthread_cond_destroy(&p->q_cond);
	free(p->giov);
	free(p->glens);
	free(p);
	return rc;
}

struct log *part_log(struct part *p)
{
	return p->log;
}

uint32_t part_index(const struct part *p)
{
	return p->index;
}

struct part_stats *part_stats(struct part *p)
{
	return &p->stats;
}

static void part_note_latency(struct part *p, uint64_t us)
{
	unsigned b = 0;

	while (b < LATENCY_BUCKETS && us > latency_bucket_us[b])
		b++;
	atomic_fetch_add(&p->stats.latency_bucket[b], 1);
	atomic_fetch_add(&p->stats.latency_count, 1);
	atomic_fetch_add(&p->stats.latency_sum_us, us);
}

/*
 * Append the queued requests from head on, as one append when there are
 * several: their pieces and record lengths one after the other (the
 * engine copies only batches made of many small pieces). Called by the
 * group leader without q_lock. Returns the first request not taken (if
 * the group was full).
 */
static struct append_req *part_commit(struct part *p, struct append_req *head)
{
	struct append_req *r, *stop;
	struct log_append_info info;
	size_t len = 0, pieces = 0;
	uint32_t n = 0;
	int rc;

	for (stop = head; stop; stop = stop->next) {
		if (stop != head && len + stop->len > GROUP_BYTES_MAX)
			break;
		len += stop->len;
		n += stop->n;
		pieces += (size_t)stop->iovcnt;
	}
	if (head->next == stop) {
		rc = log_appendv(p->log, head->iov, head->iovcnt, head->lens,
				 head->n, NULL, &head->info);
		head->rc = rc;
		goto out_hw;
	}
	rc = io_buf_reserve((void **)&p->giov, &p->giov_bytes,
			    pieces * sizeof(*p->giov));
	if (rc == 0)
		rc = io_buf_reserve((void **)&p->glens, &p->glens_bytes,
				    n * sizeof(*p->glens));
	if (rc == 0) {
		size_t v = 0;
		uint32_t k = 0;
		for (r = head; r != stop; r = r->next) {
			memcpy(p->giov + v, r->iov, r->iovcnt * sizeof(*r->iov));
			memcpy(p->glens + k, r->lens, r->n * sizeof(*r->lens));
			v += (size_t)r->iovcnt;
			k += r->n;
		}
		rc = log_appendv(p->log, p->giov, (int)pieces, p->glens, n,
				 NULL, &info);
	}
	for (r = head; r != stop; r = r->next) {
		r->rc = rc;
		if (rc == 0) {
			r->info = info;
			r->info.end_offset = info.base_offset + r->n;
			r->info.end_pos = info.base_pos + r->len;
			info.base_offset += r->n;
			info.base_pos += r->len;
		}
	}
out_hw:
	if (rc == 0) {
		log_set_hw(p->log, UINT64_MAX);
		atomic_fetch_add(&p->stats.batches_in, 1);
		atomic_fetch_add(&p->stats.bytes_in, len);
		atomic_fetch_add(&p->stats.records_in, n);
	}
	return stop;
}

int part_produce(struct part *p, const struct iovec *iov, int iovcnt,
		 const uint32_t *lens, uint32_t n, struct log_append_info *info)
{
	struct append_req req = { .iov = iov, .iovcnt = iovcnt, .lens = lens,
				  .n = n };
	uint64_t t0 = mono_us();
	struct topic_config cfg;
	bool flush = false;

	for (int i = 0; i < iovcnt; i++)
		req.len += iov[i].iov_len;
	pthread_mutex_lock(&p->q_lock);
	*p->q_tail = &req;
	p->q_tail = &req.next;
	while (!req.done) {
		if (p->appending) {
			pthread_cond_wait(&p->q_cond, &p->q_lock);
			continue;
		}
		/* Become the leader: commit everything queued so far. */
		struct append_req *head = p->q_head, *rest, *r;
		p->appending = true;
		p->q_head = NULL;
		p->q_tail = &p->q_head;
		pthread_mutex_unlock(&p->q_lock);
		rest = part_commit(p, head);
		pthread_mutex_lock(&p->q_lock);
		for (r = head; r != rest; r = r->next)
			r->done = true;
		if (rest) { /* put back what did not fit, at the front */
			struct append_req **tail = &rest;
			while (*tail)
				tail = &(*tail)->next;
			*tail = p->q_head;
			if (!p->q_head)
				p->q_tail = tail;
			p->q_head = rest;
		}
		p->appending = false;
		pthread_cond_broadcast(&p->q_cond);
	}
	if (req.rc == 0) {
		p->unflushed += n;
		topic_config(p->topic, &cfg);
		flush = (int64_t)p->unflushed >= cfg.flush_messages;
	}
	pthread_mutex_unlock(&p->q_lock);
	part_note_latency(p, mono_us() - t0);
	if (req.rc == 0 && info)
		*info = req.info;
	if (flush)
		part_sync(p);
	return req.rc;
}

int part_sync(struct part *p)
{
	int rc;

	pthread_mutex_lock(&p->q_lock);
	p->unflushed = 0;
	p->last_flush_ms = now_ms();
	pthread_mutex_unlock(&p->q_lock);
	rc = log_flush(p->log);
	if (rc < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": flush failed: %s", p->topic->name, p->index,
		       strerror(-rc));
	return rc;
}

/* ---- topics ------------------------------------------------------------- */

bool topic_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > TOPIC_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void topic_get(struct topic *t)
{
	atomic_fetch_add(&t->refs, 1);
}

static void topic_free(struct topic *t)
{
	bool deleted = atomic_load(&t->deleted);
	uint32_t n = atomic_load(&t->nparts);

	groups_close(t->groups);
	for (uint32_t i = 0; i < n; i++)
		part_close(t->parts[i], !deleted);
	if (deleted)
		io_remove_tree(t->dir);
	pthread_mutex_destroy(&t->lock);
	free(t->dir);
	free(t);
}

void topic_put(struct topic *t)
{
	if (atomic_fetch_sub(&t->refs, 1) == 1)
		topic_free(t);
}

uint64_t topic_id(const struct topic *t)
{
	return t->id;
}

const char *topic_uuid(const struct topic *t)
{
	(void)t;
	return "AAAAAAAAAAAAAAAAAAAAAA"; /* stub: the topic id issue gives it */
}

unsigned broker_failures(struct broker *b, unsigned from,
			 struct topic_failure *out, unsigned max)
{
	(void)b;
	(void)from;
	(void)out;
	(void)max;
	return 0; /* stub: the topic loading issue fills it */
}

const char *topic_name(const struct topic *t)
{
	return t->name;
}

bool topic_deleted(const struct topic *t)
{
	return atomic_load(&t->deleted);
}

uint32_t topic_partitions(struct topic *t)
{
	return atomic_load(&t->nparts);
}

struct part *topic_part(struct topic *t, uint32_t i)
{
	return i < atomic_load(&t->nparts) ? t->parts[i] : NULL;
}

void topic_config(struct topic *t, struct topic_config *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->cfg;
	pthread_mutex_unlock(&t->lock);
}

struct groups *topic_groups(struct topic *t)
{
	return t->groups;
}

uint32_t topic_next_sticky(struct topic *t)
{
	return atomic_fetch_add(&t->sticky, 1) % topic_partitions(t);
}

/* Open partitions up to cfg.partitions; topic lock held. */
static int topic_open_parts(struct topic *t)
{
	uint32_t n = atomic_load(&t->nparts);

	while (n < t->cfg.partitions) {
		int rc = part_open(t, n, &t->parts[n]);
		if (rc < 0)
			return rc;
		atomic_store(&t->nparts, ++n);
	}
	return 0;
}

static int topic_save_config(struct topic *t, const struct topic_config *c)
{
	char *text = config_format(c);
	int dfd, rc;

	if (!text)
		return -ENOMEM;
	dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		free(text);
		return -errno;
	}
	rc = io_replace_file(dfd, CONFIG_FILE, text, strlen(text));
	close(dfd);
	free(text);
	return rc;
}

/* Apply c to the topic's partitions; topic lock held. */
static void topic_apply(struct topic *t)
{
	uint32_t n = atomic_load(&t->nparts);

	for (uint32_t i = 0; i < n; i++)
		log_set_config(t->parts[i]->log, &t->cfg.log);
}

static int topic_config_change(struct topic *t, const char *name,
			       const char *value, size_t len, bool reset)
{
	struct topic_config c;
	int rc;

	pthread_mutex_lock(&t->lock);
	c = t->cfg;
	rc = reset ? config_reset(&c, name) : config_set(&c, name, value, len);
	if (rc == 0)
		rc = topic_save_config(t, &c);
	if (rc == 0) {
		t->cfg = c;
		topic_apply(t);
		rc = topic_open_parts(t);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int topic_config_set(struct topic *t, const char *name, const char *value,
		     size_t len)
{
	return topic_config_change(t, name, value, len, false);
}

int topic_config_reset(struct topic *t, const char *name)
{
	return topic_config_change(t, name, NULL, 0, true);
}

static struct topic *topic_alloc(struct broker *b, const char *name)
{
	struct topic *t = calloc(1, sizeof(*t));
	char *topics;

	if (!t)
		return NULL;
	atomic_init(&t->refs, 1);
	memcpy(t->name, name, strnlen(name, TOPIC_NAME_MAX));
	t->broker = b;
	pthread_mutex_init(&t->lock, NULL);
	config_default(&t->cfg, b->num_partitions);
	topics = path_join(b->datadir, TOPICS_DIR);
	t->dir = topics ? path_join(topics, name) : NULL;
	free(topics);
	if (!t->dir) {
		free(t);
		return NULL;
	}
	return t;
}

/* Add t to the table, giving it the next id; broker write lock held. */
static int broker_add(struct broker *b, struct topic *t)
{
	if (b->ntopics == b->cap) {
		uint64_t cap = b->cap ? b->cap * 2 : 64;
		struct topic **n = realloc(b->topics, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->topics = n;
		b->cap = cap;
	}
	b->topics[b->ntopics++] = t;
	t->id = b->ntopics;
	return 0;
}

static struct topic *broker_find(struct broker *b, const char *name)
{
	for (uint64_t i = 0; i < b->ntopics; i++) {
		struct topic *t = b->topics[i];
		if (t && strcmp(t->name, name) == 0)
			return t;
	}
	return NULL;
}

/* Open a topic's partitions and groups and enter it in the table;
 * broker write lock held (or the broker not yet shared). */
static int topic_start(struct broker *b, struct topic *t)
{
	int rc = topic_open_parts(t);

	if (rc == 0)
		rc = groups_open(t, t->dir, &t->groups);
	if (rc == 0)
		rc = broker_add(b, t);
	return rc;
}

/* Load an existing topic directory at mount. */
static int broker_load_topic(struct broker *b, const char *name)
{
	struct topic *t = topic_alloc(b, name);
	char *text = NULL;
	int rc, dfd;

	if (!t)
		return -ENOMEM;
	dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = dfd < 0 ? -errno : 0;
	if (rc == 0) {
		ssize_t n = io_read_file(dfd, CONFIG_FILE, 1 << 20, &text);
		close(dfd);
		rc = n < 0 ? (int)n : config_parse(&t->cfg, text);
		free(text);
	}
	if (rc == 0)
		rc = topic_start(b, t);
	if (rc < 0) {
		msg(LOG_ERR, "topic %s: cannot load: %s", name,
		       strerror(-rc));
		topic_put(t);
	}
	return rc;
}

int broker_topic_create(struct broker *b, const char *name)
{
	struct topic *t;
	int rc;

	if (!topic_name_valid(name))
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	if (broker_find(b, name)) {
		rc = -EEXIST;
		goto out_unlock;
	}
	t = topic_alloc(b, name);
	if (!t) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	rc = mkdir(t->dir, 0755) < 0 ? -errno : 0;
	if (rc == 0)
		rc = topic_save_config(t, &t->cfg);
	if (rc == 0)
		rc = topic_start(b, t);
	if (rc < 0) {
		msg(LOG_ERR, "topic %s: cannot create: %s", name,
		       strerror(-rc));
		atomic_store(&t->deleted, true);
		topic_put(t);
	}
out_unlock:
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

int broker_topic_delete(struct broker *b, const char *name)
{
	struct topic *t;
	char *trash, *gone = NULL;
	int rc = 0;

	pthread_rwlock_wrlock(&b->lock);
	t = broker_find(b, name);
	if (!t) {
		rc = -ENOENT;
		goto out_unlock;
	}
	/* Move the files aside so that the name can be reused at once. */
	trash = path_join(b->datadir, TRASH_DIR);
	if (trash && asprintf(&gone, "%s/%" PRIu64 "-%s", trash, t->id,
			      name) < 0)
		gone = NULL;
	free(trash);
	if (!gone || rename(t->dir, gone) < 0) {
		rc = gone ? -errno : -ENOMEM;
		free(gone);
		goto out_unlock;
	}
	free(t->dir);
	t->dir = gone;
	atomic_store(&t->deleted, true);
	b->topics[t->id - 1] = NULL;
	msg(LOG_INFO, "topic %s deleted", name);
	topic_put(t);
out_unlock:
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

struct topic *broker_topic_get(struct broker *b, const char *name)
{
	struct topic *t;

	pthread_rwlock_rdlock(&b->lock);
	t = broker_find(b, name);
	if (t)
		topic_get(t);
	pthread_rwlock_unlock(&b->lock);
	return t;
}

struct topic *broker_topic_by_id(struct broker *b, uint64_t id)
{
	struct topic *t = NULL;

	pthread_rwlock_rdlock(&b->lock);
	if (id >= 1 && id <= b->ntopics && b->topics[id - 1]) {
		t = b->topics[id - 1];
		topic_get(t);
	}
	pthread_rwlock_unlock(&b->lock);
	return t;
}

unsigned broker_topics_list(struct broker *b, uint64_t after,
			    struct topic **out, unsigned max)
{
	unsigned n = 0;

	pthread_rwlock_rdlock(&b->lock);
	for (uint64_t i = after; i < b->ntopics && n < max; i++) {
		if (b->topics[i]) {
			topic_get(b->topics[i]);
			out[n++] = b->topics[i];
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return n;
}

/* ---- the broker --------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	return mkdir(dir, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

int broker_open(const struct broker_opts *o, struct broker **out)
{
	struct broker *b = calloc(1, sizeof(*b));
	char *topics = NULL, *trash = NULL, *lockf = NULL;
	struct dirent *de;
	DIR *d;
	int rc;

	if (!b)
		return -ENOMEM;
	b->lock_fd = -1;
	b->num_partitions = o->num_partitions;
	pthread_rwlock_init(&b->lock, NULL);
	b->datadir = realpath(o->datadir, NULL);
	if (!b->datadir && errno == ENOENT && mkdir_p(o->datadir) == 0)
		b->datadir = realpath(o->datadir, NULL);
	if (!b->datadir) {
		rc = -errno;
		goto out_free;
	}
	topics = path_join(b->datadir, TOPICS_DIR);
	trash = path_join(b->datadir, TRASH_DIR);
	lockf = path_join(b->datadir, ".lock");
	if (!topics || !trash || !lockf) {
		rc = -ENOMEM;
		goto out_free;
	}
	b->lock_fd = open(lockf, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (b->lock_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if (flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out_free;
	}
	rc = mkdir_p(topics);
	if (rc == 0)
		rc = mkdir_p(trash);
	if (rc < 0)
		goto out_free;
	io_remove_tree(trash);
	rc = mkdir_p(trash);
	if (rc < 0)
		goto out_free;
	d = opendir(topics);
	if (!d) {
		rc = -errno;
		goto out_free;
	}
	while ((de = readdir(d))) {
		if (!topic_name_valid(de->d_name))
			continue;
		/* A topic that cannot be loaded is reported and skipped. */
		broker_load_topic(b, de->d_name);
	}
	closedir(d);
	free(topics);
	free(trash);
	free(lockf);
	*out = b;
	return 0;

out_free:
	free(topics);
	free(trash);
	free(lockf);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	free(b->datadir);
	pthread_rwlock_destroy(&b->lock);
	free(b);
	return rc;
}

const char *broker_datadir(const struct broker *b)
{
	return b->datadir;
}

int broker_close(struct broker *b)
{
	for (uint64_t i = 0; i < b->ntopics; i++) {
		if (b->topics[i])
			topic_put(b->topics[i]);
	}
	free(b->topics);
	close(b->lock_fd);
	free(b->datadir);
	pthread_rwlock_destroy(&b->lock);
	free(b);
	return 0;
}

/* Run fn on every partition of every topic. */
static void broker_each_part(struct broker *b,
			     void (*fn)(struct part *, int64_t), int64_t arg)
{
	struct topic *ts[64];
	uint64_t after = 0;
	unsigned n;

	while ((n = broker_topics_list(b, after, ts, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			uint32_t np = topic_partitions(ts[i]);
			for (uint32_t k = 0; k < np; k++)
				fn(ts[i]->parts[k], arg);
			after = ts[i]->id;
			topic_put(ts[i]);
		}
	}
}

static void part_tick(struct part *p, int64_t now)
{
	struct topic_config cfg;
	bool due;

	topic_config(p->topic, &cfg);
	if (log_retention(p->log, now) < 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": retention failed", p->topic->name, p->index);
	pthread_mutex_lock(&p->q_lock);
	due = p->unflushed > 0 && now - p->last_flush_ms >= cfg.flush_ms;
	pthread_mutex_unlock(&p->q_lock);
	if (due)
		part_sync(p);
}

void broker_tick(struct broker *b, int64_t now)
{
	struct topic *ts[64];
	uint64_t after = 0;
	unsigned n;

	broker_each_part(b, part_tick, now);
	while ((n = broker_topics_list(b, after, ts, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			groups_tick(ts[i]->groups, now);
			after = ts[i]->id;
			topic_put(ts[i]);
		}
	}
}

static void part_scrub(struct part *p, int64_t unused)
{
	(void)unused;
	int bad = log_scrub(p->log);
	if (bad > 0)
		msg(LOG_ERR, "topic %s partition %" PRIu32
		       ": %d corrupt batch(es); reads of them fail with EIO",
		       p->topic->name, p->index, bad);
}

void broker_scrub(struct broker *b)
{
	broker_each_part(b, part_scrub, 0);
}
