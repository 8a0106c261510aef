/* CRC-32C against RFC 3720 appendix B.4 and a bit-at-a-time reference. */
#include "testutil.h"

#include "crc32c.h"

/* The definition, one bit at a time: slow and obviously right. */
static uint32_t crc32c_reference(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & -(crc & 1));
	}
	return ~crc;
}

static void test_rfc3720_vectors(void **state)
{
	uint8_t buf[48];
	(void)state;

	memset(buf, 0, 32);
	assert_int_equal(crc32c(0, buf, 32), 0x8a9136aa);
	memset(buf, 0xff, 32);
	assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, buf, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(crc32c(0, buf, 32), 0x113fdb5c);
	static const uint8_t iscsi_read[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	assert_int_equal(crc32c(0, iscsi_read, 48), 0xd9963a56);
	assert_int_equal(crc32c_reference(0, iscsi_read, 48), 0xd9963a56);
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
}

static void test_incremental_and_reference_agree(void **state)
{
	uint8_t buf[4099];
	(void)state;

	tu_seed(42);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)tu_rand();
	for (size_t len = 0; len < sizeof(buf); len += 1 + len / 3) {
		for (size_t off = 0; off < 8 && off <= len; off++) {
			uint32_t whole = crc32c(0, buf + off, len - off);
			size_t half = (len - off) / 2;
			assert_int_equal(crc32c_reference(0, buf + off, len - off),
					 whole);
			assert_int_equal(crc32c(crc32c(0, buf + off, half),
						buf + off + half,
						len - off - half), whole);
		}
	}
}

/* Long inputs, around the block sizes SIMD implementations use. */
static void test_long_inputs_agree(void **state)
{
	static const size_t lens[] = { 255, 256, 257, 767, 768, 769, 8191,
				       8192, 8193, 24575, 24576, 24577, 40000,
				       3 * 8192 + 3 * 256 + 7, 131072 };
	size_t max = 131072 + 8;
	uint8_t *buf = malloc(max);
	(void)state;

	assert_non_null(buf);
	tu_seed(7);
	for (size_t i = 0; i < max; i++)
		buf[i] = (uint8_t)tu_rand();
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		for (size_t off = 0; off < 8; off += 3) {
			uint32_t want = crc32c_reference(0, buf + off, lens[k]);
			assert_int_equal(crc32c(0, buf + off, lens[k]), want);
			if (lens[k] > 1000) /* in two pieces */
				assert_int_equal(crc32c(crc32c(0, buf + off, 1000),
							buf + off + 1000,
							lens[k] - 1000), want);
		}
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3720_vectors),
		cmocka_unit_test(test_incremental_and_reference_agree),
		cmocka_unit_test(test_long_inputs_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
