#include "topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "part.h"

struct topic {
	atomic_int refs;
	atomic_bool deleted;
	uint64_t id;                    /* stored; its inode numbers' base */
	char uuid[TOPIC_UUID_LEN + 1];  /* Kafka's TopicId */
	char name[TOPIC_NAME_MAX + 1];
	char *dir;

	pthread_mutex_t lock;           /* protects cfg and part creation */
	struct topic_config cfg;
	_Atomic uint32_t nparts;
	struct part *parts[TOPIC_PARTITIONS_MAX];
	atomic_uint sticky;
	struct groups *groups;          /* consumer groups (group.h) */
	void (*groups_close)(struct groups *gs);
};

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

	if (t->groups)
		t->groups_close(t->groups);
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

/* The directory of partition i (malloc'd), or NULL. */
static char *topic_part_dir(const struct topic *t, uint32_t i)
{
	char *dir;

	if (asprintf(&dir, "%s/%" PRIu32, t->dir, i) < 0)
		return NULL;
	return dir;
}

/* Remove partition i's directory if created says this call made it. */
static void topic_unmake_part(struct topic *t, uint32_t i, bool created)
{
	char *dir = created ? topic_part_dir(t, i) : NULL;
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
		char *dir = topic_part_dir(t, i);
		rc = dir ? part_open(dir, t->name, i, c, &t->parts[i],
				     &created[i - from]) : -ENOMEM;
		if (!dir)
			created[i - from] = false;
		free(dir);
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

/* Store c as t's settings file (durable replace). */
static int topic_store_config(struct topic *t, const struct topic_config *c)
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
	rc = io_replace_file(dfd, TOPIC_CONFIG_FILE, text, strlen(text));
	close(dfd);
	free(text);
	return rc;
}

/* Apply t->cfg to the topic's partitions; topic lock held. */
static void topic_apply(struct topic *t)
{
	uint32_t n = atomic_load(&t->nparts);

	for (uint32_t i = 0; i < n; i++)
		part_set_config(t->parts[i], &t->cfg);
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
	rc = topic_store_config(t, &c);
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

struct topic *topic_new(const char *name, const char *dir,
			const struct topic_config *cfg)
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
	t->cfg = *cfg;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

int topic_save_config(struct topic *t)
{
	return topic_store_config(t, &t->cfg);
}

int topic_start(struct topic *t, uint32_t *failed)
{
	bool created[TOPIC_PARTITIONS_MAX];
	int rc;

	*failed = UINT32_MAX;
	pthread_mutex_lock(&t->lock);
	rc = topic_open_parts(t, &t->cfg, created, failed);
	if (rc == 0)
		atomic_store(&t->nparts, t->cfg.partitions);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void topic_set_identity(struct topic *t, uint64_t id, const char *uuid)
{
	t->id = id;
	snprintf(t->uuid, sizeof(t->uuid), "%s", uuid);
}

const char *topic_dir(const struct topic *t)
{
	return t->dir;
}

void topic_move(struct topic *t, char *dir)
{
	uint32_t n;

	/* Under the topic lock: a settings change (new partitions, the
	 * settings file) builds paths from t->dir while holding it. */
	pthread_mutex_lock(&t->lock);
	free(t->dir);
	t->dir = dir;
	/* An idle partition's directory may be closed and is reopened by
	 * name (log_moved): the names follow the topic. Without memory for
	 * the new name, a reopen finds nothing at the old one (-ESTALE). */
	n = atomic_load(&t->nparts);
	for (uint32_t i = 0; i < n; i++) {
		char *pdir = topic_part_dir(t, i);
		if (pdir)
			log_moved(part_log(t->parts[i]), pdir);
		free(pdir);
	}
	pthread_mutex_unlock(&t->lock);
}

void topic_set_deleted(struct topic *t, bool deleted)
{
	atomic_store(&t->deleted, deleted);
}

void topic_set_groups(struct topic *t, struct groups *gs,
		      void (*close)(struct groups *gs))
{
	t->groups = gs;
	t->groups_close = close;
}
