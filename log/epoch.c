#include "epoch.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "io.h"

#define EPOCH_MAGIC "topicfs-leader-epochs 1\n"
#define EPOCH_LINE_MAX 48

int epoch_reserve(struct epoch_cache *c, uint32_t want)
{
	uint32_t cap = c->cap ? c->cap : 2;
	struct epoch_entry *e;

	if (want > EPOCH_ENTRIES_MAX)
		want = EPOCH_ENTRIES_MAX;
	if (want <= c->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	if (cap > EPOCH_ENTRIES_MAX)
		cap = EPOCH_ENTRIES_MAX;
	e = realloc(c->e, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	c->e = e;
	c->cap = cap;
	return 0;
}

void epoch_free(struct epoch_cache *c)
{
	free(c->e);
	*c = (struct epoch_cache){ 0, 0, NULL };
}

int epoch_load(struct epoch_cache *c, int dir_fd)
{
	size_t max = sizeof(EPOCH_MAGIC) + 16 +
		     (size_t)EPOCH_ENTRIES_MAX * EPOCH_LINE_MAX + 32;
	char *buf, *p, *end, *crc_line;
	unsigned long long count;
	unsigned crc;
	ssize_t n;
	int rc = -EIO;

	c->n = 0;
	n = io_read_file(dir_fd, EPOCH_FILE, max, &buf);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	crc_line = strstr(buf, "crc32c ");
	if (!crc_line || sscanf(crc_line, "crc32c %8x\n", &crc) != 1 ||
	    crc != crc32c(0, buf, (size_t)(crc_line - buf)))
		goto out_free;
	if (strncmp(buf, EPOCH_MAGIC, strlen(EPOCH_MAGIC)) != 0)
		goto out_free;
	p = buf + strlen(EPOCH_MAGIC);
	count = strtoull(p, &end, 10);
	if (end == p || *end != '\n' || count > EPOCH_ENTRIES_MAX)
		goto out_free;
	if (epoch_reserve(c, (uint32_t)count) < 0) {
		rc = -ENOMEM;
		goto out_free;
	}
	p = end + 1;
	for (unsigned long long i = 0; i < count; i++) {
		unsigned long long ep, start;
		ep = strtoull(p, &end, 10);
		if (end == p || *end != ' ' || ep > UINT32_MAX)
			goto out_free;
		p = end + 1;
		start = strtoull(p, &end, 10);
		if (end == p || *end != '\n')
			goto out_free;
		p = end + 1;
		if (c->n && (ep <= c->e[c->n - 1].epoch ||
			     start < c->e[c->n - 1].start))
			goto out_free;
		c->e[c->n++] = (struct epoch_entry){ (uint32_t)ep, start };
	}
	if (p != crc_line)
		goto out_free;
	rc = 0;
out_free:
	if (rc < 0)
		c->n = 0;
	free(buf);
	return rc;
}

int epoch_save(const struct epoch_cache *c, int dir_fd)
{
	size_t cap = sizeof(EPOCH_MAGIC) + 16 +
		     (size_t)c->n * EPOCH_LINE_MAX + 32;
	char *buf = malloc(cap);
	size_t len;
	int rc;

	if (!buf)
		return -ENOMEM;
	len = (size_t)snprintf(buf, cap, "%s%" PRIu32 "\n", EPOCH_MAGIC, c->n);
	for (uint32_t i = 0; i < c->n; i++)
		len += (size_t)snprintf(buf + len, cap - len,
					"%" PRIu32 " %" PRIu64 "\n",
					c->e[i].epoch, c->e[i].start);
	len += (size_t)snprintf(buf + len, cap - len, "crc32c %08x\n",
				crc32c(0, buf, len));
	rc = io_replace_file(dir_fd, EPOCH_FILE, buf, len);
	free(buf);
	return rc;
}

bool epoch_assign(struct epoch_cache *c, uint32_t epoch, uint64_t start)
{
	if (c->n && c->e[c->n - 1].epoch >= epoch)
		return false;
	/* An epoch that wrote nothing is replaced (Kafka drops the entries
	 * a new one does not follow: maybeTruncateNonMonotonicEntries). */
	while (c->n && c->e[c->n - 1].start >= start)
		c->n--;
	if (c->n == EPOCH_ENTRIES_MAX) {
		memmove(c->e, c->e + 1, (c->n - 1) * sizeof(c->e[0]));
		c->n--;
	}
	assert(c->n < c->cap);
	c->e[c->n++] = (struct epoch_entry){ epoch, start };
	return true;
}

bool epoch_truncate_end(struct epoch_cache *c, uint64_t end)
{
	uint32_t n = c->n;

	while (c->n && c->e[c->n - 1].start >= end)
		c->n--;
	return n != c->n;
}

bool epoch_truncate_start(struct epoch_cache *c, uint64_t start)
{
	uint32_t keep = 0;

	/* Find the last entry starting at or below start. */
	while (keep + 1 < c->n && c->e[keep + 1].start <= start)
		keep++;
	if (c->n == 0 || (keep == 0 && c->e[0].start >= start))
		return false;
	memmove(c->e, c->e + keep, (c->n - keep) * sizeof(c->e[0]));
	c->n -= keep;
	if (c->e[0].start < start)
		c->e[0].start = start;
	return true;
}

/* Kafka's LeaderEpochFileCache.endOffsetFor, case by case (see log.h). */
void epoch_end_offset(const struct epoch_cache *c, uint32_t epoch,
		      uint64_t leo, uint32_t *found, uint64_t *end)
{
	uint32_t hi = 0; /* the first entry with a larger epoch */

	*found = EPOCH_UNDEFINED;
	*end = EPOCH_OFFSET_UNDEFINED;
	if (epoch == EPOCH_UNDEFINED || c->n == 0)
		return;
	if (c->e[c->n - 1].epoch == epoch) {
		*found = epoch;
		*end = leo;
		return;
	}
	while (hi < c->n && c->e[hi].epoch <= epoch)
		hi++;
	if (hi == c->n)
		return; /* newer than every entry */
	*found = hi == 0 ? epoch : c->e[hi - 1].epoch;
	*end = c->e[hi].start;
}
