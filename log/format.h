/*
 * The on-disk records of a partition's segment files, encoded and decoded
 * in one place. docs/FORMAT.md is the full specification; in short, a
 * segment with base offset B is three files:
 *
 *   <B>.log    payload bytes only. For an uncompressed segment the bytes
 *              are exactly the records as written, so the partition file
 *              seen through FUSE is the concatenation of the .log files
 *              and a read can be spliced straight from them.
 *   <B>.meta   a 64-byte segment header, then for every batch a 64-byte
 *              batch header followed by record_count u32 record lengths.
 *   <B>.index  24-byte entries, one per index.interval.bytes of payload,
 *              mapping offset, payload position and time to the batch's
 *              place in the .meta file.
 *
 * All integers are little-endian.
 *
 *   segment header (64 bytes)          batch header (64 bytes)
 *    0 magic "TFSEG001"                 0 u32 magic 0x31424654 "TFB1"
 *    8 u64 base_offset                  4 u32 hdr_crc  crc32c(bytes 8..63)
 *   16 u64 base_pos                     8 u64 base_offset
 *   24 i64 created_ms                  16 u64 pos        partition position
 *   32 u32 codec                       24 u64 data_pos   position in .log
 *   36 u32 version (1)                 32 i64 max_timestamp_ms
 *   40 .. 59 zero                      40 u32 record_count
 *   60 u32 crc32c(bytes 0..59)         44 u32 stored_len bytes in .log
 *                                      48 u32 logical_len sum of lengths
 *   index entry (24 bytes)             52 u32 leader_epoch
 *    0 u32 offset - base_offset        56 u32 crc  crc32c(lengths, stored)
 *    4 u32 position in .meta           60 u8  codec
 *    8 u64 pos - base_pos              61 u8  flags (0)
 *   16 i64 timestamp of that batch     62 u16 reserved (0)
 */
#ifndef TOPICFS_LOG_FORMAT_H
#define TOPICFS_LOG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

/* Fields of the on-disk records, little-endian like the hosts topicfs
 * builds on (format.c refuses the others). */
static inline void fmt_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void fmt_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline uint32_t fmt_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t fmt_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

#define SEG_HDR_SIZE 64
#define SEG_MAGIC "TFSEG001"
#define SEG_VERSION 1
#define BATCH_HDR_SIZE 64
#define BATCH_MAGIC 0x31424654u
#define INDEX_ENTRY_SIZE 24

/* A batch may hold at most this many records and payload bytes. */
#define LOG_BATCH_RECORDS_MAX 65536u
#define LOG_BATCH_BYTES_MAX (16u << 20)

struct seg_hdr {
	uint64_t base_offset;
	uint64_t base_pos;
	int64_t created_ms;
	uint32_t codec;
};

struct batch_hdr {
	uint64_t base_offset;
	uint64_t pos;
	uint64_t data_pos;
	int64_t max_ts;
	uint32_t count;
	uint32_t stored_len;
	uint32_t logical_len;
	uint32_t epoch;
	uint32_t crc;
	uint8_t codec;
};

struct index_entry {
	uint32_t rel_offset;
	uint32_t meta_pos;
	uint64_t rel_pos;
	int64_t ts;
};

void seg_hdr_encode(const struct seg_hdr *h, uint8_t out[SEG_HDR_SIZE]);
/* 0, or -EIO if magic, version, codec or checksum is wrong. */
int seg_hdr_decode(const uint8_t in[SEG_HDR_SIZE], struct seg_hdr *h);

void batch_hdr_encode(const struct batch_hdr *h, uint8_t out[BATCH_HDR_SIZE]);
/*
 * Decode and check a batch header: magic, header checksum, codec, and the
 * limits (1 <= count <= LOG_BATCH_RECORDS_MAX, logical_len within
 * LOG_BATCH_BYTES_MAX, count <= logical_len). 0 or -EIO.
 */
int batch_hdr_decode(const uint8_t in[BATCH_HDR_SIZE], struct batch_hdr *h);

/* Bytes a batch occupies in the .meta file. */
static inline uint64_t batch_meta_size(uint32_t count)
{
	return BATCH_HDR_SIZE + 4ull * count;
}

/* crc32c over the lengths array and the stored payload, which may be
 * given in pieces (the crc of their concatenation). */
uint32_t batch_crc(const uint32_t *lens, uint32_t count,
		   const struct iovec *stored, int pieces);

/*
 * Check lengths against the header: each at least 1, summing to
 * logical_len. 0 or -EIO.
 */
int batch_check_lengths(const struct batch_hdr *h, const uint32_t *lens);

void index_entry_encode(const struct index_entry *e,
			uint8_t out[INDEX_ENTRY_SIZE]);
void index_entry_decode(const uint8_t in[INDEX_ENTRY_SIZE],
			struct index_entry *e);

#endif
