/*
 * FUSE low-level operations. Every request is answered by exactly one
 * fuse_reply_*; errors are negative errnos internally and positive ones
 * in fuse_reply_err.
 *
 * Inode numbers are computed from the topic's stored id:
 *   1 root, 2 .status, 3 .metrics
 *   (topic id << 24) | (kind << 20) | partition   topic dirs and files
 *   (1 << 62) | n                                 read views (a table)
 * Topic ids are stored with their topics and never given twice in a data
 * directory, so numbers stay the same across remounts (log shippers key
 * on them) and a stale inode of a deleted topic answers ENOENT rather
 * than reaching a new topic of the same name.
 */
#include "fs.h"

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
#include "broker.h"
#include "frame.h"
#include "group.h"
#include "grow.h"
#include "msg.h"
#include "part.h"
#include "partitioner.h"
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
 * one partition (see fh_route).
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

/* A read view <p>@<selector>, alive while the kernel knows its inode. */
struct view {
	fuse_ino_t ino;
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

struct fh {
	int kind;
	struct topic *t;
	struct part *p;
	pthread_mutex_t lock;

	/* writing */
	bool writable;
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
	 * bytes) are refused too (fh_discard). */
	bool discarding;
	uint64_t discard_left;
	bool last_piece;         /* the last request was accepted and
				  * nearly max_write: a longer write()'s */
	struct fh *prev, *next;  /* in fs->open_files */

	/* reading */
	struct log_cursor *cur;
	uint64_t base;           /* partition position of file offset 0 */
	uint64_t skew;           /* retention moved the start under us */
	struct fuse_bufvec *bv;
	uint8_t *copy;           /* reads that must be copied */
	size_t copy_cap;
	/* Records out: bytes [cnt_pos, out_pos) were read in one stretch and
	 * their whole records are not counted yet (fh_count_out). */
	uint64_t cnt_pos, out_pos;

	/* .status and .metrics */
	char *text;
	size_t text_len;
	pid_t opener;            /* the thread that opened it */

	/* .groups/<g>: this open file is a member */
	struct member *member;
	struct member_read *mread;
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static fuse_ino_t ino_make(uint64_t topic_id, int kind, uint32_t part)
{
	return (fuse_ino_t)(topic_id << 24 | (uint64_t)kind << 20 | part);
}

/* ---- views ------------------------------------------------------------- */

static struct view *view_find(struct fs *fs, fuse_ino_t ino)
{
	for (struct view *v = fs->views; v; v = v->next) {
		if (v->ino == ino)
			return v;
	}
	return NULL;
}

static fuse_ino_t view_add(struct fs *fs, uint64_t topic_id, uint32_t part,
			   uint64_t start_pos)
{
	struct view *v = calloc(1, sizeof(*v));
	fuse_ino_t ino = 0;

	if (!v)
		return 0;
	pthread_mutex_lock(&fs->lock);
	v->ino = ino = (fuse_ino_t)(INO_VIEW_BIT | ++fs->next_view);
	v->topic_id = topic_id;
	v->part = part;
	v->start_pos = start_pos;
	v->nlookup = 1;
	v->next = fs->views;
	fs->views = v;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

static void view_forget(struct fs *fs, fuse_ino_t ino, uint64_t n)
{
	pthread_mutex_lock(&fs->lock);
	for (struct view **pp = &fs->views; *pp; pp = &(*pp)->next) {
		struct view *v = *pp;
		if (v->ino != ino)
			continue;
		v->nlookup = v->nlookup > n ? v->nlookup - n : 0;
		if (v->nlookup == 0) {
			*pp = v->next;
			free(v);
		}
		break;
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- nodes ------------------------------------------------------------- */

static int node_get(struct fs *fs, fuse_ino_t ino, struct node *n)
{
	uint64_t id;

	memset(n, 0, sizeof(*n));
	if (ino == INO_ROOT || ino == INO_STATUS || ino == INO_METRICS) {
		n->kind = ino == INO_ROOT ? K_ROOT :
			  ino == INO_STATUS ? K_STATUS : K_METRICS;
		return 0;
	}
	if (ino & INO_VIEW_BIT) {
		struct view *v;
		pthread_mutex_lock(&fs->lock);
		v = view_find(fs, ino);
		if (v) {
			id = v->topic_id;
			n->part = v->part;
			n->view_start = v->start_pos;
		}
		pthread_mutex_unlock(&fs->lock);
		if (!v)
			return -ENOENT;
		n->kind = K_VIEW;
	} else {
		id = ino >> 24;
		n->kind = (int)((ino >> 20) & 0xf);
		n->part = (uint32_t)(ino & 0xfffff);
		if (n->kind < K_TOPIC || n->kind > K_GROUP)
			return -ENOENT;
	}
	n->t = broker_topic_by_id(fs->broker, id);
	if (!n->t)
		return -ENOENT;
	if ((n->kind == K_PART || n->kind == K_VIEW) &&
	    n->part >= topic_partitions(n->t)) {
		topic_put(n->t);
		return -ENOENT;
	}
	if (n->kind == K_GROUP) {
		n->g = groups_get(topic_groups(n->t), n->part);
		if (!n->g) {
			topic_put(n->t);
			return -ENOENT;
		}
	}
	return 0;
}

static void node_put(struct node *n)
{
	if (n->t)
		topic_put(n->t);
	n->t = NULL;
}

/* What a node is, for log lines: "topic t partition 0" and the like. */
static const char *node_where(const struct node *n, char *buf, size_t size)
{
	const char *t = n->t ? topic_name(n->t) : "";

	switch (n->kind) {
	case K_ROOT:
		return "the mount's root";
	case K_STATUS:
		return ".status";
	case K_METRICS:
		return ".metrics";
	case K_TOPIC:
		snprintf(buf, size, "topic %s", t);
		break;
	case K_PART:
	case K_VIEW:
		snprintf(buf, size, "topic %s partition %" PRIu32 "%s", t,
			 n->part, n->kind == K_VIEW ? " (a read view)" : "");
		break;
	case K_PRODUCE:
		snprintf(buf, size, "topic %s .produce", t);
		break;
	case K_GROUPS:
		snprintf(buf, size, "topic %s .groups", t);
		break;
	case K_GROUP:
		snprintf(buf, size, "topic %s group %s", t,
			 n->g ? group_name(n->g) : "?");
		break;
	default:
		snprintf(buf, size, "topic %s", t);
	}
	return buf;
}

/*
 * Refuse a request about n with err, and say so in one log line: where
 * (node_where), then what and why (fmt).
 */
__attribute__((format(printf, 4, 5)))
static void refuse(fuse_req_t req, const struct node *n, int err,
		   const char *fmt, ...)
{
	char where[300], why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	msg(LOG_NOTICE, "%s: %s", node_where(n, where, sizeof(where)), why);
	fuse_reply_err(req, err);
}

/* refuse() for a request naming an inode. */
__attribute__((format(printf, 4, 5)))
static void refuse_ino(fuse_req_t req, fuse_ino_t ino, int err,
		       const char *fmt, ...)
{
	struct node n;
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (node_get(fs_of(req), ino, &n) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	refuse(req, &n, err, "%s", why);
	node_put(&n);
}

static void node_stat(struct fs *fs, fuse_ino_t ino, const struct node *n,
		      struct stat *st)
{
	struct log_bounds ls;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
	st->st_blksize = 4096;
	switch (n->kind) {
	case K_ROOT:
	case K_TOPIC:
	case K_GROUPS:
		st->st_mode = S_IFDIR | (0777 & ~fs->umask);
		st->st_nlink = 2;
		break;
	case K_STATUS:
	case K_METRICS:
	case K_GROUP:
		/* w on a group file: may configure and reset it (setxattr);
		 * the daemon refuses opens for writing all the same. */
		st->st_mode = S_IFREG | ((n->kind == K_GROUP ? 0666 : 0444) &
					 ~fs->umask);
		st->st_nlink = 1;
		if (n->kind == K_GROUP)
			st->st_blksize = DATA_IO_SIZE;
		break;
	case K_PRODUCE:
		st->st_mode = S_IFREG | (0222 & ~fs->umask);
		st->st_nlink = 1;
		st->st_blksize = PRODUCE_IO_SIZE;
		break;
	case K_PART:
	case K_VIEW:
		log_get_bounds(part_log(topic_part(n->t, n->part)), &ls);
		st->st_mode = S_IFREG | ((n->kind == K_PART ? 0666 : 0444) &
					 ~fs->umask);
		st->st_nlink = 1;
		st->st_blksize = DATA_IO_SIZE;
		if (n->kind == K_PART)
			st->st_size = (off_t)ls.hw_pos;
		else
			st->st_size = ls.hw_pos > n->view_start ?
				      (off_t)(ls.hw_pos - n->view_start) : 0;
		st->st_blocks = (blkcnt_t)((ls.leo_pos - ls.start_pos + 511) / 512);
		if (ls.max_ts > 0) {
			st->st_mtime = (time_t)(ls.max_ts / 1000);
			st->st_ctime = st->st_mtime;
		}
		break;
	}
}

static void report_stat(fuse_req_t req, const struct node *n,
			struct stat *st);

static double node_timeout(const struct node *n)
{
	return n->kind == K_ROOT || n->kind == K_TOPIC || n->kind == K_GROUPS ?
	       DIR_ATTR_TIMEOUT : 0.0;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino, const struct node *n)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = node_timeout(n);
	e.entry_timeout = n->kind == K_VIEW ? 0.0 : DIR_ATTR_TIMEOUT;
	node_stat(fs_of(req), ino, n, &e.attr);
	report_stat(req, n, &e.attr);
	fuse_reply_entry(req, &e);
}

/* ---- read views -------------------------------------------------------- */

/* A decimal number: -EINVAL if s is not one, -ERANGE if it is too large
 * (*out is then UINT64_MAX). */
static int parse_u64(const char *s, uint64_t *out)
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

/*
 * Resolve a selector (the text after '@') to a partition position:
 * <offset>, earliest, latest, -N, t=<unix ms>, or an ISO-8601 time.
 */
static int view_resolve(struct log *l, const char *sel, uint64_t *pos)
{
	struct log_bounds st;
	uint64_t off, n;
	int64_t ms;
	int rc;

	log_get_bounds(l, &st);
	if (strcmp(sel, "earliest") == 0) {
		off = st.start_offset;
	} else if (strcmp(sel, "latest") == 0) {
		off = st.hw;
	} else if (sel[0] == '-') {
		if (parse_u64(sel + 1, &n) == -EINVAL)
			return -EINVAL; /* too large: every record */
		off = st.hw - st.start_offset > n ? st.hw - n : st.start_offset;
	} else if (strncmp(sel, "t=", 2) == 0 || strchr(sel, 'T')) {
		if (sel[0] == 't') {
			uint64_t u;
			if (parse_u64(sel + 2, &u) == -EINVAL)
				return -EINVAL;
			ms = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		} else if (config_parse_time(sel, &ms) < 0) {
			return -EINVAL;
		}
		rc = log_time_to_offset(l, ms, &off);
		if (rc < 0)
			return rc;
		if (off > st.hw)
			off = st.hw;
	} else {
		rc = parse_u64(sel, &off); /* too large: past the end */
		if (rc == -EINVAL)
			return rc;
		if (rc == -ERANGE || off < st.start_offset || off > st.hw)
			return -ERANGE;
	}
	return log_offset_to_pos(l, off, pos);
}

/* ---- lookup, getattr, readdir ------------------------------------------ */

static int lookup_in_topic(fuse_req_t req, struct node *dir, const char *name)
{
	struct fs *fs = fs_of(req);
	uint64_t id = topic_id(dir->t), p, pos;
	const char *at = strchr(name, '@');
	char num[16];
	struct node n = { .t = dir->t };
	fuse_ino_t ino;
	int rc;

	if (strcmp(name, ".produce") == 0) {
		n.kind = K_PRODUCE;
		reply_entry(req, ino_make(id, K_PRODUCE, 0), &n);
		return 0;
	}
	if (strcmp(name, ".groups") == 0) {
		n.kind = K_GROUPS;
		reply_entry(req, ino_make(id, K_GROUPS, 0), &n);
		return 0;
	}
	if ((at ? (size_t)(at - name) : strlen(name)) >= sizeof(num))
		return -ENOENT;
	snprintf(num, sizeof(num), "%.*s",
		 (int)(at ? (size_t)(at - name) : strlen(name)), name);
	if (parse_u64(num, &p) < 0 || p >= topic_partitions(dir->t) ||
	    (num[0] == '0' && num[1] != '\0'))
		return -ENOENT;
	n.part = (uint32_t)p;
	if (!at) {
		n.kind = K_PART;
		reply_entry(req, ino_make(id, K_PART, n.part), &n);
		return 0;
	}
	rc = view_resolve(part_log(topic_part(dir->t, n.part)), at + 1, &pos);
	if (rc == -EINVAL)
		rc = -ENOENT; /* not a selector: no such file */
	if (rc == -ERANGE) {
		struct log_bounds b;
		log_get_bounds(part_log(topic_part(dir->t, n.part)), &b);
		n.kind = K_PART;
		refuse(req, &n, ERANGE, "view %s refused: offset out of range "
		       "(log start %" PRIu64 ", end %" PRIu64 ")", at,
		       b.start_offset, b.hw);
		return 0;
	}
	if (rc < 0)
		return rc;
	ino = view_add(fs, id, n.part, pos);
	if (!ino)
		return -ENOMEM;
	n.kind = K_VIEW;
	n.view_start = pos;
	reply_entry(req, ino, &n);
	return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node dir, n = { 0 };
	int rc;

	rc = node_get(fs, parent, &dir);
	if (rc < 0)
		goto out_err;
	if (dir.kind == K_ROOT) {
		if (strcmp(name, ".status") == 0 || strcmp(name, ".metrics") == 0) {
			n.kind = name[1] == 's' ? K_STATUS : K_METRICS;
			reply_entry(req, name[1] == 's' ? INO_STATUS : INO_METRICS,
				    &n);
			return;
		}
		n.t = broker_topic_get(fs->broker, name);
		if (!n.t) {
			rc = -ENOENT;
			goto out_err;
		}
		n.kind = K_TOPIC;
		reply_entry(req, ino_make(topic_id(n.t), K_TOPIC, 0), &n);
		node_put(&n);
		return;
	}
	if (dir.kind == K_TOPIC) {
		rc = lookup_in_topic(req, &dir, name);
	} else if (dir.kind == K_GROUPS) {
		rc = groups_lookup(topic_groups(dir.t), name, &n.g);
		if (rc == -EINVAL)
			rc = -ENOENT;
		if (rc == 0) {
			n.kind = K_GROUP;
			n.t = dir.t;
			reply_entry(req, ino_make(topic_id(dir.t), K_GROUP,
						  group_index(n.g)), &n);
		}
	} else {
		rc = -ENOTDIR;
	}
	node_put(&dir);
	if (rc == 0)
		return;
out_err:
	fuse_reply_err(req, -rc);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino & INO_VIEW_BIT)
		view_forget(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++) {
		if (forgets[i].ino & INO_VIEW_BIT)
			view_forget(fs_of(req), forgets[i].ino,
				    forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

static struct fh *fh_of(struct fuse_file_info *fi);

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct node n;
	struct stat st;
	int rc;

	/* fstat of an open file works even after its topic was deleted. */
	if (fi && fi->fh && fh_of(fi)->p && topic_deleted(fh_of(fi)->t)) {
		struct fh *fh = fh_of(fi);
		n = (struct node){ .kind = fh->kind, .t = fh->t,
				   .part = part_index(fh->p),
				   .view_start = fh->base };
		node_stat(fs_of(req), ino, &n, &st);
		fuse_reply_attr(req, &st, 0.0);
		return;
	}
	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	node_stat(fs_of(req), ino, &n, &st);
	report_stat(req, &n, &st);
	/* An open .status or .metrics (lseek SEEK_END): its own snapshot. */
	if (fi && fi->fh && fh_of(fi)->text)
		st.st_size = (off_t)fh_of(fi)->text_len;
	fuse_reply_attr(req, &st, node_timeout(&n));
	node_put(&n);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	const int allowed = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
			    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW |
			    FUSE_SET_ATTR_CTIME;

	(void)attr;
	/* Partitions are append-only: no truncation, no mode changes.
	 * Time updates (touch) are accepted and ignored. */
	if (to_set & FUSE_SET_ATTR_SIZE) {
		refuse_ino(req, ino, EPERM, "truncate refused: partitions are "
			   "append-only");
		return;
	}
	if (to_set & ~allowed) {
		refuse_ino(req, ino, EPERM, "change of mode or owner refused: "
			   "topicfs files have fixed permissions (mount "
			   "options uid, gid, umask)");
		return;
	}
	op_getattr(req, ino, fi);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	off_t next;
};

/* Add one entry; false when the buffer is full. */
static bool dirbuf_add(struct dirbuf *d, const char *name, fuse_ino_t ino,
		       mode_t mode, off_t next)
{
	struct stat st = { .st_ino = ino, .st_mode = mode };
	size_t n = fuse_add_direntry(d->req, d->buf + d->used,
				     d->size - d->used, name, &st, next);

	if (n > d->size - d->used)
		return false;
	d->used += n;
	return true;
}

static void readdir_root(struct fs *fs, struct dirbuf *d, off_t off)
{
	struct topic *ts[64];
	unsigned n;

	if (off < 1 && !dirbuf_add(d, ".", INO_ROOT, S_IFDIR, 1))
		return;
	if (off < 2 && !dirbuf_add(d, "..", INO_ROOT, S_IFDIR, 2))
		return;
	if (off < 3 && !dirbuf_add(d, ".status", INO_STATUS, S_IFREG, 3))
		return;
	if (off < 4 && !dirbuf_add(d, ".metrics", INO_METRICS, S_IFREG, 4))
		return;
	/* Topics follow, at offset 4 + id. */
	uint64_t after = off < 4 ? 0 : (uint64_t)off - 4;
	bool full = false;
	while (!full && (n = broker_topics_list(fs->broker, after, ts, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			uint64_t id = topic_id(ts[i]);
			if (!full)
				full = !dirbuf_add(d, topic_name(ts[i]),
						   ino_make(id, K_TOPIC, 0),
						   S_IFDIR, (off_t)(4 + id));
			after = id;
			topic_put(ts[i]);
		}
	}
}

static void readdir_topic(struct node *dir, struct dirbuf *d, off_t off)
{
	uint64_t id = topic_id(dir->t);
	uint32_t n = topic_partitions(dir->t);
	char name[16];

	if (off < 1 && !dirbuf_add(d, ".", ino_make(id, K_TOPIC, 0), S_IFDIR, 1))
		return;
	if (off < 2 && !dirbuf_add(d, "..", INO_ROOT, S_IFDIR, 2))
		return;
	if (off < 3 && !dirbuf_add(d, ".produce", ino_make(id, K_PRODUCE, 0),
				   S_IFREG, 3))
		return;
	if (off < 4 && !dirbuf_add(d, ".groups", ino_make(id, K_GROUPS, 0),
				   S_IFDIR, 4))
		return;
	for (uint32_t p = off < 4 ? 0 : (uint32_t)(off - 4); p < n; p++) {
		snprintf(name, sizeof(name), "%" PRIu32, p);
		if (!dirbuf_add(d, name, ino_make(id, K_PART, p), S_IFREG,
				(off_t)(5 + p)))
			return;
	}
}

/* Stored groups, at offset 3 + group index. */
static void readdir_groups(struct node *dir, fuse_ino_t ino, struct dirbuf *d,
			   off_t off)
{
	uint64_t id = topic_id(dir->t);
	struct group *gs[64];
	uint32_t from = off < 2 ? 0 : (uint32_t)(off - 2);
	unsigned n;

	if (off < 1 && !dirbuf_add(d, ".", ino, S_IFDIR, 1))
		return;
	if (off < 2 && !dirbuf_add(d, "..", ino_make(id, K_TOPIC, 0), S_IFDIR, 2))
		return;
	while ((n = groups_list(topic_groups(dir->t), from, gs, 64)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			uint32_t idx = group_index(gs[i]);
			if (!dirbuf_add(d, group_name(gs[i]),
					ino_make(id, K_GROUP, idx), S_IFREG,
					(off_t)(3 + idx)))
				return;
			from = idx + 1;
		}
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dirbuf d = { req, NULL, size, 0, 0 };
	struct node n;
	int rc;

	(void)fi;
	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	d.buf = malloc(size);
	if (!d.buf) {
		node_put(&n);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (n.kind == K_ROOT)
		readdir_root(fs_of(req), &d, off);
	else if (n.kind == K_TOPIC)
		readdir_topic(&n, &d, off);
	else if (n.kind == K_GROUPS)
		readdir_groups(&n, ino, &d, off);
	else {
		rc = -ENOTDIR;
	}
	node_put(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

/* ---- topics: mkdir and rmdir ------------------------------------------- */

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fs *fs = fs_of(req);
	struct node n = { .kind = K_TOPIC };
	int rc;

	(void)mode;
	if (parent != INO_ROOT) {
		refuse_ino(req, parent, EPERM, "mkdir '%.64s' refused: topics "
			   "are directories of the mount's root only", name);
		return;
	}
	if (!topic_name_valid(name)) {
		msg(LOG_NOTICE, "mkdir '%.64s': invalid topic name (1 to 249 of "
		    "[A-Za-z0-9._-], not starting with '.')", name);
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = broker_topic_create(fs->broker, name);
	if (rc == 0) {
		n.t = broker_topic_get(fs->broker, name);
		rc = n.t ? 0 : -ENOENT;
	}
	if (rc < 0) {
		if (rc == -EEXIST)
			fuse_reply_err(req, EEXIST); /* mkdir -p asks */
		else
			refuse_ino(req, parent, -rc, "mkdir '%.64s' failed: %s",
				   name, strerror(-rc));
		return;
	}
	msg(LOG_INFO, "topic %s created with %" PRIu32 " partition(s)", name,
	    topic_partitions(n.t));
	reply_entry(req, ino_make(topic_id(n.t), K_TOPIC, 0), &n);
	node_put(&n);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc;

	if (parent != INO_ROOT) {
		refuse_ino(req, parent, EPERM, "rmdir '%.64s' refused: only "
			   "topics can be removed", name);
		return;
	}
	rc = broker_topic_delete(fs_of(req)->broker, name);
	if (rc < 0 && rc != -ENOENT)
		refuse_ino(req, parent, -rc, "rmdir of topic '%.64s' failed: "
			   "%s", name, strerror(-rc));
	else
		fuse_reply_err(req, -rc);
}

/* A new file, link or node: never (partitions come with their topic). */
static void refuse_new_file(fuse_req_t req, fuse_ino_t parent,
			    const char *name)
{
	refuse_ino(req, parent, EPERM, "creating '%.64s' refused: topics are "
		   "made by mkdir, their partitions by num.partitions", name);
}

/* rm MNT/t/.groups/<g> deletes a group; everything else is EPERM. */
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node dir;
	int rc;

	rc = node_get(fs_of(req), parent, &dir);
	if (rc == 0 && dir.kind != K_GROUPS) {
		refuse(req, &dir, EPERM, "removing '%.64s' refused: partitions "
		       "are append-only (rmdir removes a whole topic)", name);
		node_put(&dir);
		return;
	}
	if (rc == 0)
		rc = groups_delete(topic_groups(dir.t), name);
	node_put(&dir);
	fuse_reply_err(req, -rc);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	(void)newparent;
	(void)flags;
	refuse_ino(req, parent, EPERM, "renaming '%.64s' to '%.64s' refused: "
		   "topics and partitions keep their names", name, newname);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)mode;
	(void)rdev;
	refuse_new_file(req, parent, name);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	refuse_new_file(req, parent, name);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	(void)link;
	refuse_new_file(req, parent, name);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)ino;
	refuse_new_file(req, newparent, newname);
}

/* ---- open and release --------------------------------------------------- */

/* The record at position pos (the log end and start are allowed). */
static int record_at(struct log *l, uint64_t pos, uint64_t *off,
		     uint64_t *rec_pos)
{
	struct log_bounds b;

	log_get_bounds(l, &b);
	if (pos >= b.hw_pos) {
		*off = b.hw;
		*rec_pos = b.hw_pos;
		return 0;
	}
	if (pos <= b.start_pos) {
		*off = b.start_offset;
		*rec_pos = b.start_pos;
		return 0;
	}
	return log_pos_to_offset(l, pos, off, rec_pos);
}

/*
 * Add the records that lie wholly inside the stretch [cnt_pos, out_pos)
 * this file has read to the partition's records_out, and start the
 * stretch again at the first record not counted. Two lookups per stretch
 * (a sequential reader has one stretch per open), not per read.
 * Called with fh->lock held.
 */
static void fh_count_out(struct fh *fh)
{
	struct log *l = part_log(fh->p);
	uint64_t a, apos, b, bpos;

	if (fh->out_pos <= fh->cnt_pos)
		return;
	if (record_at(l, fh->cnt_pos, &a, &apos) < 0 ||
	    record_at(l, fh->out_pos, &b, &bpos) < 0) {
		fh->cnt_pos = fh->out_pos; /* retention took it: uncounted */
		return;
	}
	if (apos < fh->cnt_pos)
		a++; /* its first bytes were not in this stretch */
	if (b > a)
		atomic_fetch_add(&part_stats(fh->p)->records_out, b - a);
	if (bpos > fh->cnt_pos)
		fh->cnt_pos = bpos;
}

/* A read delivered partition bytes [from, to). */
static void fh_note_out(struct fh *fh, uint64_t from, uint64_t to)
{
	atomic_fetch_add(&part_stats(fh->p)->bytes_out, to - from);
	if (from >= fh->cnt_pos && from <= fh->out_pos) {
		if (to > fh->out_pos)
			fh->out_pos = to;
		return;
	}
	fh_count_out(fh);
	fh->cnt_pos = from;
	fh->out_pos = to;
}

static void fh_free(struct fh *fh)
{
	if (fh->member)
		member_leave(fh->member);
	if (fh->cur)
		log_cursor_free(fh->cur);
	if (fh->t)
		topic_put(fh->t);
	pthread_mutex_destroy(&fh->lock);
	free(fh->partial);
	free(fh->scratch);
	frame_lens_free(&fh->lens);
	free(fh->route);
	free(fh->bv);
	free(fh->mread);
	free(fh->copy);
	free(fh->text);
	free(fh);
}

static char *report_take(struct fs *fs, int kind, pid_t pid, size_t *len);

/* Why opening n with flags is refused (the errno in *err), or NULL. */
static const char *open_refused(const struct node *n, int flags, int *err)
{
	int acc = flags & O_ACCMODE;

	*err = EACCES;
	if (n->kind == K_PRODUCE && acc != O_WRONLY)
		return "open for reading refused: .produce is write-only "
		       "(read the partitions)";
	if (n->kind != K_PART && n->kind != K_PRODUCE && acc != O_RDONLY)
		return "open for writing refused: this file is read-only";
	/* Partitions cannot be truncated (`>` fails as on chattr +a
	 * files); .produce is a sink, so `>` simply writes records. */
	*err = EPERM;
	if ((flags & O_TRUNC) && acc != O_RDONLY && n->kind == K_PART)
		return "open with O_TRUNC (`>`) refused: partitions are "
		       "append-only, use `>>`";
	return NULL;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int acc = fi->flags & O_ACCMODE;
	const char *why;
	struct node n;
	struct fh *fh;
	int rc, err;

	rc = node_get(fs, ino, &n);
	if (rc < 0)
		goto out_err;
	rc = -EISDIR;
	if (n.kind == K_ROOT || n.kind == K_TOPIC || n.kind == K_GROUPS)
		goto out_put;
	why = open_refused(&n, fi->flags, &err);
	if (why) {
		refuse(req, &n, err, "%s", why);
		node_put(&n);
		return;
	}
	rc = -ENOMEM;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		goto out_put;
	pthread_mutex_init(&fh->lock, NULL);
	fh->kind = n.kind;
	fh->sticky = UINT32_MAX;
	fh->t = n.t;
	n.t = NULL;
	fh->writable = acc != O_RDONLY;
	fi->nonseekable = 0;
	switch (fh->kind) {
	case K_STATUS:
	case K_METRICS:
		fh->opener = fuse_req_ctx(req)->pid;
		fh->text = report_take(fs, fh->kind, fh->opener, &fh->text_len);
		if (!fh->text)
			goto out_free;
		fi->direct_io = 1;
		break;
	case K_PART:
	case K_VIEW:
		fh->p = topic_part(fh->t, n.part);
		if (log_cursor_new(part_log(fh->p), &fh->cur) < 0)
			goto out_free;
		fh->bv = malloc(sizeof(struct fuse_bufvec) +
				READ_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!fh->bv)
			goto out_free;
		fh->base = fh->kind == K_VIEW ? n.view_start : 0;
		/*
		 * Partition files bypass the kernel's page cache (see
		 * docs/FILESYSTEM.md, "Why direct_io"): a cached write lands
		 * at the offset the kernel guesses, and a cached read that
		 * races with the file growing leaves zeros in the last page.
		 * Reads are still zero copy: spliced from the segment files.
		 */
		fi->direct_io = 1;
		break;
	case K_PRODUCE:
		fh->p = NULL;
		fi->direct_io = 1;
		break;
	case K_GROUP:
		fh->mread = malloc(sizeof(*fh->mread));
		fh->bv = malloc(sizeof(struct fuse_bufvec) +
				MEMBER_EXTENTS_MAX * sizeof(struct fuse_buf));
		if (!fh->mread || !fh->bv)
			goto out_free;
		rc = member_join(n.g, fuse_req_ctx(req)->pid, &fh->member);
		if (rc < 0)
			goto out_free_rc;
		fi->direct_io = 1;
		break;
	}
	pthread_mutex_lock(&fs->lock);
	fh->next = fs->open_files;
	if (fs->open_files)
		fs->open_files->prev = fh;
	fs->open_files = fh;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The open was interrupted: undo it. */
		fi->fh = 0;
	}
	node_put(&n);
	return;

out_free:
	rc = -ENOMEM;
out_free_rc:
	fh_free(fh);
out_put:
	node_put(&n);
out_err:
	fuse_reply_err(req, -rc);
}

static struct fh *fh_of(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

/* ---- writing ------------------------------------------------------------ */

static const char *fh_where(const struct fh *fh, char *buf, size_t size)
{
	struct node n = { .kind = fh->kind, .t = fh->t,
			  .part = fh->p ? part_index(fh->p) : 0 };

	return node_where(&n, buf, size);
}

/*
 * A record refused as too long (-EMSGSIZE): whether it goes on past the
 * bytes at hand (open), and for a binary frame how many of its bytes are
 * still to come (left).
 */
struct too_long {
	bool open;
	uint64_t left;
};

/*
 * Cut data (len bytes) into records by the topic's framing, adding their
 * lengths to fh->lens; *used gets the bytes of whole records (the rest
 * is an incomplete record). -EMSGSIZE if a record (or the incomplete
 * rest) exceeds max.message.bytes, with *tl saying whether it ends here.
 */
static int fh_frame(struct fh *fh, const struct topic_config *cfg,
		    const uint8_t *data, size_t len, size_t *used,
		    struct too_long *tl)
{
	size_t max = cfg->max_message_bytes, at = 0;
	int rc;

	rc = cfg->framing == FRAMING_LINES ?
	     frame_lines(&fh->lens, max, data, len, &at) :
	     frame_binary(&fh->lens, max, data, len, &at);
	if (rc == -EMSGSIZE && cfg->framing == FRAMING_BINARY) {
		/* frame_binary stopped at the bad frame's length field. */
		uint64_t rec = frame_size(data + at);
		tl->open = at + rec > len;
		tl->left = tl->open ? at + rec - len : 0;
	}
	if (rc < 0)
		return rc; /* a line too long ends at its newline, here */
	/* The incomplete rest: a line without its newline, or a frame. */
	if (len - at > (cfg->framing == FRAMING_LINES ? max : max + 4)) {
		tl->open = true;
		tl->left = 0;
		return -EMSGSIZE;
	}
	*used = at;
	return 0;
}

/* The key of a record: the bytes before the first separator, if any. */
static bool record_key(const struct topic_config *cfg, const uint8_t *rec,
		       uint32_t len, const uint8_t **key, size_t *klen)
{
	size_t slen = strlen(cfg->key_separator);
	const uint8_t *body = rec;
	size_t blen = len;

	if (slen == 0)
		return false;
	if (cfg->framing == FRAMING_BINARY) {
		body += 4;
		blen -= 4;
	} else if (blen > 0 && body[blen - 1] == '\n') {
		blen--;
	}
	for (size_t i = 0; i + slen <= blen; i++) {
		if (memcmp(body + i, cfg->key_separator, slen) == 0) {
			*key = body;
			*klen = i;
			return true;
		}
	}
	return false;
}

static void fh_note(struct fh *fh, uint32_t part,
		    const struct log_append_info *info)
{
	fh->last.base_offset = info->base_offset;
	fh->last.end_offset = info->end_offset;
	fh->last.partition = part;
	fh->last.records = (uint32_t)(info->end_offset - info->base_offset);
}

/*
 * .produce: send each record to its partition (murmur2 of the key, or
 * one rotating partition for all unkeyed records of this write()),
 * keeping each partition's records in order. Each partition gets its
 * records as pieces of data, one per run of neighbours going to it. The
 * kernel cuts a write() larger than max_write into requests; op_write
 * keeps fh->sticky across them.
 */
static int fh_route(struct fh *fh, const struct topic_config *cfg,
		    const uint8_t *data)
{
	uint32_t n = fh->lens.n;
	uint32_t nparts = topic_partitions(fh->t);
	uint32_t *counts, *lens;
	struct iovec *runs;
	int rc = 0;

	if (grow(&fh->route, &fh->rcap, n, sizeof(*fh->route)) < 0)
		return -ENOMEM;
	for (uint32_t i = 0, at = 0; i < n; at += fh->lens.v[i], i++) {
		const uint8_t *key;
		size_t klen;
		if (record_key(cfg, data + at, fh->lens.v[i], &key, &klen)) {
			fh->route[i] = partition_for_key(key, klen, nparts);
		} else {
			if (fh->sticky == UINT32_MAX)
				fh->sticky = topic_next_sticky(fh->t);
			fh->route[i] = fh->sticky;
		}
	}
	counts = calloc(nparts, sizeof(*counts));
	runs = malloc(n * sizeof(*runs));
	lens = malloc(n * sizeof(*lens));
	if (!counts || !runs || !lens)
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		counts[fh->route[i]]++;
	/* One partition at a time, in partition order. */
	for (uint32_t p = 0; rc == 0 && p < nparts; p++) {
		struct log_append_info info;
		uint32_t k = 0;
		int nruns = 0;

		if (counts[p] == 0)
			continue;
		for (uint32_t i = 0, at = 0; i < n; at += fh->lens.v[i], i++) {
			if (fh->route[i] != p)
				continue;
			if (nruns > 0 && (const uint8_t *)runs[nruns - 1].iov_base +
					 runs[nruns - 1].iov_len == data + at)
				runs[nruns - 1].iov_len += fh->lens.v[i];
			else
				runs[nruns++] = (struct iovec){
					(void *)(data + at), fh->lens.v[i] };
			lens[k++] = fh->lens.v[i];
		}
		rc = part_produce(topic_part(fh->t, p), runs, nruns, lens, k,
				  &info);
		if (rc == 0)
			fh_note(fh, p, &info);
	}
	free(lens);
	free(runs);
	free(counts);
	return rc;
}

/* Append the records of fh->lens, whose bytes lie in the pieces iov. */
static int fh_write_records(struct fh *fh, const struct topic_config *cfg,
			    const struct iovec *iov, int iovcnt)
{
	struct log_append_info info;
	const uint8_t *data = iov[0].iov_base;
	int rc;

	if (fh->kind != K_PRODUCE) {
		rc = part_produce(fh->p, iov, iovcnt, fh->lens.v, fh->lens.n,
				  &info);
		if (rc == 0)
			fh_note(fh, part_index(fh->p), &info);
		return rc;
	}
	if (iovcnt > 1) { /* keys are looked for in whole records */
		size_t len = 0;
		for (int i = 0; i < iovcnt; i++)
			len += iov[i].iov_len;
		if (grow(&fh->scratch, &fh->scap, len, 1) < 0)
			return -ENOMEM;
		for (int i = 0, at = 0; i < iovcnt; at += iov[i].iov_len, i++)
			memcpy(fh->scratch + at, iov[i].iov_base, iov[i].iov_len);
		data = fh->scratch;
	}
	return fh_route(fh, cfg, data);
}

/*
 * How many bytes of buf (*take) complete the partial record that fh holds
 * (fh->plen > 0), and whether they do (*done; if not, all of buf is part
 * of it). -EMSGSIZE if it exceeds max.message.bytes (*tl as fh_frame's).
 */
static int fh_complete(const struct fh *fh, const struct topic_config *cfg,
		       const uint8_t *buf, size_t size, size_t *take,
		       bool *done, struct too_long *tl)
{
	size_t max = cfg->max_message_bytes, rec;
	uint8_t h[4];
	size_t have = 0;

	if (cfg->framing == FRAMING_LINES) {
		const uint8_t *nl = memchr(buf, '\n', size);
		*done = nl != NULL;
		*take = nl ? (size_t)(nl - buf) + 1 : size;
		*tl = (struct too_long){ .open = !*done };
		return fh->plen + *take > max ? -EMSGSIZE : 0;
	}
	/* Binary: the 4-byte length itself may be cut. */
	for (; have < 4 && have < fh->plen; have++)
		h[have] = fh->partial[have];
	for (size_t i = 0; have < 4 && i < size; i++)
		h[have++] = buf[i];
	if (have < 4) {
		*done = false;
		*take = size;
		return 0;
	}
	rec = frame_size(h);
	*done = fh->plen + size >= rec;
	*take = *done ? rec - fh->plen : size;
	*tl = (struct too_long){ .open = !*done,
				 .left = *done ? 0 : rec - fh->plen - size };
	return rec - 4 > max ? -EMSGSIZE : 0;
}

/*
 * The request is refused as the rest of a record refused earlier: count
 * off its bytes, and stop refusing at the record's end (lines: the
 * newline). A request holding the end and more is refused whole. So is
 * one that begins a write() the kernel cut (first): the kernel then
 * fails the whole write() and never sends the rest of it, so the
 * writer's next write() starts a new record.
 */
static int fh_discard(struct fh *fh, const struct topic_config *cfg,
		      const uint8_t *buf, size_t size, bool first)
{
	if (first) {
		fh->discarding = false;
	} else if (cfg->framing == FRAMING_LINES) {
		if (memchr(buf, '\n', size))
			fh->discarding = false;
	} else if (size >= fh->discard_left) {
		fh->discarding = false;
	} else {
		fh->discard_left -= size;
	}
	return -EMSGSIZE;
}

/* Keep len bytes at data after the partial record. */
static int fh_keep(struct fh *fh, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	if (grow(&fh->partial, &fh->pcap, fh->plen + len, 1) < 0)
		return -ENOMEM;
	memcpy(fh->partial + fh->plen, data, len);
	fh->plen += len;
	return 0;
}

/*
 * Append the whole records among the partial record and buf, and keep
 * the rest as the partial record. Nothing is copied on the way: the
 * record that completes the partial one is written from both places.
 * continues: this request carries on a write() whose earlier request
 * was accepted (the kernel cut it); piece: this one is nearly max_write,
 * so the write() may go on in another request.
 */
static int fh_append(struct fh *fh, const uint8_t *buf, size_t size,
		     bool continues, bool piece)
{
	struct topic_config cfg;
	struct too_long tl = { 0 };
	struct iovec iov[2];
	size_t take = 0, used = 0;
	bool done;
	int rc = 0;

	topic_config(fh->t, &cfg);
	if (fh->discarding)
		return fh_discard(fh, &cfg, buf, size, !continues && piece);
	fh->lens.n = 0;
	if (fh->plen > 0) {
		rc = fh_complete(fh, &cfg, buf, size, &take, &done, &tl);
		if (rc == 0 && !done)
			return fh_keep(fh, buf, size);
		if (rc == 0)
			rc = frame_add(&fh->lens, fh->plen + take, SIZE_MAX);
	}
	if (rc == 0)
		rc = fh_frame(fh, &cfg, buf + take, size - take, &used, &tl);
	if (rc == 0 && fh->lens.n > 0) {
		iov[0] = (struct iovec){ fh->partial, fh->plen };
		iov[1] = (struct iovec){ (void *)buf, take + used };
		rc = fh->plen > 0 ? fh_write_records(fh, &cfg, iov, 2)
				  : fh_write_records(fh, &cfg, iov + 1, 1);
	}
	if (rc < 0) {
		/*
		 * Bad input: drop the record being built (the writer is told).
		 * A record too long that goes on past this request is refused
		 * to its end, as the writer sends the rest (after a short
		 * count, or in its next write()s); except when this request
		 * began a write() the kernel cut: the kernel fails that whole
		 * write() and never sends the rest of it.
		 * Anything else (ENOSPC): keep the partial record as it was
		 * before this write, which is refused whole.
		 */
		if (rc == -EMSGSIZE || rc == -EINVAL)
			fh->plen = 0;
		if (rc == -EMSGSIZE && tl.open && (continues || !piece)) {
			fh->discarding = true;
			fh->discard_left = tl.left;
		}
		return rc;
	}
	fh->plen = 0; /* if it was not empty, it is a record now */
	return fh_keep(fh, buf + take + used, size - take - used);
}

/* The partial record as a record of its own: a last line without its
 * newline; a binary frame cut short is malformed (-EINVAL) and dropped. */
static int fh_append_partial(struct fh *fh)
{
	struct topic_config cfg;
	struct iovec iov = { fh->partial, fh->plen };
	int rc;

	topic_config(fh->t, &cfg);
	fh->lens.n = 0;
	rc = cfg.framing == FRAMING_BINARY ? -EINVAL :
	     frame_add(&fh->lens, fh->plen, cfg.max_message_bytes);
	if (rc == 0)
		rc = fh_write_records(fh, &cfg, &iov, 1);
	if (rc == 0 || rc == -EMSGSIZE || rc == -EINVAL)
		fh->plen = 0;
	return rc;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	char where[300];
	int rc;

	(void)ino;
	(void)off; /* every write appends, whatever the file position */
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	fh->owner = fi->lock_owner;
	rc = topic_deleted(fh->t) ? -ENOENT :
	     fh_append(fh, (const uint8_t *)buf, size, fh->last_piece,
		       size >= WRITE_PIECE_MIN);
	fh->last_piece = rc == 0 && size >= WRITE_PIECE_MIN;
	/* A shorter request ends its write(): the next one rotates. */
	if (size < WRITE_PIECE_MIN || rc < 0)
		fh->sticky = UINT32_MAX;
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0) {
		msg(LOG_WARNING, "%s: write of %zu bytes refused: %s",
		    fh_where(fh, where, sizeof(where)), size,
		    rc == -EMSGSIZE ? "a record exceeds max.message.bytes" :
		    rc == -ENOENT ? "the topic was deleted" : strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_reply_write(req, size);
}

/* The partial last record becomes a record (close, fsync, unmount). */
static int fh_flush_partial(struct fh *fh)
{
	char where[300];
	int rc = 0;

	pthread_mutex_lock(&fh->lock);
	if (fh->discarding) {
		/* The last record was refused as too long and its end never
		 * came: close() and fsync() say so too. */
		fh->discarding = false;
		rc = -EMSGSIZE;
	} else if (fh->plen > 0) {
		rc = fh_append_partial(fh);
	}
	pthread_mutex_unlock(&fh->lock);
	if (rc < 0)
		msg(LOG_WARNING, "%s: incomplete record at close dropped: %s",
		    fh_where(fh, where, sizeof(where)),
		    rc == -EINVAL ? "binary frame cut short" :
		    rc == -EMSGSIZE ? "it exceeds max.message.bytes" :
		    strerror(-rc));
	return rc;
}

/*
 * close() of a descriptor. The partial last line becomes a record when the
 * process that wrote it closes its descriptor; not when another process
 * closes a copy (a child closing inherited descriptors at exec), which
 * would cut the line in two. The last close (release) flushes in any case.
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	bool mine;

	(void)ino;
	pthread_mutex_lock(&fh->lock);
	mine = fh->owner == fi->lock_owner;
	pthread_mutex_unlock(&fh->lock);
	fuse_reply_err(req, fh->writable && mine ? -fh_flush_partial(fh) : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	int rc = 0;

	(void)ino;
	(void)datasync;
	if (fh->writable)
		rc = fh_flush_partial(fh);
	if (fh->member) {
		rc = member_commit(fh->member);
	} else if (rc == 0 && fh->p) {
		rc = part_sync(fh->p);
	} else if (rc == 0 && fh->kind == K_PRODUCE) {
		for (uint32_t p = 0; rc == 0 && p < topic_partitions(fh->t); p++)
			rc = part_sync(topic_part(fh->t, p));
	}
	fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fh *fh = fh_of(fi);

	(void)ino;
	if (fh->writable)
		fh_flush_partial(fh);
	if (fh->cur) {
		pthread_mutex_lock(&fh->lock);
		fh_count_out(fh);
		pthread_mutex_unlock(&fh->lock);
	}
	pthread_mutex_lock(&fs->lock);
	if (fh->prev)
		fh->prev->next = fh->next;
	else
		fs->open_files = fh->next;
	if (fh->next)
		fh->next->prev = fh->prev;
	pthread_mutex_unlock(&fs->lock);
	fh_free(fh);
	fuse_reply_err(req, 0);
}

void fs_flush_open_files(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh; fh = fh->next) {
		if (fh->writable)
			fh_flush_partial(fh);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- reading ------------------------------------------------------------ */

static void read_text(fuse_req_t req, struct fh *fh, size_t size, off_t off)
{
	if ((size_t)off >= fh->text_len)
		size = 0;
	else if (size > fh->text_len - (size_t)off)
		size = fh->text_len - (size_t)off;
	fuse_reply_buf(req, fh->text + (size ? off : 0), size);
}

/* Reply to a read with extents: fd ranges are spliced, memory copied. */
static void reply_extents(fuse_req_t req, struct fh *fh,
			  const struct log_extent *ext, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct fuse_buf *b = &fh->bv->buf[i];
		memset(b, 0, sizeof(*b));
		b->size = ext[i].len;
		if (ext[i].mem) {
			b->mem = (void *)ext[i].mem;
		} else {
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			b->fd = ext[i].fd;
			b->pos = (off_t)ext[i].off;
		}
	}
	fh->bv->count = n;
	fh->bv->idx = 0;
	fh->bv->off = 0;
	if (n == 0)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_data(req, fh->bv, FUSE_BUF_SPLICE_MOVE);
}

/* A group member's read: the next whole records of its partitions. */
static void read_member(fuse_req_t req, struct fh *fh, size_t size)
{
	struct member_read *r = fh->mread;
	ssize_t got;

	pthread_mutex_lock(&fh->lock);
	got = member_read(fh->member, size, r);
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		reply_extents(req, fh, r->ext, got ? r->n : 0);
	pthread_mutex_unlock(&fh->lock);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(fi);
	struct log_extent ext[READ_EXTENTS_MAX];
	uint64_t want, pos;
	unsigned n = 0;
	ssize_t got;
	char where[300];

	(void)ino;
	if (fh->text) {
		read_text(req, fh, size, off);
		return;
	}
	if (fh->member) {
		read_member(req, fh, size);
		return;
	}
	if (!fh->cur) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	want = fh->base + fh->skew + (uint64_t)off;
	pos = want;
	got = log_read(fh->cur, &pos, size, ext, READ_EXTENTS_MAX, &n);
	/*
	 * A read that stopped early although more is there (one
	 * decompressed batch per call, or more segments than extents) is
	 * completed by copying: pread() and dd expect full reads.
	 */
	if (got > 0 && (size_t)got < size &&
	    (ext[0].mem || n == READ_EXTENTS_MAX)) {
		if (grow(&fh->copy, &fh->copy_cap, size, 1) < 0) {
			got = -ENOMEM;
		} else {
			pos = want;
			got = log_read_copy(fh->cur, &pos, fh->copy, size);
			if (got > 0) {
				ext[0] = (struct log_extent){ .mem = fh->copy,
							      .len = (size_t)got };
				n = 1;
			}
		}
	}
	if (got > 0 && pos != want) {
		/* Retention removed the bytes asked for: the file offsets of
		 * this open file shift so that reading goes on at the log
		 * start. */
		fh->skew += pos - want;
	}
	if (got < 0) {
		pthread_mutex_unlock(&fh->lock);
		if (got == -EIO)
			msg(LOG_ERR, "%s: read at position %" PRIu64 ": stored "
			    "bytes failed their checksum",
			    fh_where(fh, where, sizeof(where)), want);
		fuse_reply_err(req, (int)-got);
		return;
	}
	if (got > 0)
		fh_note_out(fh, pos, pos + (uint64_t)got);
	reply_extents(req, fh, ext, n);
	pthread_mutex_unlock(&fh->lock);
}

/* ---- ioctl -------------------------------------------------------------- */

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct fh *fh = fh_of(fi);
	struct topicfs_last_write w;

	(void)ino;
	(void)arg;
	(void)in_buf;
	(void)in_bufsz;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (cmd != TOPICFS_IOC_LAST_WRITE || out_bufsz < sizeof(w) ||
	    (fh->kind != K_PART && fh->kind != K_PRODUCE)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	w = fh->last;
	pthread_mutex_unlock(&fh->lock);
	fuse_reply_ioctl(req, 0, &w, sizeof(w));
}

/* ---- extended attributes ------------------------------------------------ */

static const char *const part_attrs[] = {
	"log_start_offset", "high_watermark", "log_end_offset",
	"recovery_point", "leader", "leader_epoch", "replicas", "isr",
	"log_start_position", "size_bytes", "segments",
};
#define PART_ATTRS (sizeof(part_attrs) / sizeof(part_attrs[0]))

static int part_attr(struct part *p, const char *name, char *buf, size_t size)
{
	struct log_state st;

	log_get_state(part_log(p), &st);
	if (strcmp(name, "log_start_offset") == 0)
		snprintf(buf, size, "%" PRIu64, st.start_offset);
	else if (strcmp(name, "high_watermark") == 0)
		snprintf(buf, size, "%" PRIu64, st.hw);
	else if (strcmp(name, "log_end_offset") == 0)
		snprintf(buf, size, "%" PRIu64, st.leo);
	else if (strcmp(name, "recovery_point") == 0)
		snprintf(buf, size, "%" PRIu64, st.recovery_point);
	else if (strcmp(name, "leader") == 0 || strcmp(name, "replicas") == 0 ||
		 strcmp(name, "isr") == 0)
		snprintf(buf, size, "0");
	else if (strcmp(name, "leader_epoch") == 0)
		snprintf(buf, size, "%" PRIu32, st.leader_epoch);
	else if (strcmp(name, "log_start_position") == 0)
		snprintf(buf, size, "%" PRIu64, st.start_pos);
	else if (strcmp(name, "size_bytes") == 0)
		snprintf(buf, size, "%" PRIu64, st.size_bytes);
	else if (strcmp(name, "segments") == 0)
		snprintf(buf, size, "%" PRIu32, st.segments);
	else
		return -ENODATA;
	return 0;
}

/* Reply to getxattr/listxattr with value (len bytes) per the size rule. */
static void reply_xattr(fuse_req_t req, const char *value, size_t len,
			size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	char value[XATTR_VALUE_MAX];
	struct topic_config cfg;
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc == 0 && strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
		rc = -ENODATA;
	if (rc == 0) {
		const char *key = name + strlen(XATTR_PREFIX);
		if (n.kind == K_TOPIC) {
			topic_config(n.t, &cfg);
			rc = config_get(&cfg, key, value, sizeof(value));
		} else if (n.kind == K_PART) {
			rc = part_attr(topic_part(n.t, n.part), key, value,
				       sizeof(value));
		} else if (n.kind == K_GROUP) {
			rc = group_getxattr(n.g, key, value, sizeof(value));
		} else {
			rc = -ENODATA;
		}
	}
	node_put(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, value, strlen(value), size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *list = NULL;
	size_t len = 0, cap = 0;
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc == 0 && n.kind == K_GROUP) {
		rc = group_listxattr(n.g, &list, &len);
	} else if (rc == 0) {
		size_t count = n.kind == K_TOPIC ? config_count() :
			       n.kind == K_PART ? PART_ATTRS : 0;
		for (size_t i = 0; i < count && rc == 0; i++) {
			const char *key = n.kind == K_TOPIC ? config_name(i) :
					  part_attrs[i];
			size_t need = strlen(XATTR_PREFIX) + strlen(key) + 1;
			rc = grow(&list, &cap, len + need, 1);
			if (rc == 0) {
				sprintf(list + len, "%s%s", XATTR_PREFIX, key);
				len += need;
			}
		}
	}
	node_put(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_xattr(req, list, len, size);
	free(list);
}

/* Why an xattr change was refused, for its log line. */
static const char *xattr_cause(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "not a valid value for it";
	case -ENODATA:
		return "no such setting here";
	case -EPERM:
		return "read-only state";
	default:
		return strerror(-rc);
	}
}

/* A value for a log line: at most size - 1 bytes, '?' for unprintable
 * ones, "..." where it was cut; a final newline (echo) left out. */
static const char *printable(const char *v, size_t len, char *buf,
			     size_t size)
{
	bool cut;

	if (len > 0 && v[len - 1] == '\n')
		len--;
	cut = len > size - 1;
	if (cut)
		len = size - 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (cut)
		memcpy(buf + len - 3, "...", 3);
	buf[len] = '\0';
	return buf;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	const char *cause = NULL;
	struct node n;
	int rc;

	(void)flags;
	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* A name that is not a setting of this file: ENODATA (CONTRACT 7). */
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) {
		rc = -ENODATA;
		cause = "only user.topicfs.* attributes exist";
	} else if (n.kind == K_TOPIC) {
		rc = topic_config_set(n.t, name + strlen(XATTR_PREFIX), value,
				      size);
	} else if (n.kind == K_GROUP) {
		rc = group_setxattr(n.g, name + strlen(XATTR_PREFIX), value, size);
	} else if (n.kind == K_PART) {
		char tmp[64];
		rc = part_attr(topic_part(n.t, n.part),
			       name + strlen(XATTR_PREFIX), tmp, sizeof(tmp));
		rc = rc == 0 ? -EPERM : rc;
	} else {
		rc = -ENODATA;
		cause = "this file has no settings";
	}
	if (rc < 0) {
		char shown[80];
		refuse(req, &n, -rc, "setting %.200s to '%s' refused: %s", name,
		       printable(value, size, shown, sizeof(shown)),
		       cause ? cause : xattr_cause(rc));
	} else {
		fuse_reply_err(req, 0);
	}
	node_put(&n);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct node n;
	int rc;

	rc = node_get(fs_of(req), ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (n.kind == K_TOPIC &&
	    strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
		rc = topic_config_reset(n.t, name + strlen(XATTR_PREFIX));
	else if (n.kind == K_PART)
		rc = -EPERM;
	else
		rc = -ENODATA;
	if (rc < 0)
		refuse(req, &n, -rc, "removing %.200s refused: %s", name,
		       xattr_cause(rc));
	else
		fuse_reply_err(req, 0);
	node_put(&n);
}

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

/* Bring records_out up to date with what open files have read. */
static void count_open_reads(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (struct fh *fh = fs->open_files; fh; fh = fh->next) {
		if (!fh->cur)
			continue;
		pthread_mutex_lock(&fh->lock);
		fh_count_out(fh);
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

static int64_t report_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
	       report_now_ms() - r->made_ms < REPORT_REUSE_MS;
}

/*
 * The st_size of .status or .metrics for the thread asking (lookup,
 * stat, fstat): while it has the file open, the length of the text its
 * open file reads; otherwise the length of the text its next open will
 * read, rendered now and kept for it (REPORT_REUSE_MS). Other files:
 * nothing to do.
 */
static void report_stat(fuse_req_t req, const struct node *n,
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
		open = fh->text && fh->kind == n->kind && fh->opener == pid;
		if (open)
			st->st_size = (off_t)fh->text_len;
	}
	pthread_mutex_unlock(&fs->lock);
	if (open)
		return;
	pthread_mutex_lock(&fs->report_lock);
	r = report_slot(fs, n->kind, pid);
	if (!report_fresh(r, pid)) {
		free(r->text);
		*r = (struct report){ .pid = pid, .made_ms = report_now_ms() };
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
static char *report_take(struct fs *fs, int kind, pid_t pid, size_t *len)
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

/* ---- the rest ------------------------------------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* Zero copy reads; no writeback cache (docs/FILESYSTEM.md). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_SPLICE_MOVE)
		conn->want |= FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * Stored bytes never change, so the kernel need not ask for the
	 * attributes before every cached read to see whether they did; a
	 * size change (the file grew) still drops the cache.
	 */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_write = DATA_IO_SIZE;
	conn->max_read = fs->max_read;
	conn->max_readahead = DATA_IO_SIZE;
}

/* Space is the data directory's. */
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (statvfs(broker_datadir(fs_of(req)->broker), &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = TOPIC_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Partitions grow only by appends: preallocating or punching is refused. */
static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
			 off_t length, struct fuse_file_info *fi)
{
	(void)fi;
	refuse_ino(req, ino, EOPNOTSUPP, "fallocate (mode %d, %lld bytes at "
		   "%lld) refused: files here grow only by appends", mode,
		   (long long)length, (long long)off);
}

static const struct fuse_lowlevel_ops fs_operations = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.symlink = op_symlink,
	.link = op_link,
	.ioctl = op_ioctl,
	.fallocate = op_fallocate,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &fs_operations;
}

int fs_new(struct broker *b, unsigned max_read, const struct fs_perms *perms,
	   struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->broker = b;
	fs->max_read = max_read;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->report_lock, NULL);
	fs->uid = perms->uid;
	fs->gid = perms->gid;
	fs->umask = perms->umask & 0777;
	fs->mount_time = time(NULL);
	*out = fs;
	return 0;
}

void fs_free(struct fs *fs)
{
	/* Files still open at unmount: the kernel sends no release. */
	while (fs->open_files) {
		struct fh *fh = fs->open_files;
		fs->open_files = fh->next;
		fh_free(fh);
	}
	while (fs->views) {
		struct view *v = fs->views;
		fs->views = v->next;
		free(v);
	}
	for (size_t i = 0; i < 2; i++) {
		for (size_t k = 0; k < REPORT_SLOTS; k++)
			free(fs->reports[i][k].text);
	}
	pthread_mutex_destroy(&fs->report_lock);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
