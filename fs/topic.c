#include "topic.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "group.h"
#include "grow.h"
#include "io.h"
#include "msg.h"
#include "commit.h"

/* A group commit appends at most this many payload bytes (one request
 * alone may be larger). */
#define GROUP_BYTES_MAX (8u << 20)
#define TOPICS_DIR "topics"
#define TRASH_DIR "trash"
#define CONFIG_FILE "config"
#define IDENTITY_FILE "identity"
#define NEXT_ID_FILE "next-topic-id"

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
	struct repl_commit commit; /* the high watermark's owner */
	int64_t last_flush_ms;
};

struct topic {
	atomic_int refs;
	atomic_bool deleted;
	uint64_t id;                    /* stored; its inode numbers' base */
	char uuid[TOPIC_UUID_LEN + 1];  /* Kafka's TopicId */
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
	int dir_fd, topics_fd, trash_fd;
	int lock_fd;
	uint32_t num_partitions;
	pthread_rwlock_t lock;          /* protects the fields below */
	struct topic **topics;          /* loaded topics, in id order */
	size_t ntopics, cap;
	uint64_t next_id;               /* the next topic id to give */
	struct topic_failure *failed;   /* stored topics that did not load */
	unsigned nfailed;
	size_t failed_cap;
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

/*
 * Open partition index of t with the log settings lc. *created says
 * whether this call made its directory (so that undoing the open may
 * remove it, and nothing else), also when the open fails.
 */
static int part_open(struct topic *t, uint32_t index,
		     const struct log_config *lc, struct part **out,
		     bool *created)
{
	struct part *p = calloc(1, sizeof(*p));
	struct log_bounds lb;
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
	*created = access(dir, F_OK) < 0 && errno == ENOENT;
	rc = log_open(dir, lc, &p->log);
	free(dir);
	if (rc < 0) {
		free(p);
		return rc;
	}
	/* One replica: everything stored is committed. */
	log_get_bounds(p->log, &lb);
	repl_commit_init(&p->commit, 1, lb.leo, lb.leo);
	log_set_hw(p->log, p->commit.hw);
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
 * Tell the commit point where the log ends and what is on disk, and
 * publish the high watermark it answers (repl/ owns the value).
 */
static void part_replica_moved(struct part *p)
{
	struct log_state st;
	uint64_t hw;

	log_get_state(p->log, &st);
	/* Under the lock, so that two callers cannot publish out of order. */
	pthread_mutex_lock(&p->q_lock);
	hw = repl_commit_replica(&p->commit, 0, st.leo, st.recovery_point);
	log_set_hw(p->log, hw);
	pthread_mutex_unlock(&p->q_lock);
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
		part_replica_moved(p);
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
	else
		part_replica_moved(p);
	return rc;
}

/* ---- topics ------------------------------------------------------------- */

/* Tests only: called with the name of each step of a topic's creation and
 * deletion, so that a test can stop the process there (kill -9). */
static void (*step_hook)(const char *step);

void broker_set_step_hook(void (*hook)(const char *step))
{
	step_hook = hook;
}

static void step(const char *name)
{
	if (step_hook)
		step_hook(name);
}

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

/*
 * The last reference went. A deleted topic's directory (by then in the
 * trash, moved there by rmdir or by the creation that failed, and so the
 * creating call's own) is removed with it.
 */
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
	return t->uuid;
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

/* Remove partition i's directory if created says this call made it. */
static void topic_unmake_part(struct topic *t, uint32_t i, bool created)
{
	char name[16], *dir;

	snprintf(name, sizeof(name), "%" PRIu32, i);
	dir = created ? path_join(t->dir, name) : NULL;
	if (dir)
		io_remove_tree(dir);
	free(dir);
}

/*
 * Close the partitions [from, to) that topic_open_parts opened but did not
 * publish, removing the directories it made for them.
 */
static void topic_unopen_parts(struct topic *t, uint32_t from, uint32_t to,
			       const bool *created)
{
	for (uint32_t i = from; i < to; i++) {
		part_close(t->parts[i], true);
		t->parts[i] = NULL;
		topic_unmake_part(t, i, created[i - from]);
	}
}

/*
 * Open the partitions from the published count up to c->partitions into
 * t->parts, without publishing them (nparts stays): the caller publishes
 * once the settings that name them are stored. created[i - published]
 * says whether partition i's directory was made here. All or nothing: if
 * one fails, those opened are closed again and their new directories
 * removed, and *failed says which partition failed. Topic lock held.
 */
static int topic_open_parts(struct topic *t, const struct topic_config *c,
			    bool *created, uint32_t *failed)
{
	uint32_t from = atomic_load(&t->nparts), i;
	int rc = 0;

	for (i = from; i < c->partitions; i++) {
		rc = part_open(t, i, &c->log, &t->parts[i], &created[i - from]);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		*failed = i;
		/* Closing the others first gives back the descriptors that
		 * removing a directory needs (EMFILE). */
		topic_unopen_parts(t, from, i, created);
		topic_unmake_part(t, i, created[i - from]);
	}
	return rc;
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

/* Apply t->cfg to the topic's partitions; topic lock held. */
static void topic_apply(struct topic *t)
{
	uint32_t n = atomic_load(&t->nparts);

	for (uint32_t i = 0; i < n; i++)
		log_set_config(t->parts[i]->log, &t->cfg.log);
}

/*
 * Change one setting: new partitions are opened first, then the settings
 * are stored, then both are published; a failure at any step leaves the
 * stored settings and the live topic as they were (new partitions closed,
 * their directories removed), so the two always agree.
 */
static int topic_config_change(struct topic *t, const char *name,
			       const char *value, size_t len, bool reset)
{
	bool created[TOPIC_PARTITIONS_MAX];
	struct topic_config c;
	uint32_t failed;
	int rc;

	pthread_mutex_lock(&t->lock);
	c = t->cfg;
	rc = reset ? config_reset(&c, name) : config_set(&c, name, value, len);
	if (rc == 0)
		rc = topic_open_parts(t, &c, created, &failed);
	if (rc < 0)
		goto out_unlock;
	rc = topic_save_config(t, &c);
	if (rc < 0) {
		topic_unopen_parts(t, atomic_load(&t->nparts), c.partitions,
				   created);
		goto out_unlock;
	}
	t->cfg = c;
	atomic_store(&t->nparts, c.partitions);
	topic_apply(t);
out_unlock:
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

/* A topic in memory only, with cfg, named name, its files in dir. */
static struct topic *topic_alloc(struct broker *b, const char *name,
				 const char *dir, const struct topic_config *cfg)
{
	struct topic *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->dir = strdup(dir);
	if (!t->dir) {
		free(t);
		return NULL;
	}
	atomic_init(&t->refs, 1);
	memcpy(t->name, name, strnlen(name, TOPIC_NAME_MAX));
	t->broker = b;
	t->cfg = *cfg;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

/* ---- topic identity ----------------------------------------------------- */

/*
 * A new TopicId as Kafka makes one (Uuid.randomUuid): 16 random bytes,
 * printed in URL-safe base64 without padding, never starting with '-'.
 */
static int topic_new_uuid(char out[TOPIC_UUID_LEN + 1])
{
	unsigned char raw[16], b64[25];

	do {
		if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
			return -errno;
		EVP_EncodeBlock(b64, raw, sizeof(raw)); /* 22 chars and "==" */
		for (int i = 0; i < TOPIC_UUID_LEN; i++)
			out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' :
				 (char)b64[i];
		out[TOPIC_UUID_LEN] = '\0';
	} while (out[0] == '-');
	return 0;
}

/* Store the topic's id and TopicId in its directory (docs/FORMAT.md). */
static int topic_save_identity(int dfd, const struct topic *t)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "# topicfs topic identity\n"
			 "id=%" PRIu64 "\nuuid=%s\n", t->id, t->uuid);

	return io_replace_file(dfd, IDENTITY_FILE, text, (size_t)n);
}

static bool uuid_valid(const char *s)
{
	if (strlen(s) != TOPIC_UUID_LEN)
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	}
	return true;
}

/* Read a topic's identity: -ENOENT if it has none (stored by an older
 * topicfs), -EINVAL if the file is not one. */
static int topic_load_identity(int dfd, struct topic *t)
{
	char *text = NULL, uuid[64];
	uint64_t id;
	ssize_t n;
	int rc = -EINVAL;

	n = io_read_file(dfd, IDENTITY_FILE, 4096, &text);
	if (n < 0)
		return (int)n;
	if (sscanf(text, "# topicfs topic identity\nid=%" SCNu64 "\nuuid=%63s",
		   &id, uuid) == 2 && id >= 1 && id <= TOPIC_ID_MAX &&
	    uuid_valid(uuid)) {
		t->id = id;
		memcpy(t->uuid, uuid, TOPIC_UUID_LEN + 1);
		rc = 0;
	}
	free(text);
	return rc;
}

/*
 * Give t the next topic id and a new TopicId. The id is used up first
 * (DATADIR/next-topic-id stored durably), so that no crash can give it to
 * two topics.
 */
static int broker_take_id(struct broker *b, struct topic *t)
{
	char text[32];
	int n, rc;

	if (b->next_id > TOPIC_ID_MAX)
		return -ENOSPC;
	n = snprintf(text, sizeof(text), "%" PRIu64 "\n", b->next_id + 1);
	rc = io_replace_file(b->dir_fd, NEXT_ID_FILE, text, (size_t)n);
	if (rc == 0)
		rc = topic_new_uuid(t->uuid);
	if (rc == 0)
		t->id = b->next_id++;
	return rc;
}

static int broker_load_next_id(struct broker *b)
{
	char *text = NULL, *end;
	ssize_t n = io_read_file(b->dir_fd, NEXT_ID_FILE, 64, &text);

	b->next_id = 1;
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	errno = 0;
	b->next_id = strtoull(text, &end, 10);
	n = errno || end == text || (*end && *end != '\n') || b->next_id < 1;
	free(text);
	return n ? -EINVAL : 0;
}

/* ---- the table of topics ------------------------------------------------ */

/* Index of the first topic with an id above `after`; broker lock held. */
static size_t broker_index_after(struct broker *b, uint64_t after)
{
	size_t lo = 0, hi = b->ntopics;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->topics[mid]->id <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Enter t in the table, in id order; broker write lock held. -EEXIST if
 * its id is taken (a topic directory copied by hand). */
static int broker_add(struct broker *b, struct topic *t)
{
	size_t at = broker_index_after(b, t->id - 1);

	if (at < b->ntopics && b->topics[at]->id == t->id)
		return -EEXIST;
	if (grow(&b->topics, &b->cap, b->ntopics + 1, sizeof(*b->topics)) < 0)
		return -ENOMEM;
	memmove(b->topics + at + 1, b->topics + at,
		(b->ntopics - at) * sizeof(*b->topics));
	b->topics[at] = t;
	b->ntopics++;
	return 0;
}

static void broker_remove(struct broker *b, struct topic *t)
{
	size_t at = broker_index_after(b, t->id - 1);

	memmove(b->topics + at, b->topics + at + 1,
		(b->ntopics - at - 1) * sizeof(*b->topics));
	b->ntopics--;
}

static struct topic *broker_find(struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->ntopics; i++) {
		if (strcmp(b->topics[i]->name, name) == 0)
			return b->topics[i];
	}
	return NULL;
}

static struct topic_failure *broker_find_failure(struct broker *b,
						 const char *name)
{
	for (unsigned i = 0; i < b->nfailed; i++) {
		if (strcmp(b->failed[i].name, name) == 0)
			return &b->failed[i];
	}
	return NULL;
}

/*
 * Remember that the stored topic `name` could not be loaded and say so in
 * one log line. Its files are left as they are.
 */
__attribute__((format(printf, 3, 4)))
static void broker_fail(struct broker *b, const char *name, const char *fmt,
			...)
{
	struct topic_failure f = { 0 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f.reason, sizeof(f.reason), fmt, ap);
	va_end(ap);
	snprintf(f.name, sizeof(f.name), "%s", name);
	msg(LOG_ERR, "topic %s: cannot load: %s; its files are left untouched "
	    "in %s/%s/%s", name, f.reason, b->datadir, TOPICS_DIR, name);
	if (grow(&b->failed, &b->failed_cap, b->nfailed + 1,
		 sizeof(*b->failed)) == 0)
		b->failed[b->nfailed++] = f;
}

unsigned broker_failures(struct broker *b, unsigned from,
			 struct topic_failure *out, unsigned max)
{
	unsigned n = 0;

	pthread_rwlock_rdlock(&b->lock);
	for (unsigned i = from; i < b->nfailed && n < max; i++)
		out[n++] = b->failed[i];
	pthread_rwlock_unlock(&b->lock);
	return n;
}

/* Open a topic's partitions and groups and enter it in the table; broker
 * write lock held (or the broker not yet shared). */
static int topic_start(struct broker *b, struct topic *t, uint32_t *failed)
{
	bool created[TOPIC_PARTITIONS_MAX];
	int rc;

	*failed = UINT32_MAX;
	pthread_mutex_lock(&t->lock);
	rc = topic_open_parts(t, &t->cfg, created, failed);
	if (rc == 0)
		atomic_store(&t->nparts, t->cfg.partitions);
	pthread_mutex_unlock(&t->lock);
	if (rc == 0)
		rc = groups_open(t, t->dir, &t->groups);
	if (rc == 0)
		rc = broker_add(b, t);
	return rc;
}

/* ---- loading, creating and deleting topics ------------------------------ */

/*
 * Read the stored topic `name` (its identity and settings, not its
 * partitions) at mount. NULL if it cannot be read: then it is recorded as
 * failed and nothing on disk is touched.
 */
static struct topic *broker_read_topic(struct broker *b, const char *name)
{
	struct topic_config cfg;
	char *dir, *text = NULL, why[160];
	struct topic *t;
	ssize_t n;
	int dfd, rc;

	if (asprintf(&dir, "%s/%s/%s", b->datadir, TOPICS_DIR, name) < 0)
		return NULL;
	config_default(&cfg, 1);
	t = topic_alloc(b, name, dir, &cfg);
	free(dir);
	if (!t)
		return NULL;
	dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		broker_fail(b, name, "its directory cannot be opened: %s",
			    strerror(errno));
		goto out_free;
	}
	rc = topic_load_identity(dfd, t);
	if (rc < 0 && rc != -ENOENT) {
		broker_fail(b, name, "its identity file (%s) is %s",
			    IDENTITY_FILE, rc == -EINVAL ? "corrupt" :
			    strerror(-rc));
		goto out_close;
	}
	n = io_read_file(dfd, CONFIG_FILE, 1 << 20, &text);
	if (n < 0) {
		broker_fail(b, name, "its settings file (%s) %s", CONFIG_FILE,
			    n == -ENOENT ? "is missing" : strerror((int)-n));
		goto out_close;
	}
	rc = config_parse(&t->cfg, text, why, sizeof(why));
	free(text);
	if (rc < 0) {
		broker_fail(b, name, "its settings file (%s): %s", CONFIG_FILE,
			    why);
		goto out_close;
	}
	close(dfd);
	return t;

out_close:
	close(dfd);
out_free:
	topic_put(t);
	return NULL;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Load every stored topic at mount. Topics stored without an identity (by
 * an older topicfs) get the next ids, in name order, and keep them from
 * then on. A topic that cannot be loaded is recorded as failed (.status)
 * and left untouched.
 */
static int broker_load_topics(struct broker *b)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct topic **ts;
	uint64_t max_id = 0;
	struct dirent *de;
	int rc = 0;
	DIR *d;

	d = fdopendir(dup(b->topics_fd));
	if (!d)
		return -errno;
	rewinddir(d);
	while (rc == 0 && (de = readdir(d))) {
		if (!topic_name_valid(de->d_name))
			continue;
		rc = grow(&names, &cap, n + 1, sizeof(*names));
		if (rc == 0 && !(names[n++] = strdup(de->d_name)))
			rc = -ENOMEM;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), compare_names);
	ts = calloc(n ? n : 1, sizeof(*ts));
	if (rc == 0 && !ts)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		ts[i] = broker_read_topic(b, names[i]);
		if (ts[i] && ts[i]->id > max_id)
			max_id = ts[i]->id;
	}
	if (rc == 0 && b->next_id <= max_id)
		b->next_id = max_id + 1;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct topic *t = ts[i];
		uint32_t failed;
		int dfd, err = 0;

		if (!t)
			continue;
		if (t->id == 0) { /* stored before topics had ids */
			dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			err = dfd < 0 ? -errno : broker_take_id(b, t);
			if (err == 0)
				err = topic_save_identity(dfd, t);
			if (dfd >= 0)
				close(dfd);
			if (err < 0)
				broker_fail(b, t->name, "no topic id could be "
					    "given to it: %s", strerror(-err));
		}
		if (err == 0) {
			err = topic_start(b, t, &failed);
			if (err == -EEXIST && failed == UINT32_MAX)
				broker_fail(b, t->name, "its topic id %" PRIu64
					    " is another topic's (a copied "
					    "directory?)", t->id);
			else if (err < 0 && failed != UINT32_MAX)
				broker_fail(b, t->name, "partition %" PRIu32
					    " cannot be opened: %s", failed,
					    strerror(-err));
			else if (err < 0)
				broker_fail(b, t->name, "%s", strerror(-err));
		}
		if (err < 0)
			topic_put(t); /* closes what it opened; deletes nothing */
		ts[i] = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ts && ts[i])
			topic_put(ts[i]);
		free(names[i]);
	}
	free(ts);
	free(names);
	return rc;
}

/*
 * Why `name` cannot be created although no loaded topic has it: a stored
 * topic that failed to load, or anything else in its place on disk. Logs
 * one line and returns -EEXIST, or returns 0. Broker lock held.
 */
static int broker_name_taken(struct broker *b, const char *name)
{
	struct topic_failure *f = broker_find_failure(b, name);
	struct stat st;

	if (f) {
		msg(LOG_NOTICE, "mkdir %s refused: a stored topic of that name "
		    "could not be loaded (%s); see .status", name, f->reason);
		return -EEXIST;
	}
	if (fstatat(b->topics_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		msg(LOG_NOTICE, "mkdir %s refused: %s/%s/%s exists but is not "
		    "a loaded topic", name, b->datadir, TOPICS_DIR, name);
		return -EEXIST;
	}
	return 0;
}

/*
 * Create a topic. Its files are made in the trash under a name of their
 * own (its id), complete and synced, then renamed into topics/ in one
 * step: after a crash at any point the next mount sees the whole topic or
 * none of it (a half-made one is in the trash, which the mount empties).
 * Nothing that this call did not make is ever removed.
 */
int broker_topic_create(struct broker *b, const char *name)
{
	struct topic_config cfg;
	struct topic *t = NULL;
	char *staged = NULL, *final = NULL;
	uint32_t failed;
	int rc, dfd;

	if (!topic_name_valid(name))
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	rc = broker_find(b, name) ? -EEXIST : broker_name_taken(b, name);
	if (rc < 0)
		goto out_unlock;
	config_default(&cfg, b->num_partitions);
	rc = -ENOMEM;
	if (asprintf(&final, "%s/%s/%s", b->datadir, TOPICS_DIR, name) < 0) {
		final = NULL;
		goto out_unlock;
	}
	t = topic_alloc(b, name, final, &cfg);
	if (!t)
		goto out_unlock;
	rc = broker_take_id(b, t);
	step("id taken");
	if (rc == 0 && asprintf(&staged, "%s/%s/%" PRIu64 "-%s", b->datadir,
				TRASH_DIR, t->id, name) < 0) {
		staged = NULL;
		rc = -ENOMEM;
	}
	if (rc < 0)
		goto out_put;
	if (mkdir(staged, 0755) < 0) {
		rc = -errno;
		goto out_put;
	}
	free(t->dir);
	t->dir = staged; /* from here on, a failure removes it */
	staged = NULL;
	atomic_store(&t->deleted, true);
	step("staged");
	dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = dfd < 0 ? -errno : topic_save_identity(dfd, t);
	step("identity stored");
	if (rc == 0)
		rc = topic_save_config(t, &t->cfg);
	step("settings stored");
	if (rc == 0)
		rc = io_fsync_dir(dfd);
	if (dfd >= 0)
		close(dfd);
	if (rc == 0 && renameat2(AT_FDCWD, t->dir, b->topics_fd, name,
				 RENAME_NOREPLACE) < 0)
		rc = -errno;
	if (rc < 0)
		goto out_put;
	step("published");
	staged = t->dir;
	t->dir = final;
	final = NULL;
	rc = io_fsync_dir(b->topics_fd);
	if (rc == 0)
		rc = io_fsync_dir(b->trash_fd);
	if (rc == 0)
		rc = topic_start(b, t, &failed);
	if (rc < 0) {
		/* Undo the publication: back into the trash it came from. */
		if (renameat2(b->topics_fd, name, AT_FDCWD, staged,
			      RENAME_NOREPLACE) == 0) {
			final = t->dir;
			t->dir = staged;
			staged = NULL;
		} else {
			atomic_store(&t->deleted, false);
		}
		goto out_put;
	}
	atomic_store(&t->deleted, false);
	t = NULL;
out_put:
	if (t) {
		msg(LOG_ERR, "topic %s: cannot create: %s", name, strerror(-rc));
		topic_put(t);
	}
out_unlock:
	pthread_rwlock_unlock(&b->lock);
	free(staged);
	free(final);
	return rc;
}

/*
 * Delete a topic: its directory is renamed into the trash in one step
 * (synced), and removed there when its last user lets go.
 */
int broker_topic_delete(struct broker *b, const char *name)
{
	struct topic *t;
	char *gone = NULL;
	int rc = 0;

	pthread_rwlock_wrlock(&b->lock);
	t = broker_find(b, name);
	if (!t) {
		rc = -ENOENT;
		goto out_unlock;
	}
	if (asprintf(&gone, "%s/%s/%" PRIu64 "-%s", b->datadir, TRASH_DIR,
		     t->id, name) < 0) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	if (renameat2(b->topics_fd, name, AT_FDCWD, gone,
		      RENAME_NOREPLACE) < 0) {
		rc = -errno;
		free(gone);
		goto out_unlock;
	}
	step("moved to the trash");
	if (io_fsync_dir(b->topics_fd) < 0 || io_fsync_dir(b->trash_fd) < 0)
		msg(LOG_WARNING, "topic %s: the deletion may not survive a "
		    "crash: syncing the data directory failed", name);
	free(t->dir);
	t->dir = gone;
	atomic_store(&t->deleted, true);
	broker_remove(b, t);
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
	size_t at;

	pthread_rwlock_rdlock(&b->lock);
	at = id > 0 ? broker_index_after(b, id - 1) : b->ntopics;
	if (at < b->ntopics && b->topics[at]->id == id) {
		t = b->topics[at];
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
	for (size_t i = broker_index_after(b, after); i < b->ntopics &&
	     n < max; i++) {
		topic_get(b->topics[i]);
		out[n++] = b->topics[i];
	}
	pthread_rwlock_unlock(&b->lock);
	return n;
}

/* ---- the broker --------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	return mkdir(dir, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Open (making it if missing) the directory name of DATADIR. */
static int broker_open_dir(struct broker *b, const char *name)
{
	int fd;

	if (mkdirat(b->dir_fd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(b->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Remove everything in DATADIR/trash (the mount's start). */
static int broker_empty_trash(struct broker *b)
{
	struct dirent *de;
	DIR *d = fdopendir(dup(b->trash_fd));

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *path;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&path, "%s/%s/%s", b->datadir, TRASH_DIR,
			     de->d_name) < 0)
			break;
		io_remove_tree(path);
		free(path);
	}
	closedir(d);
	return 0;
}

int broker_open(const struct broker_opts *o, struct broker **out)
{
	struct broker *b = calloc(1, sizeof(*b));
	int rc;

	if (!b)
		return -ENOMEM;
	b->lock_fd = b->dir_fd = b->topics_fd = b->trash_fd = -1;
	b->num_partitions = o->num_partitions;
	pthread_rwlock_init(&b->lock, NULL);
	b->datadir = realpath(o->datadir, NULL);
	if (!b->datadir && errno == ENOENT && mkdir_p(o->datadir) == 0)
		b->datadir = realpath(o->datadir, NULL);
	if (!b->datadir) {
		rc = -errno;
		goto out_free;
	}
	b->dir_fd = open(b->datadir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->dir_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	b->lock_fd = openat(b->dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC,
			    0644);
	if (b->lock_fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if (flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out_free;
	}
	rc = broker_open_dir(b, TRASH_DIR);
	if (rc < 0)
		goto out_free;
	b->trash_fd = rc;
	/* The trash holds only what topicfs put there: deleted topics and
	 * topics whose creation did not finish. */
	rc = broker_empty_trash(b);
	if (rc < 0)
		goto out_free;
	rc = broker_open_dir(b, TOPICS_DIR);
	if (rc < 0)
		goto out_free;
	b->topics_fd = rc;
	rc = broker_load_next_id(b);
	if (rc < 0) {
		msg(LOG_ERR, "%s/%s: %s", b->datadir, NEXT_ID_FILE,
		    rc == -EINVAL ? "not a topic id" : strerror(-rc));
		goto out_free;
	}
	rc = broker_load_topics(b);
	if (rc < 0)
		goto out_close;
	*out = b;
	return 0;

out_close:
	broker_close(b);
	return rc;
out_free:
	if (b->trash_fd >= 0)
		close(b->trash_fd);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	if (b->dir_fd >= 0)
		close(b->dir_fd);
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
	for (size_t i = 0; i < b->ntopics; i++)
		topic_put(b->topics[i]);
	free(b->topics);
	free(b->failed);
	close(b->topics_fd);
	close(b->trash_fd);
	close(b->lock_fd);
	close(b->dir_fd);
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
