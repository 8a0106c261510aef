/* The namespace: lookup, getattr, readdir, mkdir, rmdir, and the
 * changes refused (new files, links, renames, removals). */
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
		ino = view_add(fs, K_PRODUCE, id, 0, 0);
		if (!ino)
			return -ENOMEM;
		reply_entry(req, ino, &n);
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
	if (config_parse_u64(num, &p) < 0 || p >= topic_partitions(dir->t) ||
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
	ino = view_add(fs, K_VIEW, id, n.part, pos);
	if (!ino)
		return -ENOMEM;
	n.kind = K_VIEW;
	n.view_start = pos;
	reply_entry(req, ino, &n);
	return 0;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
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

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino & INO_VIEW_BIT)
		view_forget(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++) {
		if (forgets[i].ino & INO_VIEW_BIT)
			view_forget(fs_of(req), forgets[i].ino,
				    forgets[i].nlookup);
	}
	fuse_reply_none(req);
}


void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct node n;
	struct stat st;
	int rc;
	struct fh *fh = fi && fi->fh ? fh_of(fi) : NULL;
	struct part_fh *pf = fh ? fh_part(fh) : NULL;

	/* fstat of an open file works even after its topic was deleted. */
	if (pf && topic_deleted(fh->t)) {
		n = (struct node){ .kind = fh->kind, .t = fh->t,
				   .part = part_index(pf->r.p),
				   .view_start = pf->r.base };
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
	if (fh && fh_report(fh))
		st.st_size = (off_t)fh_report(fh)->len;
	fuse_reply_attr(req, &st, node_timeout(&n));
	node_put(&n);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
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

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
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

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
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
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
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

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	(void)newparent;
	(void)flags;
	refuse_ino(req, parent, EPERM, "renaming '%.64s' to '%.64s' refused: "
		   "topics and partitions keep their names", name, newname);
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)mode;
	(void)rdev;
	refuse_new_file(req, parent, name);
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	(void)fi;
	refuse_new_file(req, parent, name);
}

void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	(void)link;
	refuse_new_file(req, parent, name);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)ino;
	refuse_new_file(req, newparent, newname);
}
