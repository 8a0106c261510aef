#include "io.h"

#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The armed fault (see io_fault_inject in io.h); IO_FAULT_NONE when off. */
static atomic_int io_fault_op;
static atomic_int io_fault_left;
static atomic_int io_fault_err;
/* Syncs made, for io_sync_count. */
static _Atomic uint64_t io_syncs;

uint64_t io_sync_count(void)
{
	return atomic_load_explicit(&io_syncs, memory_order_relaxed);
}

void io_fault_inject(int op, int countdown, int err)
{
	atomic_store(&io_fault_op, IO_FAULT_NONE);
	atomic_store(&io_fault_left, countdown);
	atomic_store(&io_fault_err, err);
	atomic_store(&io_fault_op, op);
}

/* 0, or the injected -errno if this call of kind op is the one to fail. */
static int io_fault(int op)
{
	int armed = op;

	if (atomic_load_explicit(&io_fault_op, memory_order_relaxed) != op)
		return 0;
	if (atomic_fetch_sub(&io_fault_left, 1) > 0)
		return 0;
	if (!atomic_compare_exchange_strong(&io_fault_op, &armed, IO_FAULT_NONE))
		return 0;
	return -atomic_load(&io_fault_err);
}

ssize_t io_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int io_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = io_pread(fd, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	int rc = io_fault(IO_FAULT_WRITE);

	if (rc < 0)
		return rc;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int io_pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
	int rc = io_fault(IO_FAULT_WRITE);

	if (rc < 0)
		return rc;
	while (iovcnt > 0) {
		ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int io_fsync(int fd)
{
	int rc = io_fault(IO_FAULT_FSYNC);

	atomic_fetch_add_explicit(&io_syncs, 1, memory_order_relaxed);
	if (rc < 0)
		return rc;
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_fdatasync(int fd)
{
	int rc = io_fault(IO_FAULT_FSYNC);

	atomic_fetch_add_explicit(&io_syncs, 1, memory_order_relaxed);
	if (rc < 0)
		return rc;
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int io_ftruncate(int fd, uint64_t len)
{
	while (ftruncate(fd, (off_t)len) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Bytes copied through user space at a time when the kernel cannot. */
#define IO_COPY_CHUNK_BYTES (256u << 10)

static int io_copy_buffered(int out_fd, int in_fd, uint64_t done,
			    uint64_t len)
{
	uint8_t *buf = malloc(IO_COPY_CHUNK_BYTES);
	int rc = buf ? 0 : -ENOMEM;

	while (rc == 0 && done < len) {
		size_t n = len - done < IO_COPY_CHUNK_BYTES ?
			   (size_t)(len - done) : IO_COPY_CHUNK_BYTES;
		rc = io_pread_full(in_fd, buf, n, done);
		if (rc == 0)
			rc = io_pwrite_full(out_fd, buf, n, done);
		done += n;
	}
	free(buf);
	return rc;
}

int io_copy_range(int out_fd, int in_fd, uint64_t len)
{
	uint64_t done = 0;
	int rc = io_fault(IO_FAULT_WRITE);

	if (rc < 0)
		return rc;
	while (done < len) {
		loff_t in_off = (loff_t)done, out_off = (loff_t)done;
		ssize_t n = copy_file_range(in_fd, &in_off, out_fd, &out_off,
					    (size_t)(len - done), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS ||
			      errno == EOPNOTSUPP || errno == EINVAL))
			return io_copy_buffered(out_fd, in_fd, done, len);
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

int64_t io_fsize(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	return st.st_size;
}

int io_fsync_dir(int dir_fd)
{
	return io_fsync(dir_fd);
}

int io_replace_file(int dir_fd, const char *name, const void *buf, size_t len)
{
	char tmp[NAME_MAX + 1];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = files_openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	rc = io_pwrite_full(fd, buf, len, 0);
	if (rc == 0)
		rc = io_fsync(fd);
	close(fd);
	if (rc < 0)
		goto out_unlink_tmp;
	if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
		rc = -errno;
		goto out_unlink_tmp;
	}
	return io_fsync_dir(dir_fd);

out_unlink_tmp:
	unlinkat(dir_fd, tmp, 0);
	return rc;
}

int io_write_file(int dir_fd, const char *name, const void *buf, size_t len)
{
	int fd, rc;

	fd = files_openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	rc = io_pwrite_full(fd, buf, len, 0);
	close(fd);
	return rc;
}

ssize_t io_read_file(int dir_fd, const char *name, size_t max, char **out)
{
	int fd = files_openat(dir_fd, name, O_RDONLY, 0);
	int64_t size;
	ssize_t n;
	char *buf;

	*out = NULL;
	if (fd < 0)
		return fd;
	size = io_fsize(fd);
	if (size < 0) {
		n = (ssize_t)size;
		goto out_close;
	}
	if ((uint64_t)size > max) {
		n = -EFBIG;
		goto out_close;
	}
	buf = malloc((size_t)size + 1);
	if (!buf) {
		n = -ENOMEM;
		goto out_close;
	}
	n = io_pread(fd, buf, (size_t)size, 0);
	if (n < 0) {
		free(buf);
		goto out_close;
	}
	buf[n] = '\0';
	*out = buf;
out_close:
	close(fd);
	return n;
}

static int io_remove_one(const char *p, const struct stat *st, int flag,
			 struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

void io_remove_tree(const char *path)
{
	nftw(path, io_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int io_buf_reserve(void **buf, size_t *cap, size_t want)
{
	void *n;

	if (*cap >= want)
		return 0;
	n = realloc(*buf, want ? want : 1);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = want;
	return 0;
}
