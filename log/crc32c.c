/*
 * CRC-32C, hardware-accelerated where the CPU has it. Debian 12 ships no
 * CRC-32C library (Google's crc32c is not packaged there), so this small
 * file carries both paths; docs/DESIGN.md records the decision.
 */
#include "crc32c.h"

#include <stdbool.h>
#include <pthread.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
		crc32c_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc32c_table[0][n];
		for (int t = 1; t < 8; t++) {
			c = crc32c_table[0][c & 0xff] ^ (c >> 8);
			crc32c_table[t][n] = c;
		}
	}
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&crc32c_table_once, crc32c_table_init);
	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc; /* little-endian host: checked in log.c */
		crc = crc32c_table[7][w & 0xff] ^
		      crc32c_table[6][(w >> 8) & 0xff] ^
		      crc32c_table[5][(w >> 16) & 0xff] ^
		      crc32c_table[4][(w >> 24) & 0xff] ^
		      crc32c_table[3][(w >> 32) & 0xff] ^
		      crc32c_table[2][(w >> 40) & 0xff] ^
		      crc32c_table[1][(w >> 48) & 0xff] ^
		      crc32c_table[0][(w >> 56) & 0xff];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

/*
 * The crc32 instruction takes 3 cycles but a new one can start every
 * cycle, so one dependent chain runs at a third of the possible speed.
 * Long inputs are therefore cut into three adjacent blocks whose CRCs are
 * computed side by side and then joined: the CRC of the first block is
 * "shifted" over the length of the next one (multiplied by x^(8 * len)
 * modulo the polynomial, a linear map applied by four 256-entry tables)
 * and xor-ed with that block's CRC computed from zero. The block lengths
 * are powers of two; this is Mark Adler's well-known construction.
 */
#define CRC32C_LONG_BYTES 8192u
#define CRC32C_SHORT_BYTES 256u

static uint32_t crc32c_shift_long[4][256], crc32c_shift_short[4][256];

/* mat (32 columns over GF(2)) times vec. */
static uint32_t crc32c_gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++) {
		if (vec & 1)
			sum ^= *mat;
	}
	return sum;
}

static void crc32c_gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = crc32c_gf2_times(mat, mat[n]);
}

/* Tables applying len zero bytes (a power of two, >= 2) to a CRC. */
static void crc32c_shift_init(uint32_t tab[4][256], size_t len)
{
	uint32_t odd[32], even[32], *op = even;

	odd[0] = CRC32C_POLY_REFLECTED; /* one zero bit */
	for (int n = 1; n < 32; n++)
		odd[n] = 1u << (n - 1);
	crc32c_gf2_square(even, odd);   /* two zero bits */
	crc32c_gf2_square(odd, even);   /* four zero bits */
	for (;;) {
		crc32c_gf2_square(even, odd); /* 1, 4, 16 ... zero bytes */
		op = even;
		len >>= 1;
		if (len == 0)
			break;
		crc32c_gf2_square(odd, even); /* 2, 8, 32 ... zero bytes */
		op = odd;
		len >>= 1;
		if (len == 0)
			break;
	}
	for (uint32_t n = 0; n < 256; n++) {
		tab[0][n] = crc32c_gf2_times(op, n);
		tab[1][n] = crc32c_gf2_times(op, n << 8);
		tab[2][n] = crc32c_gf2_times(op, n << 16);
		tab[3][n] = crc32c_gf2_times(op, n << 24);
	}
}

static uint32_t crc32c_shift(uint32_t tab[4][256], uint32_t crc)
{
	return tab[0][crc & 0xff] ^ tab[1][(crc >> 8) & 0xff] ^
	       tab[2][(crc >> 16) & 0xff] ^ tab[3][crc >> 24];
}

/* Three interleaved chains over blocks of len bytes each; p 8-aligned. */
__attribute__((target("sse4.2")))
static uint64_t crc32c_sse42_3way(uint64_t c, const unsigned char **pp,
				  size_t *lenp, size_t blk,
				  uint32_t tab[4][256])
{
	const unsigned char *p = *pp;
	size_t len = *lenp;

	while (len >= 3 * blk) {
		uint64_t c1 = 0, c2 = 0;
		const unsigned char *end = p + blk;

		do {
			uint64_t w0, w1, w2;
			memcpy(&w0, p, 8);
			memcpy(&w1, p + blk, 8);
			memcpy(&w2, p + 2 * blk, 8);
			c = _mm_crc32_u64(c, w0);
			c1 = _mm_crc32_u64(c1, w1);
			c2 = _mm_crc32_u64(c2, w2);
			p += 8;
		} while (p < end);
		c = crc32c_shift(tab, (uint32_t)c) ^ c1;
		c = crc32c_shift(tab, (uint32_t)c) ^ c2;
		p += 2 * blk;
		len -= 3 * blk;
	}
	*pp = p;
	*lenp = len;
	return c;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	c = crc32c_sse42_3way(c, &p, &len, CRC32C_LONG_BYTES,
			      crc32c_shift_long);
	c = crc32c_sse42_3way(c, &p, &len, CRC32C_SHORT_BYTES,
			      crc32c_shift_short);
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

static bool crc32c_have_sse42(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2");
}

static void crc32c_sse42_init(void)
{
	crc32c_shift_init(crc32c_shift_long, CRC32C_LONG_BYTES);
	crc32c_shift_init(crc32c_shift_short, CRC32C_SHORT_BYTES);
}
#else
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_portable(crc, buf, len);
}

static bool crc32c_have_sse42(void)
{
	return false;
}

static void crc32c_sse42_init(void)
{
}
#endif


static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t);
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	if (crc32c_have_sse42()) {
		crc32c_sse42_init();
		crc32c_impl = crc32c_sse42;
	} else {
		crc32c_impl = crc32c_portable;
	}
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return crc32c_impl(crc, buf, len);
}
