/*
 * The scrub's record (scrub.h). The file, in ASCII, replaced durably
 * (io_replace_file: temp file, fsync, rename, fsync of the directory):
 *
 *   topicfs-scrub-checkpoint 1
 *   <count>
 *   <base_offset> <created_ms> <end_offset> <meta_bytes> <data_bytes>
 *       <last_hdr_crc, 8 hex digits> <bad> <checked_ms>     (count lines,
 *                                                          one line each)
 *   crc32c <8 hex digits: CRC-32C of every byte before this line>
 */
#include "scrub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"
#include "io.h"

#define SCRUB_MAGIC "topicfs-scrub-checkpoint 1\n"
/* A longer file is not ours (about 150,000 segments). */
#define SCRUB_FILE_BYTES_MAX (16u << 20)
/* One entry's line, at most. */
#define SCRUB_LINE_MAX 160

static int scrub_record_grow(struct scrub_record *r)
{
	struct scrub_entry *v;
	uint32_t cap;

	if (r->n < r->cap)
		return 0;
	cap = r->cap ? r->cap * 2 : 8;
	v = realloc(r->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	r->v = v;
	r->cap = cap;
	return 0;
}

/* Index of the first entry with a base offset >= base. */
static uint32_t scrub_record_index(const struct scrub_record *r,
				   uint64_t base)
{
	uint32_t lo = 0, hi = r->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->v[mid].base_offset < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct scrub_entry *scrub_record_find(struct scrub_record *r, uint64_t base)
{
	uint32_t i = scrub_record_index(r, base);

	return i < r->n && r->v[i].base_offset == base ? &r->v[i] : NULL;
}

struct scrub_entry *scrub_record_get(struct scrub_record *r, uint64_t base)
{
	uint32_t i = scrub_record_index(r, base);

	if (i < r->n && r->v[i].base_offset == base)
		return &r->v[i];
	if (scrub_record_grow(r) < 0)
		return NULL;
	memmove(r->v + i + 1, r->v + i, (r->n - i) * sizeof(*r->v));
	r->n++;
	memset(&r->v[i], 0, sizeof(r->v[i]));
	r->v[i].base_offset = base;
	return &r->v[i];
}

uint32_t scrub_record_prune(struct scrub_record *r)
{
	uint32_t k = 0, dropped;

	for (uint32_t i = 0; i < r->n; i++) {
		if (r->v[i].seen) {
			r->v[k] = r->v[i];
			r->v[k++].seen = false;
		}
	}
	dropped = r->n - k;
	r->n = k;
	return dropped;
}

void scrub_record_free(struct scrub_record *r)
{
	free(r->v);
	*r = (struct scrub_record){ 0 };
}

/* Parse the entries after the magic; -EIO if anything is off. */
static int scrub_record_parse(struct scrub_record *r, const char *p)
{
	unsigned long long count;
	int used;

	if (sscanf(p, "%llu\n%n", &count, &used) != 1 ||
	    count > SCRUB_FILE_BYTES_MAX / 16)
		return -EIO;
	p += used;
	for (unsigned long long i = 0; i < count; i++) {
		struct scrub_entry e = { 0 }, *at;
		unsigned long long v[5];
		long long created, checked;
		unsigned crc, bad;

		if (sscanf(p, "%llu %lld %llu %llu %llu %8x %u %lld\n%n",
			   &v[0], &created, &v[1], &v[2], &v[3], &crc, &bad,
			   &checked, &used) != 8)
			return -EIO;
		p += used;
		e = (struct scrub_entry){ v[0], created, v[1], v[2], v[3], crc,
					  bad, checked, false, false };
		if (e.end_offset <= e.base_offset ||
		    (r->n && r->v[r->n - 1].base_offset >= e.base_offset))
			return -EIO; /* empty, or not in order */
		at = scrub_record_get(r, e.base_offset);
		if (!at)
			return -ENOMEM;
		*at = e;
	}
	return strncmp(p, "crc32c ", 7) == 0 ? 0 : -EIO;
}

int scrub_record_load(struct scrub_record *r, int dir_fd)
{
	char *buf, *crc_line;
	unsigned crc;
	ssize_t n;
	int rc = -EIO;

	scrub_record_free(r);
	r->loaded = true;
	n = io_read_file(dir_fd, SCRUB_FILE, SCRUB_FILE_BYTES_MAX, &buf);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return (int)n;
	crc_line = strstr(buf, "\ncrc32c ");
	if (crc_line && sscanf(crc_line + 1, "crc32c %8x", &crc) == 1 &&
	    crc == crc32c(0, buf, (size_t)(crc_line + 1 - buf)) &&
	    strncmp(buf, SCRUB_MAGIC, strlen(SCRUB_MAGIC)) == 0)
		rc = scrub_record_parse(r, buf + strlen(SCRUB_MAGIC));
	free(buf);
	if (rc < 0) {
		scrub_record_free(r);
		r->loaded = true;
	}
	return rc;
}

int scrub_record_save(const struct scrub_record *r, int dir_fd)
{
	size_t cap = strlen(SCRUB_MAGIC) + 32 + (size_t)r->n * SCRUB_LINE_MAX,
	       n = 0;
	char *buf = malloc(cap);
	uint32_t count = 0;
	int rc;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->n; i++)
		count += r->v[i].end_offset > 0;
	n += (size_t)snprintf(buf, cap, SCRUB_MAGIC "%" PRIu32 "\n", count);
	for (uint32_t i = 0; i < r->n; i++) {
		const struct scrub_entry *e = &r->v[i];
		if (e->end_offset == 0)
			continue; /* nothing framed was checked: memory only */
		n += (size_t)snprintf(buf + n, cap - n,
				      "%" PRIu64 " %" PRId64 " %" PRIu64 " %"
				      PRIu64 " %" PRIu64 " %08x %" PRIu32 " %"
				      PRId64 "\n", e->base_offset,
				      e->created_ms, e->end_offset,
				      e->meta_bytes, e->data_bytes,
				      e->last_hdr_crc, e->bad, e->checked_ms);
	}
	n += (size_t)snprintf(buf + n, cap - n, "crc32c %08x\n",
			      crc32c(0, buf, n));
	rc = io_replace_file(dir_fd, SCRUB_FILE, buf, n);
	free(buf);
	return rc;
}

/* The header checksum (bytes 4..7 of its 64 bytes) of a batch. */
static uint32_t batch_hdr_crc(const struct batch_hdr *h)
{
	uint8_t raw[BATCH_HDR_SIZE];
	uint32_t crc;

	batch_hdr_encode(h, raw);
	memcpy(&crc, raw + 4, 4);
	return crc;
}

bool scrub_entry_matches(const struct scrub_entry *e, struct seg *s,
			 struct seg_scrub_at *at)
{
	struct seg_batch b;

	if (e->base_offset != s->base_offset || e->created_ms != s->created_ms ||
	    e->end_offset > atomic_load_explicit(&s->end_offset,
						 memory_order_acquire) ||
	    seg_find_offset(s, e->end_offset - 1, &b) < 0)
		return false;
	if (b.h.base_offset + b.h.count != e->end_offset ||
	    b.meta_pos + batch_meta_size(b.h.count) != e->meta_bytes ||
	    b.h.data_pos + b.h.stored_len != e->data_bytes ||
	    batch_hdr_crc(&b.h) != e->last_hdr_crc)
		return false;
	*at = (struct seg_scrub_at){ b.h.pos + b.h.logical_len, e->meta_bytes };
	return true;
}

int scrub_entry_set(struct scrub_entry *e, struct seg *s,
		    const struct seg_scrub_at *at)
{
	struct seg_batch b;

	if (at->pos <= s->base_pos || seg_find_pos(s, at->pos - 1, &b) < 0 ||
	    b.h.pos + b.h.logical_len != at->pos ||
	    b.meta_pos + batch_meta_size(b.h.count) != at->meta)
		return -EIO;
	e->base_offset = s->base_offset;
	e->created_ms = s->created_ms;
	e->end_offset = b.h.base_offset + b.h.count;
	e->meta_bytes = at->meta;
	e->data_bytes = b.h.data_pos + b.h.stored_len;
	e->last_hdr_crc = batch_hdr_crc(&b.h);
	return 0;
}
