/* Pure parts of fs/: the partitioner, topic names, topic configuration. */
#include "testutil.h"

#include "config.h"
#include "topic.h"

static void test_murmur2_matches_kafka(void **state)
{
	/* Vectors from Kafka's UtilsTest.testMurmur2. */
	static const struct { const char *s; int32_t h; } v[] = {
		{ "21", -973932308 },
		{ "foobar", -790332482 },
		{ "a-little-bit-long-string", -985981536 },
		{ "a-little-bit-longer-string", -1486304829 },
		{ "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971 },
		{ "abc", 479470107 },
		{ "1", -1993445489 },
		{ "12", 126087238 },
		{ "123", -267702483 },
		{ "1234", -1614185708 },
		{ "12345", -1188365604 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(murmur2(v[i].s, strlen(v[i].s)), v[i].h);
	/* Kafka: toPositive(murmur2(key)) % numPartitions. */
	assert_int_equal(partition_for_key("foobar", 6, 7),
			 (uint32_t)(-790332482 & 0x7fffffff) % 7);
}

static void test_topic_names(void **state)
{
	char longest[250], too_long[251];
	(void)state;

	memset(longest, 'a', 249);
	longest[249] = '\0';
	memset(too_long, 'a', 250);
	too_long[250] = '\0';
	assert_true(topic_name_valid("orders"));
	assert_true(topic_name_valid("a.b_c-D9"));
	assert_true(topic_name_valid(longest));
	assert_false(topic_name_valid(too_long));
	assert_false(topic_name_valid(""));
	assert_false(topic_name_valid("."));
	assert_false(topic_name_valid(".."));
	assert_false(topic_name_valid(".hidden"));
	assert_false(topic_name_valid("a b"));
	assert_false(topic_name_valid("a/b"));
	assert_false(topic_name_valid("é"));
}

static void test_config_set_get_round_trip(void **state)
{
	struct topic_config c, back;
	char buf[CONFIG_VALUE_MAX + 1], *text, why[160];
	(void)state;

	config_default(&c, 1);
	assert_int_equal(config_set(&c, "retention.ms", "3600000\n", 8), 0);
	assert_int_equal(config_get(&c, "retention.ms", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "3600000");
	assert_int_equal(config_set(&c, "compression.type", "zstd", 4), 0);
	assert_int_equal(c.log.codec, LOG_CODEC_ZSTD);
	assert_int_equal(config_set(&c, "key.separator", "\\t", 2), 0);
	assert_string_equal(c.key_separator, "\t");
	assert_int_equal(config_set(&c, "acks", "all", 3), 0);
	assert_int_equal(c.acks, -1);
	assert_int_equal(config_set(&c, "partitions", "4", 1), 0);

	/* Bad values change nothing. */
	back = c;
	assert_int_equal(config_set(&c, "retention.ms", "abc", 3), -EINVAL);
	assert_int_equal(config_set(&c, "retention.ms", "-2", 2), -EINVAL);
	assert_int_equal(config_set(&c, "retention.ms", " 5", 2), -EINVAL);
	assert_int_equal(config_set(&c, "segment.bytes", "100", 3), -EINVAL);
	assert_int_equal(config_set(&c, "compression.type", "gzip", 4), -EINVAL);
	assert_int_equal(config_set(&c, "partitions", "2", 1), -EINVAL);
	assert_int_equal(config_set(&c, "framing", "xml", 3), -EINVAL);
	assert_int_equal(config_set(&c, "cleanup.policy", "compact", 7), -EINVAL);
	assert_int_equal(config_set(&c, "nope", "1", 1), -ENODATA);
	assert_memory_equal(&c, &back, sizeof(c));

	/* Serialised and parsed back, equal. */
	text = config_format(&c);
	assert_non_null(text);
	config_default(&back, 1);
	assert_int_equal(config_parse(&back, text, why, sizeof(why)), 0);
	assert_memory_equal(&c, &back, sizeof(c));
	free(text);

	/* Reset goes back to the default; partitions cannot be reset. */
	assert_int_equal(config_reset(&c, "retention.ms"), 0);
	assert_int_equal(c.log.retention_ms, 7ll * 24 * 3600 * 1000);
	assert_int_equal(config_reset(&c, "partitions"), -EPERM);
}

/* A stored file is parsed as written: an unknown setting or a bad value is
 * an error with its reason, never dropped for a default. */
static void test_config_parse_refuses_what_it_cannot_keep(void **state)
{
	struct topic_config c;
	char why[160];
	(void)state;

	config_default(&c, 1);
	assert_int_equal(config_parse(&c, "# x\npartitions=3\nretention.ms=5\n",
				      why, sizeof(why)), 0);
	assert_int_equal(c.partitions, 3);
	assert_int_equal(c.log.retention_ms, 5);
	config_default(&c, 1);
	assert_int_equal(config_parse(&c, "retention.ms=5\nfuture.thing=1\n",
				      why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "unknown setting 'future.thing'");
	assert_int_equal(config_parse(&c, "retention.ms=x\n", why,
				      sizeof(why)), -EINVAL);
	assert_string_equal(why, "bad value for setting 'retention.ms'");
	assert_int_equal(config_parse(&c, "\nretention.ms\n", why,
				      sizeof(why)), -EINVAL);
	assert_string_equal(why, "settings line 2 is not name=value");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_murmur2_matches_kafka),
		cmocka_unit_test(test_topic_names),
		cmocka_unit_test(test_config_set_get_round_trip),
		cmocka_unit_test(test_config_parse_refuses_what_it_cannot_keep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
