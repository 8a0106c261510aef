/*
 * Growing arrays in fs/: *pp holds *cap elements of elem bytes; make room
 * for want, at least doubling, so that adding one at a time stays cheap.
 * 0 or -ENOMEM (*pp unchanged).
 */
#ifndef TOPICFS_GROW_H
#define TOPICFS_GROW_H

#include <errno.h>
#include <stdlib.h>

static inline int grow(void *pp, size_t *cap, size_t want, size_t elem)
{
	void **p = pp;
	void *n;

	if (*cap >= want)
		return 0;
	if (want < 2 * *cap)
		want = 2 * *cap;
	n = realloc(*p, want * elem);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = want;
	return 0;
}

#endif
