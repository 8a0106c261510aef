/*
 * The broker core's two clocks. Record timestamps and retention are wall
 * time (CLOCK_REALTIME: what producers stamp and users read); every
 * interval (flush.ms since the last flush, max.poll.interval.ms since a
 * member's last read, the ticker's period, the scrub's delay) is measured
 * on CLOCK_MONOTONIC, so a step of the wall clock can neither evict a
 * member nor stall or force a flush.
 */
#ifndef TOPICFS_FS_CLOCK_H
#define TOPICFS_FS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* A tick's view of both clocks, in milliseconds. */
struct tick_now {
	int64_t wall_ms;  /* retention: compared with record timestamps */
	int64_t mono_ms;  /* intervals */
};

/* Milliseconds on the monotonic clock (an arbitrary origin). */
static inline int64_t clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds since the epoch on the wall clock. */
static inline int64_t clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Both clocks, now. */
static inline struct tick_now clock_now(void)
{
	struct tick_now n = { clock_wall_ms(), clock_mono_ms() };

	return n;
}

#endif
