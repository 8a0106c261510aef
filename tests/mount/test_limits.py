"""max.message.bytes through the real mount: no record over the limit is
ever stored, the rest of a refused record is refused up to its end (also
across the requests the kernel cuts one large write() into), and the
record after it is stored alone and whole. Also the other refusals of
this kind: fallocate, and a view offset too large to parse."""
import errno
import os
import struct
import subprocess

from mountlib import MountTest

MIB = 1 << 20


class LimitTest(MountTest):
    mount_opts = ("num.partitions=1",)

    def setUp(self):
        super().setUp()
        os.mkdir(self.m.path("t"))
        self.path = self.m.path("t", "0")

    def limit(self, n, topic="t"):
        os.setxattr(self.m.path(topic), "user.topicfs.max.message.bytes",
                    str(n).encode())

    def open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.addCleanup(lambda: _close_quietly(fd))
        return fd

    def refused(self, fd, data):
        self.assertErrno(errno.EMSGSIZE, os.write, fd, data)

    def lines(self, needle):
        return [l for l in self.m.log_text().splitlines() if needle in l]


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class TestLines(LimitTest):

    def test_a_line_over_several_small_writes(self):
        self.limit(100)
        fd = self.open()
        self.assertEqual(os.write(fd, b"a" * 60), 60)    # held
        self.refused(fd, b"b" * 60)                        # now too long
        self.refused(fd, b"c" * 10)                        # its rest
        self.refused(fd, b"c" * 10 + b"\n")                # its end
        self.assertEqual(os.write(fd, b"next\n"), 5)      # alone, whole
        self.assertEqual(os.write(fd, b"d" * 99 + b"\n"), 100)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"next\n" + b"d" * 99 + b"\n")

    def test_a_request_cut_by_the_kernel_refused_after_the_first(self):
        """One write() of 2 MiB is two requests; the first is held, the
        second is refused, the kernel returns a short count and Python's
        buffered writer sends the rest, which is refused too."""
        self.limit(MIB + MIB // 2)
        with open(self.path, "ab") as f:
            with self.assertRaises(OSError) as cm:
                f.write(b"x" * (2 * MIB) + b"\n")
            self.assertEqual(cm.exception.errno, errno.EMSGSIZE)
            f.write(b"after\n")
        self.assertEqual(self.read("t", "0"), b"after\n")

    def test_a_short_count_then_the_rest_by_hand(self):
        self.limit(MIB + MIB // 2)
        fd = self.open()
        line = b"y" * (3 * MIB) + b"\n"
        n = os.write(fd, line)  # the first request was held: a short count
        self.assertTrue(MIB - 4096 < n <= MIB, n)
        rest = line[n:]
        while rest:  # what stdio does with a short count, in small pieces
            self.refused(fd, rest[:64 * 1024])
            rest = rest[64 * 1024:]
        self.assertEqual(os.write(fd, b"next\n"), 5)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"next\n")

    def test_a_first_request_refused_fails_the_whole_write(self):
        """When the first request of a write() is refused, the kernel
        fails the whole write() and never sends the rest: the writer's
        next write() starts a new line."""
        self.limit(1000)
        fd = self.open()
        self.refused(fd, b"z" * (3 * MIB) + b"\n")
        self.assertEqual(os.write(fd, b"next\n"), 5)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"next\n")

    def test_a_final_partial_line_over_the_limit(self):
        self.limit(100)
        for size in (101, 102, 104, 500):
            fd = self.open()
            self.refused(fd, b"p" * size)
            self.assertErrno(errno.EMSGSIZE, os.close, fd)
        fd = self.open()
        self.assertEqual(os.write(fd, b"q" * 60), 60)
        self.refused(fd, b"q" * 41)
        self.assertErrno(errno.EMSGSIZE, os.fsync, fd)
        self.assertEqual(os.write(fd, b"last"), 4)  # a new line after it
        os.close(fd)
        # A final partial line at the limit is a record.
        fd = self.open()
        self.assertEqual(os.write(fd, b"r" * 100), 100)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"last" + b"r" * 100)

    def test_through_produce(self):
        self.limit(100)
        fd = os.open(self.m.path("t", ".produce"), os.O_WRONLY)
        self.addCleanup(lambda: _close_quietly(fd))
        self.assertEqual(os.write(fd, b"s" * 90), 90)
        self.refused(fd, b"s" * 20)
        self.refused(fd, b"s\n")
        self.assertEqual(os.write(fd, b"ok\n"), 3)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"ok\n")


class TestBinary(LimitTest):

    def setUp(self):
        super().setUp()
        os.setxattr(self.m.path("t"), "user.topicfs.framing", b"binary")

    # Payload that reads as frames of its own if taken for new records.
    LOOKS_FRAMED = struct.pack(">I", 1) + b"z"

    def test_a_frame_too_long_is_refused_to_its_end(self):
        self.limit(100)
        fd = self.open()
        self.refused(fd, struct.pack(">I", 200))          # its header
        self.refused(fd, self.LOOKS_FRAMED * 30)           # 150 of 200
        self.refused(fd, self.LOOKS_FRAMED * 10 + struct.pack(">I", 2) + b"no")
        good = struct.pack(">I", 3) + b"yes"
        self.assertEqual(os.write(fd, good), 7)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), good)

    def test_a_frame_refused_after_a_short_count_then_resent(self):
        """A frame refused in a later request of one write(): the short
        count makes the writer send that request's bytes again, and all
        of them up to the frame's end are refused."""
        self.limit(MIB + MIB // 2)
        fd = self.open()
        # A good frame longer than a request, so that the bad frame's
        # length field arrives in the second request of the write().
        first = b"g" * (MIB + MIB // 5)
        payload = self.LOOKS_FRAMED * (2 * MIB // len(self.LOOKS_FRAMED))
        data = (struct.pack(">I", len(first)) + first +
                struct.pack(">I", len(payload)) + payload)
        n = os.write(fd, data)
        self.assertTrue(MIB - 4096 < n <= MIB, n)
        rest = data[n:]
        while rest:  # in small pieces, as stdio would
            self.refused(fd, rest[:64 * 1024])
            rest = rest[64 * 1024:]
        good = struct.pack(">I", 2) + b"ok"
        self.assertEqual(os.write(fd, good), 6)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), good)

    def test_a_frame_too_long_held_then_refused(self):
        self.limit(100)
        fd = self.open()
        self.assertEqual(os.write(fd, b"\0\0"), 2)        # half a header
        self.refused(fd, b"\0\xc8" + self.LOOKS_FRAMED * 2)  # 200 bytes
        self.refused(fd, self.LOOKS_FRAMED * 38)
        good = struct.pack(">I", 1) + b"!"
        self.assertEqual(os.write(fd, good), 5)
        os.close(fd)
        self.assertEqual(self.read("t", "0"), good)


class TestOtherRefusals(LimitTest):

    def test_fallocate_is_not_supported(self):
        self.sh("echo kept >> t/0")
        r = self.sh("fallocate -l 1M t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not supported", r.stderr)
        self.assertEqual(len(self.lines("fallocate")), 1, self.m.log_text())
        self.assertEqual(self.read("t", "0"), b"kept\n")

    def test_a_view_offset_too_large_is_out_of_range(self):
        self.sh("echo one >> t/0")
        r = self.sh("cat t/0@99999999999999999999", check=False)
        self.assertIn(b"Numerical result out of range", r.stderr)
        self.assertEqual(len(self.lines("99999999999999999999")), 1,
                         self.m.log_text())
        self.assertEqual(self.read("t", "0@-99999999999999999999"),
                         b"one\n")
