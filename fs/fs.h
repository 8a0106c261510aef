/*
 * The FUSE side of topicfs: low-level operations over the broker.
 *
 *   MNT/                     root: one directory per topic
 *   MNT/.status, .metrics    generated at open
 *   MNT/<t>/<p>              partition p: append-only file
 *   MNT/<t>/<p>@<selector>   read view, not listed (resolved at lookup)
 *   MNT/<t>/.produce         write here, the partitioner picks
 *   MNT/<t>/.groups/         consumer groups (docs/GROUPS.md)
 */
#ifndef TOPICFS_FS_FS_H
#define TOPICFS_FS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "broker.h"

struct fs;

/*
 * The largest FUSE read request: the kernel splits a bigger read() into
 * requests of this size. Replies are spliced from the segment files
 * through a pipe, and libfuse falls back to copying through its memory
 * when a reply does not fit the pipe, whose size an unprivileged process
 * cannot raise past /proc/sys/fs/pipe-max-size (1 MiB by default); half
 * of that leaves room for the reply header and page fragments. The
 * default; a user's -o max_read wins.
 */
#define FS_MAX_READ (512u << 10)

/*
 * Owner, group and permissions of everything in the mount: modes are
 * 0777 for directories, 0666 for partitions and group files, 0222 for
 * .produce and 0444 for the rest, less umask. The kernel checks them
 * (default_permissions); docs/MOUNTING.md, Security.
 */
struct fs_perms {
	uid_t uid;
	gid_t gid;
	mode_t umask;
};

/* max_read: the mount option's value (libfuse wants both the same). */
int fs_new(struct broker *b, unsigned max_read, const struct fs_perms *perms,
	   struct fs **out);
const struct fuse_lowlevel_ops *fs_ops(void);

/*
 * Turn the partial lines still buffered in open files into records (at
 * unmount, so that every byte whose write() succeeded is stored).
 */
void fs_flush_open_files(struct fs *fs);
void fs_free(struct fs *fs);

#endif
