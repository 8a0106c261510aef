/*
 * fuzz_checkpoint: the two text checkpoints of a partition, `checkpoint`
 * (log start, recovery point, high watermark) and
 * `leader-epoch-checkpoint`, written from the input next to the segments
 * of a valid template partition (fuzz_template_build), which is then
 * opened, used, closed and reopened.
 *
 * Input:
 *
 *   0  flags  bit 0: a clean-shutdown marker is present; bit 1: replace
 *             the checkpoint's crc32c line by a correct one; bit 2: the
 *             same for the leader-epoch checkpoint; bit 3: no checkpoint
 *             file; bit 4: no leader-epoch checkpoint file.
 *   1  knob   picks the offsets looked up and the truncation point.
 *   2  u16 little-endian length, then the checkpoint's bytes (cut short
 *      by the end of the input); the rest is the leader-epoch checkpoint.
 *
 * Whatever the checkpoints say, the segments are valid, so: the partition
 * must open; every byte it lets a reader see must be the byte written at
 * that position; every offset must map to the position it was written
 * at; and after a clean close it must reopen to the same state.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#define CHECKPOINT_FILE "checkpoint"
#define EPOCH_FILE "leader-epoch-checkpoint"
/* Bytes of a sealed text file, at most (the engine reads 4 KiB and
 * about 48 KiB). */
#define TEXT_BYTES_MAX (64u << 10)
/* Epochs asked for with log_epoch_end. */
#define EPOCH_PROBES 8

#define FLAG_CLEAN 1u
#define FLAG_SEAL_CKPT 2u
#define FLAG_SEAL_EPOCH 4u
#define FLAG_NO_CKPT 8u
#define FLAG_NO_EPOCH 16u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir; /* the partition directory */
static struct fuzz_file files[FUZZ_TEMPLATE_FILES_MAX];
static size_t nfiles;
static uint64_t *rec_pos; /* position of each template record, and leo */
static uint64_t tmpl_leo;
static char *text;
static uint8_t *readbuf;
static uint64_t readbuf_len;

/* Build the template and learn where each of its records lies. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	char *root, *tmpl;
	int n;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	root = fuzz_scratch_dir("fuzz_checkpoint");
	FUZZ_CHECK(root);
	dir = malloc(strlen(root) + 16);
	tmpl = malloc(strlen(root) + 16);
	FUZZ_CHECK(dir && tmpl);
	sprintf(dir, "%s/p", root);
	sprintf(tmpl, "%s/template", root);
	free(root);
	FUZZ_CHECK(mkdir(dir, 0755) == 0);
	FUZZ_CHECK(fuzz_template_build(tmpl) == 0);
	n = fuzz_read_segments(tmpl, files, FUZZ_TEMPLATE_FILES_MAX);
	FUZZ_CHECK(n > 0);
	nfiles = (size_t)n;

	fuzz_config(&cfg);
	FUZZ_CHECK(log_open(tmpl, &cfg, &l) == 0);
	log_get_state(l, &st);
	tmpl_leo = st.leo;
	rec_pos = malloc((tmpl_leo + 1) * sizeof(*rec_pos));
	FUZZ_CHECK(rec_pos && st.start_offset == 0);
	for (uint64_t off = 0; off <= tmpl_leo; off++)
		FUZZ_CHECK(log_offset_to_pos(l, off, &rec_pos[off]) == 0);
	log_abandon(l);
	fuzz_dir_clear(tmpl);
	remove(tmpl);
	free(tmpl);

	text = malloc(TEXT_BYTES_MAX);
	/* Room for the template and what one run appends. */
	readbuf_len = rec_pos[tmpl_leo] + 4096;
	readbuf = malloc(readbuf_len);
	FUZZ_CHECK(text && readbuf);
	return 0;
}

/* Write one text file as given, or with a correct crc32c line. */
static void write_text(const char *name, const uint8_t *p, size_t len,
		       bool seal)
{
	if (seal) {
		len = fuzz_seal_text(p, len, text, TEXT_BYTES_MAX);
		p = (const uint8_t *)text;
	}
	fuzz_write_file(dir, name, p, len);
}

/*
 * Read [start_pos, hw_pos) through c and check every byte is the one
 * written. Each open uses one cursor: a cursor that reads compressed
 * batches holds 48 MiB of buffers, slow to get under AddressSanitizer.
 */
static void check_contents(struct log *l, struct log_cursor *c)
{
	struct log_state st;
	uint64_t done = 0, len;

	log_get_state(l, &st);
	len = st.hw_pos - st.start_pos;
	FUZZ_CHECK(len <= readbuf_len);
	while (done < len) {
		uint64_t pos = st.start_pos + done;
		ssize_t n = log_read_copy(c, &pos, readbuf + done, len - done);
		FUZZ_CHECK(n > 0 && pos == st.start_pos + done);
		done += (uint64_t)n;
	}
	for (uint64_t i = 0; i < len; i++)
		FUZZ_CHECK(readbuf[i] == fuzz_byte_at(st.start_pos + i));
}

/* Offsets of the template must map to the positions they were written at. */
static void check_offsets(struct log *l, uint8_t knob)
{
	struct log_state st;
	uint64_t pos, off, rpos;

	log_get_state(l, &st);
	uint64_t offs[] = { st.start_offset, st.hw, st.leo,
			    st.start_offset + (st.leo - st.start_offset) *
			    knob / 256 };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		if (offs[i] > tmpl_leo || offs[i] > st.leo)
			continue;
		FUZZ_CHECK(log_offset_to_pos(l, offs[i], &pos) == 0);
		FUZZ_CHECK(pos == rec_pos[offs[i]]);
		if (offs[i] == st.leo || offs[i] == tmpl_leo)
			continue;
		FUZZ_CHECK(log_pos_to_offset(l, pos, &off, &rpos) == 0);
		FUZZ_CHECK(off == offs[i] && rpos == pos);
	}
	FUZZ_CHECK(log_time_to_offset(l, FUZZ_TS_BASE + knob * 10ll, &off) == 0);
	FUZZ_CHECK(off >= st.start_offset && off <= st.leo);
}

/* Ask log_epoch_end about a few epochs; answers go to ends[]. */
static void probe_epochs(struct log *l, uint8_t knob, uint64_t ends[])
{
	struct log_state st;

	log_get_state(l, &st);
	for (uint32_t i = 0; i < EPOCH_PROBES; i++) {
		uint32_t epoch = i + 1 < EPOCH_PROBES ? i : knob, found;
		uint64_t end;

		ends[i] = UINT64_MAX;
		if (log_epoch_end(l, epoch, &found, &end) < 0)
			continue;
		/* Kafka's endOffsetFor: UNDEFINED for an epoch newer than
		 * every entry (or an empty cache), else at most the asked. */
		FUZZ_CHECK(found == LOG_EPOCH_UNDEFINED ?
			   end == LOG_OFFSET_UNDEFINED :
			   found <= epoch && end <= st.leo);
		ends[i] = end;
	}
}

/* Append a record, then truncate at a point picked by knob. */
static void change(struct log *l, struct log_cursor *c, uint8_t knob)
{
	uint8_t rec[100];
	uint32_t len = sizeof(rec);
	struct log_append_info info;
	struct log_state st;
	uint64_t leo;

	log_get_state(l, &st);
	fuzz_fill(rec, sizeof(rec), st.leo_pos);
	FUZZ_CHECK(log_append(l, rec, sizeof(rec), &len, 1, NULL, &info) == 0);
	FUZZ_CHECK(log_set_hw(l, info.end_offset) == 0);
	check_contents(l, c);
	log_get_state(l, &st);
	FUZZ_CHECK(log_truncate(l, st.start_offset + (st.leo - st.start_offset) *
				   knob / 256, &leo) == 0);
	log_get_state(l, &st);
	fuzz_check_state(&st);
	FUZZ_CHECK(st.leo == leo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t ends_before[EPOCH_PROBES], ends_after[EPOCH_PROBES];
	struct log_state before, after;
	struct log_config cfg;
	struct log_cursor *c;
	size_t ck_len;
	uint8_t flags, knob;
	struct log *l;

	if (size < 4)
		return 0;
	flags = data[0];
	knob = data[1];
	ck_len = (size_t)data[2] | (size_t)data[3] << 8;
	data += 4;
	size -= 4;
	if (ck_len > size)
		ck_len = size;

	fuzz_dir_clear(dir);
	for (size_t i = 0; i < nfiles; i++)
		fuzz_write_file(dir, files[i].name, files[i].data, files[i].len);
	if (!(flags & FLAG_NO_CKPT))
		write_text(CHECKPOINT_FILE, data, ck_len, flags & FLAG_SEAL_CKPT);
	if (!(flags & FLAG_NO_EPOCH))
		write_text(EPOCH_FILE, data + ck_len, size - ck_len,
			   flags & FLAG_SEAL_EPOCH);
	if (flags & FLAG_CLEAN)
		fuzz_write_file(dir, "clean-shutdown", "", 0);

	fuzz_config(&cfg);
	FUZZ_CHECK(log_open(dir, &cfg, &l) == 0);
	FUZZ_CHECK(log_cursor_new(l, &c) == 0);
	log_get_state(l, &before);
	fuzz_check_state(&before);
	check_contents(l, c);
	check_offsets(l, knob);
	probe_epochs(l, knob, ends_before);
	change(l, c, knob);
	check_contents(l, c);
	probe_epochs(l, knob, ends_before);
	log_get_state(l, &before);
	log_cursor_free(c);
	FUZZ_CHECK(log_close(l) == 0);

	FUZZ_CHECK(log_open(dir, &cfg, &l) == 0);
	log_get_state(l, &after);
	if (!fuzz_same_state(&before, &after)) {
		fuzz_print_state("before close", &before);
		fuzz_print_state("after reopen", &after);
	}
	FUZZ_CHECK(fuzz_same_state(&before, &after));
	probe_epochs(l, knob, ends_after);
	FUZZ_CHECK(memcmp(ends_before, ends_after, sizeof(ends_before)) == 0);
	FUZZ_CHECK(log_cursor_new(l, &c) == 0);
	check_contents(l, c);
	log_cursor_free(c);
	log_abandon(l);
	log_thread_release();
	fuzz_alloc_check();
	return 0;
}
