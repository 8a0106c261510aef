/*
 * The descriptor budget (log/files.h, log_set_fd_budget) and batched
 * opens and closes (log_batch_begin): idle partitions' files are closed
 * and reopened without any caller seeing it, never under a reader or an
 * append that uses them, a moved directory is followed and a replaced one
 * refused, and a batched close makes its clean-shutdown marker only after
 * the sync.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "files.h"

#define NLOGS 24

/* Descriptors the process holds. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the listing's own */
}

static bool exists(const char *dir, const char *name)
{
	char *p = tu_join(dir, name);
	bool yes = access(p, F_OK) == 0;

	free(p);
	return yes;
}

static char *part_dir(const char *base, int i)
{
	char name[16];

	snprintf(name, sizeof(name), "p%d", i);
	return tu_join(base, name);
}

static void append_n(struct log *l, uint32_t n)
{
	uint32_t lens[64];

	for (uint32_t i = 0; i < n; i++)
		lens[i] = 50 + i % 7;
	tu_append(l, lens, n);
}

/* The log holds exactly the records tu_append wrote, offsets 0 .. n-1:
 * each record's bytes (found by its position) are tu_fill's. */
static void check_log(struct log *l, uint64_t n)
{
	struct log_cursor *cur;
	struct log_bounds b;
	uint8_t got[64], want[64];

	log_get_bounds(l, &b);
	assert_int_equal(b.leo, n);
	assert_int_equal(b.hw, n);
	assert_int_equal(log_cursor_new(l, &cur), 0);
	for (uint64_t off = 0; off < n; off++) {
		uint64_t pos, end, at;
		assert_int_equal(log_offset_to_pos(l, off, &pos), 0);
		assert_int_equal(log_offset_to_pos(l, off + 1, &end), 0);
		assert_true(end > pos && end - pos <= sizeof(got));
		at = pos;
		assert_int_equal(log_read_copy(cur, &at, got, end - pos),
				 (ssize_t)(end - pos));
		tu_fill(want, (uint32_t)(end - pos), off);
		assert_memory_equal(got, want, end - pos);
	}
	log_cursor_free(cur);
}

/*
 * With a budget far below what the logs would hold, the process holds
 * about the budget; every log still takes appends and reads back all it
 * holds, its files reopened on demand.
 */
static void test_idle_files_are_closed_and_reopened(void **state)
{
	char *base = tu_mkdtemp();
	struct log *logs[NLOGS];
	struct log_config c;
	struct log_fd_stats st0, st;
	uint8_t *before[NLOGS];
	uint64_t blen[NLOGS];
	int fds0 = count_fds();
	(void)state;

	tu_small_config(&c);
	log_set_fd_budget(16);
	log_get_fd_stats(&st0);
	for (int i = 0; i < NLOGS; i++) {
		char *d = part_dir(base, i);
		logs[i] = tu_open(d, &c);
		free(d);
		append_n(logs[i], 40); /* several segments each */
	}
	/* Unbounded this would be 1 + 3 per segment per log. */
	assert_true(count_fds() - fds0 <= 16 + 4);
	for (int i = 0; i < NLOGS; i++) {
		before[i] = tu_read_all(logs[i], &blen[i]);
		append_n(logs[i], 5);
		assert_true(count_fds() - fds0 <= 16 + 4);
	}
	for (int i = 0; i < NLOGS; i++) {
		uint64_t len;
		uint8_t *after = tu_read_all(logs[i], &len);
		assert_true(len > blen[i]);
		assert_memory_equal(after, before[i], blen[i]);
		free(after);
		free(before[i]);
		assert_int_equal(log_flush(logs[i]), 0);
	}
	log_get_fd_stats(&st);
	assert_true(st.reopens > st0.reopens);
	assert_true(st.closes > st0.closes);
	for (int i = 0; i < NLOGS; i++)
		assert_int_equal(log_close(logs[i]), 0);
	assert_int_equal(count_fds(), fds0);
	/* Everything was closed cleanly: the next open is clean. */
	for (int i = 0; i < NLOGS; i++) {
		char *d = part_dir(base, i);
		assert_true(exists(d, "clean-shutdown"));
		logs[i] = tu_open(d, &c);
		check_log(logs[i], 45);
		assert_int_equal(log_close(logs[i]), 0);
		free(d);
	}
	log_set_fd_budget(0);
	tu_rmdir(base);
}

/*
 * A reader's extents name descriptors the FUSE layer splices from after
 * log_read returns: however hard the budget presses, they stay open and
 * keep naming the same file until the cursor's next read or its end.
 */
static void test_reader_extents_survive_eviction(void **state)
{
	char *base = tu_mkdtemp(), *d0 = part_dir(base, 0);
	struct log *l, *other[NLOGS];
	struct log_extent ext[8];
	struct log_cursor *cur;
	struct log_config c;
	struct stat st_before, st_after;
	uint8_t want[40], got[40];
	uint64_t pos = 0;
	unsigned n;
	(void)state;

	tu_small_config(&c);
	log_set_fd_budget(16);
	l = tu_open(d0, &c);
	append_n(l, 20);
	assert_int_equal(log_cursor_new(l, &cur), 0);
	assert_true(log_read(cur, &pos, sizeof(want), ext, 8, &n) > 0);
	assert_true(n >= 1 && ext[0].mem == NULL);
	assert_int_equal(fstat(ext[0].fd, &st_before), 0);
	assert_int_equal(pread(ext[0].fd, want, sizeof(want), (off_t)ext[0].off),
			 (ssize_t)sizeof(want));

	/* Pressure: many other logs opened and written, every idle file
	 * closed on top. */
	for (int i = 0; i < NLOGS; i++) {
		char *d = part_dir(base, i + 1);
		other[i] = tu_open(d, &c);
		append_n(other[i], 20);
		free(d);
	}
	files_shed();
	assert_int_equal(fstat(ext[0].fd, &st_after), 0);
	assert_int_equal(st_after.st_ino, st_before.st_ino);
	assert_int_equal(st_after.st_dev, st_before.st_dev);
	assert_int_equal(pread(ext[0].fd, got, sizeof(got), (off_t)ext[0].off),
			 (ssize_t)sizeof(got));
	assert_memory_equal(got, want, sizeof(want));

	/* Let go: the segment may now be closed, and is reopened for the
	 * next read, which gives the same bytes. */
	log_cursor_free(cur);
	files_shed();
	assert_int_equal(log_cursor_new(l, &cur), 0);
	pos = 0;
	assert_int_equal(log_read_copy(cur, &pos, got, sizeof(got)),
			 (ssize_t)sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	log_cursor_free(cur);

	for (int i = 0; i < NLOGS; i++)
		assert_int_equal(log_close(other[i]), 0);
	assert_int_equal(log_close(l), 0);
	log_set_fd_budget(0);
	free(d0);
	tu_rmdir(base);
}

/*
 * A directory closed while idle is reopened by name: after a rename the
 * log follows the name it is told (log_moved); a new directory put at a
 * name the log still has is refused (-ESTALE), and nothing is written
 * into it.
 */
static void test_moved_directory(void **state)
{
	char *base = tu_mkdtemp(), *a = part_dir(base, 0), *b = part_dir(base, 1);
	struct log_config c;
	struct log *l;
	uint32_t len = 10;
	struct log_append_info info;
	uint8_t rec[10] = "0123456789";
	(void)state;

	tu_small_config(&c);
	c.segment_bytes = 1u << 20; /* one segment: the append needs none new */
	l = tu_open(a, &c);
	append_n(l, 5);
	assert_int_equal(log_flush(l), 0);

	assert_int_equal(rename(a, b), 0);
	assert_int_equal(log_moved(l, b), 0);
	files_shed(); /* everything idle closed */
	assert_int_equal(log_append(l, rec, len, &len, 1, NULL, &info), 0);
	assert_int_equal(log_flush(l), 0);
	assert_int_equal(info.base_offset, 5);

	/* Renamed again without telling it, and another directory at the
	 * name it has. */
	assert_int_equal(rename(b, a), 0);
	assert_int_equal(mkdir(b, 0755), 0);
	files_shed();
	assert_int_equal(log_append(l, rec, len, &len, 1, NULL, &info),
			 -ESTALE);
	assert_false(exists(b, "checkpoint"));
	assert_int_equal(log_moved(l, a), 0);
	assert_int_equal(log_append(l, rec, len, &len, 1, NULL, &info), 0);
	assert_int_equal(info.base_offset, 6);
	assert_int_equal(log_close(l), 0);
	free(a);
	free(b);
	tu_rmdir(base);
}

/*
 * A batched close writes no marker: log_batch_end makes it, after the
 * sync. If the process dies before (a crash during the unmount), the
 * next open finds no marker, recovers, and has every record.
 */
static void test_batched_close_marks_only_after_the_sync(void **state)
{
	char *base = tu_mkdtemp(), *d = part_dir(base, 0), *e = part_dir(base, 1);
	struct log_config c;
	struct log *l;
	int fs_fd, status;
	pid_t pid;
	(void)state;

	tu_small_config(&c);
	fs_fd = open(base, O_RDONLY | O_DIRECTORY);
	assert_true(fs_fd >= 0);

	l = tu_open(d, &c);
	append_n(l, 30);
	assert_int_equal(log_batch_begin(fs_fd), 0);
	assert_int_equal(log_batch_begin(fs_fd), -EBUSY);
	assert_int_equal(log_close(l), 0);
	assert_false(exists(d, "clean-shutdown"));
	assert_true(exists(d, "checkpoint.tmp"));
	assert_int_equal(log_batch_end(), 0);
	assert_true(exists(d, "clean-shutdown"));
	assert_false(exists(d, "checkpoint.tmp"));
	l = tu_open(d, &c);
	check_log(l, 30);
	assert_int_equal(log_close(l), 0);

	/* Dying between the close and the end of the batch. */
	l = tu_open(e, &c);
	append_n(l, 30);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (log_batch_begin(fs_fd) < 0 || log_close(l) < 0)
			_exit(1);
		_exit(exists(e, "clean-shutdown") ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	log_abandon(l);
	assert_false(exists(e, "clean-shutdown"));
	l = tu_open(e, &c); /* recovers: the staged checkpoint is ignored */
	assert_false(exists(e, "checkpoint.tmp"));
	/* The old checkpoint's high watermark (0) stands, as after any
	 * crash: one replica publishes everything again (the broker). */
	assert_int_equal(log_set_hw(l, UINT64_MAX), 0);
	check_log(l, 30);
	assert_int_equal(log_close(l), 0);

	/* A batched open: the marker goes, and the log is usable at once
	 * after the end. */
	assert_int_equal(log_batch_begin(fs_fd), 0);
	l = tu_open(e, &c);
	assert_false(exists(e, "clean-shutdown"));
	assert_int_equal(log_batch_end(), 0);
	append_n(l, 3);
	check_log(l, 33);
	assert_int_equal(log_close(l), 0);
	close(fs_fd);
	free(d);
	free(e);
	tu_rmdir(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_files_are_closed_and_reopened),
		cmocka_unit_test(test_reader_extents_survive_eviction),
		cmocka_unit_test(test_moved_directory),
		cmocka_unit_test(test_batched_close_marks_only_after_the_sync),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
