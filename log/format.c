#include "format.h"

#include <errno.h>
#include <string.h>

#include "codec.h"
#include "crc32c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "topicfs writes record lengths in host order and needs a little-endian host"
#endif

void seg_hdr_encode(const struct seg_hdr *h, uint8_t out[SEG_HDR_SIZE])
{
	memset(out, 0, SEG_HDR_SIZE);
	memcpy(out, SEG_MAGIC, 8);
	fmt_put64(out + 8, h->base_offset);
	fmt_put64(out + 16, h->base_pos);
	fmt_put64(out + 24, (uint64_t)h->created_ms);
	fmt_put32(out + 32, h->codec);
	fmt_put32(out + 36, SEG_VERSION);
	fmt_put32(out + 60, crc32c(0, out, 60));
}

int seg_hdr_decode(const uint8_t in[SEG_HDR_SIZE], struct seg_hdr *h)
{
	if (memcmp(in, SEG_MAGIC, 8) != 0 || fmt_get32(in + 60) != crc32c(0, in, 60))
		return -EIO;
	if (fmt_get32(in + 36) != SEG_VERSION || fmt_get32(in + 32) >= LOG_CODEC_COUNT)
		return -EIO;
	h->base_offset = fmt_get64(in + 8);
	h->base_pos = fmt_get64(in + 16);
	h->created_ms = (int64_t)fmt_get64(in + 24);
	h->codec = fmt_get32(in + 32);
	return 0;
}

void batch_hdr_encode(const struct batch_hdr *h, uint8_t out[BATCH_HDR_SIZE])
{
	fmt_put32(out, BATCH_MAGIC);
	fmt_put64(out + 8, h->base_offset);
	fmt_put64(out + 16, h->pos);
	fmt_put64(out + 24, h->data_pos);
	fmt_put64(out + 32, (uint64_t)h->max_ts);
	fmt_put32(out + 40, h->count);
	fmt_put32(out + 44, h->stored_len);
	fmt_put32(out + 48, h->logical_len);
	fmt_put32(out + 52, h->epoch);
	fmt_put32(out + 56, h->crc);
	out[60] = h->codec;
	out[61] = 0;
	out[62] = 0;
	out[63] = 0;
	fmt_put32(out + 4, crc32c(0, out + 8, BATCH_HDR_SIZE - 8));
}

int batch_hdr_decode(const uint8_t in[BATCH_HDR_SIZE], struct batch_hdr *h)
{
	if (fmt_get32(in) != BATCH_MAGIC ||
	    fmt_get32(in + 4) != crc32c(0, in + 8, BATCH_HDR_SIZE - 8))
		return -EIO;
	h->base_offset = fmt_get64(in + 8);
	h->pos = fmt_get64(in + 16);
	h->data_pos = fmt_get64(in + 24);
	h->max_ts = (int64_t)fmt_get64(in + 32);
	h->count = fmt_get32(in + 40);
	h->stored_len = fmt_get32(in + 44);
	h->logical_len = fmt_get32(in + 48);
	h->epoch = fmt_get32(in + 52);
	h->crc = fmt_get32(in + 56);
	h->codec = in[60];
	if (h->codec >= LOG_CODEC_COUNT || in[61] || in[62] || in[63])
		return -EIO;
	if (h->count == 0 || h->count > LOG_BATCH_RECORDS_MAX ||
	    h->logical_len > LOG_BATCH_BYTES_MAX || h->count > h->logical_len)
		return -EIO;
	if (h->codec == LOG_CODEC_NONE ? h->stored_len != h->logical_len :
	    h->stored_len == 0 ||
	    h->stored_len > codec_bound(h->codec, LOG_BATCH_BYTES_MAX))
		return -EIO;
	if (h->base_offset > UINT64_MAX - h->count ||
	    h->pos > UINT64_MAX - h->logical_len)
		return -EIO;
	return 0;
}

uint32_t batch_crc(const uint32_t *lens, uint32_t count,
		   const struct iovec *stored, int pieces)
{
	uint32_t crc = crc32c(0, lens, 4ull * count);

	for (int i = 0; i < pieces; i++)
		crc = crc32c(crc, stored[i].iov_base, stored[i].iov_len);
	return crc;
}

int batch_check_lengths(const struct batch_hdr *h, const uint32_t *lens)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < h->count; i++) {
		if (lens[i] == 0)
			return -EIO;
		sum += lens[i];
	}
	return sum == h->logical_len ? 0 : -EIO;
}

void index_entry_encode(const struct index_entry *e,
			uint8_t out[INDEX_ENTRY_SIZE])
{
	fmt_put32(out, e->rel_offset);
	fmt_put32(out + 4, e->meta_pos);
	fmt_put64(out + 8, e->rel_pos);
	fmt_put64(out + 16, (uint64_t)e->ts);
}

void index_entry_decode(const uint8_t in[INDEX_ENTRY_SIZE],
			struct index_entry *e)
{
	e->rel_offset = fmt_get32(in);
	e->meta_pos = fmt_get32(in + 4);
	e->rel_pos = fmt_get64(in + 8);
	e->ts = (int64_t)fmt_get64(in + 16);
}
