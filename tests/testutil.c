#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "io.h"

char *tu_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	if (!tmp)
		tmp = "/tmp";
	assert_true(asprintf(&path, "%s/topicfs-test-XXXXXX", tmp) > 0);
	assert_non_null(mkdtemp(path));
	return path;
}

void tu_rmdir(char *path)
{
	io_remove_tree(path);
	free(path);
}

char *tu_join(const char *dir, const char *name)
{
	char *p;
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static uint64_t tu_state, tu_seed_value;

void tu_seed(uint64_t def)
{
	const char *env = getenv("TOPICFS_TEST_SEED");

	tu_seed_value = env ? strtoull(env, NULL, 0) : def;
	tu_state = tu_seed_value ? tu_seed_value : 1;
}

uint64_t tu_seed_used(void)
{
	return tu_seed_value;
}

uint64_t tu_rand(void)
{
	tu_state ^= tu_state >> 12;
	tu_state ^= tu_state << 25;
	tu_state ^= tu_state >> 27;
	return tu_state * 2685821657736338717ull;
}

void tu_small_config(struct log_config *c)
{
	log_config_default(c);
	c->segment_bytes = 16384;
	c->index_bytes = 24 * 64;
	c->index_interval_bytes = 512;
	c->batch_bytes = 2048;
	c->retention_ms = -1;
}

struct log *tu_open(const char *dir, const struct log_config *c)
{
	struct log *l = NULL;
	int rc = log_open(dir, c, &l);

	if (rc != 0)
		fprintf(stderr, "log_open(%s): %s\n", dir, strerror(-rc));
	assert_int_equal(rc, 0);
	return l;
}

void tu_fill(uint8_t *buf, uint32_t len, uint64_t off)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((off * 131 + i * 7 + (off >> 8)) & 0xff);
}

struct log_append_info tu_append(struct log *l, const uint32_t *lens,
				 uint32_t n)
{
	struct log_append_info info;
	struct log_state st;
	size_t total = 0, at = 0;
	uint8_t *buf;

	log_get_state(l, &st);
	for (uint32_t i = 0; i < n; i++)
		total += lens[i];
	buf = malloc(total ? total : 1);
	assert_non_null(buf);
	for (uint32_t i = 0; i < n; i++) {
		tu_fill(buf + at, lens[i], st.leo + i);
		at += lens[i];
	}
	assert_int_equal(log_append(l, buf, total, lens, n, NULL, &info), 0);
	assert_int_equal(log_set_hw(l, info.end_offset), 0);
	free(buf);
	return info;
}

int tu_dump_problems(const char *dir)
{
	FILE *null = fopen("/dev/null", "w");
	int bad;

	assert_non_null(null);
	bad = log_dump(dir, true, null);
	fclose(null);
	return bad;
}

uint8_t *tu_read_all(struct log *l, uint64_t *len)
{
	struct log_cursor *c;
	struct log_state st;
	uint8_t *buf;
	uint64_t pos, done = 0;

	log_get_state(l, &st);
	*len = st.hw_pos - st.start_pos;
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	assert_int_equal(log_cursor_new(l, &c), 0);
	while (done < *len) {
		pos = st.start_pos + done;
		ssize_t n = log_read_copy(c, &pos, buf + done, *len - done);
		assert_true(n > 0);
		assert_true(pos == st.start_pos + done);
		done += (uint64_t)n;
	}
	log_cursor_free(c);
	return buf;
}

int64_t tu_file_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	return st.st_size;
}

void tu_truncate(const char *path, int64_t size)
{
	assert_int_equal(truncate(path, size), 0);
}

void tu_append_bytes(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

void tu_flip_bit(const char *path, int64_t byte, int bit)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, byte), 1);
	b ^= (uint8_t)(1u << bit);
	assert_int_equal(pwrite(fd, &b, 1, byte), 1);
	close(fd);
}
