/*
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
 * checksum of iSCSI (RFC 3720), ext4 metadata and Kafka record batches.
 *
 * On x86-64 CPUs with SSE4.2 the crc32 instruction is used; elsewhere a
 * slicing-by-8 table implementation. Both give identical results; the
 * choice is made once, at the first call.
 */
#ifndef TOPICFS_LOG_CRC32C_H
#define TOPICFS_LOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Extend a running CRC-32C over len bytes at buf. Start with crc = 0; the
 * result of one call can be passed to the next to checksum data in pieces
 * (crc32c(crc32c(0, a, n), b, m) == crc32c over a followed by b).
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable implementation, exposed so tests can compare both paths. */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
