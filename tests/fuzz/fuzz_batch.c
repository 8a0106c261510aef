/*
 * fuzz_batch: one batch as it lies on disk, decoded the way the engine
 * decodes it when it reads a batch back.
 *
 * Input: the bytes of a batch in .meta followed by its bytes in .log:
 *
 *   0     64-byte batch header (format.h)
 *   64    record_count u32 record lengths
 *   ...   the stored payload (stored_len bytes are used, the rest ignored)
 *
 * The header is decoded as given; if that fails it is decoded again with
 * its header checksum recomputed, so that mutated fields get past the
 * checksum to the checks behind it. A header that decodes must respect
 * the limits batch_hdr_decode promises. Then the lengths are checked, the
 * payload CRC computed, and the stored payload decompressed with the
 * header's codec into a buffer of exactly logical_len bytes (at most
 * LOG_BATCH_BYTES_MAX): AddressSanitizer catches any write past it.
 *
 * Independently of the header, the payload bytes are compressed and
 * decompressed with each codec, which must give them back exactly and
 * must refuse an output size one byte off.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crc32c.h"
#include "format.h"
#include "fuzz_common.h"

/* Payload bytes put through the compression round trip, at most. */
#define ROUNDTRIP_BYTES_MAX (64u << 10)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct codec_ctx *ctx;
static uint8_t *zbuf;  /* compression output, codec_bound of the maximum */
static uint8_t *plain; /* decompression output of the round trip */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t cap = codec_bound(LOG_CODEC_ZSTD, ROUNDTRIP_BYTES_MAX);

	(void)argc;
	(void)argv;
	if (codec_bound(LOG_CODEC_LZ4, ROUNDTRIP_BYTES_MAX) > cap)
		cap = codec_bound(LOG_CODEC_LZ4, ROUNDTRIP_BYTES_MAX);
	ctx = codec_ctx_new();
	zbuf = malloc(cap);
	plain = malloc(ROUNDTRIP_BYTES_MAX + 1);
	FUZZ_CHECK(ctx && zbuf && plain);
	return 0;
}

/* Compress len bytes with codec and check they come back exactly. */
static void roundtrip(int codec, const uint8_t *src, size_t len)
{
	size_t cap = codec_bound(codec, len);
	ssize_t z;

	FUZZ_CHECK(cap >= len || codec != LOG_CODEC_NONE);
	z = codec_compress(ctx, codec, 1, zbuf, cap, src, len);
	if (len == 0 && z < 0)
		return; /* lz4 and zstd may refuse nothing; batches never hold it */
	FUZZ_CHECK(z >= 0 && (size_t)z <= cap);
	FUZZ_CHECK(codec_decompress(ctx, codec, plain, len, zbuf,
				    (size_t)z) == 0);
	FUZZ_CHECK(memcmp(plain, src, len) == 0);
	/* Exactly out_len: one byte more or less is corrupt. */
	FUZZ_CHECK(codec_decompress(ctx, codec, plain, len + 1, zbuf,
				    (size_t)z) < 0);
	if (len > 0)
		FUZZ_CHECK(codec_decompress(ctx, codec, plain, len - 1, zbuf,
					    (size_t)z) < 0);
}

/* Check what batch_hdr_decode promises about a header it accepted. */
static void check_hdr(const struct batch_hdr *h)
{
	FUZZ_CHECK(h->count >= 1 && h->count <= LOG_BATCH_RECORDS_MAX);
	FUZZ_CHECK(h->logical_len <= LOG_BATCH_BYTES_MAX);
	FUZZ_CHECK(h->count <= h->logical_len);
	FUZZ_CHECK(h->codec < LOG_CODEC_COUNT);
	if (h->codec == LOG_CODEC_NONE)
		FUZZ_CHECK(h->stored_len == h->logical_len);
	else
		FUZZ_CHECK(h->stored_len >= 1 && h->stored_len <=
			   codec_bound(h->codec, LOG_BATCH_BYTES_MAX));
	FUZZ_CHECK(h->base_offset + h->count >= h->base_offset);
	FUZZ_CHECK(h->pos + h->logical_len >= h->pos);
}

/* Decode the batch in data as the read path does. */
static void decode_batch(const uint8_t *data, size_t size)
{
	uint8_t hdr[BATCH_HDR_SIZE], again[BATCH_HDR_SIZE];
	const uint8_t *stored;
	struct batch_hdr h;
	uint32_t *lens, crc;
	uint8_t *out;
	size_t rest;
	int rc;

	if (size < BATCH_HDR_SIZE)
		return;
	memcpy(hdr, data, sizeof(hdr));
	if (batch_hdr_decode(hdr, &h) < 0) {
		crc = crc32c(0, hdr + 8, BATCH_HDR_SIZE - 8);
		memcpy(hdr + 4, &crc, 4);
		if (batch_hdr_decode(hdr, &h) < 0)
			return;
	}
	check_hdr(&h);
	/* Encoding what was decoded gives the same bytes back. */
	batch_hdr_encode(&h, again);
	FUZZ_CHECK(memcmp(again, hdr, sizeof(hdr)) == 0);

	rest = size - BATCH_HDR_SIZE;
	if (rest < 4ull * h.count)
		return;
	lens = malloc(4ull * h.count);
	FUZZ_CHECK(lens);
	memcpy(lens, data + BATCH_HDR_SIZE, 4ull * h.count);
	rest -= 4ull * h.count;
	stored = data + BATCH_HDR_SIZE + 4ull * h.count;
	if (rest < h.stored_len) {
		free(lens);
		return;
	}
	/* The engine compares this with h.crc; here it only has to run. */
	struct iovec v = { (void *)stored, h.stored_len };
	crc = batch_crc(lens, h.count, &v, 1);
	FUZZ_CHECK(crc == crc32c(crc32c(0, lens, 4ull * h.count), stored,
				 h.stored_len));
	rc = batch_check_lengths(&h, lens);
	if (rc == 0) {
		uint64_t sum = 0;
		for (uint32_t i = 0; i < h.count; i++)
			sum += lens[i];
		FUZZ_CHECK(sum == h.logical_len);
	}

	/* Exactly logical_len bytes: any overrun is a heap overflow. */
	out = malloc(h.logical_len ? h.logical_len : 1);
	FUZZ_CHECK(out);
	rc = codec_decompress(ctx, h.codec, out, h.logical_len, stored,
			      h.stored_len);
	if (rc == 0 && h.codec == LOG_CODEC_NONE)
		FUZZ_CHECK(memcmp(out, stored, h.logical_len) == 0);
	FUZZ_CHECK(rc == 0 || rc == -EIO);
	free(out);
	free(lens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n;

	decode_batch(data, size);
	if (size <= BATCH_HDR_SIZE)
		return 0;
	n = size - BATCH_HDR_SIZE;
	if (n > ROUNDTRIP_BYTES_MAX)
		n = ROUNDTRIP_BYTES_MAX;
	for (int codec = 0; codec < LOG_CODEC_COUNT; codec++)
		roundtrip(codec, data + BATCH_HDR_SIZE, n);
	return 0;
}
