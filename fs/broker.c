#include "broker.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "group.h"
#include "grow.h"
#include "io.h"
#include "msg.h"
#include "syncer.h"
#include "part.h"

#define TOPICS_DIR "topics"
#define TRASH_DIR "trash"
#define IDENTITY_FILE "identity"
#define NEXT_ID_FILE "next-topic-id"
/* Threads that run the periodic flushes (flush.ms) of the ticks: so many
 * slow partitions can be flushing at once without delaying the others. */
#define FLUSH_WORKERS 4
/* Every partition's checkpoint (log start, recovery point, high
 * watermark) is written this often, on the monotonic clock: Kafka's
 * replica.high.watermark.checkpoint.interval.ms. */
#define CHECKPOINT_INTERVAL_MS 5000

/* A partition whose periodic flush is due, with a reference to its topic;
 * or (t and p NULL) the checkpoint of every partition. */
struct flush_job {
	struct topic *t;
	struct part *p;
	struct flush_job *next;
};

struct broker {
	char *datadir;
	int dir_fd, topics_fd, trash_fd;
	int lock_fd;
	uint32_t num_partitions;
	unsigned fd_budget;             /* partitions' descriptors, 0: any */
	pthread_mutex_t id_lock;        /* next_id and its file */
	uint64_t next_id;               /* the next topic id to give */
	pthread_rwlock_t lock;          /* protects the fields below */
	struct topic **topics;          /* loaded topics, in id order */
	size_t ntopics, cap;
	/* Names of topics being created or deleted: reserved while their
	 * disk work runs outside the lock. */
	char (*busy)[TOPIC_NAME_MAX + 1];
	size_t nbusy, busy_cap;
	struct topic_failure *failed;   /* stored topics that did not load */
	unsigned nfailed;
	size_t failed_cap;
	/* The flush workers and their queue (taken with no other lock). */
	pthread_mutex_t flush_lock;
	pthread_cond_t flush_cond;
	struct flush_job *flush_head, **flush_tail;
	bool flush_stop, flushers_tried;
	pthread_t flushers[FLUSH_WORKERS];
	unsigned nflushers;
	/* The periodic checkpoints (flush lock): when the last was queued
	 * (monotonic), and whether it is still queued or running. */
	int64_t checkpoint_ms;
	bool checkpoint_queued;
	/* The scrub's counters (.metrics). */
	_Atomic uint64_t scrub_bytes, scrub_passes;
};

/* Tests only: called by a flush worker before each flush. */
static void (*flush_hook)(struct part *p);

void broker_set_flush_hook(void (*hook)(struct part *p))
{
	flush_hook = hook;
}

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
			 "id=%" PRIu64 "\nuuid=%s\n", topic_id(t),
			 topic_uuid(t));

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

/* Read a topic's identity into *id and uuid: -ENOENT if it has none
 * (stored by an older topicfs), -EINVAL if the file is not one. */
static int load_identity(int dfd, uint64_t *id, char uuid[TOPIC_UUID_LEN + 1])
{
	char *text = NULL, u[64];
	ssize_t n;
	int rc = -EINVAL;

	n = io_read_file(dfd, IDENTITY_FILE, 4096, &text);
	if (n < 0)
		return (int)n;
	if (sscanf(text, "# topicfs topic identity\nid=%" SCNu64 "\nuuid=%63s",
		   id, u) == 2 && *id >= 1 && *id <= TOPIC_ID_MAX &&
	    uuid_valid(u)) {
		memcpy(uuid, u, TOPIC_UUID_LEN + 1);
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
	char text[32], uuid[TOPIC_UUID_LEN + 1];
	int n, rc = -ENOSPC;

	pthread_mutex_lock(&b->id_lock);
	if (b->next_id > TOPIC_ID_MAX)
		goto out_unlock;
	n = snprintf(text, sizeof(text), "%" PRIu64 "\n", b->next_id + 1);
	rc = io_replace_file(b->dir_fd, NEXT_ID_FILE, text, (size_t)n);
	if (rc == 0)
		rc = topic_new_uuid(uuid);
	if (rc == 0)
		topic_set_identity(t, b->next_id++, uuid);
out_unlock:
	pthread_mutex_unlock(&b->id_lock);
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
		if (topic_id(b->topics[mid]) <= after)
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
	size_t at = broker_index_after(b, topic_id(t) - 1);

	if (at < b->ntopics && topic_id(b->topics[at]) == topic_id(t))
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
	size_t at = broker_index_after(b, topic_id(t) - 1);

	memmove(b->topics + at, b->topics + at + 1,
		(b->ntopics - at - 1) * sizeof(*b->topics));
	b->ntopics--;
}

static struct topic *broker_find(struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->ntopics; i++) {
		if (strcmp(topic_name(b->topics[i]), name) == 0)
			return b->topics[i];
	}
	return NULL;
}

/* Whether name is reserved by a creation or deletion; broker lock held. */
static bool broker_busy(struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->nbusy; i++) {
		if (strcmp(b->busy[i], name) == 0)
			return true;
	}
	return false;
}

/* Reserve name (not busy); broker write lock held. */
static int broker_reserve(struct broker *b, const char *name)
{
	if (grow(&b->busy, &b->busy_cap, b->nbusy + 1, sizeof(*b->busy)) < 0)
		return -ENOMEM;
	snprintf(b->busy[b->nbusy++], sizeof(*b->busy), "%s", name);
	return 0;
}

/* Give back a name that broker_reserve took, if it is still reserved;
 * broker write lock held. */
static void broker_unreserve(struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->nbusy; i++) {
		if (strcmp(b->busy[i], name) == 0) {
			memcpy(b->busy[i], b->busy[--b->nbusy],
			       sizeof(*b->busy));
			break;
		}
	}
}

/* The same, taking the write lock. */
static void broker_release(struct broker *b, const char *name)
{
	pthread_rwlock_wrlock(&b->lock);
	broker_unreserve(b, name);
	pthread_rwlock_unlock(&b->lock);
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

/* Open a topic's partitions and groups (disk work: no broker lock). */
static int broker_open_topic(struct topic *t, uint32_t *failed)
{
	struct groups *gs;
	int rc = topic_start(t, failed);

	if (rc == 0)
		rc = groups_open(t, topic_dir(t), &gs);
	if (rc == 0)
		topic_set_groups(t, gs, groups_close);
	return rc;
}

/* Open a topic and enter it in the table; at mount, the broker not yet
 * shared. */
static int broker_start(struct broker *b, struct topic *t, uint32_t *failed)
{
	int rc = broker_open_topic(t, failed);

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
	char *dir, *text = NULL, why[160], uuid[TOPIC_UUID_LEN + 1] = "";
	struct topic_config cfg;
	struct topic *t = NULL;
	uint64_t id = 0;
	ssize_t n;
	int dfd, rc;

	if (asprintf(&dir, "%s/%s/%s", b->datadir, TOPICS_DIR, name) < 0)
		return NULL;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		broker_fail(b, name, "its directory cannot be opened: %s",
			    strerror(errno));
		goto out_free;
	}
	rc = load_identity(dfd, &id, uuid);
	if (rc < 0 && rc != -ENOENT) {
		broker_fail(b, name, "its identity file (%s) is %s",
			    IDENTITY_FILE, rc == -EINVAL ? "corrupt" :
			    strerror(-rc));
		goto out_close;
	}
	n = io_read_file(dfd, TOPIC_CONFIG_FILE, 1 << 20, &text);
	if (n < 0) {
		broker_fail(b, name, "its settings file (%s) %s",
			    TOPIC_CONFIG_FILE, n == -ENOENT ? "is missing" :
			    strerror((int)-n));
		goto out_close;
	}
	/* The settings as stored, whatever the mount options say. */
	config_default(&cfg, 1);
	rc = config_parse(&cfg, text, why, sizeof(why));
	free(text);
	if (rc < 0) {
		broker_fail(b, name, "its settings file (%s): %s",
			    TOPIC_CONFIG_FILE, why);
		goto out_close;
	}
	t = topic_new(name, dir, &cfg);
	if (t)
		topic_set_identity(t, id, uuid);
out_close:
	close(dfd);
out_free:
	free(dir);
	return t;
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
	if (n > 0)
		qsort(names, n, sizeof(*names), compare_names);
	ts = calloc(n ? n : 1, sizeof(*ts));
	if (rc == 0 && !ts)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		ts[i] = broker_read_topic(b, names[i]);
		if (ts[i] && topic_id(ts[i]) > max_id)
			max_id = topic_id(ts[i]);
	}
	if (rc == 0 && b->next_id <= max_id)
		b->next_id = max_id + 1;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct topic *t = ts[i];
		uint32_t failed;
		int dfd, err = 0;

		if (!t)
			continue;
		if (topic_id(t) == 0) { /* stored before topics had ids */
			dfd = open(topic_dir(t), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			err = dfd < 0 ? -errno : broker_take_id(b, t);
			if (err == 0)
				err = topic_save_identity(dfd, t);
			if (dfd >= 0)
				close(dfd);
			if (err < 0)
				broker_fail(b, topic_name(t), "no topic id could be "
					    "given to it: %s", strerror(-err));
		}
		if (err == 0) {
			err = broker_start(b, t, &failed);
			if (err == -EEXIST && failed == UINT32_MAX)
				broker_fail(b, topic_name(t), "its topic id %" PRIu64
					    " is another topic's (a copied "
					    "directory?)", topic_id(t));
			else if (err < 0 && failed != UINT32_MAX)
				broker_fail(b, topic_name(t), "partition %" PRIu32
					    " cannot be opened: %s", failed,
					    strerror(-err));
			else if (err < 0)
				broker_fail(b, topic_name(t), "%s", strerror(-err));
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
 *
 * The name is reserved under the broker lock, the disk work is done
 * without it (lookups, reads and writes of other topics go on), and the
 * topic is entered in the table under the lock again.
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
	rc = broker_find(b, name) || broker_busy(b, name) ? -EEXIST :
	     broker_name_taken(b, name);
	if (rc == 0)
		rc = broker_reserve(b, name);
	pthread_rwlock_unlock(&b->lock);
	if (rc < 0)
		return rc;
	config_default(&cfg, b->num_partitions);
	rc = -ENOMEM;
	if (asprintf(&final, "%s/%s/%s", b->datadir, TOPICS_DIR, name) < 0) {
		final = NULL;
		goto out_release;
	}
	t = topic_new(name, final, &cfg);
	if (!t)
		goto out_release;
	rc = broker_take_id(b, t);
	step("id taken");
	if (rc == 0 && asprintf(&staged, "%s/%s/%" PRIu64 "-%s", b->datadir,
				TRASH_DIR, topic_id(t), name) < 0) {
		staged = NULL;
		rc = -ENOMEM;
	}
	if (rc < 0)
		goto out_put;
	if (mkdir(staged, 0755) < 0) {
		rc = -errno;
		goto out_put;
	}
	topic_move(t, staged); /* from here on, a failure removes it */
	staged = NULL;
	topic_set_deleted(t, true);
	step("staged");
	dfd = open(topic_dir(t), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = dfd < 0 ? -errno : topic_save_identity(dfd, t);
	step("identity stored");
	if (rc == 0)
		rc = topic_save_config(t);
	step("settings stored");
	if (rc == 0)
		rc = io_fsync_dir(dfd);
	if (dfd >= 0)
		close(dfd);
	if (rc == 0 && renameat2(AT_FDCWD, topic_dir(t), b->topics_fd, name,
				 RENAME_NOREPLACE) < 0)
		rc = -errno;
	if (rc < 0)
		goto out_put;
	step("published");
	staged = strdup(topic_dir(t));
	topic_move(t, final);
	final = NULL;
	rc = io_fsync_dir(b->topics_fd);
	if (rc == 0)
		rc = io_fsync_dir(b->trash_fd);
	if (rc == 0)
		rc = broker_open_topic(t, &failed);
	if (rc == 0) {
		pthread_rwlock_wrlock(&b->lock);
		rc = broker_add(b, t);
		if (rc == 0)
			broker_unreserve(b, name); /* published */
		pthread_rwlock_unlock(&b->lock);
	}
	if (rc < 0) {
		/* Undo the publication: back into the trash it came from. */
		if (staged && renameat2(b->topics_fd, name, AT_FDCWD, staged,
					RENAME_NOREPLACE) == 0) {
			topic_move(t, staged);
			staged = NULL;
		} else {
			topic_set_deleted(t, false);
		}
		goto out_put;
	}
	topic_set_deleted(t, false);
	t = NULL;
out_put:
	if (t) {
		msg(LOG_ERR, "topic %s: cannot create: %s", name, strerror(-rc));
		topic_put(t); /* removes what it staged, outside the lock */
	}
out_release:
	broker_release(b, name);
	free(staged);
	free(final);
	return rc;
}

/*
 * Delete a topic: its directory is renamed into the trash in one step
 * (synced), and removed there when its last user lets go. The name is
 * reserved under the broker lock, the rename and syncs are done without
 * it, and the topic leaves the table under the lock again. The removal
 * of its files (topic_free) never runs under the lock: the table's
 * reference is dropped after it is released.
 */
int broker_topic_delete(struct broker *b, const char *name)
{
	struct topic *t;
	char *gone = NULL;
	int rc = 0;

	pthread_rwlock_wrlock(&b->lock);
	t = broker_find(b, name);
	rc = !t || broker_busy(b, name) ? -ENOENT : broker_reserve(b, name);
	if (rc == 0)
		topic_get(t);
	pthread_rwlock_unlock(&b->lock);
	if (rc < 0)
		return rc;
	if (asprintf(&gone, "%s/%s/%" PRIu64 "-%s", b->datadir, TRASH_DIR,
		     topic_id(t), name) < 0) {
		rc = -ENOMEM;
		goto out_release;
	}
	if (renameat2(b->topics_fd, name, AT_FDCWD, gone,
		      RENAME_NOREPLACE) < 0) {
		rc = -errno;
		free(gone);
		goto out_release;
	}
	step("moved to the trash");
	if (io_fsync_dir(b->topics_fd) < 0 || io_fsync_dir(b->trash_fd) < 0)
		msg(LOG_WARNING, "topic %s: the deletion may not survive a "
		    "crash: syncing the data directory failed", name);
	topic_move(t, gone);
	topic_set_deleted(t, true);
	pthread_rwlock_wrlock(&b->lock);
	broker_remove(b, t);
	broker_unreserve(b, name);
	pthread_rwlock_unlock(&b->lock);
	msg(LOG_INFO, "topic %s deleted", name);
	topic_put(t); /* the table's */
out_release:
	broker_release(b, name);
	topic_put(t); /* ours: the last reference removes the files */
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
	if (at < b->ntopics && topic_id(b->topics[at]) == id) {
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

/* ---- periodic flushes and checkpoints ------------------------------------ */

static bool broker_each_part(struct broker *b,
			     bool (*fn)(struct part *, void *), void *arg);

static bool checkpoint_one(struct part *p, void *unused)
{
	(void)unused;
	part_checkpoint(p);
	return true;
}

/* Checkpoint every partition (a flush worker's job), and let the next
 * tick that finds it due queue it again. */
static void broker_checkpoint(struct broker *b)
{
	broker_each_part(b, checkpoint_one, NULL);
	pthread_mutex_lock(&b->flush_lock);
	b->checkpoint_queued = false;
	pthread_mutex_unlock(&b->flush_lock);
}

/* A flush worker: run queued flushes until stopped and the queue is empty. */
static void *flush_main(void *arg)
{
	struct broker *b = arg;
	struct flush_job *j;

	pthread_mutex_lock(&b->flush_lock);
	for (;;) {
		while (!b->flush_head && !b->flush_stop)
			pthread_cond_wait(&b->flush_cond, &b->flush_lock);
		j = b->flush_head;
		if (!j)
			break;
		b->flush_head = j->next;
		if (!b->flush_head)
			b->flush_tail = &b->flush_head;
		pthread_mutex_unlock(&b->flush_lock);
		if (!j->p) {
			broker_checkpoint(b);
		} else {
			if (flush_hook)
				flush_hook(j->p);
			part_tick_flush(j->p);
			topic_put(j->t);
		}
		free(j);
		pthread_mutex_lock(&b->flush_lock);
	}
	pthread_mutex_unlock(&b->flush_lock);
	return NULL;
}

/* The flush queue, empty and without workers yet. */
static void broker_init_flushers(struct broker *b)
{
	pthread_mutex_init(&b->flush_lock, NULL);
	pthread_cond_init(&b->flush_cond, NULL);
	b->flush_tail = &b->flush_head;
	b->checkpoint_ms = clock_mono_ms();
}

/*
 * Start the flush workers at the first due flush, not at broker_open: the
 * daemon forks (fuse_daemonize) after opening the broker, and threads do
 * not survive a fork. Without any worker, ticks flush in their own
 * thread. Flush lock held.
 */
static void broker_start_flushers(struct broker *b)
{
	if (b->flushers_tried)
		return;
	b->flushers_tried = true;
	while (b->nflushers < FLUSH_WORKERS &&
	       pthread_create(&b->flushers[b->nflushers], NULL, flush_main,
			      b) == 0)
		b->nflushers++;
	if (b->nflushers < FLUSH_WORKERS)
		msg(LOG_WARNING, "only %u of %d flush threads could start",
		    b->nflushers, FLUSH_WORKERS);
}

/* Finish the queued flushes and stop the workers. */
static void broker_stop_flushers(struct broker *b)
{
	pthread_mutex_lock(&b->flush_lock);
	b->flush_stop = true;
	pthread_cond_broadcast(&b->flush_cond);
	pthread_mutex_unlock(&b->flush_lock);
	for (unsigned i = 0; i < b->nflushers; i++)
		pthread_join(b->flushers[i], NULL);
	pthread_cond_destroy(&b->flush_cond);
	pthread_mutex_destroy(&b->flush_lock);
}

/* Hand p's due flush to a worker (t referenced for it), or run it here if
 * no job can be made. With p NULL: the checkpoint of every partition. */
static void broker_queue_flush(struct broker *b, struct topic *t,
			       struct part *p)
{
	struct flush_job *j = malloc(sizeof(*j));
	bool workers;

	pthread_mutex_lock(&b->flush_lock);
	broker_start_flushers(b);
	workers = b->nflushers > 0;
	pthread_mutex_unlock(&b->flush_lock);
	if (!j || !workers) {
		free(j);
		if (p)
			part_tick_flush(p);
		else
			broker_checkpoint(b);
		return;
	}
	if (t)
		topic_get(t);
	j->t = t;
	j->p = p;
	j->next = NULL;
	pthread_mutex_lock(&b->flush_lock);
	*b->flush_tail = j;
	b->flush_tail = &j->next;
	pthread_cond_signal(&b->flush_cond);
	pthread_mutex_unlock(&b->flush_lock);
}

/* ---- the broker --------------------------------------------------------- */

unsigned broker_fd_budget(void)
{
	struct rlimit rl;
	rlim_t reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > UINT_MAX)
		return 0; /* no limit known: none kept */
	reserve = rl.rlim_cur / 4;
	if (reserve < FDS_RESERVE_MIN)
		reserve = FDS_RESERVE_MIN;
	if (reserve > FDS_RESERVE_MAX)
		reserve = FDS_RESERVE_MAX;
	if (rl.rlim_cur < reserve + PARTITION_FDS_MIN)
		return PARTITION_FDS_MIN;
	return (unsigned)(rl.rlim_cur - reserve);
}

/*
 * Load every topic as one batch of opens (log_batch_begin): their syncs
 * become one syncfs of the data directory's file system at the end,
 * before anything can be served. A failed sync fails the mount.
 */
static int broker_load_all(struct broker *b)
{
	int rc = log_batch_begin(b->dir_fd), end;

	if (rc < 0)
		return rc;
	rc = broker_load_topics(b);
	end = log_batch_end();
	if (rc == 0 && end < 0) {
		msg(LOG_ERR, "%s: making the loaded topics durable failed: %s",
		    b->datadir, strerror(-end));
		rc = end;
	}
	return rc;
}

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
	pthread_mutex_init(&b->id_lock, NULL);
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
	broker_init_flushers(b);
	syncer_hold();
	b->fd_budget = o->max_partition_fds ? o->max_partition_fds :
		       broker_fd_budget();
	log_set_fd_budget(b->fd_budget);
	rc = broker_load_all(b);
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
	pthread_mutex_destroy(&b->id_lock);
	free(b);
	return rc;
}

const char *broker_datadir(const struct broker *b)
{
	return b->datadir;
}

/*
 * Close every partition as one batch (log_batch_begin): their data and
 * checkpoints are synced by one syncfs of the data directory's file
 * system, and only then do they get their clean-shutdown markers (and a
 * second syncfs). The data directory's descriptor was opened at mount,
 * so the sync reports any write-back error since.
 */
int broker_close(struct broker *b)
{
	int batch;

	broker_stop_flushers(b);
	batch = log_batch_begin(b->dir_fd);
	for (size_t i = 0; i < b->ntopics; i++)
		topic_put(b->topics[i]);
	if (batch == 0)
		log_batch_end();
	free(b->topics);
	free(b->busy);
	free(b->failed);
	close(b->topics_fd);
	close(b->trash_fd);
	close(b->lock_fd);
	close(b->dir_fd);
	free(b->datadir);
	pthread_rwlock_destroy(&b->lock);
	pthread_mutex_destroy(&b->id_lock);
	free(b);
	syncer_release();
	return 0;
}

/* Run fn on every partition of every topic while it returns true;
 * whether it always did. */
static bool broker_each_part(struct broker *b,
			     bool (*fn)(struct part *, void *), void *arg)
{
	struct topic *ts[64];
	uint64_t after = 0;
	bool go = true;
	unsigned n;

	while (go && (n = broker_topics_list(b, after, ts, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			uint32_t np = topic_partitions(ts[i]);
			for (uint32_t k = 0; go && k < np; k++)
				go = fn(topic_part(ts[i], k), arg);
			after = topic_id(ts[i]);
			topic_put(ts[i]);
		}
	}
	return go;
}

/*
 * Queue the checkpoint of every partition if CHECKPOINT_INTERVAL_MS have
 * passed since the last (and it is not still running): the high
 * watermark and recovery point reach the disk on this schedule, never
 * with a sync per commit. A clean close checkpoints too (log_close).
 */
static void broker_tick_checkpoint(struct broker *b, int64_t mono_ms)
{
	bool due;

	pthread_mutex_lock(&b->flush_lock);
	due = !b->checkpoint_queued &&
	      mono_ms - b->checkpoint_ms >= CHECKPOINT_INTERVAL_MS;
	if (due) {
		b->checkpoint_queued = true;
		b->checkpoint_ms = mono_ms;
	}
	pthread_mutex_unlock(&b->flush_lock);
	if (due)
		broker_queue_flush(b, NULL, NULL);
}

void broker_tick(struct broker *b, const struct tick_now *now)
{
	struct topic *ts[64];
	uint64_t after = 0;
	unsigned n;

	while ((n = broker_topics_list(b, after, ts, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			uint32_t np = topic_partitions(ts[i]);
			for (uint32_t k = 0; k < np; k++) {
				struct part *p = topic_part(ts[i], k);
				if (part_tick(p, now))
					broker_queue_flush(b, ts[i], p);
			}
			groups_tick(topic_groups(ts[i]), now);
			after = topic_id(ts[i]);
			topic_put(ts[i]);
		}
	}
	broker_tick_checkpoint(b, now->mono_ms);
}

static bool settle_one(struct part *p, void *unused)
{
	(void)unused;
	part_settle(p);
	return true;
}

void broker_settle(struct broker *b)
{
	broker_each_part(b, settle_one, NULL);
}

/* A scrub pass: the caller's pacing, counted. */
struct scrub_run {
	struct broker *b;
	const struct log_scrub_ctl *outer;
	struct log_scrub_ctl ctl;    /* pace: scrub_count */
	bool stopped;
};

static bool scrub_count(uint64_t bytes, void *arg)
{
	struct scrub_run *r = arg;

	atomic_fetch_add(&r->b->scrub_bytes, bytes);
	if (!r->stopped)
		r->stopped = !r->outer->pace(bytes, r->outer->arg);
	return !r->stopped;
}

static bool scrub_one(struct part *p, void *arg)
{
	struct scrub_run *r = arg;

	part_scrub(p, &r->ctl);
	return !r->stopped;
}

void broker_scrub(struct broker *b, const struct log_scrub_ctl *ctl)
{
	struct scrub_run r = { .b = b, .outer = ctl, .ctl = *ctl };

	r.ctl.pace = scrub_count;
	r.ctl.arg = &r;
	if (broker_each_part(b, scrub_one, &r))
		atomic_fetch_add(&b->scrub_passes, 1);
}

void broker_scrub_stats(struct broker *b, struct broker_scrub_stats *st)
{
	st->bytes = atomic_load(&b->scrub_bytes);
	st->passes = atomic_load(&b->scrub_passes);
}
