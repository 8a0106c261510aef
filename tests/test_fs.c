/* Pure parts of fs/: the partitioner, topic names, topic configuration. */
#include "testutil.h"

#include "config.h"
#include "partitioner.h"
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

/* ISO 8601 as people write it is accepted; anything else is -EINVAL. */
/*
 * Group settings use the topic settings' mechanism: the same strict
 * number parser, the same refusal of unknown names and bad values in a
 * stored file, and a file byte for byte as groups always wrote it.
 */
static void test_group_config_is_as_strict_as_topic_config(void **state)
{
	struct group_config c, back;
	char buf[CONFIG_VALUE_MAX + 1], why[160], *text;
	(void)state;

	group_config_default(&c);
	text = group_config_format(&c);
	assert_string_equal(text, "partition.assignment.strategy=range\n"
			    "enable.auto.commit=true\n"
			    "max.poll.interval.ms=300000\n"
			    "auto.offset.reset=earliest\n");
	free(text);
	assert_int_equal(group_config_set(&c, "partition.assignment.strategy",
					  "sticky\n", 7), 0);
	assert_int_equal(c.strategy, GROUP_STICKY);
	assert_int_equal(group_config_set(&c, "auto.offset.reset", "none", 4),
			 0);
	assert_int_equal(group_config_set(&c, "max.poll.interval.ms",
					  "2147483647", 10), 0);
	assert_int_equal(group_config_get(&c, "auto.offset.reset", buf,
					  sizeof(buf)), 0);
	assert_string_equal(buf, "none");

	back = c;
	assert_int_equal(group_config_set(&c, "max.poll.interval.ms", " 100",
					  4), -EINVAL);
	assert_int_equal(group_config_set(&c, "max.poll.interval.ms",
					  "2147483648", 10), -EINVAL);
	assert_int_equal(group_config_set(&c, "max.poll.interval.ms", "0", 1),
			 -EINVAL);
	assert_int_equal(group_config_set(&c, "enable.auto.commit", "yes", 3),
			 -EINVAL);
	assert_int_equal(group_config_set(&c, "auto.offset.reset", "", 0),
			 -EINVAL);
	assert_int_equal(group_config_set(&c, "retention.ms", "1", 1),
			 -ENODATA);
	assert_memory_equal(&c, &back, sizeof(c));

	text = group_config_format(&c);
	group_config_default(&back);
	assert_int_equal(group_config_parse(&back, text, why, sizeof(why)), 0);
	assert_memory_equal(&c, &back, sizeof(c));
	free(text);
	assert_int_equal(group_config_parse(&back, "enable.auto.commit=true\n"
					    "future.thing=1\n", why,
					    sizeof(why)), -EINVAL);
	assert_string_equal(why, "unknown setting 'future.thing'");
	assert_int_equal(group_config_parse(&back, "max.poll.interval.ms= 5\n",
					    why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "bad value for setting 'max.poll.interval.ms'");
	assert_int_equal(group_config_parse(&back, "auto.offset.reset\n", why,
					    sizeof(why)), -EINVAL);
}

static void test_parse_time(void **state)
{
	/* 2026-11-23T10:00:00Z */
	const int64_t base = 1795428000000;
	static const struct { const char *s; int64_t delta_ms; } good[] = {
		{ "2026-11-23T10:00:00Z", 0 },
		{ "2026-11-23T10:00Z", 0 },
		{ "2026-11-23T10:00:00.5Z", 500 },
		{ "2026-11-23T10:00:00,25Z", 250 },
		{ "2026-11-23T10:00:00.123Z", 123 },
		{ "2026-11-23T10:00:00.123456789Z", 123 },
		{ "2026-11-23T11:00:00+01:00", 0 },
		{ "2026-11-23T11:00:00+0100", 0 },
		{ "2026-11-23T11:00:00+01", 0 },
		{ "2026-11-23T04:30:00-05:30", 0 },
		{ "2026-11-23T04:30:00-0530", 0 },
		{ "2026-11-23T10:00:00-00:00", 0 },
		{ "2026-11-23T10:00:00.001+00", 1 },
	};
	static const char *const bad[] = {
		"", "2026", "2026-11-23", "2026-11-23T10", "2026-11-23T10:00:00",
		"2026-11-23T10:00:00+ab:cd", "2026-11-23T10:00:00+1:00",
		"2026-11-23T10:00:00+01:0", "2026-11-23T10:00:00+01:", "2026-11-23T10:00:00+010",
		"2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+01:60",
		"2026-11-23T10:00:00ZZ", "2026-11-23T10:00:00Z ",
		" 2026-11-23T10:00:00Z", "2026-11-23t10:00:00Z",
		"2026-11-23T10:00:00z", "2026-11-23 10:00:00Z",
		"2026-11-23T10:00:00.Z", "2026-11-23T10:00:00.5x", "2026-11-23T10:00:00Z.5",
		"2026-13-23T10:00:00Z", "2026-00-23T10:00:00Z",
		"2026-02-29T10:00:00Z", "2026-04-31T10:00:00Z",
		"2026-11-23T24:00:00Z", "2026-11-23T10:60:00Z",
		"2026-11-23T10:00:60Z", "26-11-23T10:00:00Z", "2026-1-23T10:00:00Z",
		"2026-11-3T10:00:00Z", "2026-11-23T1:00:00Z", "+2026-11-23T10:00:00Z",
		"2026-11-23T10:00:00+01:00:00", "2026-11-23T10:00:0Z",
	};
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = -1;
		assert_int_equal(config_parse_time(good[i].s, &ms), 0);
		assert_int_equal(ms, base + good[i].delta_ms);
	}
	assert_int_equal(config_parse_time("2024-02-29T00:00:00Z", &ms), 0);
	assert_int_equal(ms, 1709164800000);
	assert_int_equal(config_parse_time("1970-01-01T00:00:00Z", &ms), 0);
	assert_int_equal(ms, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		if (config_parse_time(bad[i], &ms) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(ms, 42);
	}
}

/* The one selector syntax of views and group offset resets. */
static void test_selector_parse(void **state)
{
	static const struct {
		const char *s;
		enum selector_kind kind;
		uint64_t n;
		int64_t ms;
	} good[] = {
		{ "0", SEL_OFFSET, 0, 0 },
		{ "42", SEL_OFFSET, 42, 0 },
		{ "99999999999999999999999", SEL_OFFSET, UINT64_MAX, 0 },
		{ "earliest", SEL_EARLIEST, 0, 0 },
		{ "latest", SEL_LATEST, 0, 0 },
		{ "-3", SEL_LAST, 3, 0 },
		{ "-99999999999999999999999", SEL_LAST, UINT64_MAX, 0 },
		{ "t=1700000000000", SEL_TIME, 0, 1700000000000 },
		{ "t=99999999999999999999999", SEL_TIME, 0, INT64_MAX },
		{ "1970-01-01T00:00:01Z", SEL_TIME, 0, 1000 },
	};
	static const char *bad[] = {
		"", "soon", "-", "-x", "t=", "t=-1", "4x", "+4", " 4",
		"Earliest", "1970-01-01T00:00:01", "@5",
	};
	struct selector sel;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(selector_parse(good[i].s, &sel), 0);
		assert_int_equal(sel.kind, good[i].kind);
		assert_true(sel.n == good[i].n);
		assert_true(sel.ms == good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (selector_parse(bad[i], &sel) != -EINVAL)
			fail_msg("selector '%s' accepted", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_murmur2_matches_kafka),
		cmocka_unit_test(test_selector_parse),
		cmocka_unit_test(test_topic_names),
		cmocka_unit_test(test_config_set_get_round_trip),
		cmocka_unit_test(test_config_parse_refuses_what_it_cannot_keep),
		cmocka_unit_test(test_group_config_is_as_strict_as_topic_config),
		cmocka_unit_test(test_parse_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
