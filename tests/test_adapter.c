/*
 * The FUSE adapter (fs/) driven without a kernel: its operations are
 * called through fs_ops() with requests made here, and the replies that
 * would go to the kernel (fuse_reply_*, defined below in place of
 * libfuse's) are captured. The daemon's log lines are counted through
 * msg (linked with --wrap=msg).
 *
 * What it checks: a truncation of a partition (log_truncate, which
 * replication will do after an unclean leader election) under open
 * readers of every kind (a partition file, a read view, a group member)
 * makes their reads past the cut fail with ESTALE, with one log line per
 * open file, and never gives them different bytes at a position they
 * read before (Kafka's KIP-320).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker.h"
#include "fs.h"
#include "group.h"
#include "part.h"

/* ---- a fake kernel ------------------------------------------------------- */

/* One request and the reply the adapter gave it. */
struct fuse_req {
	struct fs *fs;
	struct fuse_ctx ctx;
	int err;                  /* fuse_reply_err's, or 0 */
	bool replied;
	fuse_ino_t ino;           /* fuse_reply_entry's */
	uint64_t fh;              /* fuse_reply_open's */
	char data[64 << 10];      /* fuse_reply_buf's or fuse_reply_data's */
	size_t len;
};

static void req_init(struct fuse_req *r, struct fs *fs)
{
	memset(r, 0, sizeof(*r));
	r->fs = fs;
	r->ctx.pid = getpid();
}

void *fuse_req_userdata(fuse_req_t req)
{
	return req->fs;
}

const struct fuse_ctx *fuse_req_ctx(fuse_req_t req)
{
	return &req->ctx;
}

int fuse_reply_err(fuse_req_t req, int err)
{
	req->err = err;
	req->replied = true;
	return 0;
}

int fuse_reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	req->ino = e->ino;
	req->replied = true;
	return 0;
}

int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	req->fh = fi->fh;
	req->replied = true;
	return 0;
}

int fuse_reply_buf(fuse_req_t req, const char *buf, size_t size)
{
	assert_true(size <= sizeof(req->data));
	if (size)
		memcpy(req->data, buf, size);
	req->len = size;
	req->replied = true;
	return 0;
}

/* Spliced or not, the bytes the kernel would get. */
int fuse_reply_data(fuse_req_t req, struct fuse_bufvec *bufv,
		    enum fuse_buf_copy_flags flags)
{
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(sizeof(req->data));
	ssize_t n;

	(void)flags;
	dst.buf[0].mem = req->data;
	n = fuse_buf_copy(&dst, bufv, 0);
	assert_true(n >= 0);
	assert_true((size_t)n == fuse_buf_size(bufv));
	req->len = (size_t)n;
	req->replied = true;
	return 0;
}

/* The daemon's log lines that contain "ESTALE". */
static int stale_lines;

void __wrap_msg(int priority, const char *fmt, ...);
void __wrap_msg(int priority, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "topicfs[%d]: %s\n", priority, line);
	if (strstr(line, "ESTALE"))
		stale_lines++;
}

/* ---- operations as the kernel sends them --------------------------------- */

static struct fs *the_fs;

static fuse_ino_t lookup(fuse_ino_t parent, const char *name)
{
	static struct fuse_req r;

	req_init(&r, the_fs);
	fs_ops()->lookup(&r, parent, name);
	assert_true(r.replied);
	assert_int_equal(r.err, 0);
	return r.ino;
}

static uint64_t open_ro(fuse_ino_t ino)
{
	static struct fuse_req r;
	struct fuse_file_info fi = { .flags = O_RDONLY };

	req_init(&r, the_fs);
	fs_ops()->open(&r, ino, &fi);
	assert_true(r.replied);
	assert_int_equal(r.err, 0);
	return r.fh;
}

/* read(2) of size bytes at off: the bytes into out, or -errno. */
static ssize_t read_at(fuse_ino_t ino, uint64_t fh, size_t size, off_t off,
		       char *out)
{
	static struct fuse_req r;
	struct fuse_file_info fi = { .fh = fh };

	req_init(&r, the_fs);
	fs_ops()->read(&r, ino, size, off, &fi);
	assert_true(r.replied);
	if (r.err)
		return -r.err;
	memcpy(out, r.data, r.len);
	out[r.len] = '\0';
	return (ssize_t)r.len;
}

static void release(fuse_ino_t ino, uint64_t fh)
{
	static struct fuse_req r;
	struct fuse_file_info fi = { .fh = fh };

	req_init(&r, the_fs);
	fs_ops()->release(&r, ino, &fi);
	assert_true(r.replied);
}

/* Append one record (its own batch) to partition 0 of t. */
static void produce(struct topic *t, const char *line)
{
	uint32_t len = (uint32_t)strlen(line);
	struct iovec iov = { (void *)line, len };

	assert_int_equal(part_produce(topic_part(t, 0), &iov, 1, &len, 1,
				      NULL), 0);
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Ten records r0..r9, read whole by a partition reader (as cat), a view
 * from offset 2 and a group member, with a second member idle. The log is
 * truncated to offset 5 and other records appended, so that the bytes at
 * the positions of r5..r9 are now different ones. Then:
 * - the partition reader and the view get ESTALE where `cat` or `tail -f`
 *   would read next (their old end) and at the cut, again on a second
 *   try, with one log line each; below the cut they still read exactly
 *   the old bytes, and stop at the cut;
 * - the member's next read fails with ESTALE, as do later ones; it has
 *   left the group, whose partition went to the idle
 *   member; one log line;
 * - a reader opened after the truncation reads the new records.
 */
static void test_truncation_under_open_readers_is_estale(void **state)
{
	struct fs_perms perms = { getuid(), getgid(), 022 };
	char *dir = tu_mkdtemp(), buf[64 << 10], old[1024], owner[64];
	struct broker_opts bo = { .datadir = dir, .num_partitions = 1 };
	fuse_ino_t tino, pino, vino, gino;
	uint64_t pfh, vfh, mfh, idle, fresh, leo;
	struct broker *b;
	struct group *g;
	struct topic *t;
	size_t old_len = 0, cut_pos = 0, view_at;
	ssize_t n;

	(void)state;
	assert_int_equal(broker_open(&bo, &b), 0);
	assert_int_equal(broker_topic_create(b, "t"), 0);
	t = broker_topic_get(b, "t");
	assert_non_null(t);
	for (int i = 0; i < 10; i++) {
		char line[32];
		snprintf(line, sizeof(line), "r%d-old\n", i);
		if (i == 5)
			cut_pos = old_len;
		old_len += (size_t)snprintf(old + old_len, sizeof(old) - old_len,
					    "%s", line);
		produce(t, line);
	}
	view_at = strlen("r0-old\nr1-old\n");
	assert_int_equal(fs_new(b, FS_MAX_READ, &perms, &the_fs), 0);

	tino = lookup(FUSE_ROOT_ID, "t");
	pino = lookup(tino, "0");
	vino = lookup(tino, "0@2");
	gino = lookup(lookup(tino, ".groups"), "g");
	pfh = open_ro(pino);
	vfh = open_ro(vino);
	mfh = open_ro(gino);
	idle = open_ro(gino);

	/* Everything read once, as cat does. */
	assert_int_equal(read_at(pino, pfh, sizeof(buf) - 1, 0, buf),
			 (ssize_t)old_len);
	assert_string_equal(buf, old);
	assert_int_equal(read_at(vino, vfh, sizeof(buf) - 1, 0, buf),
			 (ssize_t)(old_len - view_at));
	assert_string_equal(buf, old + view_at);
	assert_int_equal(read_at(gino, mfh, sizeof(buf) - 1, 0, buf),
			 (ssize_t)old_len);
	assert_string_equal(buf, old);
	assert_int_equal(read_at(gino, idle, sizeof(buf) - 1, 0, buf), 0);

	/* The tail diverges: cut at offset 5, then other records. */
	assert_int_equal(log_truncate(part_log(topic_part(t, 0)), 5, &leo), 0);
	assert_int_equal(leo, 5);
	for (int i = 5; i < 12; i++) {
		char line[32];
		snprintf(line, sizeof(line), "r%d-NEW-%d\n", i, i);
		produce(t, line);
	}

	stale_lines = 0;
	assert_int_equal(read_at(pino, pfh, 4096, (off_t)old_len, buf), -ESTALE);
	assert_int_equal(read_at(pino, pfh, 4096, (off_t)cut_pos, buf), -ESTALE);
	n = read_at(pino, pfh, 4096, 0, buf);
	assert_int_equal(n, (ssize_t)cut_pos);
	assert_memory_equal(buf, old, cut_pos);
	assert_int_equal(stale_lines, 1);

	assert_int_equal(read_at(vino, vfh, 4096, (off_t)(old_len - view_at),
				 buf), -ESTALE);
	assert_int_equal(read_at(vino, vfh, 4096, (off_t)(cut_pos - view_at),
				 buf), -ESTALE);
	n = read_at(vino, vfh, 4096, 0, buf);
	assert_int_equal(n, (ssize_t)(cut_pos - view_at));
	assert_memory_equal(buf, old + view_at, cut_pos - view_at);
	assert_int_equal(stale_lines, 2);

	assert_int_equal(read_at(gino, mfh, 4096, 0, buf), -ESTALE);
	assert_int_equal(read_at(gino, mfh, 4096, 0, buf), -ESTALE);
	assert_int_equal(stale_lines, 3);
	assert_int_equal(groups_lookup(topic_groups(t), "g", &g), 0);
	assert_int_equal(group_getxattr(g, "owner.0", owner, sizeof(owner)), 0);
	assert_string_equal(owner, "member-2");

	/* A new open file reads what the partition holds now. */
	fresh = open_ro(pino);
	n = read_at(pino, fresh, sizeof(buf) - 1, (off_t)cut_pos, buf);
	assert_true(n > 0);
	assert_memory_equal(buf, "r5-NEW-5\n", strlen("r5-NEW-5\n"));
	assert_int_equal(stale_lines, 3);

	release(pino, fresh);
	release(gino, idle);
	release(gino, mfh);
	release(vino, vfh);
	release(pino, pfh);
	topic_put(t);
	fs_free(the_fs);
	assert_int_equal(broker_close(b), 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncation_under_open_readers_is_estale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
