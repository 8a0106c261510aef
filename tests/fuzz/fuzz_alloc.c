/*
 * The allocator behind fuzz_alloc.h (see there for why). Blocks of at
 * least FUZZ_ALLOC_BIG_BYTES are kept in a small table when freed and
 * handed out again for requests they can hold. A block handed out for n
 * bytes has its first n bytes unpoisoned and the rest poisoned; a block
 * in the table is poisoned whole. Everything else goes to the real
 * allocator, and so does a large request when the table is full.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "fuzz_alloc.h"

/* fuzz_alloc.h renamed these for the log sources, not for this file. */
#undef malloc
#undef calloc
#undef realloc
#undef free

/* Smallest block kept: AddressSanitizer maps anything above 128 KiB. */
#define FUZZ_ALLOC_BIG_BYTES (128u << 10)
#define FUZZ_ALLOC_SLOTS 16

struct slot {
	uint8_t *p;
	size_t cap;  /* bytes allocated */
	size_t len;  /* bytes handed out, while used */
	bool used;
};

const char *__asan_default_options(void);

/*
 * A smaller quarantine than the default 256 MiB: freed memory is reused
 * sooner, so an execution touches fewer fresh pages (page faults were
 * a third of the time). Still far more than one execution frees.
 * ASAN_OPTIONS overrides it.
 */
const char *__asan_default_options(void)
{
	return "quarantine_size_mb=32";
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[FUZZ_ALLOC_SLOTS];

/* The slot holding p, or NULL. Called with lock held. */
static struct slot *slot_of(const void *p)
{
	for (int i = 0; i < FUZZ_ALLOC_SLOTS; i++) {
		if (slots[i].p == p)
			return &slots[i];
	}
	return NULL;
}

/* A free slot to hold a new block of n bytes, or NULL. Lock held. */
static struct slot *slot_fit(size_t n)
{
	struct slot *best = NULL, *empty = NULL, *spare = NULL;

	for (int i = 0; i < FUZZ_ALLOC_SLOTS; i++) {
		struct slot *s = &slots[i];

		if (!s->p) {
			empty = empty ? empty : s;
		} else if (!s->used) {
			if (s->cap >= n && (!best || s->cap < best->cap))
				best = s;
			spare = spare ? spare : s;
		}
	}
	if (best)
		return best;
	if (!empty && spare) {
		/* Too small for n: give it back and take its place. */
		ASAN_UNPOISON_MEMORY_REGION(spare->p, spare->cap);
		free(spare->p);
		*spare = (struct slot){ NULL, 0, 0, false };
		empty = spare;
	}
	if (!empty)
		return NULL;
	empty->p = malloc(n);
	if (!empty->p)
		return NULL;
	empty->cap = n;
	return empty;
}

void *fuzz_malloc(size_t n)
{
	struct slot *s;

	if (n < FUZZ_ALLOC_BIG_BYTES)
		return malloc(n);
	pthread_mutex_lock(&lock);
	s = slot_fit(n);
	if (s) {
		s->used = true;
		s->len = n;
		ASAN_UNPOISON_MEMORY_REGION(s->p, n);
		ASAN_POISON_MEMORY_REGION(s->p + n, s->cap - n);
	}
	pthread_mutex_unlock(&lock);
	return s ? s->p : malloc(n);
}

void *fuzz_calloc(size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	if (n * size < FUZZ_ALLOC_BIG_BYTES)
		return calloc(n, size);
	p = fuzz_malloc(n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

void fuzz_free(void *p)
{
	struct slot *s;

	if (!p)
		return;
	pthread_mutex_lock(&lock);
	s = slot_of(p);
	if (s) {
		if (!s->used) {
			fprintf(stderr, "fuzz_alloc: double free of %p\n", p);
			abort();
		}
		s->used = false;
		/* The tail past len is poisoned since fuzz_malloc. */
		ASAN_POISON_MEMORY_REGION(s->p, s->len);
	}
	pthread_mutex_unlock(&lock);
	if (!s)
		free(p);
}

void *fuzz_realloc(void *p, size_t n)
{
	struct slot *s;
	size_t old = 0;
	void *q;

	pthread_mutex_lock(&lock);
	s = p ? slot_of(p) : NULL;
	if (s)
		old = s->len;
	pthread_mutex_unlock(&lock);
	if (!s)
		return realloc(p, n); /* it stays with the real allocator */
	q = fuzz_malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	fuzz_free(p);
	return q;
}

/*
 * Abort if a large block is still handed out: called when every engine
 * object has been freed, it is the leak check for the blocks kept here.
 */
void fuzz_alloc_check(void)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < FUZZ_ALLOC_SLOTS; i++) {
		if (slots[i].used) {
			fprintf(stderr, "fuzz_alloc: %zu-byte block leaked\n",
				slots[i].len);
			abort();
		}
	}
	pthread_mutex_unlock(&lock);
}
