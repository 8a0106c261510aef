/*
 * ioctl of topicfs partition and .produce files: learn the offsets the
 * records of your last write() got. See docs/IOCTL.md.
 *
 *     struct topicfs_last_write w;
 *     write(fd, "hello\n", 6);
 *     ioctl(fd, TOPICFS_IOC_LAST_WRITE, &w);
 *     // records [w.base_offset, w.end_offset) of partition w.partition
 */
#ifndef TOPICFS_IOCTL_H
#define TOPICFS_IOCTL_H

#include <linux/ioctl.h>
#include <stdint.h>

struct topicfs_last_write {
	uint64_t base_offset; /* offset of the first record appended */
	uint64_t end_offset;  /* one past the last; equal if none */
	uint32_t partition;   /* partition they went to */
	uint32_t records;     /* end_offset - base_offset */
};

#define TOPICFS_IOC_LAST_WRITE _IOR('T', 1, struct topicfs_last_write)

#endif
