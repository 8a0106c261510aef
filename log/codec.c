#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/*
 * Contexts are kept per partition so the append path never allocates
 * after the first compressed batch. They are made at their first use:
 * a zstd context costs tens of KiB, and a partition that never
 * compresses with zstd (most of 10,000) should not pay for two.
 */
struct codec_ctx {
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
};

struct codec_ctx *codec_ctx_new(void)
{
	return calloc(1, sizeof(struct codec_ctx));
}

void codec_ctx_free(struct codec_ctx *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->zc);
	ZSTD_freeDCtx(c->zd);
	free(c);
}

static const char *const codec_names[LOG_CODEC_COUNT] = {
	[LOG_CODEC_NONE] = "none",
	[LOG_CODEC_LZ4] = "lz4",
	[LOG_CODEC_ZSTD] = "zstd",
};

const char *codec_name(int codec)
{
	if (codec < 0 || codec >= LOG_CODEC_COUNT)
		return NULL;
	return codec_names[codec];
}

int codec_parse(const char *s)
{
	for (int i = 0; i < LOG_CODEC_COUNT; i++) {
		if (strcmp(s, codec_names[i]) == 0)
			return i;
	}
	return -EINVAL;
}

size_t codec_bound(int codec, size_t len)
{
	switch (codec) {
	case LOG_CODEC_LZ4:
		return len > LZ4_MAX_INPUT_SIZE ? 0 :
			(size_t)LZ4_compressBound((int)len);
	case LOG_CODEC_ZSTD:
		return ZSTD_compressBound(len);
	default:
		return len;
	}
}

ssize_t codec_compress(struct codec_ctx *c, int codec, int level, void *dst,
		       size_t cap, const void *src, size_t len)
{
	switch (codec) {
	case LOG_CODEC_LZ4: {
		if (len > LZ4_MAX_INPUT_SIZE || cap > INT_MAX)
			return -EIO;
		int n = LZ4_compress_default(src, dst, (int)len, (int)cap);
		return n > 0 ? n : -EIO;
	}
	case LOG_CODEC_ZSTD: {
		if (!c->zc && !(c->zc = ZSTD_createCCtx()))
			return -ENOMEM;
		size_t n = ZSTD_compressCCtx(c->zc, dst, cap, src, len, level);
		return ZSTD_isError(n) ? -EIO : (ssize_t)n;
	}
	default:
		if (cap < len)
			return -EIO;
		memcpy(dst, src, len);
		return (ssize_t)len;
	}
}

int codec_decompress(struct codec_ctx *c, int codec, void *dst, size_t out_len,
		     const void *src, size_t len)
{
	switch (codec) {
	case LOG_CODEC_LZ4: {
		if (len > INT_MAX || out_len > INT_MAX)
			return -EIO;
		int n = LZ4_decompress_safe(src, dst, (int)len, (int)out_len);
		return n >= 0 && (size_t)n == out_len ? 0 : -EIO;
	}
	case LOG_CODEC_ZSTD: {
		unsigned long long want = ZSTD_getFrameContentSize(src, len);
		if (want != ZSTD_CONTENTSIZE_UNKNOWN && want != out_len)
			return -EIO;
		if (!c->zd && !(c->zd = ZSTD_createDCtx()))
			return -ENOMEM;
		size_t n = ZSTD_decompressDCtx(c->zd, dst, out_len, src, len);
		return !ZSTD_isError(n) && n == out_len ? 0 : -EIO;
	}
	case LOG_CODEC_NONE:
		if (len != out_len)
			return -EIO;
		memcpy(dst, src, len);
		return 0;
	default:
		return -EIO;
	}
}
