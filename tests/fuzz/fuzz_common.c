#include "fuzz_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"

/* Groups of records appended to the template, per segment. */
#define TEMPLATE_APPENDS 12
/* Records in one template append, at most. */
#define TEMPLATE_GROUP_MAX 8
/* Bytes in one template record, at most. */
#define TEMPLATE_RECORD_BYTES_MAX 160

void fuzz_config(struct log_config *c)
{
	log_config_default(c);
	c->segment_bytes = 16384;
	c->index_bytes = 24 * 64;
	c->index_interval_bytes = 512;
	c->batch_bytes = 2048;
	c->retention_ms = -1;
}

static void fuzz_logger(int priority, const char *msg, void *arg)
{
	(void)priority;
	(void)msg;
	(void)arg;
}

void fuzz_quiet(void)
{
	if (!getenv("TOPICFS_FUZZ_VERBOSE"))
		log_set_logger(fuzz_logger, NULL);
}

/* Bounds the passes over a directory being emptied. */
#define CLEAR_PASSES_MAX 64

/*
 * rm -r of a scratch directory: its files and one level of
 * subdirectories. readdir may skip entries while the directory shrinks
 * under it (tmpfs does), so a pass that removed something is repeated.
 */
static void scratch_rm(const char *root)
{
	struct dirent *de;
	DIR *d = opendir(root);
	bool removed = true;

	for (int pass = 0; d && removed && pass < CLEAR_PASSES_MAX; pass++) {
		removed = false;
		rewinddir(d);
		while ((de = readdir(d))) {
			char sub[4096];
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", root, de->d_name);
			fuzz_dir_clear(sub);
			removed |= rmdir(sub) == 0 || unlink(sub) == 0;
		}
	}
	if (d)
		closedir(d);
	rmdir(root);
}

static char *scratch_root;

static void fuzz_scratch_remove(void)
{
	if (!scratch_root)
		return;
	scratch_rm(scratch_root);
	free(scratch_root);
	scratch_root = NULL;
}

/* Remove the scratch directories of processes that died (crashed). */
static void scratch_sweep(const char *base, const char *target)
{
	char prefix[256], path[4096];
	struct dirent *de;
	DIR *d = opendir(base);
	size_t plen;

	if (!d)
		return;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "topicfs-%s-", target);
	while ((de = readdir(d))) {
		char *end;
		long pid;

		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		pid = strtol(de->d_name + plen, &end, 10);
		if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
		scratch_rm(path);
	}
	closedir(d);
}

char *fuzz_scratch_dir(const char *target)
{
	const char *base = getenv("TOPICFS_FUZZ_TMPDIR");
	struct stat st;
	char *path;

	if (!base && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	if (!base)
		base = getenv("TMPDIR");
	if (!base)
		base = "/tmp";
	scratch_sweep(base, target);
	path = malloc(strlen(base) + strlen(target) + 32);
	if (!path)
		return NULL;
	sprintf(path, "%s/topicfs-%s-%ld", base, target, (long)getpid());
	scratch_rm(path);
	if (mkdir(path, 0700) < 0) {
		free(path);
		return NULL;
	}
	if (!scratch_root) {
		scratch_root = strdup(path);
		atexit(fuzz_scratch_remove);
	}
	return path;
}

void fuzz_dir_clear(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	bool removed = true;

	if (!d)
		return;
	/* As in scratch_rm: again until a pass removes nothing. */
	for (int pass = 0; removed && pass < CLEAR_PASSES_MAX; pass++) {
		removed = false;
		rewinddir(d);
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			removed |= unlinkat(dirfd(d), de->d_name, 0) == 0;
		}
	}
	closedir(d);
}

int fuzz_write_file(const char *dir, const char *name, const void *buf,
		    size_t len)
{
	char path[4096];
	const uint8_t *p = buf;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
	return rc;
}

uint8_t fuzz_byte_at(uint64_t pos)
{
	/* Runs of one letter so that lz4 and zstd find something to do. */
	return (uint8_t)('a' + (pos / 7 + pos / 131) % 26);
}

void fuzz_fill(uint8_t *buf, size_t len, uint64_t pos)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = fuzz_byte_at(pos + i);
}

/* Append TEMPLATE_APPENDS groups of records in epoch, seeded by salt. */
static int template_append(struct log *l, uint32_t epoch, uint32_t salt)
{
	uint8_t buf[TEMPLATE_GROUP_MAX * TEMPLATE_RECORD_BYTES_MAX];
	uint32_t lens[TEMPLATE_GROUP_MAX];
	struct log_state st;
	int rc;

	for (uint32_t g = 0; g < TEMPLATE_APPENDS; g++) {
		uint32_t n = 1 + (g * 5 + salt) % TEMPLATE_GROUP_MAX;
		struct log_append_opts o = { epoch, 0 };
		size_t len = 0;

		log_get_state(l, &st);
		for (uint32_t i = 0; i < n; i++) {
			lens[i] = 1 + (uint32_t)((st.leo + i) * 37 + salt) %
				      TEMPLATE_RECORD_BYTES_MAX;
			len += lens[i];
		}
		fuzz_fill(buf, len, st.leo_pos);
		o.timestamp_ms = FUZZ_TS_BASE + (int64_t)st.leo * 10;
		rc = log_append(l, buf, len, lens, n, &o, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int fuzz_fix_created(const char *dir)
{
	struct fuzz_file files[FUZZ_TEMPLATE_FILES_MAX];
	int n = fuzz_read_segments(dir, files, FUZZ_TEMPLATE_FILES_MAX);
	int rc = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n && rc == 0; i++) {
		struct seg_hdr h;
		size_t len = strlen(files[i].name);

		if (len < 5 || strcmp(files[i].name + len - 5, ".meta") != 0)
			continue;
		if (files[i].len < SEG_HDR_SIZE ||
		    seg_hdr_decode(files[i].data, &h) < 0) {
			rc = -EIO;
			break;
		}
		h.created_ms = FUZZ_CREATED_MS;
		seg_hdr_encode(&h, files[i].data);
		rc = fuzz_write_file(dir, files[i].name, files[i].data,
				     files[i].len);
	}
	fuzz_files_free(files, (size_t)n);
	return rc;
}

int fuzz_template_build(const char *dir)
{
	static const struct {
		int codec;
		uint32_t epoch;
	} segs[] = {
		{ LOG_CODEC_NONE, 1 },
		{ LOG_CODEC_LZ4, 2 },
		{ LOG_CODEC_ZSTD, 3 },
		{ LOG_CODEC_NONE, 5 },
	};
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	int rc;

	fuzz_config(&cfg);
	/* The timestamps are fixed and long past: roll by codec only. */
	cfg.segment_ms = INT64_MAX;
	rc = log_open(dir, &cfg, &l);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]) && rc == 0; i++) {
		/* A codec change rolls the segment at the next append. */
		cfg.codec = segs[i].codec;
		rc = log_set_config(l, &cfg);
		if (rc == 0)
			rc = template_append(l, segs[i].epoch, (uint32_t)i * 3);
		/* Two epochs in the zstd segment. */
		if (rc == 0 && segs[i].codec == LOG_CODEC_ZSTD)
			rc = template_append(l, segs[i].epoch + 1, 11);
	}
	if (rc == 0) {
		log_get_state(l, &st);
		rc = log_set_hw(l, st.leo);
	}
	if (rc < 0) {
		log_abandon(l);
		return rc;
	}
	rc = log_close(l);
	if (rc == 0)
		rc = fuzz_fix_created(dir);
	return rc;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct fuzz_file *)a)->name,
		      ((const struct fuzz_file *)b)->name);
}

static bool is_segment_file(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot && dot - name == 20 &&
	       (strcmp(dot, ".meta") == 0 || strcmp(dot, ".log") == 0 ||
		strcmp(dot, ".index") == 0);
}

static int read_all(const char *dir, const char *name, struct fuzz_file *f)
{
	char path[4096];
	struct stat st;
	ssize_t got;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	f->len = (size_t)st.st_size;
	f->data = malloc(f->len ? f->len : 1);
	if (!f->data) {
		rc = -ENOMEM;
		goto out_close;
	}
	got = pread(fd, f->data, f->len, 0);
	if (got != (ssize_t)f->len) {
		free(f->data);
		f->data = NULL;
		rc = -EIO;
	}
	snprintf(f->name, sizeof(f->name), "%s", name);
out_close:
	close(fd);
	return rc;
}

int fuzz_read_segments(const char *dir, struct fuzz_file *files, size_t max)
{
	struct dirent *de;
	size_t n = 0;
	int rc = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!is_segment_file(de->d_name))
			continue;
		if (n == max) {
			rc = -E2BIG;
			break;
		}
		rc = read_all(dir, de->d_name, &files[n]);
		if (rc < 0)
			break;
		n++;
	}
	closedir(d);
	if (rc < 0) {
		fuzz_files_free(files, n);
		return rc;
	}
	qsort(files, n, sizeof(files[0]), cmp_file);
	return (int)n;
}

void fuzz_files_free(struct fuzz_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i].data);
		files[i].data = NULL;
	}
}

size_t fuzz_seal_text(const uint8_t *in, size_t len, char *out, size_t cap)
{
	static const char tag[] = "crc32c ";
	size_t body = len;
	int n;

	for (size_t i = 0; i + sizeof(tag) - 1 <= len; i++) {
		if (memcmp(in + i, tag, sizeof(tag) - 1) == 0) {
			body = i;
			break;
		}
	}
	if (body + 17 > cap)
		body = cap > 17 ? cap - 17 : 0;
	memcpy(out, in, body);
	n = snprintf(out + body, cap - body, "crc32c %08x\n",
		     crc32c(0, out, body));
	return body + (n > 0 ? (size_t)n : 0);
}

void fuzz_check_state(const struct log_state *st)
{
	bool ok = st->segments >= 1 && st->start_offset <= st->hw &&
		  st->hw <= st->leo && st->start_pos <= st->hw_pos &&
		  st->hw_pos <= st->leo_pos && st->recovery_point <= st->leo;

	if (!ok || st->hw - st->start_offset > st->hw_pos - st->start_pos ||
	    st->leo - st->hw > st->leo_pos - st->hw_pos)
		fuzz_print_state("broken state", st);
	FUZZ_CHECK(st->segments >= 1);
	FUZZ_CHECK(st->start_offset <= st->hw && st->hw <= st->leo);
	FUZZ_CHECK(st->start_pos <= st->hw_pos && st->hw_pos <= st->leo_pos);
	FUZZ_CHECK(st->recovery_point <= st->leo);
	/* Every record holds at least one byte. */
	FUZZ_CHECK(st->hw - st->start_offset <= st->hw_pos - st->start_pos);
	FUZZ_CHECK(st->leo - st->hw <= st->leo_pos - st->hw_pos);
	FUZZ_CHECK((st->hw == st->leo) == (st->hw_pos == st->leo_pos));
	FUZZ_CHECK((st->hw == st->start_offset) ==
		   (st->hw_pos == st->start_pos));
}

bool fuzz_same_state(const struct log_state *a, const struct log_state *b)
{
	return a->start_offset == b->start_offset &&
	       a->start_pos == b->start_pos && a->hw == b->hw &&
	       a->hw_pos == b->hw_pos && a->leo == b->leo &&
	       a->leo_pos == b->leo_pos && a->segments == b->segments &&
	       a->leader_epoch == b->leader_epoch;
}

void fuzz_print_state(const char *what, const struct log_state *st)
{
	fprintf(stderr, "%s: start %" PRIu64 "/%" PRIu64 " hw %" PRIu64 "/%"
		PRIu64 " leo %" PRIu64 "/%" PRIu64 " segments %" PRIu32
		" epoch %" PRIu32 "\n", what, st->start_offset, st->start_pos,
		st->hw, st->hw_pos, st->leo, st->leo_pos, st->segments,
		st->leader_epoch);
}
