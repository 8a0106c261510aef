/*
 * Kafka's default partitioner for keyed records: murmur2 of the key's
 * bytes, made positive, modulo the partition count. Pure functions.
 */
#ifndef TOPICFS_FS_PARTITIONER_H
#define TOPICFS_FS_PARTITIONER_H

#include <stddef.h>
#include <stdint.h>

/* Murmur2 as Kafka's default partitioner uses it (seed 0x9747b28c). */
int32_t murmur2(const void *data, size_t len);

/* Kafka's partition for a key: (murmur2(key) & 0x7fffffff) % n. */
uint32_t partition_for_key(const void *key, size_t len, uint32_t n);

#endif
