/*
 * Per-batch compression: none, lz4 (block format) and zstd (one frame).
 * A compressed batch is decompressed into a buffer whose size is the
 * batch's logical length, which the caller has already checked against
 * LOG_BATCH_BYTES_MAX; a stream that would produce more or fewer bytes is
 * rejected as corrupt, so a lying header can never make us allocate more.
 */
#ifndef TOPICFS_LOG_CODEC_H
#define TOPICFS_LOG_CODEC_H

#include <stddef.h>
#include <sys/types.h>

enum log_codec {
	LOG_CODEC_NONE = 0,
	LOG_CODEC_LZ4 = 1,
	LOG_CODEC_ZSTD = 2,
};

#define LOG_CODEC_COUNT 3

struct codec_ctx;

struct codec_ctx *codec_ctx_new(void);
void codec_ctx_free(struct codec_ctx *c);

/* "none", "lz4", "zstd"; NULL for an unknown code. */
const char *codec_name(int codec);

/* The codec named s, or -EINVAL. */
int codec_parse(const char *s);

/* Largest compressed size of len input bytes. */
size_t codec_bound(int codec, size_t len);

/*
 * Compress len bytes at src into dst (cap bytes, at least codec_bound).
 * Returns the compressed size, -EIO, or -ENOMEM if the context could not
 * be made (contexts are made at their first use). level: zstd only.
 */
ssize_t codec_compress(struct codec_ctx *c, int codec, int level, void *dst,
		       size_t cap, const void *src, size_t len);

/*
 * Decompress len bytes at src into exactly out_len bytes at dst.
 * Returns 0, -ENOMEM (no context could be made), or -EIO if the input is
 * malformed or does not decompress to exactly out_len bytes.
 */
int codec_decompress(struct codec_ctx *c, int codec, void *dst, size_t out_len,
		     const void *src, size_t len);

#endif
