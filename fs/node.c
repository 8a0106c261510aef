/* Inode numbers, what they name, read views, refusals, attributes. */
#include "adapter.h"

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
#include "msg.h"
#include "partitioner.h"

struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

fuse_ino_t ino_make(uint64_t topic_id, int kind, uint32_t part)
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

fuse_ino_t view_add(struct fs *fs, int kind, uint64_t topic_id,
		    uint32_t part, uint64_t start_pos)
{
	struct view *v = calloc(1, sizeof(*v));
	fuse_ino_t ino = 0;

	if (!v)
		return 0;
	pthread_mutex_lock(&fs->lock);
	v->ino = ino = (fuse_ino_t)(INO_VIEW_BIT | ++fs->next_view);
	v->kind = kind;
	v->topic_id = topic_id;
	v->part = part;
	v->start_pos = start_pos;
	v->nlookup = 1;
	v->next = fs->views;
	fs->views = v;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

void view_forget(struct fs *fs, fuse_ino_t ino, uint64_t n)
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

int node_get(struct fs *fs, fuse_ino_t ino, struct node *n)
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
			n->kind = v->kind;
			id = v->topic_id;
			n->part = v->part;
			n->view_start = v->start_pos;
		}
		pthread_mutex_unlock(&fs->lock);
		if (!v)
			return -ENOENT;
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

void node_put(struct node *n)
{
	if (n->t)
		topic_put(n->t);
	n->t = NULL;
}

/* What a node is, for log lines: "topic t partition 0" and the like. */
const char *node_where(const struct node *n, char *buf, size_t size)
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
void refuse(fuse_req_t req, const struct node *n, int err,
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
void refuse_ino(fuse_req_t req, fuse_ino_t ino, int err,
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

void node_stat(struct fs *fs, fuse_ino_t ino, const struct node *n,
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


double node_timeout(const struct node *n)
{
	return n->kind == K_ROOT || n->kind == K_TOPIC || n->kind == K_GROUPS ?
	       DIR_ATTR_TIMEOUT : 0.0;
}

void reply_entry(fuse_req_t req, fuse_ino_t ino, const struct node *n)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = node_timeout(n);
	e.entry_timeout = n->kind == K_VIEW || n->kind == K_PRODUCE ?
			  0.0 : DIR_ATTR_TIMEOUT;
	node_stat(fs_of(req), ino, n, &e.attr);
	report_stat(req, n, &e.attr);
	fuse_reply_entry(req, &e);
}

/* ---- read views -------------------------------------------------------- */

/*
 * Resolve a selector (the text after '@') to a partition position:
 * <offset>, earliest, latest, -N, t=<unix ms>, or an ISO-8601 time.
 */
int view_resolve(struct log *l, const char *sel, uint64_t *pos)
{
	struct selector s;
	uint64_t off;
	int rc = selector_parse(sel, &s);

	if (rc == 0)
		rc = selector_resolve(l, &s, &off);
	return rc < 0 ? rc : log_offset_to_pos(l, off, pos);
}
