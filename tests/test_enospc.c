/*
 * A full disk. A partition on a small tmpfs is filled until appends fail
 * with -ENOSPC; each failed append must leave the log exactly as it was,
 * in memory and on disk, and so must a crash or a clean close and a
 * reopen; once space is freed, appends work again.
 *
 * Mounting needs root (CAP_SYS_ADMIN). Without it the test is skipped,
 * except under CI=true, where a skip would hide a regression: it fails.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>


#define TMPFS_OPTIONS "size=2m"
/* Taken before the log fills the rest, given back to make room. */
#define FILLER_BYTES (512u << 10)
/* Appends of at most this many records of at most this many bytes. */
#define PUT_RECORDS_MAX 40u
#define PUT_RECORD_BYTES_MAX 200u
/* Failed appends to see, and appends to try at most, while full. */
#define FAILURES_WANTED 10
#define APPENDS_MAX 100000
#define DIR_FILES_MAX 512u

/* Set when the test was skipped, so that meson is told so (exit 77). */
static bool skipped;

struct mnt {
	char *dir;     /* the mount point */
	int mount_err; /* 0 once mounted, else mount(2)'s errno */
};

static int mount_setup(void **state)
{
	struct mnt *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->dir = tu_mkdtemp();
	if (mount("tmpfs", m->dir, "tmpfs", MS_NOSUID | MS_NODEV,
		  TMPFS_OPTIONS) < 0)
		m->mount_err = errno;
	*state = m;
	return 0;
}

static int mount_teardown(void **state)
{
	struct mnt *m = *state;

	if (m->mount_err == 0 && umount2(m->dir, MNT_DETACH) < 0)
		print_error("umount2(%s): %s\n", m->dir, strerror(errno));
	tu_rmdir(m->dir);
	free(m);
	return 0;
}

/* Skip when we may not mount, unless CI=true; fail on any other error. */
static void require_mount(const struct mnt *m)
{
	const char *ci = getenv("CI");

	if (m->mount_err == 0)
		return;
	if (ci && strcmp(ci, "true") == 0)
		fail_msg("mounting a tmpfs on %s: %s (CI=true, so no skip)",
			 m->dir, strerror(m->mount_err));
	if (m->mount_err == EPERM) {
		print_message("skipping: mounting a tmpfs needs root (%s)\n",
			      strerror(m->mount_err));
		skipped = true;
		skip();
	}
	fail_msg("mounting a tmpfs on %s: %s", m->dir, strerror(m->mount_err));
}

/* ---- what was written ---------------------------------------------------- */

struct model {
	uint64_t n;    /* records */
	uint64_t *pos; /* n + 1 positions */
	uint64_t cap;
};

static void model_init(struct model *m)
{
	m->n = 0;
	m->cap = 1;
	m->pos = calloc(1, sizeof(*m->pos));
	assert_non_null(m->pos);
}

static void model_push(struct model *m, const uint32_t *lens, uint32_t count)
{
	if (m->n + count + 1 > m->cap) {
		m->cap = (m->n + count + 1) * 2;
		m->pos = realloc(m->pos, m->cap * sizeof(*m->pos));
		assert_non_null(m->pos);
	}
	for (uint32_t i = 0; i < count; i++, m->n++)
		m->pos[m->n + 1] = m->pos[m->n] + lens[i];
}

/* Append a random number of records of random lengths (bytes from
 * tu_fill); log_append's result, the model following only on success. */
static int put_random(struct log *l, struct model *m)
{
	uint32_t lens[PUT_RECORDS_MAX];
	uint32_t count = 1 + (uint32_t)(tu_rand() % PUT_RECORDS_MAX);
	uint8_t buf[PUT_RECORDS_MAX * PUT_RECORD_BYTES_MAX];
	struct log_append_info info;
	size_t total = 0;
	int rc;

	for (uint32_t i = 0; i < count; i++) {
		lens[i] = 1 + (uint32_t)(tu_rand() % PUT_RECORD_BYTES_MAX);
		tu_fill(buf + total, lens[i], m->n + i);
		total += lens[i];
	}
	rc = log_append(l, buf, total, lens, count, NULL, &info);
	if (rc < 0)
		return rc;
	assert_int_equal(info.base_offset, m->n);
	assert_int_equal(info.base_pos, m->pos[m->n]);
	model_push(m, lens, count);
	assert_int_equal(info.end_offset, m->n);
	assert_int_equal(info.end_pos, m->pos[m->n]);
	return 0;
}

/* The log holds exactly the model's records, every byte of them. */
static void expect_log(struct log *l, const struct model *m)
{
	struct log_state st;
	uint64_t len, pos;
	uint8_t *all, *want;

	assert_int_equal(log_set_hw(l, UINT64_MAX), 0);
	log_get_state(l, &st);
	assert_int_equal(st.start_offset, 0);
	assert_int_equal(st.leo, m->n);
	assert_int_equal(st.leo_pos, m->pos[m->n]);
	assert_int_equal(st.hw, m->n);
	assert_int_equal(st.size_bytes, m->pos[m->n]);
	assert_int_equal(st.sticky_error, 0);
	all = tu_read_all(l, &len);
	assert_int_equal(len, m->pos[m->n]);
	want = malloc(len + 1);
	assert_non_null(want);
	for (uint64_t off = 0; off < m->n; off++)
		tu_fill(want + m->pos[off], (uint32_t)(m->pos[off + 1] -
						       m->pos[off]), off);
	assert_memory_equal(all, want, len);
	for (uint64_t off = 0; off <= m->n; off++) {
		assert_int_equal(log_offset_to_pos(l, off, &pos), 0);
		assert_int_equal(pos, m->pos[off]);
	}
	free(all);
	free(want);
}

/* ---- the directory, as names and sizes ----------------------------------- */

struct dir_sizes {
	uint32_t n;
	char names[DIR_FILES_MAX][40];
	int64_t sizes[DIR_FILES_MAX];
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void dir_sizes_take(struct dir_sizes *s, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	s->n = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		assert_true(s->n < DIR_FILES_MAX);
		assert_true(strlen(de->d_name) < sizeof(s->names[0]));
		strcpy(s->names[s->n++], de->d_name);
	}
	closedir(d);
	qsort(s->names, s->n, sizeof(s->names[0]), cmp_name);
	for (uint32_t i = 0; i < s->n; i++) {
		char *p = tu_join(dir, s->names[i]);
		s->sizes[i] = tu_file_size(p);
		free(p);
	}
}

static void expect_dir_sizes(const struct dir_sizes *want, const char *dir)
{
	struct dir_sizes *now = malloc(sizeof(*now));

	assert_non_null(now);
	dir_sizes_take(now, dir);
	assert_int_equal(now->n, want->n);
	for (uint32_t i = 0; i < want->n; i++) {
		assert_string_equal(now->names[i], want->names[i]);
		assert_int_equal(now->sizes[i], want->sizes[i]);
	}
	free(now);
}

/* ---- the test ------------------------------------------------------------ */

static void make_filler(const char *path)
{
	static uint8_t chunk[64 << 10];
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);

	assert_true(fd >= 0);
	memset(chunk, 0xa5, sizeof(chunk));
	for (uint64_t off = 0; off < FILLER_BYTES; off += sizeof(chunk))
		assert_int_equal(pwrite(fd, chunk, sizeof(chunk), (off_t)off),
				 (ssize_t)sizeof(chunk));
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/*
 * Append until the disk is full, then keep trying until FAILURES_WANTED
 * appends have failed (smaller ones may still fit): each failure must be
 * -ENOSPC and leave the log and the directory exactly as before it.
 */
static void fill_up(struct log *l, const char *dir, struct model *m)
{
	struct dir_sizes *before = malloc(sizeof(*before));
	struct log_state was, st;
	int failures = 0;

	assert_non_null(before);
	for (int i = 0; i < APPENDS_MAX && failures < FAILURES_WANTED; i++) {
		int rc;

		dir_sizes_take(before, dir);
		log_get_state(l, &was);
		rc = put_random(l, m);
		if (rc == 0)
			continue;
		assert_int_equal(rc, -ENOSPC);
		failures++;
		log_get_state(l, &st);
		assert_int_equal(st.leo, was.leo);
		assert_int_equal(st.leo_pos, was.leo_pos);
		assert_int_equal(st.hw, was.hw);
		assert_int_equal(st.size_bytes, was.size_bytes);
		assert_int_equal(st.segments, was.segments);
		assert_int_equal(st.max_ts, was.max_ts);
		assert_int_equal(st.leader_epoch, was.leader_epoch);
		assert_int_equal(st.sticky_error, 0);
		expect_dir_sizes(before, dir);
		expect_log(l, m);
	}
	assert_int_equal(failures, FAILURES_WANTED);
	free(before);
}

static void test_disk_full(void **state)
{
	struct mnt *mnt = *state;
	struct log_config cfg;
	struct model m;
	struct log *l;
	char *dir, *filler;
	int rc;

	require_mount(mnt);
	tu_seed(0xd15c);
	print_message("seed %llu\n", (unsigned long long)tu_seed_used());
	tu_small_config(&cfg);
	cfg.segment_bytes = 64 << 10;
	model_init(&m);
	dir = tu_join(mnt->dir, "partition");
	filler = tu_join(mnt->dir, "filler");
	make_filler(filler);

	l = tu_open(dir, &cfg);
	fill_up(l, dir, &m);
	assert_true(m.n > 0);

	/* A crash on a full disk loses nothing that was appended. */
	log_abandon(l);
	l = tu_open(dir, &cfg);
	expect_log(l, &m);

	/* Nor does a close, even if the disk is too full for it to finish
	 * (the partition is freed either way; the reopen recovers). */
	rc = log_close(l);
	assert_true(rc == 0 || rc == -ENOSPC);
	l = tu_open(dir, &cfg);
	expect_log(l, &m);

	/* Room again: appends work, and stay. */
	assert_int_equal(unlink(filler), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(put_random(l, &m), 0);
	expect_log(l, &m);
	assert_int_equal(log_close(l), 0);
	l = tu_open(dir, &cfg);
	expect_log(l, &m);
	assert_int_equal(log_close(l), 0);
	assert_int_equal(tu_dump_problems(dir), 0);
	free(m.pos);
	free(filler);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_disk_full, mount_setup,
						mount_teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	return failed == 0 && skipped ? 77 : failed;
}
