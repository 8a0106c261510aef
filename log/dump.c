#include "dump.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "format.h"
#include "io.h"
#include "segment.h"

struct dump_seg {
	int dir_fd;
	uint64_t base;
	int meta_fd, log_fd, idx_fd;
	int64_t meta_size, log_size, idx_size;
};

static int dump_open(int dir_fd, const char *name, int64_t *size)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);

	*size = fd < 0 ? -1 : io_fsize(fd);
	return fd;
}

/*
 * Check the index entries against the batches they point at. The index is
 * read as seg_load reads it (seg_index_entries): the zero slots allocated
 * ahead of a live segment's entries are not entries, and not an error.
 */
static int dump_index(struct dump_seg *d, uint64_t base_pos, FILE *out)
{
	uint8_t hdr[BATCH_HDR_SIZE], *idx = NULL;
	struct index_entry e, prev = { 0, 0, 0, INT64_MIN };
	struct batch_hdr h;
	uint64_t count = 0, size;
	bool tail_zero = true;
	int bad = 0;

	if (d->idx_fd < 0 || d->idx_size < 0) {
		fprintf(out, "  index: missing\n");
		return 1;
	}
	size = (uint64_t)d->idx_size;
	if (size > 0) {
		idx = malloc(size);
		if (!idx)
			return -ENOMEM;
		if (io_pread_full(d->idx_fd, idx, size, 0) < 0) {
			fprintf(out, "  index: unreadable\n");
			bad = 1;
			goto out_free;
		}
		count = seg_index_entries(idx, size, &tail_zero);
	}
	if (!tail_zero) {
		fprintf(out, "  index: bytes after entry %" PRIu64 " (of a "
			"%" PRIu64 "-byte file) are not zeros\n", count, size);
		bad++;
	} else if (count * INDEX_ENTRY_SIZE < size) {
		fprintf(out, "  index: %" PRIu64 " bytes allocated ahead\n",
			size - count * INDEX_ENTRY_SIZE);
	}
	for (uint64_t i = 0; i < count; i++) {
		const char *why = NULL;

		index_entry_decode(idx + i * INDEX_ENTRY_SIZE, &e);
		if (i > 0 && (e.rel_offset <= prev.rel_offset ||
			      e.meta_pos <= prev.meta_pos ||
			      e.rel_pos <= prev.rel_pos || e.ts < prev.ts))
			why = "not increasing";
		else if ((int64_t)e.meta_pos + BATCH_HDR_SIZE > d->meta_size ||
			 io_pread_full(d->meta_fd, hdr, sizeof(hdr),
				       e.meta_pos) < 0 ||
			 batch_hdr_decode(hdr, &h) < 0)
			why = "points at no batch";
		else if (h.base_offset != d->base + e.rel_offset ||
			 h.pos != base_pos + e.rel_pos || h.max_ts != e.ts)
			why = "disagrees with its batch";
		prev = e;
		if (why) {
			fprintf(out, "  index entry %" PRIu64 ": %s\n", i, why);
			bad++;
		}
	}
	fprintf(out, "  index: %" PRIu64 " entries, %d bad\n", count, bad);
out_free:
	free(idx);
	return bad;
}

static int dump_segment(int dir_fd, uint64_t base, bool verify, FILE *out)
{
	struct dump_seg d = { dir_fd, base, -1, -1, -1, 0, 0, 0 };
	uint8_t sh_raw[SEG_HDR_SIZE], hdr[BATCH_HDR_SIZE];
	uint32_t *lens = NULL;
	uint8_t *stored = NULL;
	size_t lens_cap = 0, stored_cap = 0;
	uint64_t meta_pos = SEG_HDR_SIZE, next_off, next_pos, data_pos = 0;
	struct seg_hdr sh;
	char name[64];
	int bad = 0;

	seg_file_name(name, sizeof(name), base, "meta");
	d.meta_fd = dump_open(dir_fd, name, &d.meta_size);
	seg_file_name(name, sizeof(name), base, "log");
	d.log_fd = dump_open(dir_fd, name, &d.log_size);
	seg_file_name(name, sizeof(name), base, "index");
	d.idx_fd = dump_open(dir_fd, name, &d.idx_size);
	fprintf(out, "segment %020" PRIu64 ": data %" PRId64 " bytes, meta %"
		PRId64 " bytes\n", base, d.log_size, d.meta_size);
	if (d.meta_fd < 0 || d.log_fd < 0 ||
	    io_pread_full(d.meta_fd, sh_raw, sizeof(sh_raw), 0) < 0 ||
	    seg_hdr_decode(sh_raw, &sh) < 0 || sh.base_offset != base) {
		fprintf(out, "  bad or missing segment header\n");
		bad = 1;
		goto out;
	}
	fprintf(out, "  basePosition: %" PRIu64 " codec: %s created: %" PRId64
		"\n", sh.base_pos, codec_name((int)sh.codec), sh.created_ms);
	next_off = base;
	next_pos = sh.base_pos;
	while ((int64_t)meta_pos < d.meta_size) {
		struct batch_hdr h;
		struct seg_batch b;
		const char *state = "ok";

		if ((int64_t)meta_pos + BATCH_HDR_SIZE > d.meta_size ||
		    io_pread_full(d.meta_fd, hdr, sizeof(hdr), meta_pos) < 0 ||
		    batch_hdr_decode(hdr, &h) < 0) {
			fprintf(out, "  meta byte %" PRIu64 ": bad batch header, "
				"%" PRId64 " bytes left unreadable\n", meta_pos,
				d.meta_size - (int64_t)meta_pos);
			bad++;
			break;
		}
		b = (struct seg_batch){ h, meta_pos };
		if (h.base_offset != next_off || h.pos != next_pos ||
		    h.data_pos != data_pos)
			state = "bad (not contiguous)";
		else if ((int64_t)(meta_pos + batch_meta_size(h.count)) > d.meta_size ||
			 (int64_t)(h.data_pos + h.stored_len) > d.log_size)
			state = "bad (truncated)";
		else if (io_buf_reserve((void **)&lens, &lens_cap, 4ull * h.count) < 0 ||
			 io_buf_reserve((void **)&stored, &stored_cap,
				      h.stored_len) < 0) {
			bad = -ENOMEM;
			goto out;
		} else {
			struct seg fake = { .meta_fd = d.meta_fd, .log_fd = d.log_fd };
			if (seg_read_batch(&fake, &b, lens, stored) < 0)
				state = "bad (crc mismatch)";
		}
		fprintf(out, "  baseOffset: %" PRIu64 " lastOffset: %" PRIu64
			" count: %" PRIu32 " position: %" PRIu64 " size: %" PRIu32
			" stored: %" PRIu32 " codec: %s epoch: %" PRIu32
			" maxTimestamp: %" PRId64 " crc: %08x %s\n",
			h.base_offset, h.base_offset + h.count - 1, h.count,
			h.pos, h.logical_len, h.stored_len, codec_name(h.codec),
			h.epoch, h.max_ts, h.crc, state);
		if (strcmp(state, "ok") != 0)
			bad++;
		next_off = h.base_offset + h.count;
		next_pos = h.pos + h.logical_len;
		data_pos = h.data_pos + h.stored_len;
		meta_pos += batch_meta_size(h.count);
	}
	if ((int64_t)data_pos != d.log_size && bad == 0) {
		fprintf(out, "  data file has %" PRId64 " bytes after the last "
			"batch\n", d.log_size - (int64_t)data_pos);
		bad++;
	}
	if (verify) {
		int r = dump_index(&d, sh.base_pos, out);
		bad = r < 0 ? r : bad + r;
	}
out:
	if (d.meta_fd >= 0)
		close(d.meta_fd);
	if (d.log_fd >= 0)
		close(d.log_fd);
	if (d.idx_fd >= 0)
		close(d.idx_fd);
	free(lens);
	free(stored);
	return bad;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Parse "<20 digits>.<ext>" into its base offset. */
static bool dump_seg_name(const char *name, const char *want_ext, uint64_t *base)
{
	const char *dot = strchr(name, '.');
	char *end;

	if (!dot || dot - name != 20 || (want_ext && strcmp(dot + 1, want_ext)))
		return false;
	*base = strtoull(name, &end, 10);
	return end == dot;
}

int log_dump(const char *path, bool verify, FILE *out)
{
	uint64_t *bases = NULL, base;
	size_t n = 0, cap = 0;
	struct stat st;
	int dir_fd, bad = 0;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		char *copy = strdup(path), *slash;
		const char *file;
		if (!copy)
			return -ENOMEM;
		slash = strrchr(copy, '/');
		file = slash ? slash + 1 : copy;
		if (!dump_seg_name(file, NULL, &base)) {
			free(copy);
			return -EINVAL;
		}
		if (slash)
			*slash = '\0';
		dir_fd = open(slash ? (*copy ? copy : "/") : ".",
			      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		free(copy);
		if (dir_fd < 0)
			return -errno;
		bad = dump_segment(dir_fd, base, verify, out);
		close(dir_fd);
		return bad;
	}
	dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	{
		DIR *d = fdopendir(dup(dir_fd));
		struct dirent *de;
		if (!d) {
			close(dir_fd);
			return -errno;
		}
		while ((de = readdir(d))) {
			if (!dump_seg_name(de->d_name, "meta", &base))
				continue;
			if (n == cap) {
				uint64_t *nb;
				cap = cap ? cap * 2 : 16;
				nb = realloc(bases, cap * sizeof(*bases));
				if (!nb) {
					bad = -ENOMEM;
					break;
				}
				bases = nb;
			}
			bases[n++] = base;
		}
		closedir(d);
	}
	if (n)
		qsort(bases, n, sizeof(*bases), cmp_u64);
	for (size_t i = 0; i < n && bad >= 0; i++) {
		int r = dump_segment(dir_fd, bases[i], verify, out);
		bad = r < 0 ? r : bad + r;
	}
	free(bases);
	close(dir_fd);
	return bad;
}
