/*
 * Seed corpus generator: writes valid inputs for each fuzz target, taken
 * from a real partition the engine wrote (fuzz_template_build), so the
 * fuzzers start from well-formed structures and mutate from there.
 *
 *   fuzz_gen_corpus OUTDIR
 *
 * creates OUTDIR/fuzz_batch, OUTDIR/fuzz_index and OUTDIR/fuzz_checkpoint
 * and writes files named seed-* into them (replacing those of a previous
 * run; other files, such as regression inputs, are left alone). The
 * output is the same on every run. See make_corpus.sh.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format.h"
#include "fuzz_common.h"

/* Bytes of one generated input, at most. */
#define SEED_BYTES_MAX (256u << 10)
#define PART_ABSENT 0xffffu

struct seed {
	uint8_t buf[SEED_BYTES_MAX];
	size_t len;
};

static const char *outdir;
static struct seed seed;
static int failed;

static void put_seed(const char *target, const char *name)
{
	char sub[4096], file[256];
	int rc;

	snprintf(sub, sizeof(sub), "%s/%s", outdir, target);
	mkdir(sub, 0755);
	snprintf(file, sizeof(file), "seed-%s", name);
	rc = fuzz_write_file(sub, file, seed.buf, seed.len);
	if (rc < 0) {
		fprintf(stderr, "%s/%s: %s\n", sub, file, strerror(-rc));
		failed = 1;
	}
}

static void add(const void *p, size_t len)
{
	if (seed.len + len > sizeof(seed.buf)) {
		fprintf(stderr, "seed too large\n");
		exit(1);
	}
	memcpy(seed.buf + seed.len, p, len);
	seed.len += len;
}

static void add_part(const struct fuzz_file *f, size_t len)
{
	uint8_t n[2];

	if (!f) {
		n[0] = n[1] = 0xff;
		add(n, 2);
		return;
	}
	if (len > 0xfffe)
		len = 0xfffe;
	n[0] = (uint8_t)len;
	n[1] = (uint8_t)(len >> 8);
	add(n, 2);
	add(f->data, len);
}

static const struct fuzz_file *find(const struct fuzz_file *files, int n,
				    const char *meta_name, const char *ext)
{
	char name[64];

	snprintf(name, sizeof(name), "%.20s.%s", meta_name, ext);
	for (int i = 0; i < n; i++) {
		if (strcmp(files[i].name, name) == 0)
			return &files[i];
	}
	return NULL;
}

static bool is_meta(const struct fuzz_file *f)
{
	size_t len = strlen(f->name);

	return len > 5 && strcmp(f->name + len - 5, ".meta") == 0;
}

/* One seed per batch of the template: header, lengths, stored bytes. */
static void gen_batch(const struct fuzz_file *files, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		const struct fuzz_file *meta = &files[i], *log;
		size_t pos = SEG_HDR_SIZE;

		if (!is_meta(meta))
			continue;
		log = find(files, n, meta->name, "log");
		while (log && pos + BATCH_HDR_SIZE <= meta->len) {
			struct batch_hdr h;
			char name[32];

			if (batch_hdr_decode(meta->data + pos, &h) < 0 ||
			    pos + batch_meta_size(h.count) > meta->len ||
			    h.data_pos + h.stored_len > log->len)
				break;
			seed.len = 0;
			add(meta->data + pos, (size_t)batch_meta_size(h.count));
			add(log->data + h.data_pos, h.stored_len);
			snprintf(name, sizeof(name), "%s-%03d",
				 codec_name(h.codec), k++);
			put_seed("fuzz_batch", name);
			pos += (size_t)batch_meta_size(h.count);
		}
	}
}

/*
 * A fuzz_index input of the segments of files[] from the first on (count
 * of them, 0 for all). cut_meta and cut_log shorten the last segment's
 * files, as a crash in the middle of an append would.
 */
static void index_seed(const struct fuzz_file *files, int n, int first,
		       int count, uint8_t flags, uint8_t knob, bool with_index,
		       size_t cut_meta, size_t cut_log)
{
	int segs = 0, last = -1;

	for (int i = 0; i < n; i++) {
		if (is_meta(&files[i]))
			last = i;
	}
	seed.len = 0;
	add(&flags, 1);
	add(&knob, 1);
	for (int i = 0; i < n; i++) {
		const struct fuzz_file *meta = &files[i], *log, *idx;
		size_t ml = meta->len, ll;

		if (!is_meta(meta))
			continue;
		if (segs++ < first)
			continue;
		if (count && segs > first + count)
			break;
		log = find(files, n, meta->name, "log");
		idx = find(files, n, meta->name, "index");
		ll = log ? log->len : 0;
		if (i == last || (count && segs == first + count)) {
			ml = ml > cut_meta ? ml - cut_meta : 0;
			ll = ll > cut_log ? ll - cut_log : 0;
		}
		add_part(meta, ml);
		add_part(log, ll);
		add_part(with_index ? idx : NULL, idx ? idx->len : 0);
	}
}

static void gen_index(const struct fuzz_file *files, int n,
		      const struct fuzz_file *empty, int nempty)
{
	char name[32];
	int nsegs = 0;

	for (int i = 0; i < n; i++)
		nsegs += is_meta(&files[i]);
	index_seed(files, n, 0, 0, 0, 0x80, true, 0, 0);
	put_seed("fuzz_index", "all");
	index_seed(files, n, 0, 0, 1 | 2 | 1 << 2, 0x33, true, 0, 0);
	put_seed("fuzz_index", "all-fixcrc-lz4");
	index_seed(files, n, 0, 0, 2 | 2 << 2, 0xc1, false, 0, 0);
	put_seed("fuzz_index", "all-noindex-zstd");
	index_seed(files, n, 0, 0, 0, 0x10, true, 30, 7);
	put_seed("fuzz_index", "all-torn");
	for (int i = 0; i < nsegs; i++) {
		index_seed(files, n, i, 1, 0, (uint8_t)(i * 50 + 7), true, 0, 0);
		snprintf(name, sizeof(name), "seg%d", i);
		put_seed("fuzz_index", name);
	}
	index_seed(empty, nempty, 0, 0, 0, 0, true, 0, 0);
	put_seed("fuzz_index", "empty");
}

static void ckpt_seed(uint8_t flags, uint8_t knob, const char *ckpt,
		      size_t ckpt_len, const char *epochs, size_t epochs_len)
{
	uint8_t head[4] = { flags, knob, (uint8_t)ckpt_len,
			    (uint8_t)(ckpt_len >> 8) };

	seed.len = 0;
	add(head, sizeof(head));
	add(ckpt, ckpt_len);
	add(epochs, epochs_len);
}

/* A checkpoint with these values, sealed with its crc32c line. */
static size_t make_ckpt(char *out, size_t cap, uint64_t start,
			uint64_t start_pos, uint64_t rp, uint64_t hw)
{
	char body[512];
	int n = snprintf(body, sizeof(body),
			 "topicfs-partition-checkpoint 1\n"
			 "log_start_offset %" PRIu64 "\n"
			 "log_start_pos %" PRIu64 "\n"
			 "recovery_point %" PRIu64 "\n"
			 "high_watermark %" PRIu64 "\n",
			 start, start_pos, rp, hw);

	return fuzz_seal_text((const uint8_t *)body, (size_t)n, out, cap);
}

static void gen_checkpoint(const char *tmpl)
{
	static const char epochs[] = "topicfs-leader-epochs 1\n3\n"
				     "2 0\n7 40\n9 100000\n";
	struct fuzz_file ck = { .name = "" }, ep = { .name = "" };
	char buf[1024], ebuf[1024];
	struct log_config cfg;
	struct log_state st;
	struct log *l;
	uint64_t mid, mid_pos, seg2;
	size_t n, en;
	char path[4096];
	FILE *f;

	/* The template's own files, as the engine wrote them. */
	snprintf(path, sizeof(path), "%s/checkpoint", tmpl);
	f = fopen(path, "rb");
	ck.len = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/leader-epoch-checkpoint", tmpl);
	f = fopen(path, "rb");
	ep.len = f ? fread(ebuf, 1, sizeof(ebuf), f) : 0;
	if (f)
		fclose(f);
	if (!ck.len || !ep.len) {
		fprintf(stderr, "template has no checkpoints\n");
		failed = 1;
		return;
	}
	ckpt_seed(0, 0x40, buf, ck.len, ebuf, ep.len);
	put_seed("fuzz_checkpoint", "template");
	ckpt_seed(1, 0x90, buf, ck.len, ebuf, ep.len);
	put_seed("fuzz_checkpoint", "template-clean");
	ckpt_seed(1 | 2 | 4, 0xe0, buf, ck.len, ebuf, ep.len);
	put_seed("fuzz_checkpoint", "template-sealed");
	ckpt_seed(8 | 16, 0x20, buf, 0, "", 0);
	put_seed("fuzz_checkpoint", "none");

	/* Values inside the log: a mid-segment start and high watermark. */
	fuzz_config(&cfg);
	if (log_open(tmpl, &cfg, &l) < 0) {
		failed = 1;
		return;
	}
	log_get_state(l, &st);
	mid = st.leo / 2;
	seg2 = st.leo / 3;
	if (log_offset_to_pos(l, mid, &mid_pos) < 0)
		failed = 1;
	log_abandon(l);
	n = make_ckpt(buf, sizeof(buf), seg2, 0, mid, mid);
	ckpt_seed(0, 0x70, buf, n, ebuf, ep.len);
	put_seed("fuzz_checkpoint", "start-third-hw-mid");
	n = make_ckpt(buf, sizeof(buf), mid, mid_pos, st.leo, st.leo);
	ckpt_seed(1, 0x08, buf, n, ebuf, ep.len);
	put_seed("fuzz_checkpoint", "start-mid-clean");
	n = make_ckpt(buf, sizeof(buf), 0, 0, 0, st.leo + 5);
	en = fuzz_seal_text((const uint8_t *)epochs, strlen(epochs), ebuf,
			    sizeof(ebuf));
	ckpt_seed(0, 0xff, buf, n, ebuf, en);
	put_seed("fuzz_checkpoint", "epochs-past-end");
}

/* Write an empty partition (one segment, no batch) into dir. */
static int build_empty(const char *dir)
{
	struct log_config cfg;
	struct log *l;
	int rc;

	fuzz_config(&cfg);
	rc = log_open(dir, &cfg, &l);
	if (rc == 0)
		rc = log_close(l);
	return rc < 0 ? rc : fuzz_fix_created(dir);
}

int main(int argc, char **argv)
{
	struct fuzz_file files[FUZZ_TEMPLATE_FILES_MAX];
	struct fuzz_file empty[FUZZ_TEMPLATE_FILES_MAX];
	char *root, tmpl[4096], edir[4096];
	int n, ne;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	fuzz_quiet();
	root = fuzz_scratch_dir("gen_corpus");
	if (!root) {
		perror("scratch directory");
		return 1;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/template", root);
	snprintf(edir, sizeof(edir), "%s/empty", root);
	if (fuzz_template_build(tmpl) < 0 || build_empty(edir) < 0) {
		fprintf(stderr, "cannot write the template partitions\n");
		return 1;
	}
	n = fuzz_read_segments(tmpl, files, FUZZ_TEMPLATE_FILES_MAX);
	ne = fuzz_read_segments(edir, empty, FUZZ_TEMPLATE_FILES_MAX);
	if (n <= 0 || ne <= 0) {
		fprintf(stderr, "cannot read the template partitions\n");
		return 1;
	}
	gen_batch(files, n);
	gen_index(files, n, empty, ne);
	gen_checkpoint(tmpl);
	fuzz_files_free(files, (size_t)n);
	fuzz_files_free(empty, (size_t)ne);
	free(root);
	return failed;
}
