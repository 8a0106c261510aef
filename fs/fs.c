/*
 * FUSE low-level operations: the table, init, statfs, and the mount's
 * state. Every request is answered by exactly one fuse_reply_*; errors
 * are negative errnos internally and positive ones in fuse_reply_err.
 * adapter.h says which file holds what.
 */
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
