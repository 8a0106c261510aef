/*
 * Helpers shared by the cmocka tests: temporary directories, a seeded
 * random generator (TOPICFS_TEST_SEED overrides the fixed seed), and a
 * small config with tiny segments so that rolls happen often.
 */
#ifndef TOPICFS_TESTUTIL_H
#define TOPICFS_TESTUTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"

/* Make a fresh directory under $TMPDIR (or /tmp); free with tu_rmdir. */
char *tu_mkdtemp(void);
/* rm -rf path and free it. */
void tu_rmdir(char *path);
/* path/name joined into a static-free malloc'd string. */
char *tu_join(const char *dir, const char *name);

/* xorshift64*; seeded from TOPICFS_TEST_SEED or the given default. */
void tu_seed(uint64_t def);
uint64_t tu_rand(void);
uint64_t tu_seed_used(void);

/* Config with small segments, index and interval to exercise rolls. */
void tu_small_config(struct log_config *c);

/* Open (asserting success). */
struct log *tu_open(const char *dir, const struct log_config *c);

/*
 * Append n records of the given lengths with deterministic contents
 * derived from their offset (tu_fill); returns the append info.
 */
struct log_append_info tu_append(struct log *l, const uint32_t *lens,
				 uint32_t n);
/* The content byte i of the record with offset off. */
void tu_fill(uint8_t *buf, uint32_t len, uint64_t off);

/* log_dump --verify of dir (a partition or segment): the problems found. */
int tu_dump_problems(const char *dir);

/* Read the whole readable log [start_pos, hw_pos) into a malloc'd buffer. */
uint8_t *tu_read_all(struct log *l, uint64_t *len);

/* File helpers. */
int64_t tu_file_size(const char *path);
void tu_truncate(const char *path, int64_t size);
void tu_append_bytes(const char *path, const void *buf, size_t len);
void tu_flip_bit(const char *path, int64_t byte, int bit);

#endif
