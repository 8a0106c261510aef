/*
 * The descriptor budget (files.h): a clock over the slots whose
 * descriptors are open.
 *
 * The open slots form a ring; the hand walks it when the descriptors
 * held pass the budget. A slot pinned since the hand last passed it
 * (recent) gets a second chance; a slot that is pinned now, or whose
 * lock is taken (someone is pinning or reopening it), is passed over.
 * The walk stops when the count is back within the budget or after two
 * turns of the ring, so it is bounded even when everything is in use.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
	pthread_mutex_t lock;       /* the fields below but the atomics */
	struct files_slot *hand;    /* a slot of the ring, NULL if empty */
	unsigned nslots;            /* slots in the ring */
	atomic_uint open_fds;       /* descriptors of the slots in the ring */
	atomic_uint budget;         /* 0: no limit */
	unsigned long long reopens, closes;
} files = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Budget lock held. */
static void ring_add(struct files_slot *s)
{
	if (!files.hand) {
		s->prev = s->next = s;
		files.hand = s;
	} else { /* just behind the hand: the last it will reach */
		s->next = files.hand;
		s->prev = files.hand->prev;
		s->prev->next = s;
		files.hand->prev = s;
	}
	files.nslots++;
	atomic_fetch_add(&files.open_fds, s->nfds);
}

/* Budget lock held. */
static void ring_remove(struct files_slot *s)
{
	if (s->next == s) {
		files.hand = NULL;
	} else {
		s->prev->next = s->next;
		s->next->prev = s->prev;
		if (files.hand == s)
			files.hand = s->next;
	}
	s->prev = s->next = NULL;
	files.nslots--;
	atomic_fetch_sub(&files.open_fds, s->nfds);
}

void files_slot_init(struct files_slot *s, const struct files_ops *ops,
		     unsigned nfds)
{
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->users, 0);
	atomic_init(&s->recent, false);
	s->open = false;
	s->nfds = nfds;
	s->ops = ops;
	s->prev = s->next = NULL;
}

/*
 * Close s if nobody uses it; budget lock held. Only try-locks s: the
 * order is slot lock -> budget lock, and the holder of s's lock may be
 * waiting for ours.
 */
static bool try_close(struct files_slot *s)
{
	bool closed = false;

	if (pthread_mutex_trylock(&s->lock) != 0)
		return false;
	if (s->open && atomic_load(&s->users) == 0 &&
	    (!s->ops->closable || s->ops->closable(s))) {
		s->ops->close(s);
		s->open = false;
		ring_remove(s);
		files.closes++;
		closed = true;
	}
	pthread_mutex_unlock(&s->lock);
	return closed;
}

/* Close idle slots, least recently used first, until within budget. */
static void files_trim(void)
{
	unsigned budget = atomic_load(&files.budget);

	if (budget == 0 || atomic_load(&files.open_fds) <= budget)
		return;
	pthread_mutex_lock(&files.lock);
	for (unsigned seen = 0, turns = 2 * files.nslots;
	     files.hand && seen < turns &&
	     atomic_load(&files.open_fds) > budget; seen++) {
		struct files_slot *s = files.hand;

		files.hand = s->next;
		if (atomic_exchange(&s->recent, false))
			continue; /* second chance */
		try_close(s);
	}
	pthread_mutex_unlock(&files.lock);
}

unsigned files_shed(void)
{
	unsigned before, n;

	pthread_mutex_lock(&files.lock);
	before = atomic_load(&files.open_fds);
	n = files.nslots;
	for (unsigned i = 0; i < n && files.hand; i++) {
		struct files_slot *s = files.hand;

		files.hand = s->next;
		try_close(s);
	}
	n = before - atomic_load(&files.open_fds);
	pthread_mutex_unlock(&files.lock);
	return n;
}

static bool out_of_fds(int err)
{
	return err == -EMFILE || err == -ENFILE;
}

int files_openat(int dir_fd, const char *name, int flags, mode_t mode)
{
	int fd = openat(dir_fd, name, flags | O_CLOEXEC, mode);

	if (fd < 0 && out_of_fds(-errno) && files_shed() > 0)
		fd = openat(dir_fd, name, flags | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

/* Mark s open and pinned; s's lock held. */
static void slot_now_open(struct files_slot *s)
{
	s->open = true;
	pthread_mutex_lock(&files.lock);
	ring_add(s);
	pthread_mutex_unlock(&files.lock);
}

void files_slot_opened(struct files_slot *s)
{
	pthread_mutex_lock(&s->lock);
	slot_now_open(s);
	atomic_fetch_add(&s->users, 1);
	atomic_store(&s->recent, true);
	pthread_mutex_unlock(&s->lock);
	files_trim();
}

int files_pin(struct files_slot *s)
{
	bool opened = false;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->open) {
		rc = s->ops->reopen(s);
		if (out_of_fds(rc) && files_shed() > 0)
			rc = s->ops->reopen(s);
		if (rc == 0) {
			slot_now_open(s);
			opened = true;
		}
	}
	if (rc == 0) {
		atomic_fetch_add(&s->users, 1);
		atomic_store(&s->recent, true);
	}
	pthread_mutex_unlock(&s->lock);
	if (opened) {
		pthread_mutex_lock(&files.lock);
		files.reopens++;
		pthread_mutex_unlock(&files.lock);
		files_trim();
	}
	return rc;
}

void files_unpin(struct files_slot *s)
{
	pthread_mutex_lock(&s->lock);
	atomic_fetch_sub(&s->users, 1);
	pthread_mutex_unlock(&s->lock);
}

void files_slot_destroy(struct files_slot *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->open) {
		pthread_mutex_lock(&files.lock);
		ring_remove(s);
		pthread_mutex_unlock(&files.lock);
		s->open = false;
	}
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&s->lock);
}

void files_set_budget(unsigned fds)
{
	atomic_store(&files.budget, fds);
	files_trim();
}

void files_get_stats(struct files_stats *st)
{
	pthread_mutex_lock(&files.lock);
	st->budget = atomic_load(&files.budget);
	st->open_fds = atomic_load(&files.open_fds);
	st->reopens = files.reopens;
	st->closes = files.closes;
	pthread_mutex_unlock(&files.lock);
}

/* ---- directories -------------------------------------------------------- */

static int dir_reopen(struct files_slot *s)
{
	struct files_dir *d = (struct files_dir *)s;
	struct stat st;
	int fd;

	fd = files_openat(AT_FDCWD, d->path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	/* Renamed away and something else put in its place: not ours. */
	if (fstat(fd, &st) < 0 || st.st_dev != d->dev || st.st_ino != d->ino) {
		close(fd);
		return -ESTALE;
	}
	d->fd = fd;
	return 0;
}

static void dir_close(struct files_slot *s)
{
	struct files_dir *d = (struct files_dir *)s;

	close(d->fd);
	d->fd = -1;
}

static const struct files_ops dir_ops = {
	.reopen = dir_reopen,
	.close = dir_close,
};

int files_dir_open(struct files_dir *d, const char *path, bool create)
{
	struct stat st;
	int rc;

	d->fd = -1;
	d->path = strdup(path);
	files_slot_init(&d->slot, &dir_ops, 1);
	if (!d->path)
		return -ENOMEM;
	if (create && mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	rc = files_openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY, 0);
	if (rc < 0)
		return rc;
	d->fd = rc;
	if (fstat(d->fd, &st) < 0)
		return -errno;
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	files_slot_opened(&d->slot);
	return 0;
}

int files_dir_move(struct files_dir *d, const char *path)
{
	char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&d->slot.lock);
	free(d->path);
	d->path = p;
	pthread_mutex_unlock(&d->slot.lock);
	return 0;
}

int files_dir_pin(struct files_dir *d)
{
	int rc = files_pin(&d->slot);

	return rc < 0 ? rc : d->fd;
}

void files_dir_close(struct files_dir *d)
{
	files_slot_destroy(&d->slot);
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	free(d->path);
	d->path = NULL;
}
