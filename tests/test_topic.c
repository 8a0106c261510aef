/*
 * The broker's topics on disk (fs/topic.c): stored settings and ids win
 * over mount options, a topic that cannot be loaded is left untouched,
 * settings changes are all or nothing, and a crash at any step of a
 * topic's creation or deletion leaves the whole topic or none of it.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "group.h"
#include "io.h"
#include "broker.h"
#include "part.h"

static struct broker *open_broker(const char *dir, uint32_t partitions)
{
	struct broker_opts o = { .datadir = dir, .num_partitions = partitions };
	struct broker *b = NULL;

	assert_int_equal(broker_open(&o, &b), 0);
	return b;
}

/* Append n lines "r<i>\n" to partition p of topic name. */
static void produce(struct broker *b, const char *name, uint32_t p,
		    uint32_t n)
{
	struct topic *t = broker_topic_get(b, name);
	char buf[32];
	uint32_t len;

	assert_non_null(t);
	for (uint32_t i = 0; i < n; i++) {
		len = (uint32_t)snprintf(buf, sizeof(buf), "r%u\n", i);
		struct iovec iov = { buf, len };
		assert_int_equal(part_produce(topic_part(t, p), &iov, 1, &len, 1,
					      NULL), 0);
	}
	topic_put(t);
}

/* Records in partition p of name, or -1 if the topic is not loaded. */
static int64_t records(struct broker *b, const char *name, uint32_t p)
{
	struct topic *t = broker_topic_get(b, name);
	struct log_bounds lb;

	if (!t)
		return -1;
	assert_true(p < topic_partitions(t));
	log_get_bounds(part_log(topic_part(t, p)), &lb);
	topic_put(t);
	return (int64_t)lb.leo;
}

static uint64_t id_of(struct broker *b, const char *name)
{
	struct topic *t = broker_topic_get(b, name);
	uint64_t id;

	assert_non_null(t);
	id = topic_id(t);
	topic_put(t);
	return id;
}

/* Every file under dir with its size and a hash of its bytes, sorted:
 * what a test compares to show that nothing changed. */
static void snapshot_into(const char *dir, const char *rel, char **out,
			  size_t *len)
{
	struct dirent **es;
	int n = scandir(dir, &es, NULL, alphasort);

	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		char *path, *sub, line[600];
		struct stat st;
		uint64_t h = 1469598103934665603ull;
		const char *name = es[i]->d_name;

		if (strcmp(name, ".") && strcmp(name, "..")) {
			path = tu_join(dir, name);
			assert_int_equal(lstat(path, &st), 0);
			if (S_ISDIR(st.st_mode)) {
				assert_true(asprintf(&sub, "%s/%s", rel, name) > 0);
				snapshot_into(path, sub, out, len);
				free(sub);
			} else {
				char *data = NULL;
				int fd = open(path, O_RDONLY);
				ssize_t got;
				assert_true(fd >= 0);
				data = malloc((size_t)st.st_size + 1);
				got = read(fd, data, (size_t)st.st_size);
				assert_int_equal(got, st.st_size);
				for (ssize_t k = 0; k < got; k++)
					h = (h ^ (uint8_t)data[k]) * 1099511628211ull;
				free(data);
				close(fd);
			}
			int m = snprintf(line, sizeof(line), "%s/%s %lld %llx\n",
					 rel, name, (long long)st.st_size,
					 (unsigned long long)h);
			*out = realloc(*out, *len + (size_t)m + 1);
			memcpy(*out + *len, line, (size_t)m + 1);
			*len += (size_t)m;
			free(path);
		}
		free(es[i]);
	}
	free(es);
}

static char *snapshot(const char *dir)
{
	char *out = strdup("");
	size_t len = 0;

	snapshot_into(dir, "", &out, &len);
	return out;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int count_entries(const char *dir)
{
	struct dirent **es;
	int n = scandir(dir, &es, NULL, NULL), real = 0;

	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		if (strcmp(es[i]->d_name, ".") && strcmp(es[i]->d_name, ".."))
			real++;
		free(es[i]);
	}
	free(es);
	return real;
}

/* Mount options are defaults for new topics only (the data loss of a
 * remount with another num.partitions). */
static void test_stored_settings_win_over_mount_options(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker *b = open_broker(dir, 2);
	struct topic *t;
	(void)state;

	assert_int_equal(broker_topic_create(b, "t"), 0);
	produce(b, "t", 0, 5);
	produce(b, "t", 1, 3);
	broker_close(b);

	b = open_broker(dir, 3);
	t = broker_topic_get(b, "t");
	assert_non_null(t);
	assert_int_equal(topic_partitions(t), 2);
	topic_put(t);
	assert_int_equal(records(b, "t", 0), 5);
	assert_int_equal(records(b, "t", 1), 3);
	/* A new topic gets the new default. */
	assert_int_equal(broker_topic_create(b, "u"), 0);
	t = broker_topic_get(b, "u");
	assert_int_equal(topic_partitions(t), 3);
	topic_put(t);
	broker_close(b);
	tu_rmdir(dir);
}

/*
 * A stored topic that cannot be loaded (each way it can fail) is recorded
 * with its reason, mkdir of its name is EEXIST, and not one byte under
 * DATADIR/topics changes.
 */
static void test_unloadable_topic_is_left_untouched(void **state)
{
	static const struct {
		const char *file, *text, *reason;
	} breaks[] = {
		{ "config", "partitions=1\nfuture.setting=1\n",
		  "unknown setting 'future.setting'" },
		{ "config", "partitions=1\nretention.ms=soon\n",
		  "bad value for setting 'retention.ms'" },
		{ "config", NULL, "is missing" },
		{ "identity", "garbage\n", "is corrupt" },
		{ "0", "", "partition 0 cannot be opened" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
		char *dir = tu_mkdtemp(), *topics = tu_join(dir, "topics");
		char *tdir = tu_join(topics, "t"), *path, *before, *after;
		struct topic_failure f[4];
		struct broker *b = open_broker(dir, 1);

		assert_int_equal(broker_topic_create(b, "t"), 0);
		assert_int_equal(broker_topic_create(b, "ok"), 0);
		produce(b, "t", 0, 7);
		broker_close(b);
		path = tu_join(tdir, breaks[i].file);
		if (strcmp(breaks[i].file, "0") == 0) {
			/* A partition that is not a directory. */
			char *aside = tu_join(dir, "aside");
			assert_int_equal(rename(path, aside), 0);
			write_file(path, "not a partition\n");
			free(aside);
		} else if (breaks[i].text) {
			write_file(path, breaks[i].text);
		} else {
			assert_int_equal(unlink(path), 0);
		}
		before = snapshot(topics);

		b = open_broker(dir, 1);
		assert_null(broker_topic_get(b, "t"));
		assert_int_equal(records(b, "ok", 0), 0);
		assert_int_equal(broker_failures(b, 0, f, 4), 1);
		assert_string_equal(f[0].name, "t");
		if (!strstr(f[0].reason, breaks[i].reason))
			fail_msg("reason '%s' lacks '%s'", f[0].reason,
				 breaks[i].reason);
		assert_int_equal(broker_topic_create(b, "t"), -EEXIST);
		broker_close(b);

		after = snapshot(topics);
		assert_string_equal(before, after);
		free(before);
		free(after);
		free(path);
		free(tdir);
		free(topics);
		tu_rmdir(dir);
	}
}

/* Ids (and so inode numbers) stay with their topics across mounts, are
 * never given twice, and topics stored without one get one once. */
static void test_topic_ids_are_stable_and_never_reused(void **state)
{
	char *dir = tu_mkdtemp(), *path;
	struct broker *b = open_broker(dir, 1);
	uint64_t a, bb, c, a2, d;
	(void)state;

	assert_int_equal(broker_topic_create(b, "c"), 0);
	assert_int_equal(broker_topic_create(b, "b"), 0);
	assert_int_equal(broker_topic_create(b, "a"), 0);
	a = id_of(b, "a");
	bb = id_of(b, "b");
	c = id_of(b, "c");
	assert_true(c < bb && bb < a);
	assert_int_equal(broker_topic_delete(b, "c"), 0);
	broker_close(b);

	b = open_broker(dir, 1);
	assert_int_equal(id_of(b, "a"), a);
	assert_int_equal(id_of(b, "b"), bb);
	assert_null(broker_topic_by_id(b, c));
	assert_int_equal(broker_topic_create(b, "c"), 0);
	assert_true(id_of(b, "c") > a);
	assert_int_equal(broker_topic_delete(b, "a"), 0);
	assert_int_equal(broker_topic_create(b, "a"), 0);
	a2 = id_of(b, "a");
	assert_true(a2 > id_of(b, "c"));
	broker_close(b);

	/* Stored before ids existed: no identity, no counter. */
	path = tu_join(dir, "topics/b/identity");
	assert_int_equal(unlink(path), 0);
	free(path);
	path = tu_join(dir, "next-topic-id");
	assert_int_equal(unlink(path), 0);
	free(path);
	b = open_broker(dir, 1);
	d = id_of(b, "b");
	assert_true(d > a2);
	assert_int_equal(id_of(b, "a"), a2);
	broker_close(b);
	b = open_broker(dir, 1);
	assert_int_equal(id_of(b, "b"), d);
	assert_int_equal(broker_topic_create(b, "e"), 0);
	assert_true(id_of(b, "e") > d);
	broker_close(b);
	tu_rmdir(dir);
}

/* Growing partitions that fails at any step (a partition that cannot be
 * opened part way, the settings file not stored) changes neither the
 * stored settings nor the live topic, and leaves no partition directory
 * behind. Running out of descriptors is no longer such a step: idle
 * partitions' files are closed (test_growth_beyond_the_descriptor_limit). */
static void test_partition_growth_is_all_or_nothing(void **state)
{
	char *dir = tu_mkdtemp(), *tdir = tu_join(dir, "topics/t"), value[16];
	char *blocker = tu_join(tdir, "150");
	struct broker *b = open_broker(dir, 1);
	struct topic_config cfg;
	struct topic *t;
	int rc, countdown, entries, fd;
	(void)state;

	assert_int_equal(broker_topic_create(b, "t"), 0);
	produce(b, "t", 0, 4);
	t = broker_topic_get(b, "t");
	entries = count_entries(tdir);

	/* Partition 150 cannot be opened: a file is in its directory's
	 * place. The 149 opened before it are closed and removed again. */
	fd = open(blocker, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	close(fd);
	rc = topic_config_set(t, "partitions", "300", 3);
	assert_int_equal(rc, -ENOTDIR);
	assert_int_equal(topic_partitions(t), 1);
	topic_config(t, &cfg);
	assert_int_equal(cfg.partitions, 1);
	assert_int_equal(count_entries(tdir), entries + 1);
	assert_int_equal(unlink(blocker), 0);
	free(blocker);

	/* The settings file failing at each of its steps. */
	for (countdown = 0;; countdown++) {
		io_fault_inject(IO_FAULT_FSYNC, countdown, EIO);
		rc = topic_config_set(t, "partitions", "3", 1);
		io_fault_inject(IO_FAULT_NONE, 0, 0);
		if (rc == 0)
			break;
		assert_int_equal(rc, -EIO);
		assert_int_equal(topic_partitions(t), 1);
		topic_config(t, &cfg);
		assert_int_equal(cfg.partitions, 1);
		assert_int_equal(count_entries(tdir), entries);
	}
	assert_true(countdown > 0);
	assert_int_equal(topic_partitions(t), 3);
	topic_put(t);
	broker_close(b);

	b = open_broker(dir, 1);
	t = broker_topic_get(b, "t");
	assert_int_equal(topic_partitions(t), 3);
	topic_config(t, &cfg);
	snprintf(value, sizeof(value), "%u", cfg.partitions);
	assert_string_equal(value, "3");
	topic_put(t);
	assert_int_equal(records(b, "t", 0), 4);
	broker_close(b);
	free(tdir);
	tu_rmdir(dir);
}

/* ---- crashes at every step ---------------------------------------------- */

static int crash_at, steps_seen;

static void crash_hook(const char *step)
{
	(void)step;
	if (steps_seen++ == crash_at)
		_exit(0); /* as kill -9: nothing closed, nothing flushed */
}

/*
 * Run what(b) in a child that dies at step k of it; returns false once k
 * is past the last step (the child finished).
 */
static bool crash_child(const char *dir, int k,
			void (*what)(struct broker *b))
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct broker_opts o = { .datadir = dir, .num_partitions = 2 };
		struct broker *b;
		if (broker_open(&o, &b) < 0)
			_exit(3);
		crash_at = k;
		steps_seen = 0;
		broker_set_step_hook(crash_hook);
		what(b);
		_exit(1); /* no step left to crash at */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 3);
	return WEXITSTATUS(status) == 0;
}

static void create_new(struct broker *b)
{
	broker_topic_create(b, "new");
}

static void delete_gone(struct broker *b)
{
	broker_topic_delete(b, "gone");
}

/* After a crash: "keep" whole; `name` whole (2 partitions, records as
 * given, writable) or absent; the trash empty. Returns whether present. */
static bool check_after_crash(struct broker *b, const char *dir,
			      const char *name, int64_t want_records)
{
	char *trash = tu_join(dir, "trash");
	struct topic *t = broker_topic_get(b, name);
	struct topic_failure f;
	bool present = t != NULL;

	assert_int_equal(records(b, "keep", 0), 9);
	assert_int_equal(broker_failures(b, 0, &f, 1), 0);
	assert_int_equal(count_entries(trash), 0);
	if (t) {
		assert_int_equal(topic_partitions(t), 2);
		assert_int_equal(strlen(topic_uuid(t)), TOPIC_UUID_LEN);
		topic_put(t);
		assert_int_equal(records(b, name, 0), want_records);
		produce(b, name, 1, 1);
		assert_int_equal(records(b, name, 1), 1);
	}
	free(trash);
	return present;
}

static void test_crash_at_every_step_of_create(void **state)
{
	int k, present = 0;
	(void)state;

	for (k = 0;; k++) {
		char *dir = tu_mkdtemp();
		struct broker *b = open_broker(dir, 2);
		uint64_t keep_id;
		bool more;

		assert_int_equal(broker_topic_create(b, "keep"), 0);
		produce(b, "keep", 0, 9);
		keep_id = id_of(b, "keep");
		broker_close(b);
		more = crash_child(dir, k, create_new);
		b = open_broker(dir, 2);
		assert_int_equal(id_of(b, "keep"), keep_id);
		if (check_after_crash(b, dir, "new", 0)) {
			present++;
			assert_true(id_of(b, "new") > keep_id);
		} else {
			/* Absent, and can be made; its id is a new one. */
			assert_int_equal(broker_topic_create(b, "new"), 0);
			assert_true(id_of(b, "new") > keep_id);
		}
		broker_close(b);
		tu_rmdir(dir);
		if (!more)
			break;
	}
	assert_true(k >= 4);       /* the steps were there to crash at */
	assert_true(present >= 1); /* and the last ones leave the topic */
}

static void test_crash_at_every_step_of_delete(void **state)
{
	int k, absent = 0;
	(void)state;

	for (k = 0;; k++) {
		char *dir = tu_mkdtemp();
		struct broker *b = open_broker(dir, 2);
		bool more;

		assert_int_equal(broker_topic_create(b, "keep"), 0);
		assert_int_equal(broker_topic_create(b, "gone"), 0);
		produce(b, "keep", 0, 9);
		produce(b, "gone", 0, 5);
		broker_close(b);
		more = crash_child(dir, k, delete_gone);
		b = open_broker(dir, 2);
		if (!check_after_crash(b, dir, "gone", 5))
			absent++;
		broker_close(b);
		tu_rmdir(dir);
		if (!more)
			break;
	}
	assert_true(k >= 1);
	assert_true(absent >= 1);
}

/*
 * Member eviction is an interval on the monotonic clock: a tick whose wall
 * clock jumped a day ahead (a clock step) evicts nobody, one whose
 * monotonic clock passed max.poll.interval.ms does. The tick takes both
 * clocks as arguments, so the test drives them without touching the
 * system clock.
 */
static void test_eviction_follows_the_monotonic_clock(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker *b = open_broker(dir, 1);
	struct tick_now now;
	struct member *m;
	struct group *g;
	struct topic *t;

	(void)state;
	assert_int_equal(broker_topic_create(b, "t"), 0);
	t = broker_topic_get(b, "t");
	assert_non_null(t);
	assert_int_equal(groups_lookup(topic_groups(t), "g", &g), 0);
	assert_int_equal(group_setxattr(g, "max.poll.interval.ms",
					"60000", 5), 0);
	assert_int_equal(member_join(g, getpid(), &m), 0);

	now = clock_now();
	now.wall_ms += 24 * 3600 * 1000LL;
	broker_tick(b, &now);
	assert_int_equal(member_commit(m), 0);

	now = clock_now();
	now.mono_ms += 61000;
	broker_tick(b, &now);
	assert_int_equal(member_commit(m), -ETIMEDOUT);

	member_leave(m);
	topic_put(t);
	broker_close(b);
	tu_rmdir(dir);
}

/* A step hook that stops the step named blk_step until blk_go is set. */
static pthread_mutex_t blk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t blk_cond = PTHREAD_COND_INITIALIZER;
static const char *blk_step;
static bool blk_reached, blk_go, other_done;

static void blocking_hook(const char *step)
{
	pthread_mutex_lock(&blk_lock);
	if (blk_step && strcmp(step, blk_step) == 0) {
		blk_reached = true;
		pthread_cond_broadcast(&blk_cond);
		while (!blk_go)
			pthread_cond_wait(&blk_cond, &blk_lock);
	}
	pthread_mutex_unlock(&blk_lock);
}

/* Wait until *flag or BLOCKED_DEADLINE_MS pass; the flag's value. */
#define BLOCKED_DEADLINE_MS 5000
static bool wait_flag(bool *flag)
{
	struct timespec until;
	bool v;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += BLOCKED_DEADLINE_MS / 1000;
	pthread_mutex_lock(&blk_lock);
	while (!*flag && pthread_cond_timedwait(&blk_cond, &blk_lock,
						&until) != ETIMEDOUT)
		;
	v = *flag;
	pthread_mutex_unlock(&blk_lock);
	return v;
}

struct bg_op {
	struct broker *b;
	const char *name;
	bool delete;
	int rc;
};

static void *bg_op_main(void *arg)
{
	struct bg_op *op = arg;

	op->rc = op->delete ? broker_topic_delete(op->b, op->name) :
		 broker_topic_create(op->b, op->name);
	return NULL;
}

/* Look up topic "other" and append to it: rc 0 when both worked. */
static void *other_main(void *arg)
{
	struct bg_op *op = arg;
	struct topic *t = broker_topic_get(op->b, "other");
	char line[] = "x\n";
	uint32_t len = 2;
	struct iovec iov = { line, len };

	op->rc = !t ? -ENOENT : part_produce(topic_part(t, 0), &iov, 1, &len,
					     1, NULL);
	if (t)
		topic_put(t);
	pthread_mutex_lock(&blk_lock);
	other_done = true;
	pthread_cond_broadcast(&blk_cond);
	pthread_mutex_unlock(&blk_lock);
	return NULL;
}

/*
 * While the creation or deletion of one topic is stopped in its disk work
 * (at the step `at`), a lookup of and an append to another topic finish
 * within the deadline: the disk work is not done under the broker lock.
 */
static void check_not_stalled_by(struct broker *b, const char *name,
				 bool delete, const char *at)
{
	struct bg_op op = { b, name, delete, 1 }, other = { b, "other", 0, 1 };
	pthread_t op_thread, other_thread;
	int again = 0;
	bool done;

	blk_step = at;
	blk_reached = blk_go = other_done = false;
	broker_set_step_hook(blocking_hook);
	assert_int_equal(pthread_create(&op_thread, NULL, bg_op_main, &op), 0);
	assert_true(wait_flag(&blk_reached));
	assert_int_equal(pthread_create(&other_thread, NULL, other_main,
					&other), 0);
	done = wait_flag(&other_done);
	if (done) /* the name stays taken while its creation or deletion runs */
		again = broker_topic_create(b, name);
	pthread_mutex_lock(&blk_lock);
	blk_go = true;
	pthread_cond_broadcast(&blk_cond);
	pthread_mutex_unlock(&blk_lock);
	pthread_join(op_thread, NULL);
	pthread_join(other_thread, NULL);
	broker_set_step_hook(NULL);
	blk_step = NULL;
	assert_true(done);
	assert_int_equal(other.rc, 0);
	assert_int_equal(op.rc, 0);
	assert_int_equal(again, -EEXIST);
}

static void test_create_and_delete_do_not_stall_other_topics(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker *b = open_broker(dir, 1);

	(void)state;
	assert_int_equal(broker_topic_create(b, "other"), 0);
	check_not_stalled_by(b, "slow", false, "staged");
	check_not_stalled_by(b, "slow2", false, "published");
	assert_true(records(b, "slow", 0) == 0);
	assert_true(records(b, "slow2", 0) == 0);
	check_not_stalled_by(b, "slow", true, "moved to the trash");
	assert_true(records(b, "slow", 0) == -1);
	assert_true(records(b, "other", 0) == 3);
	broker_close(b);
	tu_rmdir(dir);
}

/* The flush hook: stops the flush of slow_part until blk_go; notes that
 * of fast_part. */
static struct part *slow_part, *fast_part;
static bool fast_flushed, tick_done;

static void slow_flush_hook(struct part *p)
{
	pthread_mutex_lock(&blk_lock);
	if (p == fast_part)
		fast_flushed = true;
	if (p == slow_part) {
		blk_reached = true;
		pthread_cond_broadcast(&blk_cond);
		while (!blk_go)
			pthread_cond_wait(&blk_cond, &blk_lock);
	}
	pthread_cond_broadcast(&blk_cond);
	pthread_mutex_unlock(&blk_lock);
}

static void *tick_main(void *arg)
{
	struct tick_now now = clock_now();

	now.mono_ms += 10000; /* every flush.ms=1 partition is due */
	broker_tick(arg, &now);
	pthread_mutex_lock(&blk_lock);
	tick_done = true;
	pthread_cond_broadcast(&blk_cond);
	pthread_mutex_unlock(&blk_lock);
	return NULL;
}

/* Make topic name with flush.ms=1 and one record; its partition 0. */
static struct part *flushy_topic(struct broker *b, const char *name,
				 struct topic **t)
{
	assert_int_equal(broker_topic_create(b, name), 0);
	*t = broker_topic_get(b, name);
	assert_non_null(*t);
	assert_int_equal(topic_config_set(*t, "flush.ms", "1", 1), 0);
	produce(b, name, 0, 1);
	return topic_part(*t, 0);
}

/*
 * A tick hands due flushes to the flush threads: while the flush of
 * partition B (ticked first) is stopped, the tick returns and partition
 * A's flush runs, both within the deadline.
 */
static void test_slow_flush_does_not_delay_other_partitions(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker *b = open_broker(dir, 1);
	struct topic *ta, *tb;
	pthread_t tick;
	bool ticked, flushed;

	(void)state;
	slow_part = flushy_topic(b, "b", &tb); /* lower id: ticked first */
	fast_part = flushy_topic(b, "a", &ta);
	blk_reached = blk_go = fast_flushed = tick_done = false;
	broker_set_flush_hook(slow_flush_hook);
	assert_int_equal(pthread_create(&tick, NULL, tick_main, b), 0);
	assert_true(wait_flag(&blk_reached));
	ticked = wait_flag(&tick_done);
	flushed = wait_flag(&fast_flushed);
	pthread_mutex_lock(&blk_lock);
	blk_go = true;
	pthread_cond_broadcast(&blk_cond);
	pthread_mutex_unlock(&blk_lock);
	pthread_join(tick, NULL);
	assert_true(ticked);
	assert_true(flushed);
	topic_put(ta);
	topic_put(tb);
	broker_close(b);
	broker_set_flush_hook(NULL);
	tu_rmdir(dir);
}

/* The high watermark partition 0 of topic name's checkpoint file holds,
 * or -1 if it cannot be read. */
static int64_t checkpointed_hw(const char *dir, const char *name)
{
	char *path, *text = NULL, *at;
	int64_t hw = -1;
	FILE *f;

	assert_true(asprintf(&path, "%s/topics/%s/0/checkpoint", dir, name) > 0);
	f = fopen(path, "r");
	if (f) {
		size_t cap = 0;
		ssize_t n = getdelim(&text, &cap, '\0', f);
		fclose(f);
		at = n > 0 ? strstr(text, "high_watermark ") : NULL;
		if (at)
			hw = strtoll(at + strlen("high_watermark "), NULL, 10);
	}
	free(text);
	free(path);
	return hw;
}

/* Wait (polling, up to BLOCKED_DEADLINE_MS) until name's checkpoint holds
 * high watermark hw; whether it does. */
static bool wait_checkpointed_hw(const char *dir, const char *name,
				 int64_t hw)
{
	int64_t until = clock_mono_ms() + BLOCKED_DEADLINE_MS;

	while (checkpointed_hw(dir, name) != hw && clock_mono_ms() < until)
		nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
	return checkpointed_hw(dir, name) == hw;
}

/*
 * Kafka checkpoints the high watermark every 5 s
 * (replica.high.watermark.checkpoint.interval.ms), not per commit: after
 * appends the checkpoint file still holds the old high watermark, also
 * after a tick 1 s later; a tick 5 s after the mount (monotonic clock)
 * has a flush worker write it.
 */
static void test_tick_checkpoints_the_high_watermark(void **state)
{
	char *dir = tu_mkdtemp();
	struct broker *b = open_broker(dir, 1);
	struct tick_now now = clock_now();

	(void)state;
	assert_int_equal(broker_topic_create(b, "t"), 0);
	produce(b, "t", 0, 3);
	assert_int_equal(checkpointed_hw(dir, "t"), 0);
	now.mono_ms += 1000;
	broker_tick(b, &now);
	assert_int_equal(checkpointed_hw(dir, "t"), 0);
	now.mono_ms += 5000;
	broker_tick(b, &now);
	assert_true(wait_checkpointed_hw(dir, "t", 3));

	/* The next one is due 5 s after that one, not before. */
	produce(b, "t", 0, 2);
	now.mono_ms += 1000;
	broker_tick(b, &now);
	now.mono_ms += 4100;
	broker_tick(b, &now);
	assert_true(wait_checkpointed_hw(dir, "t", 5));
	broker_close(b);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stored_settings_win_over_mount_options),
		cmocka_unit_test(test_unloadable_topic_is_left_untouched),
		cmocka_unit_test(test_topic_ids_are_stable_and_never_reused),
		cmocka_unit_test(test_partition_growth_is_all_or_nothing),
		cmocka_unit_test(test_crash_at_every_step_of_create),
		cmocka_unit_test(test_crash_at_every_step_of_delete),
		cmocka_unit_test(test_eviction_follows_the_monotonic_clock),
		cmocka_unit_test(test_create_and_delete_do_not_stall_other_topics),
		cmocka_unit_test(test_slow_flush_does_not_delay_other_partitions),
		cmocka_unit_test(test_tick_checkpoints_the_high_watermark),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
