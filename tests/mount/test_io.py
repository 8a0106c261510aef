"""Writing (CONTRACT sections 3 and 4): framing, partial lines, binary
frames, concurrent writers, .produce with Kafka's partitioner, the
TOPICFS_IOC_LAST_WRITE ioctl and 0-byte writes."""
import errno
import os
import re
import struct
import subprocess
import sys
import unittest

from mountlib import MountTest, need, wait_for

MAX_MESSAGE_BYTES = 1048588  # Kafka's default, the topic default

HERE = os.path.dirname(os.path.abspath(__file__))
LAST_WRITE = os.environ.get("TOPICFS_LAST_WRITE", "")


def murmur2(data):
    """Kafka's Utils.murmur2 (Java client), written from the Java source."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    rem = length % 4
    if rem >= 3:
        h ^= data[tail + 2] << 16
    if rem >= 2:
        h ^= data[tail + 1] << 8
    if rem >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key, n):
    return (murmur2(key) & 0x7FFFFFFF) % n


# A writer process: writes `count` lines "w<id>-<i>-<pad>\n" to fd 1 (the
# file the shell opened with >>), cutting its byte stream at pseudo-random
# points so that most write() calls end inside a line.
WRITER = r"""
import os, random, sys
w, count, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(w)
lines = [b"w%d-%05d-%s\n" % (w, i, b"p" * (i % 23)) for i in range(count)]
if mode == "lines":      # one write() per line
    for l in lines:
        os.write(1, l)
else:                    # cut anywhere: partial lines across write()s
    data = b"".join(lines)
    at = 0
    while at < len(data):
        n = rnd.randint(1, 160)
        at += os.write(1, data[at:at + n])
"""

LINE_RE = re.compile(rb"^w(\d+)-(\d{5})-(p*)\n$")


class IoTest(MountTest):
    def topic(self, name="t", partitions=None, **settings):
        os.mkdir(self.m.path(name))
        if partitions is not None:
            os.setxattr(self.m.path(name), "user.topicfs.partitions",
                        str(partitions).encode())
        for k, v in settings.items():
            os.setxattr(self.m.path(name),
                        "user.topicfs." + k.replace("_", "."),
                        v if isinstance(v, bytes) else str(v).encode())
        return name

    def xattr(self, *parts, name):
        return os.getxattr(self.m.path(*parts), "user.topicfs." + name)

    def leo(self, *parts):
        return int(self.xattr(*parts, name="log_end_offset"))

    def lines_of(self, *parts):
        return self.read(*parts).splitlines(keepends=True)


class TestLinesFraming(IoTest):
    RECORDS = [
        b"plain\n",
        b"\n",
        b"with\rcarriage\rreturns\r\n",
        b"\r\n",
        b"tab\tseparated\tline\n",
        "ünïcödé ✓ 日本語 🎉 Ελληνικά\n".encode(),
        b"nul\x00inside\x00\n",
        bytes(range(1, 10)) + bytes(range(11, 32)) + b"\x7f\n",
        b"invalid utf-8 \xff\xfe\xc3\n",
        b"L" * 100_000 + b"\n",
        b"M" * 999_999 + b"\n",
        b"N" * (MAX_MESSAGE_BYTES - 1) + b"\n",  # exactly max.message.bytes
        b"last\n",
    ]

    def test_each_line_one_record_byte_for_byte(self):
        """Lines written one per write() read back byte for byte, one
        record each."""
        self.topic()
        for rec in self.RECORDS:
            self.assertEqual(self.append(rec, "t", "0"), len(rec))
        data = b"".join(self.RECORDS)
        self.assertEqual(self.read("t", "0"), data)
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, len(data))
        self.assertEqual(self.leo("t", "0"), len(self.RECORDS))
        # Each record can be addressed by its offset.
        for off in (0, 2, 5, 9, 11, 12):
            with open(self.m.path("t", f"0@{off}"), "rb") as f:
                self.assertEqual(f.read(len(self.RECORDS[off])),
                                 self.RECORDS[off], off)

    def test_many_lines_one_write_and_cat(self):
        """The same lines in one write(), and through `cat >>` (which
        splits long lines across writes): the same records."""
        self.topic()
        data = b"".join(self.RECORDS)
        self.append(data, "t", "0")
        src = os.path.join(self.tmp, "src")
        with open(src, "wb") as f:
            f.write(data)
        self.sh(f"cat {src} >> t/0")
        self.assertEqual(self.read("t", "0"), data + data)
        self.assertEqual(self.leo("t", "0"), 2 * len(self.RECORDS))
        self.assertEqual(self.read("t", "0@%d" % len(self.RECORDS)), data)

    def test_echo_printf_shell(self):
        """`echo` and `printf` with \\r and UTF-8 through the shell."""
        self.topic()
        self.sh("echo 'héllo wörld' >> t/0; printf 'a\\r\\nb\\n' >> t/0;"
                " echo >> t/0")
        self.assertEqual(self.read("t", "0"),
                         "héllo wörld\n".encode() + b"a\r\nb\n\n")
        self.assertEqual(self.leo("t", "0"), 4)


class TestPartialLines(IoTest):
    def reader_sees(self):
        return self.read("t", "0")

    def test_partial_line_until_close(self):
        """A final partial line is invisible to another reader until the
        writer closes the file; then it is one record."""
        self.topic()
        self.sh("echo before >> t/0")
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            self.assertEqual(os.write(fd, b"half a "), 7)
            self.assertEqual(self.reader_sees(), b"before\n")
            self.assertEqual(os.stat(self.m.path("t", "0")).st_size, 7)
            self.assertEqual(self.leo("t", "0"), 1)
            os.write(fd, b"line\nand the")
            self.assertEqual(self.reader_sees(), b"before\nhalf a line\n")
            os.write(fd, b" rest")
            self.assertEqual(self.reader_sees(), b"before\nhalf a line\n")
            self.assertEqual(self.leo("t", "0"), 2)
        finally:
            os.close(fd)
        self.assertEqual(self.reader_sees(),
                         b"before\nhalf a line\nand the rest")
        self.assertEqual(self.leo("t", "0"), 3)
        self.assertEqual(self.read("t", "0@2"), b"and the rest")

    def test_partial_line_until_fsync(self):
        """fsync() turns the buffered partial line into a record at once."""
        self.topic()
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"no newline yet")
            self.assertEqual(self.reader_sees(), b"")
            self.assertEqual(self.leo("t", "0"), 0)
            os.fsync(fd)
            self.assertEqual(self.reader_sees(), b"no newline yet")
            self.assertEqual(self.leo("t", "0"), 1)
            # What follows is a new record.
            os.write(fd, b"next\n")
            self.assertEqual(self.leo("t", "0"), 2)
            os.write(fd, b"again")
            os.fdatasync(fd)
            self.assertEqual(self.leo("t", "0"), 3)
        finally:
            os.close(fd)
        self.assertEqual(self.reader_sees(), b"no newline yetnext\nagain")
        self.assertEqual(self.read("t", "0@1"), b"next\nagain")
        self.assertEqual(self.leo("t", "0"), 3)

    def test_partial_lines_are_per_open_file(self):
        """Two open files each keep their own partial line."""
        self.topic()
        a = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        b = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(a, b"aaa")
            os.write(b, b"bbb")
            os.write(a, b"AAA\n")
            self.assertEqual(self.reader_sees(), b"aaaAAA\n")
            os.write(b, b"BBB\nccc")
            self.assertEqual(self.reader_sees(), b"aaaAAA\nbbbBBB\n")
        finally:
            os.close(a)
            os.close(b)
        self.assertEqual(self.reader_sees(), b"aaaAAA\nbbbBBB\nccc")

    def test_reader_sees_stored_bytes_after_partial_line(self):
        """Minimal case: partial line, a reader, the rest of the line, a
        reader: the second reader must see what the daemon stored."""
        self.topic()
        self.sh("echo before >> t/0")
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"half a ")
            self.assertEqual(self.sh("cat t/0").stdout, b"before\n")
            os.write(fd, b"line\nand the")
            self.assertEqual(self.sh("cat t/0").stdout,
                             b"before\nhalf a line\n")
        finally:
            os.close(fd)
        self.assertEqual(self.sh("cat t/0").stdout,
                         b"before\nhalf a line\nand the")

    def test_partial_line_through_produce(self):
        """.produce buffers a partial line the same way; fsync() on it
        makes the line a record and everything written durable (the
        partition's recovery point reaches its end)."""
        self.topic()
        fd = os.open(self.m.path("t", ".produce"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"pro")
            self.assertEqual(self.reader_sees(), b"")
            os.write(fd, b"duced\nrest")
            self.assertEqual(self.reader_sees(), b"produced\n")
            os.fsync(fd)
            self.assertEqual(self.reader_sees(), b"produced\nrest")
            self.assertEqual(self.leo("t", "0"), 2)
            self.assertEqual(self.xattr("t", "0", name="recovery_point"),
                             b"2")
            os.write(fd, b"more")
        finally:
            os.close(fd)
        self.assertEqual(self.reader_sees(), b"produced\nrestmore")


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


class TestBinaryFraming(IoTest):
    FRAMES = [b"\x00", b"hello", b"\x00\x00\x00\x00",
              b"line\nwith\nnewlines\n", bytes(range(256)),
              b"\xff" * 70_000, b"x"]

    def test_frames_round_trip(self):
        """Length-prefixed frames with NUL bytes read back exactly, one
        record per frame, also when frames are split across write()s."""
        self.topic(framing="binary")
        self.assertEqual(self.xattr("t", name="framing"), b"binary")
        data = b"".join(frame(p) for p in self.FRAMES)
        # One frame per write.
        for p in self.FRAMES:
            self.append(frame(p), "t", "0")
        # All in one write.
        self.append(data, "t", "0")
        # Cut at awkward places (inside the length prefix too).
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            at = 0
            for n in (1, 2, 3, 5, 7, 11, 4099, 13, 3, 2):
                os.write(fd, data[at:at + n])
                at += n
            os.write(fd, data[at:])
        finally:
            os.close(fd)
        self.assertEqual(self.read("t", "0"), data * 3)
        self.assertEqual(self.leo("t", "0"), 3 * len(self.FRAMES))
        self.assertEqual(self.read("t", "0@%d" % (len(self.FRAMES) - 1)),
                         frame(b"x") + data * 2)

    def test_empty_frame(self):
        """A frame of length 0 is a record too."""
        self.topic(framing="binary")
        self.append(frame(b"") + frame(b"a"), "t", "0")
        self.assertEqual(self.read("t", "0"), frame(b"") + frame(b"a"))
        self.assertEqual(self.leo("t", "0"), 2)

    def test_frame_cut_short_at_close(self):
        """A frame still incomplete at close: close() fails with EINVAL and
        nothing of it is stored; whole frames before it are."""
        self.topic(framing="binary")
        for tail in (frame(b"0123456789")[:9], b"\x00\x00", b"\x00"):
            with self.subTest(tail=tail):
                before = self.read("t", "0")
                leo = self.leo("t", "0")
                fd = os.open(self.m.path("t", "0"),
                             os.O_WRONLY | os.O_APPEND)
                os.write(fd, frame(b"whole") + tail)
                self.assertErrno(errno.EINVAL, os.close, fd)
                self.assertEqual(self.read("t", "0"),
                                 before + frame(b"whole"))
                self.assertEqual(self.leo("t", "0"), leo + 1)
        # The topic keeps working.
        self.append(frame(b"after"), "t", "0")
        self.assertEqual(self.read("t", "0@3"), frame(b"after"))

    def test_incomplete_frame_invisible_until_complete(self):
        """An incomplete frame is buffered, not visible, then completed."""
        self.topic(framing="binary")
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            f = frame(b"abcdef")
            os.write(fd, f[:6])
            self.assertEqual(self.read("t", "0"), b"")
            os.write(fd, f[6:])
            self.assertEqual(self.read("t", "0"), f)
        finally:
            os.close(fd)


class TestConcurrentWriters(IoTest):
    mount_opts = ("num.partitions=4",)
    WRITERS = 8
    LINES = 10_000

    def run_writers(self, target, modes):
        procs = []
        for w, mode in enumerate(modes):
            procs.append(subprocess.Popen(
                ["bash", "-c",
                 f'exec "$0" -c "$1" {w} {self.LINES} {mode} >> {target}',
                 sys.executable, WRITER],
                cwd=self.m.mnt, stderr=subprocess.PIPE))
        for p in procs:
            _, err = p.communicate(timeout=300)
            self.assertEqual(p.returncode, 0, err)

    def check(self, partitions, total):
        """Every line exactly once; per partition each writer in order."""
        seen = {}
        for p in partitions:
            last = {}
            for line in self.lines_of("t", p):
                m = LINE_RE.match(line)
                self.assertIsNotNone(m, f"mangled line in {p}: {line[:80]!r}")
                w, i = int(m.group(1)), int(m.group(2))
                self.assertEqual(len(m.group(3)), i % 23, line)
                self.assertNotIn((w, i), seen, f"line {line!r} twice")
                seen[(w, i)] = p
                self.assertGreater(i, last.get(w, -1),
                                   f"writer {w} out of order in {p}")
                last[w] = i
        self.assertEqual(len(seen), total)
        return seen

    def test_8_writers_append_one_partition(self):
        """8 processes x 10,000 lines `>>` one partition file (half of
        them one write per line, half cutting lines across writes)."""
        self.topic()
        modes = ["lines", "chunks"] * (self.WRITERS // 2)
        self.run_writers("t/0", modes)
        self.check(["0"], self.WRITERS * self.LINES)
        self.assertEqual(self.leo("t", "0"), self.WRITERS * self.LINES)
        for p in ("1", "2", "3"):
            self.assertEqual(self.read("t", p), b"")

    def test_8_writers_through_produce(self):
        """8 processes x 10,000 lines `>>` .produce of a 4-partition topic:
        every line once, each writer's lines in order per partition, and
        every partition used."""
        self.topic()
        self.run_writers("t/.produce", ["chunks"] * self.WRITERS)
        seen = self.check(["0", "1", "2", "3"], self.WRITERS * self.LINES)
        used = set(seen.values())
        self.assertEqual(used, {"0", "1", "2", "3"})
        self.assertEqual(sum(self.leo("t", p) for p in "0123"),
                         self.WRITERS * self.LINES)

    def test_one_big_write_races_small_writers(self):
        """One write() of ~3 MiB of lines (split by the kernel into several
        FUSE requests) while 3 other processes append: no line is cut or
        interleaved, the big write's lines stay in order; through
        .produce they all go to one partition (one write() call)."""
        self.topic()
        for target in ("0", ".produce"):
            with self.subTest(target=target):
                self._big_write(target)

    def _big_write(self, target):
        start = {p: len(self.read("t", p)) for p in "0123"}
        big = b"".join(b"big-%06d-%s\n" % (i, b"q" * (i % 50))
                       for i in range(90_000))
        self.assertGreater(len(big), 3 << 20)
        small = [subprocess.Popen(
            ["bash", "-c",
             f'exec "$0" -c "$1" {w} 3000 lines >> t/{target}',
             sys.executable, WRITER], cwd=self.m.mnt,
            stderr=subprocess.PIPE) for w in range(3)]
        # Let the small writers get going before the big write.
        wait_for(lambda: sum(os.stat(self.m.path("t", p)).st_size
                             - start[p] for p in "0123") > 2000,
                 what="small writers to start")
        fd = os.open(self.m.path("t", target), os.O_WRONLY | os.O_APPEND)
        try:
            self.assertEqual(os.write(fd, big), len(big))
        finally:
            os.close(fd)
        for p in small:
            _, err = p.communicate(timeout=300)
            self.assertEqual(p.returncode, 0, err)
        bigs = []
        smalls = set()
        for p in "0123":
            for line in self.read("t", p)[start[p]:].splitlines(True):
                if line.startswith(b"big-"):
                    self.assertRegex(line, rb"^big-\d{6}-q*\n$")
                    i = int(line[4:10])
                    self.assertEqual(len(line), 12 + i % 50, line)
                    bigs.append((p, i))
                else:
                    m = LINE_RE.match(line)
                    self.assertIsNotNone(m, line[:80])
                    self.assertNotIn(line, smalls)
                    smalls.add(line)
        self.assertEqual(len(smalls), 3 * 3000)
        self.assertEqual(sorted(i for _, i in bigs), list(range(90_000)))
        for p in "0123":
            mine = [i for q, i in bigs if q == p]
            self.assertEqual(mine, sorted(mine), f"big write order in {p}")
        self.assertEqual(len({p for p, _ in bigs}), 1,
                         "the big write was spread over partitions")


class TestPartitioner(IoTest):
    def test_truncating_redirect_into_produce_writes(self):
        """`echo x > t/.produce` appends a record (O_TRUNC is ignored on
        the sink), while `>` on a partition file still fails."""
        self.topic()
        self.sh("echo first >> t/.produce && echo second > t/.produce")
        self.assertEqual(self.read("t", "0"), b"first\nsecond\n")
        r = self.sh("echo third > t/0", check=False)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertEqual(self.read("t", "0"), b"first\nsecond\n")

    def test_murmur2_matches_kafka_vectors(self):
        """The test's own murmur2 gives Kafka's published values."""
        vectors = {
            b"21": -973932308,
            b"foobar": -790332482,
            b"abc": 479470107,
            b"a-little-bit-long-string": -985981536,
            b"a-little-bit-longer-string": -1486304829,
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        }
        for data, want in vectors.items():
            self.assertEqual(murmur2(data), want, data)

    def test_keyed_records_go_to_kafkas_partition(self):
        """With key.separator set, each keyed record written to .produce
        lands in the partition Kafka's default partitioner picks, for
        several partition counts; reads return the lines as written."""
        keys = [b"", b"a", b"21", b"abc", b"foobar", b"user-42",
                "clé-ü".encode(), b"a-little-bit-long-string"] + \
               [b"key%d" % i for i in range(150)]
        for n in (3, 7):
            name = f"k{n}"
            self.topic(name, partitions=n, key_separator=b"\t")
            self.assertEqual(self.xattr(name, name="key.separator"), b"\\t")
            expect = {str(p): [] for p in range(n)}
            # One record per write, then all of them in one write.
            for round_ in range(2):
                batch = []
                for i, k in enumerate(keys):
                    line = k + b"\tvalue %d/%d\twith tab\n" % (round_, i)
                    expect[str(kafka_partition(k, n))].append(line)
                    batch.append(line)
                if round_ == 0:
                    fd = os.open(self.m.path(name, ".produce"),
                                 os.O_WRONLY | os.O_APPEND)
                    try:
                        for line in batch:
                            os.write(fd, line)
                    finally:
                        os.close(fd)
                else:
                    self.append(b"".join(batch), name, ".produce")
            for p in range(n):
                self.assertEqual(self.lines_of(name, str(p)), expect[str(p)],
                                 f"{n} partitions, partition {p}")

    def test_multibyte_separator_and_unkeyed_lines(self):
        """A 2-byte separator; lines without it are unkeyed and stay
        together in one partition per write."""
        self.topic(partitions=5, key_separator=b"::")
        keyed = [b"k%d::v\n" % i for i in range(40)]
        self.append(b"".join(keyed), "t", ".produce")
        for line in keyed:
            p = kafka_partition(line.split(b"::")[0], 5)
            self.assertIn(line, self.lines_of("t", str(p)))
        before = {p: self.lines_of("t", p) for p in "01234"}
        unkeyed = [b"no key here %d\n" % i for i in range(10)]
        self.append(b"".join(unkeyed), "t", ".produce")
        grown = [p for p in "01234"
                 if self.lines_of("t", p) != before[p]]
        self.assertEqual(len(grown), 1)
        self.assertEqual(self.lines_of("t", grown[0])[len(before[grown[0]]):],
                         unkeyed)

    def test_keyed_binary_frames(self):
        """With framing=binary the key is the payload before the separator;
        frames come back exactly, in Kafka's partition."""
        self.topic(partitions=4, framing="binary", key_separator=b"|")
        frames = [frame(b"k%d|\x00payload\n%d" % (i, i)) for i in range(60)]
        self.append(b"".join(frames), "t", ".produce")
        expect = {p: b"" for p in range(4)}
        for i, f in enumerate(frames):
            expect[kafka_partition(b"k%d" % i, 4)] += f
        for p in range(4):
            self.assertEqual(self.read("t", str(p)), expect[p], p)

    def test_unkeyed_sticky_rotation(self):
        """Without keys, all records of one write() go to one partition and
        consecutive writes rotate over every partition."""
        n = 4
        self.topic(partitions=n)
        writes = []
        fd = os.open(self.m.path("t", ".produce"), os.O_WRONLY | os.O_APPEND)
        try:
            for w in range(4 * n):
                recs = [b"write %02d rec %d\n" % (w, r) for r in range(6)]
                writes.append(recs)
                os.write(fd, b"".join(recs))
        finally:
            os.close(fd)
        where = {}
        for p in range(n):
            lines = self.lines_of("t", str(p))
            for line in lines:
                where.setdefault(int(line.split()[1]), set()).add(p)
            # Whole writes, in write order.
            order = [int(l.split()[1]) for l in lines]
            self.assertEqual(order, sorted(order))
            self.assertEqual(len(lines) % 6, 0)
        self.assertEqual(sorted(where), list(range(4 * n)))
        part = []
        for w in range(4 * n):
            self.assertEqual(len(where[w]), 1, f"write {w} was split")
            part.append(where[w].pop())
        for w in range(4 * n - n + 1):
            self.assertEqual(sorted(part[w:w + n]), list(range(n)),
                             f"writes {w}..{w + n - 1}: {part[w:w + n]}")


class TestLastWriteIoctl(IoTest):
    def setUp(self):
        super().setUp()
        need(LAST_WRITE and os.access(LAST_WRITE, os.X_OK),
             "TOPICFS_LAST_WRITE (tests/mount/last_write.c) not built")

    def last_write(self, path, *data):
        r = subprocess.run([LAST_WRITE, self.m.path(path)] + list(data),
                           capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [tuple(int(x) for x in l.split())
                for l in r.stdout.decode().splitlines()]

    def test_offsets_of_each_write(self):
        """The ioctl gives [base, end) and partition of each write()."""
        self.topic()
        self.sh("for i in 1 2 3 4 5; do echo pre-$i >> t/0; done")
        self.assertEqual(self.last_write("t/0"), [(0, 0, 0, 0, 0)])
        out = self.last_write("t/0", "a\nb\nc\n", "d\n", "part", "ial\n",
                              "x\ny\n")
        self.assertEqual(out, [
            (6, 0, 5, 8, 3),
            (2, 0, 8, 9, 1),
            (4, 0, 8, 9, 1),   # no record appended: still the last one
            (4, 0, 9, 10, 1),
            (4, 0, 10, 12, 2),
        ])
        self.assertEqual(self.read("t", "0@5"), b"a\nb\nc\nd\npartial\nx\ny\n")
        self.assertEqual(self.read("t", "0@9"), b"partial\nx\ny\n")

    def test_write_across_page_boundary(self):
        """One write() of 3 lines crossing a 4 KiB boundary: one answer
        covering all 3 records."""
        self.topic()
        self.append(b"x" * 4090 + b"\n", "t", "0")
        out = self.last_write("t/0", "aaaa\nbbbb\ncccc\n")
        self.assertEqual(out, [(15, 0, 1, 4, 3)])
        self.assertEqual(self.read("t", "0@1"), b"aaaa\nbbbb\ncccc\n")

    def test_offsets_through_produce(self):
        """Through .produce the ioctl names the partition chosen, and the
        record at base_offset there is the line written."""
        self.topic(partitions=3)
        lines = ["line %d\n" % i for i in range(12)]
        out = self.last_write("t/.produce", *lines)
        nxt = {}
        for line, (n, p, base, end, recs) in zip(lines, out):
            self.assertEqual((n, recs, end - base), (len(line), 1, 1))
            self.assertEqual(base, nxt.get(p, 0), "offsets not dense")
            nxt[p] = end
            with open(self.m.path("t", f"{p}@{base}"), "rb") as f:
                self.assertEqual(f.readline(), line.encode())
        self.assertEqual(set(nxt), {0, 1, 2})
        for p, end in nxt.items():
            self.assertEqual(self.leo("t", str(p)), end)

    def test_concurrent_writers_offsets_dense(self):
        """4 processes writing .produce of a 1-partition topic at once
        (their records group-committed together): their [base, end) ranges
        tile the partition exactly, each range holding that process's
        lines."""
        self.topic()
        procs = []
        for w in range(4):
            args = [("w%d-%d\n" % (w, i)) * (1 + i % 3) for i in range(150)]
            procs.append((args, subprocess.Popen(
                [LAST_WRITE, self.m.path("t", ".produce")] + args,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        ranges = []
        for args, p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            rows = [tuple(int(x) for x in l.split())
                    for l in out.decode().splitlines()]
            self.assertEqual(len(rows), len(args))
            for data, (n, part, base, end, recs) in zip(args, rows):
                self.assertEqual((n, part), (len(data), 0))
                self.assertEqual(end - base, recs)
                self.assertEqual(recs, data.count("\n"))
                ranges.append((base, end, data.encode()))
        ranges.sort()
        lines = self.lines_of("t", "0")
        at = 0
        for base, end, data in ranges:
            self.assertEqual(base, at, "gap or overlap in offsets")
            self.assertEqual(b"".join(lines[base:end]), data)
            at = end
        self.assertEqual(at, len(lines))
        self.assertEqual(self.leo("t", "0"), at)


class TestZeroByteWrites(IoTest):
    def test_zero_byte_write_stores_nothing(self):
        """write(fd, "", 0) returns 0 and stores nothing, on a partition
        and on .produce, and does not flush a buffered partial line."""
        self.topic()
        self.sh("echo one >> t/0")
        stored = b"one\n"
        for target in ("0", ".produce"):
            fd = os.open(self.m.path("t", target), os.O_WRONLY | os.O_APPEND)
            try:
                self.assertEqual(os.write(fd, b""), 0)
                self.assertEqual(self.read("t", "0"), stored)
                os.write(fd, b"part")
                self.assertEqual(os.write(fd, b""), 0)
                self.assertEqual(os.stat(self.m.path("t", "0")).st_size,
                                 len(stored))
                self.assertEqual(self.leo("t", "0"), stored.count(b"\n"))
                os.write(fd, b"ial\n")
                stored += b"partial\n"
            finally:
                os.close(fd)
        self.assertEqual(self.read("t", "0"), b"one\npartial\npartial\n")
        self.sh("printf '' >> t/0; : >> t/0; cat /dev/null >> t/0")
        self.assertEqual(self.leo("t", "0"), 3)
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, 20)

    def test_zero_byte_write_binary(self):
        """A 0-byte write on a binary topic stores nothing; close is fine."""
        self.topic(framing="binary")
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        self.assertEqual(os.write(fd, b""), 0)
        os.close(fd)
        self.assertEqual(self.leo("t", "0"), 0)
        self.assertEqual(self.read("t", "0"), b"")


if __name__ == "__main__":
    unittest.main()
