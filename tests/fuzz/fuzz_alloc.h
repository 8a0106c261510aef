/*
 * Force-included (-include) into the log sources of the fuzz build only:
 * their malloc, calloc, realloc and free go to fuzz_alloc.c.
 *
 * Why: the engine allocates buffers of 16 to 48 MiB per open, per cursor
 * that reads a compressed batch and per segment log_dump prints. Under
 * AddressSanitizer every fresh allocation that size costs about 15 ms of
 * shadow poisoning and page faults, which made fuzz_index run a few
 * executions per second. fuzz_alloc.c keeps freed large blocks for reuse
 * and poisons them by hand, so AddressSanitizer still reports overflows
 * past the requested size and uses after free; fuzz_alloc_check() stands
 * in for LeakSanitizer on the blocks it holds.
 */
#ifndef TOPICFS_FUZZ_ALLOC_H
#define TOPICFS_FUZZ_ALLOC_H

#include <stdlib.h>
#include <string.h>

void *fuzz_malloc(size_t n);
void *fuzz_calloc(size_t n, size_t size);
void *fuzz_realloc(void *p, size_t n);
void fuzz_free(void *p);

#define malloc(n) fuzz_malloc(n)
#define calloc(n, size) fuzz_calloc(n, size)
#define realloc(p, n) fuzz_realloc(p, n)
#define free(p) fuzz_free(p)

#endif
