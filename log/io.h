/*
 * Every system call the log engine makes on its files goes through these
 * wrappers: they retry EINTR and short transfers, and return 0 or a
 * negative errno (never -1 with errno set). A short read at end of file is
 * reported as -EIO by io_pread_full, since every caller knows how many
 * bytes must be there.
 */
#ifndef TOPICFS_LOG_IO_H
#define TOPICFS_LOG_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Read exactly len bytes at off; -EIO if the file ends first. */
int io_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* Read up to len bytes at off; returns the count (0 at end) or -errno. */
ssize_t io_pread(int fd, void *buf, size_t len, uint64_t off);

/* Write exactly len bytes at off. */
int io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Write the iovecs (at most IOV_MAX) at off, all of them. iov is modified. */
int io_pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off);

int io_fsync(int fd);
int io_fdatasync(int fd);
int io_ftruncate(int fd, uint64_t len);

/*
 * Copy the first len bytes of in_fd to offset 0 of out_fd (in the kernel
 * with copy_file_range where it can, else through a buffer). -EIO if
 * in_fd ends first. Counts as one write for fault injection.
 */
int io_copy_range(int out_fd, int in_fd, uint64_t len);

/* Size of the open file, or -errno. */
int64_t io_fsize(int fd);

/* fsync the directory itself, so that created, renamed and removed names
 * in it are durable. */
int io_fsync_dir(int dir_fd);

/*
 * Durably replace the file `name` in directory dir_fd by len bytes at buf:
 * write "<name>.tmp", fsync it, rename it over name, fsync the directory.
 * After a crash at any point, name holds either the old or the new content
 * whole. Every checkpoint of topicfs is written by this one function.
 */
int io_replace_file(int dir_fd, const char *name, const void *buf, size_t len);

/* Write a whole file (created or truncated), without syncing it: for a
 * file that a later sync of the whole file system makes durable. */
int io_write_file(int dir_fd, const char *name, const void *buf, size_t len);

/*
 * Read the whole file `name` (at most max bytes) into a new NUL-terminated
 * buffer. Returns the length, -ENOENT if absent, -EFBIG if larger than max.
 */
ssize_t io_read_file(int dir_fd, const char *name, size_t max, char **out);

/*
 * Fault injection, for tests only. After io_fault_inject(op, countdown,
 * err), the next `countdown` calls of kind op succeed as usual and the one
 * after them fails with -err without touching the file; then the fault is
 * disarmed. IO_FAULT_WRITE counts io_pwrite_full and io_pwritev_full calls,
 * IO_FAULT_FSYNC counts io_fsync, io_fdatasync and io_fsync_dir calls.
 * io_fault_inject(IO_FAULT_NONE, 0, 0) disarms. The counters are atomic, so
 * any thread's call may be the one that fails; unarmed, the cost is one
 * relaxed atomic load per call.
 */
enum io_fault_op {
	IO_FAULT_NONE = 0,
	IO_FAULT_WRITE = 1,
	IO_FAULT_FSYNC = 2,
};

void io_fault_inject(int op, int countdown, int err);

/*
 * How many io_fsync, io_fdatasync and io_fsync_dir calls this process
 * has made (failed and injected ones included): tests measure the syncs
 * a call costs by the difference. One relaxed atomic add per sync.
 */
uint64_t io_sync_count(void);

/*
 * Make *buf hold at least want bytes, keeping its contents (realloc; the
 * capacity is remembered in *cap). 0 or -ENOMEM. Callers bound want.
 */
int io_buf_reserve(void **buf, size_t *cap, size_t want);

/* rm -rf path (best effort: what cannot be removed is left). */
void io_remove_tree(const char *path);

#endif
