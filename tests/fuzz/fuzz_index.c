/*
 * fuzz_index: the segment loader. The input becomes the files of up to
 * SEGS_MAX segments in a partition directory, which is then dumped,
 * opened after a "clean shutdown" (the index and headers are trusted,
 * seg_load), opened after a crash (every batch is checked, seg_recover),
 * and used: lookups, reads, an append, a truncation, a close and a
 * reopen.
 *
 * Input:
 *
 *   0  flags   bit 0: recompute the checksums in every .meta (segment
 *                     header, then batch by batch the payload CRC and
 *                     the header checksum) so that mutations get past
 *                     them; bit 1: leave the clean pass with log_close
 *                     rather than log_abandon; bits 2-3: the codec the
 *                     partition is opened with (appends roll to it);
 *                     bit 4: also dump the first segment by file name.
 *   1  knob    picks the offsets, positions and times looked up.
 *   2  then per segment three parts, .meta, .log and .index, each a u16
 *      little-endian length then that many bytes (cut short by the end
 *      of the input). Length 0xffff means the file is absent.
 *
 * A segment is named after the base offset in its .meta header (bytes
 * 8..15), or after its number if the .meta is shorter than that.
 *
 * The engine must never crash, leak or hang. After a clean shutdown it
 * trusts what it does not scan (the index between its first and last
 * entries, the headers those point at), so a header with a valid
 * checksum but made-up fields can mislead its bookkeeping; only after
 * recovery has checked everything are its answers checked too: the
 * orderings of log_get_state, positions inside the log, records read
 * back, and the same state after a clean log_close and reopen.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crc32c.h"
#include "dump.h"
#include "format.h"
#include "fuzz_common.h"
#include "segment.h"

#define SEGS_MAX 4
#define PART_ABSENT 0xffffu
/* Bytes read back per lookup position. */
#define READ_BYTES_MAX 4096

#define FLAG_FIX_CRC 1u
#define FLAG_CLOSE 2u
#define FLAG_CODEC_SHIFT 2
#define FLAG_DUMP_FILE 16u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct part {
	const uint8_t *p;
	size_t len;
	bool present;
};

struct fseg {
	uint64_t base;
	uint8_t *meta; /* copy, checksums maybe recomputed */
	struct part meta_part, log, idx;
};

static char *dir;  /* the partition directory */
/* Whether the current open's answers are checked, not only its safety. */
static bool strict;
static FILE *devnull;
static uint8_t *readbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *root;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	root = fuzz_scratch_dir("fuzz_index");
	FUZZ_CHECK(root);
	dir = malloc(strlen(root) + 8);
	FUZZ_CHECK(dir);
	sprintf(dir, "%s/p", root);
	free(root);
	FUZZ_CHECK(mkdir(dir, 0755) == 0);
	devnull = fopen("/dev/null", "w");
	readbuf = malloc(READ_BYTES_MAX);
	FUZZ_CHECK(devnull && readbuf);
	return 0;
}

/* Take one length-prefixed part off the input. */
static void take_part(const uint8_t **d, size_t *n, struct part *out)
{
	size_t len;

	*out = (struct part){ NULL, 0, false };
	if (*n < 2)
		return;
	len = (size_t)(*d)[0] | (size_t)(*d)[1] << 8;
	*d += 2;
	*n -= 2;
	if (len == PART_ABSENT)
		return;
	if (len > *n)
		len = *n;
	*out = (struct part){ *d, len, true };
	*d += len;
	*n -= len;
}

/*
 * Recompute the checksums of a .meta file in place: the segment header,
 * then for each batch whose lengths fit, the payload CRC (when its data
 * lies inside the .log part) and the header checksum.
 */
static void fix_meta(uint8_t *m, size_t len, const struct part *log)
{
	size_t pos = SEG_HDR_SIZE;

	if (len < SEG_HDR_SIZE)
		return;
	fmt_put32(m + 60, crc32c(0, m, 60));
	while (pos + BATCH_HDR_SIZE <= len) {
		uint8_t *h = m + pos;
		uint32_t count = fmt_get32(h + 40), stored_len = fmt_get32(h + 44);
		uint64_t data_pos = fmt_get64(h + 24);
		bool fits = count >= 1 && count <= LOG_BATCH_RECORDS_MAX &&
			    pos + batch_meta_size(count) <= len;

		if (fits && log->present && data_pos <= log->len &&
		    stored_len <= log->len - data_pos) {
			uint32_t crc = crc32c(0, h + BATCH_HDR_SIZE, 4ull * count);
			fmt_put32(h + 56, crc32c(crc, log->p + data_pos, stored_len));
		}
		fmt_put32(h + 4, crc32c(0, h + 8, BATCH_HDR_SIZE - 8));
		if (!fits)
			break;
		pos += batch_meta_size(count);
	}
}

static int parse(const uint8_t *d, size_t n, bool fix, struct fseg *segs)
{
	int k = 0;

	while (k < SEGS_MAX && n >= 2) {
		struct fseg *s = &segs[k];

		take_part(&d, &n, &s->meta_part);
		take_part(&d, &n, &s->log);
		take_part(&d, &n, &s->idx);
		s->base = (uint64_t)k;
		s->meta = NULL;
		if (s->meta_part.present) {
			s->meta = malloc(s->meta_part.len ? s->meta_part.len : 1);
			FUZZ_CHECK(s->meta);
			memcpy(s->meta, s->meta_part.p, s->meta_part.len);
			if (fix)
				fix_meta(s->meta, s->meta_part.len, &s->log);
			if (s->meta_part.len >= 16)
				s->base = fmt_get64(s->meta + 8);
		}
		k++;
	}
	return k;
}

static void write_segs(const struct fseg *segs, int n, bool clean)
{
	char name[64];

	fuzz_dir_clear(dir);
	for (int i = 0; i < n; i++) {
		const struct fseg *s = &segs[i];

		if (s->meta_part.present) {
			seg_file_name(name, sizeof(name), s->base, "meta");
			fuzz_write_file(dir, name, s->meta, s->meta_part.len);
		}
		if (s->log.present) {
			seg_file_name(name, sizeof(name), s->base, "log");
			fuzz_write_file(dir, name, s->log.p, s->log.len);
		}
		if (s->idx.present) {
			seg_file_name(name, sizeof(name), s->base, "index");
			fuzz_write_file(dir, name, s->idx.p, s->idx.len);
		}
	}
	if (clean)
		fuzz_write_file(dir, "clean-shutdown", "", 0);
}

static void read_at(struct log_cursor *c, uint64_t pos)
{
	struct log_extent ext[8];
	uint64_t at = pos;
	unsigned n;

	log_read_copy(c, &at, readbuf, READ_BYTES_MAX);
	at = pos;
	log_read(c, &at, READ_BYTES_MAX, ext, 8, &n);
}

/*
 * Lookups of every kind at the ends of the log and at points from knob.
 * c is the one cursor of this open (a cursor that reads compressed
 * batches holds 48 MiB of buffers, slow to get under AddressSanitizer).
 */
static void lookups(struct log *l, struct log_cursor *c, uint8_t knob)
{
	struct log_state st;
	uint64_t off, pos, rpos, span;
	int64_t ts[6];
	uint32_t ep;

	log_get_state(l, &st);
	if (strict)
		fuzz_check_state(&st);
	span = st.leo - st.start_offset;
	uint64_t offs[] = { st.start_offset, st.hw, st.leo, st.leo - 1,
			    st.start_offset + span * knob / 256, st.leo + 1 };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		if (log_offset_to_pos(l, offs[i], &pos) < 0 || offs[i] > st.leo ||
		    !strict)
			continue;
		if (pos < st.start_pos || pos > st.leo_pos) {
			fuzz_print_state("state", &st);
			fprintf(stderr, "offset %" PRIu64 " -> position %" PRIu64
				"\n", offs[i], pos);
		}
		FUZZ_CHECK(pos >= st.start_pos && pos <= st.leo_pos);
	}
	span = st.leo_pos - st.start_pos;
	uint64_t poss[] = { st.start_pos, st.hw_pos, st.leo_pos - 1,
			    st.start_pos + span * knob / 256, st.leo_pos };
	for (size_t i = 0; i < sizeof(poss) / sizeof(poss[0]); i++) {
		if (log_pos_to_offset(l, poss[i], &off, &rpos) < 0 || !strict)
			continue;
		if (off < st.start_offset || off >= st.leo || rpos > poss[i]) {
			fuzz_print_state("state", &st);
			fprintf(stderr, "position %" PRIu64 " -> offset %" PRIu64
				" at %" PRIu64 "\n", poss[i], off, rpos);
		}
		FUZZ_CHECK(off >= st.start_offset && off < st.leo);
		FUZZ_CHECK(rpos <= poss[i]);
	}
	ts[0] = INT64_MIN;
	ts[1] = 0;
	ts[2] = st.max_ts;
	ts[3] = st.max_ts == INT64_MAX ? INT64_MAX : st.max_ts + 1;
	ts[4] = FUZZ_TS_BASE + (int64_t)knob * 40;
	ts[5] = INT64_MAX;
	for (size_t i = 0; i < 6; i++) {
		if (log_time_to_offset(l, ts[i], &off) == 0 && strict)
			FUZZ_CHECK(off >= st.start_offset && off <= st.leo);
	}
	log_epoch_end(l, 0, &ep, &off);
	log_epoch_end(l, st.leader_epoch, &ep, &off);
	log_epoch_end(l, UINT32_MAX, &ep, &off);
	read_at(c, st.start_pos);
	read_at(c, st.start_pos + (st.hw_pos - st.start_pos) * knob / 256);
	read_at(c, st.hw_pos ? st.hw_pos - 1 : 0);
}

/* Append two records and read them back if the log lets us. */
static void append_and_read(struct log *l, struct log_cursor *c)
{
	uint32_t lens[2] = { 5, 300 };
	uint8_t rec[305], back[305];
	struct log_append_info info;
	struct log_state st;
	uint64_t at;

	log_get_state(l, &st);
	fuzz_fill(rec, sizeof(rec), st.leo_pos);
	if (log_append(l, rec, sizeof(rec), lens, 2, NULL, &info) < 0)
		return;
	FUZZ_CHECK(info.base_offset == st.leo && info.end_offset == st.leo + 2);
	FUZZ_CHECK(info.base_pos == st.leo_pos &&
		   info.end_pos == st.leo_pos + sizeof(rec));
	if (log_set_hw(l, info.end_offset) < 0)
		return;
	at = info.base_pos;
	if (log_read_copy(c, &at, back, sizeof(back)) == (ssize_t)sizeof(back) &&
	    at == info.base_pos && strict)
		FUZZ_CHECK(memcmp(back, rec, sizeof(rec)) == 0);
}

/* Everything a partition is used for, on a freshly opened one. */
static void exercise(struct log *l, uint8_t knob)
{
	struct log_cursor *c;
	struct log_state st;
	uint64_t leo;

	FUZZ_CHECK(log_cursor_new(l, &c) == 0);
	lookups(l, c, knob);
	log_get_state(l, &st);
	log_set_hw(l, st.leo);
	lookups(l, c, (uint8_t)(knob * 7 + 1));
	log_scrub(l);
	append_and_read(l, c);
	log_get_state(l, &st);
	if (strict)
		fuzz_check_state(&st);
	if (log_truncate(l, st.start_offset + (st.leo - st.start_offset) *
				   knob / 256, &leo) == 0) {
		log_get_state(l, &st);
		if (strict)
			fuzz_check_state(&st);
		FUZZ_CHECK(st.leo == leo);
	}
	lookups(l, c, (uint8_t)(knob ^ 0x5a));
	log_cursor_free(c);
}

/* Open, use, close cleanly, and check the reopened partition is the same. */
static void open_close_reopen(const struct log_config *cfg, uint8_t knob)
{
	struct log_state before, after;
	struct log_cursor *c;
	struct log *l;

	if (log_open(dir, cfg, &l) < 0)
		return;
	exercise(l, knob);
	log_get_state(l, &before);
	if (before.sticky_error || log_close(l) < 0)
		return;
	FUZZ_CHECK(log_open(dir, cfg, &l) == 0);
	log_get_state(l, &after);
	fuzz_check_state(&after);
	if (!fuzz_same_state(&before, &after)) {
		fuzz_print_state("before close", &before);
		fuzz_print_state("after reopen", &after);
	}
	FUZZ_CHECK(fuzz_same_state(&before, &after));
	FUZZ_CHECK(log_cursor_new(l, &c) == 0);
	lookups(l, c, knob);
	log_cursor_free(c);
	log_abandon(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fseg segs[SEGS_MAX];
	struct log_config cfg;
	struct log *l;
	uint8_t flags, knob;
	char path[4096], name[64];
	int n;

	if (size < 2)
		return 0;
	flags = data[0];
	knob = data[1];
	n = parse(data + 2, size - 2, flags & FLAG_FIX_CRC, segs);
	fuzz_config(&cfg);
	cfg.codec = (flags >> FLAG_CODEC_SHIFT & 3) % LOG_CODEC_COUNT;

	/* dump-log reads what is there, the marker is irrelevant to it. */
	write_segs(segs, n, false);
	log_dump(dir, true, devnull);
	if (n > 0 && (flags & FLAG_DUMP_FILE)) {
		seg_file_name(name, sizeof(name), segs[0].base, "meta");
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		log_dump(path, false, devnull);
	}

	/* After a clean shutdown: nothing is scanned. */
	write_segs(segs, n, true);
	strict = false;
	if (log_open(dir, &cfg, &l) == 0) {
		exercise(l, knob);
		if (flags & FLAG_CLOSE)
			log_close(l);
		else
			log_abandon(l);
	}

	/* After a crash: every batch is checked and the log cut. */
	write_segs(segs, n, false);
	strict = true;
	open_close_reopen(&cfg, knob);

	for (int i = 0; i < n; i++)
		free(segs[i].meta);
	log_thread_release();
	fuzz_alloc_check();
	return 0;
}
