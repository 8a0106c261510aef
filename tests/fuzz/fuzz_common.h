/*
 * Helpers shared by the libFuzzer targets and by the seed corpus
 * generator: a scratch directory per process, the small configuration the
 * targets open partitions with, the template partition that seeds and
 * fuzz_checkpoint start from, and checks of the engine's own invariants.
 *
 * A broken invariant is reported with FUZZ_CHECK, which aborts so that
 * libFuzzer saves the input. Bytes that came from the fuzzer are never
 * the subject of a FUZZ_CHECK, only what the engine made of them.
 */
#ifndef TOPICFS_FUZZ_COMMON_H
#define TOPICFS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define FUZZ_CHECK(cond)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",   \
				__FILE__, __LINE__, #cond);                \
			abort();                                           \
		}                                                          \
	} while (0)

/* Timestamp of the template's first record; later ones are 10 ms apart. */
#define FUZZ_TS_BASE 1700000000000ll
/* created_ms written into the template's segment headers. */
#define FUZZ_CREATED_MS 1700000000000ll
/* Files kept of a template partition (segments only, at most). */
#define FUZZ_TEMPLATE_FILES_MAX 32

/* The targets' configuration: tiny segments, index and interval. */
void fuzz_config(struct log_config *c);

/* Silence the engine's logger unless TOPICFS_FUZZ_VERBOSE is set. */
void fuzz_quiet(void);

/*
 * Make the scratch directory topicfs-<target>-<pid> for this process
 * under $TOPICFS_FUZZ_TMPDIR, else /dev/shm (fsync is cheap there), else
 * $TMPDIR or /tmp. It is removed at exit, and those of dead processes
 * (a crash skips exit handlers) when the next one starts. Call it once
 * per target. Returns a malloc'd path, or NULL.
 */
char *fuzz_scratch_dir(const char *target);

/* Remove every file in dir (the engine makes no subdirectories). */
void fuzz_dir_clear(const char *dir);

/* Create or replace dir/name with len bytes. 0 or negative errno. */
int fuzz_write_file(const char *dir, const char *name, const void *buf,
		    size_t len);

/* The payload byte at partition position pos in every generated log. */
uint8_t fuzz_byte_at(uint64_t pos);
void fuzz_fill(uint8_t *buf, size_t len, uint64_t pos);

/*
 * Write the template partition into dir (which must be empty or absent)
 * and close it cleanly: four segments (none, lz4, zstd, none) holding
 * records of several leader epochs, with deterministic contents and
 * timestamps. 0 or negative errno.
 */
int fuzz_template_build(const char *dir);

/*
 * Give every segment header in dir the created_ms FUZZ_CREATED_MS, so
 * that generated files are the same on every run. 0 or negative errno.
 */
int fuzz_fix_created(const char *dir);

/* A file of a partition directory held in memory. */
struct fuzz_file {
	char name[64];
	uint8_t *data;
	size_t len;
};

/*
 * Read the segment files (.meta, .log, .index) of dir into files[],
 * sorted by name. Returns how many, or negative errno.
 */
int fuzz_read_segments(const char *dir, struct fuzz_file *files,
		       size_t max);
void fuzz_files_free(struct fuzz_file *files, size_t n);

/*
 * Copy the text in[0..len) into out (cap bytes) up to its first
 * "crc32c " line and append a correct "crc32c %08x\n" line, as the
 * engine's text checkpoints end. Returns the length written.
 */
size_t fuzz_seal_text(const uint8_t *in, size_t len, char *out, size_t cap);

/*
 * Abort if the engine still holds one of the large blocks fuzz_alloc.c
 * keeps (see fuzz_alloc.h): call it when every engine object is freed.
 * Defined in fuzz_alloc.c, linked into the targets only.
 */
void fuzz_alloc_check(void);

/* Check the orderings log_get_state promises; abort if one is broken. */
void fuzz_check_state(const struct log_state *st);

/* Whether two states agree on ends, segments and leader epoch. */
bool fuzz_same_state(const struct log_state *a, const struct log_state *b);
void fuzz_print_state(const char *what, const struct log_state *st);

#endif
