/*
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
 * checksum of iSCSI (RFC 3720), ext4 metadata and Kafka record batches.
 *
 * Computed by ISA-L (crc32_iscsi), which picks the fastest code for the
 * CPU at run time: on x86-64 with AVX-512 about 50 GB/s, against 19 GB/s
 * for a three-way SSE4.2 loop (docs/DESIGN.md, "Dependencies").
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

#endif
