"""Configuration through extended attributes (CONTRACT section 7) and the
.status and .metrics files: listing with getfattr, validation (EINVAL,
ENODATA, EPERM), growing partitions, compression, huge values,
persistence across remounts."""
import errno
import os
import re
import unittest

from mountlib import MountTest

P = "user.topicfs."

# Every setting a topic directory lists (docs/FILESYSTEM.md), with its
# default; the names the contract spells out are all among them.
DEFAULTS = {
    "partitions": "1",
    "replication.factor": "1",
    "min.insync.replicas": "1",
    "acks": "all",
    "unclean.leader.election.enable": "false",
    "framing": "lines",
    "key.separator": "",
    "cleanup.policy": "delete",
    "max.message.bytes": "1048588",
    "flush.messages": "9223372036854775807",
    "flush.ms": "10000",
    "write.caching": "true",
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
    "segment.index.bytes": "10485760",
    "index.interval.bytes": "4096",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "compression.type": "none",
    "compression.zstd.level": "3",
}
CONTRACT_SETTINGS = {"retention.ms", "segment.bytes", "compression.type",
                     "partitions", "replication.factor",
                     "min.insync.replicas", "acks",
                     "unclean.leader.election.enable", "framing",
                     "key.separator", "cleanup.policy"}
PARTITION_STATE = ["log_start_offset", "high_watermark", "log_end_offset",
                   "recovery_point", "leader", "leader_epoch", "replicas",
                   "isr"]

GETFATTR_LINE = re.compile(r'^(user\.topicfs\.[A-Za-z0-9._]+)(?:="(.*)")?$')


class XattrTest(MountTest):
    def getfattr_dump(self, path):
        """`getfattr -d -m - path` as {name: value}."""
        out = self.sh(f"getfattr -d -m - {path}").stdout.decode()
        result = {}
        lines = out.splitlines()
        self.assertEqual(lines[0], f"# file: {path}")
        for line in lines[1:]:
            if not line:
                continue
            m = GETFATTR_LINE.match(line)
            self.assertIsNotNone(m, f"unexpected getfattr line {line!r}")
            result[m.group(1)[len(P):]] = self.unescape(m.group(2) or "")
        return result

    @staticmethod
    def unescape(v):
        """Undo getfattr's text encoding (\\\\ and octal \\NNN)."""
        return re.sub(r"\\(\\|[0-7]{3})",
                      lambda m: "\\" if m.group(1) == "\\"
                      else chr(int(m.group(1), 8)), v)

    def get(self, path, name):
        return os.getxattr(self.m.path(path), P + name).decode()

    def set(self, path, name, value):
        os.setxattr(self.m.path(path), P + name,
                    value if isinstance(value, bytes) else value.encode())


class TestListing(XattrTest):
    def test_getfattr_topic_lists_every_setting(self):
        """getfattr -d -m - on a topic lists every user.topicfs.* setting
        with its default value."""
        os.mkdir(self.m.path("t"))
        got = self.getfattr_dump("t")
        self.assertEqual(got, DEFAULTS)
        self.assertLessEqual(CONTRACT_SETTINGS, set(got))
        listed = os.listxattr(self.m.path("t"))
        self.assertEqual(sorted(listed), sorted(P + n for n in DEFAULTS))
        for name, value in DEFAULTS.items():
            self.assertEqual(self.get("t", name), value, name)

    def test_getfattr_partition_lists_state(self):
        """getfattr -d -m - on a partition lists its read-only state, with
        the right offsets."""
        os.mkdir(self.m.path("t"))
        self.sh("printf 'a\\nb\\nc\\n' >> t/0")
        got = self.getfattr_dump("t/0")
        for name in PARTITION_STATE:
            self.assertIn(name, got)
            self.assertRegex(got[name], r"^[0-9]+(,[0-9]+)*$", name)
        self.assertEqual(got["log_start_offset"], "0")
        self.assertEqual(got["high_watermark"], "3")
        self.assertEqual(got["log_end_offset"], "3")
        self.assertLessEqual(int(got["recovery_point"]), 3)
        # fsync moves the recovery point past what the file wrote.
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"d\n")
        os.fsync(fd)
        os.close(fd)
        self.assertEqual(self.get("t/0", "recovery_point"), "4")

    def test_other_files_have_no_settings(self):
        """Root, .produce and .status list no topicfs settings."""
        os.mkdir(self.m.path("t"))
        for path in ("", "t/.produce", ".status", ".metrics"):
            self.assertEqual(os.listxattr(self.m.path(path) if path
                                          else self.m.mnt), [], path)


class TestValidation(XattrTest):
    def setUp(self):
        super().setUp()
        os.mkdir(self.m.path("t"))
        self.sh("echo x >> t/0")

    def test_set_and_get(self):
        """Good values are accepted and read back, by setfattr/getfattr."""
        good = {"retention.ms": "3600000", "retention.bytes": "1048576",
                "segment.bytes": "4096", "compression.type": "lz4",
                "acks": "all", "framing": "binary",
                "unclean.leader.election.enable": "true",
                "max.message.bytes": "2000", "flush.ms": "500",
                "cleanup.policy": "delete", "compression.zstd.level": "19"}
        for name, value in good.items():
            self.sh(f"setfattr -n {P}{name} -v '{value}' t")
            self.assertEqual(self.get("t", name), value, name)
            out = self.sh(f"getfattr --only-values -n {P}{name} t").stdout
            self.assertEqual(out.decode(), value)
        for value in ("0", "1"):
            self.set("t", "acks", value)
            self.assertEqual(self.get("t", "acks"), value)
        self.set("t", "write.caching", "false")
        self.assertEqual(self.get("t", "write.caching"), "false")
        # acks=-1 is the same as all; a trailing newline is tolerated.
        self.set("t", "acks", "-1")
        self.assertEqual(self.get("t", "acks"), "all")
        self.set("t", "retention.ms", "-1\n")
        self.assertEqual(self.get("t", "retention.ms"), "-1")

    def test_bad_values_einval_unchanged(self):
        """A bad value: EINVAL ("Invalid argument") and nothing changes."""
        bad = [("retention.ms", "abc"), ("retention.ms", "-2"),
               ("retention.ms", "12x"), ("retention.ms", ""),
               ("retention.ms", " 5"), ("retention.ms",
                                        "99999999999999999999999"),
               ("segment.bytes", "100"), ("segment.bytes", "-1"),
               ("compression.type", "gzip"), ("compression.type", "ZSTD"),
               ("acks", "2"), ("acks", "-2"), ("acks", "ALL"),
               ("write.caching", "no"), ("framing", "json"),
               ("partitions", "0"), ("partitions", "abc"),
               ("partitions", "100000"),
               ("unclean.leader.election.enable", "yes"),
               ("min.insync.replicas", "2"), ("replication.factor", "0"),
               ("cleanup.policy", "compact"), ("max.message.bytes", "0"),
               ("key.separator", "a\\nb"), ("key.separator", "123456789"),
               ("compression.zstd.level", "23"), ("flush.ms", "0")]
        before = self.getfattr_dump("t")
        for name, value in bad:
            with self.subTest(name=name, value=value):
                self.assertErrno(errno.EINVAL, self.set, "t", name, value)
                self.assertEqual(self.getfattr_dump("t"), before)
        r = self.sh(f"setfattr -n {P}retention.ms -v bogus t", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Invalid argument", r.stderr)
        self.assertEqual(self.getfattr_dump("t"), before)
        self.assertEqual(self.read("t", "0"), b"x\n")

    def test_unknown_name_enodata(self):
        """An unknown name under user.topicfs.: ENODATA on get and set."""
        for name in ("nope", "retention", "retention.ms.x", "Retention.ms",
                     "log_end_offset"):
            with self.subTest(name=name):
                self.assertErrno(errno.ENODATA, os.getxattr,
                                 self.m.path("t"), P + name)
                self.assertErrno(errno.ENODATA, self.set, "t", name, "1")
        r = self.sh(f"getfattr -n {P}nope t", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"No such attribute", r.stderr)
        self.assertEqual(self.getfattr_dump("t"), DEFAULTS)
        # On a partition too.
        self.assertErrno(errno.ENODATA, os.getxattr, self.m.path("t", "0"),
                         P + "retention.ms")

    def test_other_namespace(self):
        """Names outside user.topicfs. are bad names (CONTRACT 7): not
        stored, ENODATA on get and on set, never ENOSYS; so is a setting
        on a file that has none."""
        self.assertErrno(errno.ENODATA, os.getxattr, self.m.path("t"),
                         "user.other")
        self.assertErrno(errno.ENODATA, os.setxattr, self.m.path("t"),
                         "user.other", b"1")
        self.assertNotIn("user.other", os.listxattr(self.m.path("t")))
        self.assertErrno(errno.ENODATA, os.setxattr,
                         self.m.path("t", "0@0"), P + "retention.ms", b"1")

    def test_read_only_partition_state_eperm(self):
        """Partition state attributes are read-only: EPERM on set/remove."""
        before = self.getfattr_dump("t/0")
        for name in PARTITION_STATE:
            with self.subTest(name=name):
                self.assertErrno(errno.EPERM, self.set, "t/0", name, "5")
                self.assertErrno(errno.EPERM, os.removexattr,
                                 self.m.path("t", "0"), P + name)
        r = self.sh(f"setfattr -n {P}high_watermark -v 0 t/0", check=False)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertEqual(self.getfattr_dump("t/0"), before)

    def test_removexattr_resets_default(self):
        """removexattr (setfattr -x) resets a setting to its default;
        partitions cannot be reset."""
        self.set("t", "retention.ms", "1000")
        self.sh(f"setfattr -x {P}retention.ms t")
        self.assertEqual(self.get("t", "retention.ms"), "604800000")
        self.assertErrno(errno.EPERM, os.removexattr, self.m.path("t"),
                         P + "partitions")

    def test_huge_value_refused(self):
        """A 10 KiB (and a 60 KiB) value: an error, nothing changes."""
        before = self.getfattr_dump("t")
        for size in (10 * 1024, 60 * 1024):
            for name in ("retention.ms", "key.separator", "compression.type"):
                with self.subTest(size=size, name=name):
                    with self.assertRaises(OSError) as cm:
                        self.set("t", name, "9" * size)
                    self.assertEqual(cm.exception.errno, errno.EINVAL)
                    self.assertEqual(self.getfattr_dump("t"), before)
        r = self.sh(f"setfattr -n {P}retention.ms -v {'1' * 10240} t",
                    check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.getfattr_dump("t"), before)
        self.sh("echo still works >> t/0")
        self.assertEqual(self.read("t", "0"), b"x\nstill works\n")


class TestPartitions(XattrTest):
    def test_partitions_grow(self):
        """partitions=3 on a 1-partition topic creates files 1 and 2;
        data in 0 is kept; the new files are empty and writable."""
        os.mkdir(self.m.path("t"))
        self.sh("echo zero >> t/0")
        self.sh(f"setfattr -n {P}partitions -v 3 t")
        self.assertEqual(self.sh("ls t").stdout, b"0\n1\n2\n")
        self.assertEqual(self.get("t", "partitions"), "3")
        self.assertEqual(self.read("t", "0"), b"zero\n")
        self.assertEqual(self.read("t", "2"), b"")
        self.sh("echo two >> t/2")
        self.assertEqual(self.read("t", "2"), b"two\n")
        self.assertEqual(self.get("t/2", "log_end_offset"), "1")
        # Same value again is fine; .produce now spreads over 3.
        self.set("t", "partitions", "3")
        for i in range(6):
            self.append(b"p%d\n" % i, "t", ".produce")
        self.assertEqual(sum(int(self.get(f"t/{p}", "log_end_offset"))
                             for p in range(3)), 8)

    def test_partitions_cannot_shrink(self):
        """Shrinking: EINVAL, every file and record kept."""
        os.mkdir(self.m.path("t"))
        self.set("t", "partitions", "4")
        self.sh("echo three >> t/3")
        for value in ("3", "1"):
            self.assertErrno(errno.EINVAL, self.set, "t", "partitions", value)
        r = self.sh(f"setfattr -n {P}partitions -v 2 t", check=False)
        self.assertIn(b"Invalid argument", r.stderr)
        self.assertEqual(self.sh("ls t").stdout, b"0\n1\n2\n3\n")
        self.assertEqual(self.read("t", "3"), b"three\n")
        self.assertEqual(self.get("t", "partitions"), "4")


class TestCompression(XattrTest):
    def data(self, tag, n):
        return [b"%s %06d %s\n" % (tag, i, b"abcdefgh" * (i % 13))
                for i in range(n)]

    def test_codecs_round_trip(self):
        """compression.type=zstd / lz4 from the start: appends read back
        exactly, and the stored size is smaller than the data."""
        for codec in ("zstd", "lz4"):
            with self.subTest(codec=codec):
                os.mkdir(self.m.path(codec))
                self.sh(f"setfattr -n {P}compression.type -v {codec} {codec}")
                recs = self.data(codec.encode(), 20000)
                fd = os.open(self.m.path(codec, "0"),
                             os.O_WRONLY | os.O_APPEND)
                try:
                    for i in range(0, len(recs), 500):
                        os.write(fd, b"".join(recs[i:i + 500]))
                finally:
                    os.close(fd)
                data = b"".join(recs)
                self.assertEqual(self.sh(f"cat {codec}/0").stdout, data)
                self.assertEqual(os.stat(self.m.path(codec, "0")).st_size,
                                 len(data))
                self.assertLess(int(self.get(f"{codec}/0", "size_bytes")),
                                len(data) // 2)
                self.assertEqual(self.sh(f"tail -n 3 {codec}/0").stdout,
                                 b"".join(recs[-3:]))
                self.assertEqual(
                    self.sh(f"dd if={codec}/0 bs=1000 skip=321 count=7 "
                            "status=none").stdout, data[321000:328000])
                self.assertEqual(self.read(codec, "0@12345"),
                                 b"".join(recs[12345:]))

    def test_codec_changes_midway(self):
        """none -> zstd -> lz4 -> none on a topic with data: every record
        reads back exactly, also after a remount."""
        os.mkdir(self.m.path("t"))
        recs = []
        for i, codec in enumerate(("none", "zstd", "lz4", "none", "zstd")):
            self.set("t", "compression.type", codec)
            part = self.data(codec.encode(), 700 + i)
            self.append(b"".join(part[:300]), "t", "0")
            for r in part[300:]:
                self.append(r, "t", "0")
            recs += part
            self.assertEqual(self.read("t", "0"), b"".join(recs), codec)
        self.remount()
        self.assertEqual(self.read("t", "0"), b"".join(recs))
        self.assertEqual(self.get("t", "compression.type"), "zstd")
        self.assertEqual(self.get("t/0", "log_end_offset"), str(len(recs)))


class TestPersistence(XattrTest):
    def test_settings_survive_remount(self):
        """Every changed setting is the same after a remount."""
        os.mkdir(self.m.path("t"))
        os.mkdir(self.m.path("u"))
        changes = {"retention.ms": "123456", "retention.bytes": "999999",
                   "segment.bytes": "65536", "compression.type": "lz4",
                   "acks": "all", "key.separator": "\\t",
                   "max.message.bytes": "5000", "partitions": "3",
                   "unclean.leader.election.enable": "true",
                   "flush.messages": "100", "segment.ms": "3600000"}
        for name, value in changes.items():
            self.set("t", name, value if name != "key.separator" else "\t")
        self.set("u", "framing", "binary")
        before_t = self.getfattr_dump("t")
        before_u = self.getfattr_dump("u")
        self.assertEqual({k: before_t[k] for k in changes}, changes)
        self.remount()
        self.assertEqual(self.getfattr_dump("t"), before_t)
        self.assertEqual(self.getfattr_dump("u"), before_u)
        self.assertEqual(self.sh("ls t").stdout, b"0\n1\n2\n")
        # They still act: max.message.bytes=5000 refuses a bigger record.
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            self.assertErrno(errno.EMSGSIZE, os.write, fd, b"y" * 6000 + b"\n")
        finally:
            os.close(fd)
        self.assertEqual(self.read("t", "0"), b"")


# .status partition lines (kafka-topics --describe; test_reports checks
# the layout) as the columns these tests look at.
STATUS_FIELDS = {"LogStartOffset": "LOG-START", "HighWatermark": "HW",
                 "LogEndOffset": "LEO", "Size": "SIZE", "Codec": "CODEC"}


class TestStatus(XattrTest):
    mount_opts = ("num.partitions=2",)

    def status(self):
        lines = self.sh("cat .status").stdout.decode().splitlines()
        rows = {}
        for line in lines:
            if not line.startswith("\t"):
                self.assertTrue(line.startswith("Topic: "), line)
                continue
            f = dict(kv.split(": ", 1) for kv in line[1:].split("\t"))
            key = (f["Topic"], int(f["Partition"]))
            self.assertNotIn(key, rows, "row twice")
            rows[key] = {STATUS_FIELDS[k]: v for k, v in f.items()
                         if k in STATUS_FIELDS}
        return rows

    def test_status_rows(self):
        """.status has one row per partition with the right HW and LEO."""
        self.assertEqual(self.status(), {})
        os.mkdir(self.m.path("a"))
        os.mkdir(self.m.path("b"))
        self.set("b", "partitions", "3")
        self.set("b", "compression.type", "zstd")
        self.sh("for i in 1 2 3 4 5; do echo a$i >> a/0; done; "
                "echo x >> a/1; printf 'q\\nr\\n' >> b/2")
        rows = self.status()
        self.assertEqual(set(rows), {("a", 0), ("a", 1), ("b", 0), ("b", 1),
                                     ("b", 2)})
        expect = {("a", 0): 5, ("a", 1): 1, ("b", 0): 0, ("b", 1): 0,
                  ("b", 2): 2}
        for key, n in expect.items():
            self.assertEqual(rows[key]["HW"], str(n), key)
            self.assertEqual(rows[key]["LEO"], str(n), key)
            self.assertEqual(rows[key]["LOG-START"], "0", key)
        self.assertEqual(rows[("a", 0)]["SIZE"], "15")
        self.assertEqual(rows[("a", 0)]["CODEC"], "none")
        self.assertEqual(rows[("b", 2)]["CODEC"], "zstd")
        # Generated at open: it follows later appends and deletions.
        self.sh("echo more >> a/1")
        os.rmdir(self.m.path("b"))
        rows = self.status()
        self.assertEqual(set(rows), {("a", 0), ("a", 1)})
        self.assertEqual(rows[("a", 1)]["LEO"], "2")

    def test_status_and_metrics_read_only(self):
        """.status and .metrics cannot be written."""
        for name in (".status", ".metrics"):
            r = self.sh(f"echo x >> {name}", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertErrno(errno.EACCES, os.open,
                             self.m.path(name), os.O_WRONLY | os.O_APPEND)


SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'                        # name
    r'(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'    # labels
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})?'
    r' (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class TestMetrics(XattrTest):
    mount_opts = ("num.partitions=2",)

    def metrics(self):
        """Parse .metrics strictly; returns {(name, labels): value}."""
        text = self.sh("cat .metrics").stdout.decode()
        self.assertTrue(text.endswith("\n"))
        types, helps, samples = {}, set(), {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split()[2])
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                self.assertIn(kind, ("counter", "gauge", "histogram",
                                     "summary", "untyped"))
                self.assertNotIn(name, types, "TYPE twice")
                types[name] = kind
                continue
            self.assertFalse(line.startswith("#") or not line.strip(),
                             f"stray line {line!r}")
            m = SAMPLE.match(line)
            self.assertIsNotNone(m, f"not Prometheus text: {line!r}")
            name = m.group(1)
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertTrue(name in types or family in types,
                            f"{name} has no TYPE line")
            if types.get(name) == "counter" or family != name:
                self.assertGreaterEqual(float(m.group(3)), 0)
            self.assertNotIn((name, labels), samples, "sample twice")
            samples[(name, labels)] = float(m.group(3))
        self.assertEqual(set(types), helps, "HELP and TYPE differ")
        # Histograms: cumulative buckets, +Inf equals _count.
        for fam, kind in types.items():
            if kind != "histogram":
                continue
            groups = {}
            for (name, labels), v in samples.items():
                if name == fam + "_bucket":
                    le = dict(labels)["le"]
                    rest = tuple(l for l in labels if l[0] != "le")
                    groups.setdefault(rest, []).append(
                        (float("inf") if le == "+Inf" else float(le), v))
            for rest, buckets in groups.items():
                buckets.sort()
                counts = [v for _, v in buckets]
                self.assertEqual(counts, sorted(counts), "not cumulative")
                self.assertEqual(buckets[-1][0], float("inf"))
                self.assertEqual(buckets[-1][1],
                                 samples[(fam + "_count", rest)])
        return samples

    @staticmethod
    def val(samples, name, topic, part):
        return samples.get((name, (("partition", str(part)),
                                   ("topic", topic))))

    def test_metrics_format_and_counters(self):
        """.metrics is valid Prometheus text; bytes_in and records_in grow
        by exactly what was appended; HW/LEO gauges follow."""
        self.metrics()
        os.mkdir(self.m.path("t"))
        s0 = self.metrics()
        for p in (0, 1):
            self.assertEqual(self.val(s0, "topicfs_bytes_in_total", "t", p), 0)
            self.assertEqual(self.val(s0, "topicfs_records_in_total", "t", p),
                             0)
        self.sh("printf 'hello\\nworld!\\n' >> t/0; echo 1234567 >> t/1")
        self.append(b"abc\n" * 10, "t", "0")
        s1 = self.metrics()
        self.assertEqual(self.val(s1, "topicfs_bytes_in_total", "t", 0),
                         13 + 40)
        self.assertEqual(self.val(s1, "topicfs_records_in_total", "t", 0), 12)
        self.assertEqual(self.val(s1, "topicfs_bytes_in_total", "t", 1), 8)
        self.assertEqual(self.val(s1, "topicfs_records_in_total", "t", 1), 1)
        self.assertEqual(self.val(s1, "topicfs_high_watermark", "t", 0), 12)
        self.assertEqual(self.val(s1, "topicfs_log_end_offset", "t", 1), 1)
        count = self.val(s1, "topicfs_append_latency_seconds_count", "t", 0)
        self.assertGreaterEqual(count, 2)
        # Through .produce: the counters of the chosen partitions grow.
        for i in range(4):
            self.append(b"pp%d\n" % i, "t", ".produce")
        s2 = self.metrics()
        self.assertEqual(
            sum(self.val(s2, "topicfs_bytes_in_total", "t", p)
                - self.val(s1, "topicfs_bytes_in_total", "t", p)
                for p in (0, 1)), 16)
        self.assertEqual(
            sum(self.val(s2, "topicfs_records_in_total", "t", p)
                - self.val(s1, "topicfs_records_in_total", "t", p)
                for p in (0, 1)), 4)
        # Reading moves bytes_out.
        out0 = self.val(s2, "topicfs_bytes_out_total", "t", 0)
        data = self.read("t", "0@0")
        s3 = self.metrics()
        self.assertEqual(self.val(s3, "topicfs_bytes_out_total", "t", 0),
                         out0 + len(data))

    def test_records_out(self):
        """records_out counts the records read whole: by cat, by a reader
        still holding its file open, never a record cut by the read's
        edge, and by consumer group members."""
        os.mkdir(self.m.path("t"))
        recs = [b"record %04d %s\n" % (i, b"x" * (i % 50)) for i in range(3000)]
        self.append(b"".join(recs), "t", "0")
        def out(s):
            return (self.val(s, "topicfs_records_out_total", "t", 0),
                    self.val(s, "topicfs_bytes_out_total", "t", 0))
        r0, b0 = out(self.metrics())
        self.assertEqual(r0, 0)
        self.sh("cat t/0 > /dev/null")
        r1, b1 = out(self.metrics())
        self.assertEqual((r1, b1 - b0), (3000, len(b"".join(recs))))
        # An open file that read records 0..9 and 10 bytes of record 10.
        cut = len(b"".join(recs[:10])) + 10
        with open(self.m.path("t", "0"), "rb", buffering=0) as f:
            self.assertEqual(f.read(cut), b"".join(recs)[:cut])
            r2, _ = out(self.metrics())
            self.assertEqual(r2, r1 + 10)
            # Reading on counts record 10 once, and the next ones.
            f.read(len(recs[10]) - 10 + len(recs[11]))
            r3, _ = out(self.metrics())
            self.assertEqual(r3, r1 + 12)
        self.assertEqual(out(self.metrics())[0], r1 + 12)
        # A reader that starts inside record 5 (dd skip=) and stops at the
        # end of record 7 has read records 6 and 7 whole.
        with open(self.m.path("t", "0"), "rb", buffering=0) as f:
            f.seek(len(b"".join(recs[:5])) + 3)
            f.read(len(b"".join(recs[5:8])) - 3)
        self.assertEqual(out(self.metrics())[0], r1 + 14)
        # A read view from offset 2990 to the end: 10 records.
        self.read("t", "0@2990")
        self.assertEqual(out(self.metrics())[0], r1 + 24)
        # A group member reads all 3000.
        self.assertEqual(self.read("t", ".groups", "g"), b"".join(recs))
        self.assertEqual(out(self.metrics())[0], r1 + 24 + 3000)

    def test_metrics_label_per_topic(self):
        """Each partition of each topic has its own series."""
        for name in ("a", "b.c", "d-e_f"):
            os.mkdir(self.m.path(name))
        s = self.metrics()
        for name in ("a", "b.c", "d-e_f"):
            for p in (0, 1):
                self.assertIsNotNone(
                    self.val(s, "topicfs_high_watermark", name, p), name)


if __name__ == "__main__":
    unittest.main()
