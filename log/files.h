/*
 * The engine's descriptor budget: files that are closed while idle and
 * reopened on demand, so that a process can serve more partitions than
 * it may hold descriptors.
 *
 * A slot stands for the descriptors of one object: a segment's three
 * files and its index mapping (segment.c), or a partition's directory
 * (struct files_dir below). While a slot is pinned (files_pin ...
 * files_unpin) its descriptors are open and stay valid: whoever uses
 * them (an appender, a sync, a lookup, a reader that handed out an
 * extent to splice from) holds a pin. When the descriptors of all open
 * slots pass the budget (files_set_budget), unpinned slots are closed,
 * least recently used first (a clock: a slot used since the hand last
 * passed gets a second chance); the next pin reopens them. A pinned slot
 * is never closed, so descriptors in use may exceed the budget: the
 * budget bounds what idle partitions hold.
 *
 * Running out of descriptors (EMFILE, ENFILE) while opening is answered
 * by closing every idle slot that can be closed and trying once more;
 * if that fails too, the error goes to the one caller that needed the
 * descriptor (files_openat, files_pin).
 *
 * Locks: a slot's lock guards its open state and the owner's
 * descriptors; the budget's lock (inside files.c) guards the ring of
 * open slots and the count. Order: slot lock -> budget lock; the evictor
 * holds the budget lock and only try-locks slots. A slot's owner may
 * take a lock of its own around files_pin (segment.c takes none).
 */
#ifndef TOPICFS_LOG_FILES_H
#define TOPICFS_LOG_FILES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

struct files_slot;

struct files_ops {
	/* Open the owner's descriptors (slot lock held): 0 or -errno. */
	int (*reopen)(struct files_slot *s);
	/* Close them (slot lock held, no pin). */
	void (*close)(struct files_slot *s);
	/* Whether the slot may be closed now (slot lock held); NULL: yes. */
	bool (*closable)(struct files_slot *s);
};

struct files_slot {
	pthread_mutex_t lock;
	atomic_uint users;      /* pins; changed under lock */
	bool open;              /* (lock) the descriptors are open */
	atomic_bool recent;     /* pinned since the clock hand passed */
	unsigned nfds;          /* descriptors held while open */
	const struct files_ops *ops;
	struct files_slot *prev, *next; /* ring of open slots (budget lock) */
};

/* A closed, unpinned slot of nfds descriptors. */
void files_slot_init(struct files_slot *s, const struct files_ops *ops,
		     unsigned nfds);

/* The owner opened the descriptors itself (a new file): the slot is
 * open and pinned once. Called before anyone else can see the slot. */
void files_slot_opened(struct files_slot *s);

/* Leave the ring (no pin may remain); the owner closes its descriptors. */
void files_slot_destroy(struct files_slot *s);

/* Make the descriptors open and keep them so until files_unpin. */
int files_pin(struct files_slot *s);
void files_unpin(struct files_slot *s);

static inline bool files_pinned(struct files_slot *s)
{
	return atomic_load_explicit(&s->users, memory_order_relaxed) > 0;
}

/*
 * The budget: descriptors that open slots may hold before idle ones are
 * closed; 0 means no limit (the default). Lowering it closes idle slots
 * at once.
 */
void files_set_budget(unsigned fds);

struct files_stats {
	unsigned budget;       /* 0: no limit */
	unsigned open_fds;     /* held by open slots */
	unsigned long long reopens, closes; /* since the start */
};

void files_get_stats(struct files_stats *st);

/* Close every idle slot that can be closed (EMFILE relief); returns the
 * descriptors freed. */
unsigned files_shed(void);

/* openat(2) that, on EMFILE or ENFILE, sheds idle slots and tries once
 * more. Returns the descriptor or -errno. */
int files_openat(int dir_fd, const char *name, int flags, mode_t mode);

/*
 * A directory kept open while in use: a partition's. Its path may change
 * (files_dir_move) when the directory is renamed; a reopen checks that
 * the path still names the directory first opened (device and inode),
 * else fails with -ESTALE rather than open another one.
 */
struct files_dir {
	struct files_slot slot;
	int fd;                 /* (slot lock) valid while pinned */
	char *path;             /* (slot lock) where to reopen it */
	dev_t dev;
	ino_t ino;
};

/* Open the directory at path (created with mode 0755 if missing and
 * create is set), pinned once. */
int files_dir_open(struct files_dir *d, const char *path, bool create);
/* The directory was renamed to path; -ENOMEM leaves the old path. */
int files_dir_move(struct files_dir *d, const char *path);
/* Unpinned: close and free. */
void files_dir_close(struct files_dir *d);

/* Pin the directory: its descriptor, or -errno. */
int files_dir_pin(struct files_dir *d);
static inline void files_dir_unpin(struct files_dir *d)
{
	files_unpin(&d->slot);
}

#endif
