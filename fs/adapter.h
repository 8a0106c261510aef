/*
 * The FUSE adapter's own declarations, shared by its files and by nothing
 * else: inode numbers, the mount's state, what an inode names, open file
 * handles. The broker core (broker.h, topic.h, part.h, group.h) knows
 * nothing of these.
 *
 *   fs.c      the operations table, init, statfs, the mount's state
 *   node.c    inode numbers, nodes, read views, refusals, attributes
 *   dir.c     lookup, getattr, readdir, mkdir, rmdir and the refused
 *             namespace changes
 *   file.c    open, read, flush, fsync, release, ioctl
 *   write.c   writes: framing per open file, .produce's partitioner
 *   xattr.c   extended attributes
 *   report.c  .status and .metrics
 *
 * Inode numbers are computed from the topic's stored id:
 *   1 root, 2 .status, 3 .metrics
 *   (topic id << 24) | (kind << 20) | partition   topic dirs and files
 *   (1 << 62) | n                                 read views and
 *                                                 .produce (a table)
 * Topic ids are stored with their topics and never given twice in a data
 * directory, so numbers stay the same across remounts (log shippers key
 * on them) and a stale inode of a deleted topic answers ENOENT rather
 * than reaching a new topic of the same name.
 *
 * Locks: fs->report_lock, then fs->lock (views, open files), then a
 * handle's lock, then the broker core's (broker.h gives their order).
 */
#ifndef TOPICFS_FS_ADAPTER_H
#define TOPICFS_FS_ADAPTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "frame.h"
#include "fs.h"
#include "group.h"
#include "part.h"
#include "topicfs_ioctl.h"

#define INO_ROOT 1
#define INO_STATUS 2
#define INO_METRICS 3
#define INO_VIEW_BIT (1ull << 62)
#define XATTR_PREFIX "user.topicfs."
#define XATTR_VALUE_MAX 4096
/* Extents one read can return (and segments it may span). */
#define READ_EXTENTS_MAX 8
/* Directory attributes may be cached; files change all the time. */
#define DIR_ATTR_TIMEOUT 1.0
/*
 * The preferred I/O size (st_blksize) of data files (partitions, views,
 * .produce, group members): the largest write request (max_write), two
 * read requests (FS_MAX_READ). Every read() and write() of a direct_io
 * file is a round trip to the daemon, and cat, cp, grep and dd size
 * their buffers from st_blksize (coreutils' io_blksize), so this makes
 * `cat f >> t/0` and `cat t/0` move 1 MiB per call instead of 128 KiB.
 */
#define DATA_IO_SIZE (1u << 20)
/*
 * .produce asks for half that, so that the kernel never cuts a write()
 * of such a tool: a request of nearly DATA_IO_SIZE (the most one request
 * carries, less the offset of the writer's buffer in its first page) is
 * taken as a piece of a longer write(), whose unkeyed records stay in
 * one partition (see writer_route).
 */
#define PRODUCE_IO_SIZE (DATA_IO_SIZE / 2)
#define WRITE_PIECE_MIN (DATA_IO_SIZE - 4096 + 1)

enum kind {
	K_TOPIC = 1,    /* these four are encoded in topic inode numbers */
	K_PART = 2,
	K_PRODUCE = 3,
	K_GROUPS = 4,
	K_GROUP = 5,    /* .groups/<g>: the low 20 bits are the group index */
	K_ROOT = 16,
	K_STATUS,
	K_METRICS,
	K_VIEW,
};

/*
 * An inode given per lookup, alive while the kernel knows it: a read view
 * <p>@<selector> (K_VIEW), or .produce (K_PRODUCE), which gets a fresh
 * inode at every lookup so that writers who open it separately do not
 * queue behind one inode lock in the kernel (it holds the lock of the
 * inode for the whole of an O_APPEND write), and group commit can
 * gather their records.
 */
struct view {
	fuse_ino_t ino;
	int kind;
	uint64_t topic_id;
	uint32_t part;
	uint64_t start_pos;
	uint64_t nlookup;
	struct view *next;
};

struct fh;

/* A .status or .metrics text rendered for a stat by one thread (pid). */
struct report {
	pid_t pid;
	char *text;
	size_t len;
	int64_t made_ms;            /* CLOCK_MONOTONIC */
};
/* Threads whose texts are kept at once, per file (the oldest goes). */
#define REPORT_SLOTS 8

struct fs {
	struct broker *broker;
	pthread_mutex_t lock;       /* protects views and open_files */
	struct view *views;
	uint64_t next_view;
	struct fh *open_files;      /* every open file handle */
	uid_t uid;                  /* owner of every file (-o uid=) */
	gid_t gid;                  /* group of every file (-o gid=) */
	mode_t umask;               /* cleared from every mode (-o umask=) */
	time_t mount_time;
	unsigned max_read;          /* bytes per read request */
	/* Protects reports; taken before lock (rendering takes lock). */
	pthread_mutex_t report_lock;
	struct report reports[2][REPORT_SLOTS]; /* .status, .metrics */
};

/* What an inode names, with a reference on its topic. */
struct node {
	int kind;
	struct topic *t;
	uint32_t part;          /* partition, or group index */
	uint64_t view_start;
	struct group *g;
};

/*
 * Open files. Each kind has a handle of its own, which begins with a
 * struct fh (its kind says which): part_fh for partitions and read views,
 * produce_fh for .produce, report_fh for .status and .metrics, member_fh
 * for a group member. fh->lock protects the handle's own state.
 */
struct fh {
	int kind;
	struct topic *t;         /* referenced; NULL for reports */
	pthread_mutex_t lock;
	struct fh *prev, *next;  /* in fs->open_files (fs->lock) */
	bool told_stale;         /* its ESTALE was logged (lock) */
};

/* The write side of a partition file or of .produce. */
struct writer {
	struct topic *t;
	struct part *p;          /* NULL: .produce */
	uint8_t *partial;        /* an incomplete last record */
	size_t plen, pcap;
	uint8_t *scratch;        /* .produce: partial + new bytes together */
	size_t scap;
	struct frame_lens lens;  /* of the records being appended */
	uint32_t *route;         /* .produce: partition of each record */
	size_t rcap;
	uint32_t sticky;         /* .produce: this write()'s unkeyed records'
				  * partition; UINT32_MAX: the next in turn */
	struct topicfs_last_write last;
	uint64_t owner;          /* lock owner (files table) of the last write */
	/* A record refused as too long whose end has not arrived yet: the
	 * bytes up to its end (lines: its newline; binary: discard_left
	 * bytes) are refused too (writer_discard). */
	bool discarding;
	uint64_t discard_left;
	bool last_piece;         /* the last request was accepted and
				  * nearly max_write: a longer write()'s */
	/* The request being answered (write.c), while one is being served
	 * under the handle's lock: its records wait for their commit when
	 * acks=all, and for the disk when durable. NULL: acks=0. */
	struct write_op *op;
	bool acks_all, durable;
	bool sync_writes;        /* opened with O_SYNC or O_DSYNC */
	uint64_t *ends;          /* per partition: the end offset of the
				  * records this file appended (for fsync) */
	uint32_t nends;
};

/* The read side of a partition file or a read view. */
struct reader {
	struct part *p;
	struct log_cursor *cur;
	uint64_t base;           /* partition position of file offset 0 */
	uint64_t skew;           /* retention moved the start under us */
	struct fuse_bufvec *bv;
	uint8_t *copy;           /* reads that must be copied */
	size_t copy_cap;
	/* Records out: bytes [cnt_pos, out_pos) were read in one stretch and
	 * their whole records are not counted yet (reader_count_out). */
	uint64_t cnt_pos, out_pos;
};

struct part_fh {                 /* K_PART, K_VIEW */
	struct fh fh;
	struct reader r;
	bool writable;
	struct writer w;         /* if writable */
};

struct produce_fh {              /* K_PRODUCE */
	struct fh fh;
	struct writer w;
};

struct report_fh {               /* K_STATUS, K_METRICS */
	struct fh fh;
	char *text;
	size_t len;
	pid_t opener;            /* the thread that opened it */
};

struct member_fh {               /* K_GROUP: this open file is a member */
	struct fh fh;
	struct member *member;
	struct group *g;         /* its group, for log lines */
	struct member_read *mread;
	struct fuse_bufvec *bv;
};

#define FH_AS(fh, type) ((struct type *)(void *)(fh))

/* The handle as one of its kinds, or NULL if it is another kind. */
static inline struct part_fh *fh_part(struct fh *fh)
{
	return fh->kind == K_PART || fh->kind == K_VIEW ?
	       FH_AS(fh, part_fh) : NULL;
}

static inline struct report_fh *fh_report(struct fh *fh)
{
	return fh->kind == K_STATUS || fh->kind == K_METRICS ?
	       FH_AS(fh, report_fh) : NULL;
}

static inline struct member_fh *fh_member(struct fh *fh)
{
	return fh->kind == K_GROUP ? FH_AS(fh, member_fh) : NULL;
}

/* The write side of a handle, or NULL if it is not open for writing. */
static inline struct writer *fh_writer(struct fh *fh)
{
	if (fh->kind == K_PRODUCE)
		return &FH_AS(fh, produce_fh)->w;
	if (fh_part(fh) && fh_part(fh)->writable)
		return &fh_part(fh)->w;
	return NULL;
}

/* node.c */
struct fs *fs_of(fuse_req_t req);
fuse_ino_t ino_make(uint64_t topic_id, int kind, uint32_t part);
fuse_ino_t view_add(struct fs *fs, int kind, uint64_t topic_id,
		    uint32_t part, uint64_t start_pos);
void view_forget(struct fs *fs, fuse_ino_t ino, uint64_t n);
int node_get(struct fs *fs, fuse_ino_t ino, struct node *n);
void node_put(struct node *n);
const char *node_where(const struct node *n, char *buf, size_t size);
__attribute__((format(printf, 4, 5)))
void refuse(fuse_req_t req, const struct node *n, int err,
		   const char *fmt, ...);
__attribute__((format(printf, 4, 5)))
void refuse_ino(fuse_req_t req, fuse_ino_t ino, int err,
		       const char *fmt, ...);
void node_stat(struct fs *fs, fuse_ino_t ino, const struct node *n,
		      struct stat *st);
double node_timeout(const struct node *n);
void reply_entry(fuse_req_t req, fuse_ino_t ino, const struct node *n);
int view_resolve(struct log *l, const char *sel, uint64_t *pos);

/* dir.c */
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev);
void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi);
void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname);

/* file.c */
void reader_count_out(struct reader *r);
void fh_free(struct fh *fh);
void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
struct fh *fh_of(struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz);

/* write.c */
const char *writer_where(const struct writer *w, char *buf, size_t size);
void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi);
void writer_init(struct writer *w, struct topic *t, struct part *p,
		 int flags);
void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi);
int writer_flush(struct fh *fh);
void writer_release(struct writer *w);

/* xattr.c */
int part_attr(struct part *p, const char *name, char *buf, size_t size);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* report.c */
void report_stat(fuse_req_t req, const struct node *n,
			struct stat *st);
char *report_take(struct fs *fs, int kind, pid_t pid, size_t *len);

#endif
