"""Faults and bad input: CONTRACT.md sections 1 (kill -9), 4 and 9, issue 3
item 11. Every failure is a clear errno, one daemon log line naming the
topic and partition, nothing already stored is lost, and the daemon stays
up.
"""
import errno
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

from mountlib import (BIN, DEADLINE_S, Mount, MountTest, is_mounted, need,
                      wait_for)


def xattr(path, name):
    return os.getxattr(path, "user.topicfs." + name).decode()


def names_partition(line, topic, part):
    """Does a log line name this topic and partition?"""
    return bool(re.search(rf"\btopic {re.escape(topic)} partition {part}\b",
                          line) or
                re.search(rf"/topics/{re.escape(topic)}/{part}\b", line))


class FaultTest(MountTest):
    mount_opts = ("num.partitions=1",)

    def log_mark(self):
        return len(self.m.log_text().splitlines())

    def log_since(self, mark):
        return self.m.log_text().splitlines()[mark:]

    def assertDaemonUp(self):
        self.assertIsNone(self.m.proc.poll(), "the daemon died:\n"
                          + self.m.log_text())
        self.assertTrue(is_mounted(self.m.mnt))
        self.assertIn(".status", os.listdir(self.m.mnt))

    def leo(self, *parts):
        return int(xattr(self.m.path(*parts), "log_end_offset"))


# ---- kill -9 during a stream of fsynced writes ----------------------------

WRITER = textwrap.dedent("""
    import os, sys
    path, per_write, per_sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    i = writes = 0
    def rec(i):
        return b"%08d " % i + b"abcdefghij" * (i * 7 % 40) + b"\\n"
    try:
        while True:
            buf = b"".join(rec(i + k) for k in range(per_write))
            n = os.write(fd, buf)
            if n != len(buf):
                print("short", n, flush=True)
                break
            i += per_write
            writes += 1
            if writes % per_sync == 0:
                os.fsync(fd)
                print("synced", i, flush=True)
    except OSError as e:
        print("error", e.errno, flush=True)
""")


def writer_record(i):
    return b"%08d " % i + b"abcdefghij" * (i * 7 % 40) + b"\n"


class Writer:
    """A process appending numbered records, reporting what it fsynced."""

    def __init__(self, path, per_write, per_sync):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, path, str(per_write),
             str(per_sync)], stdout=subprocess.PIPE, text=True)
        self.synced = 0
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("synced "):
                self.synced = int(line.split()[1])

    def finish(self):
        self.proc.wait(timeout=DEADLINE_S)
        self.thread.join(timeout=DEADLINE_S)
        self.proc.stdout.close()
        return self.synced

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.finish()


class TestKill9(FaultTest):
    mount_opts = ("num.partitions=2",)

    def check_partition(self, part, synced):
        path = self.m.path("t", str(part))
        data = self.read("t", str(part))
        self.assertTrue(data == b"" or data.endswith(b"\n"),
                        f"partition {part} ends in a partial record: "
                        f"{data[-80:]!r}")
        lines = data.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line != writer_record(i):
                self.fail(f"partition {part} record {i} is {line[:60]!r}, "
                          f"want {writer_record(i)[:60]!r}")
        self.assertGreaterEqual(len(lines), synced,
                                f"partition {part}: fsynced records lost")
        self.assertEqual(int(xattr(path, "log_end_offset")), len(lines))
        self.assertEqual(int(xattr(path, "high_watermark")), len(lines))
        self.assertEqual(os.stat(path).st_size, len(data))
        return len(lines)

    def test_kill9_keeps_every_fsynced_record(self):
        os.mkdir(self.m.path("t"))
        # One record per write and fsync after each; and 5 records per
        # write, fsync every 3 writes.
        w0 = Writer(self.m.path("t", "0"), 1, 1)
        w1 = Writer(self.m.path("t", "1"), 5, 3)
        self.addCleanup(w1.kill)
        self.addCleanup(w0.kill)
        wait_for(lambda: w0.synced >= 300 and w1.synced >= 300
                 or w0.proc.poll() is not None or w1.proc.poll() is not None,
                 what="300 fsynced records on each partition")
        self.assertIsNone(w0.proc.poll(), w0.lines[-3:])
        self.assertIsNone(w1.proc.poll(), w1.lines[-3:])
        self.m.kill9()
        synced = (w0.finish(), w1.finish())
        # The writers saw the daemon die (an error, not a hang).
        self.assertTrue(w0.lines[-1].startswith("error"), w0.lines[-3:])
        self.assertTrue(w1.lines[-1].startswith("error"), w1.lines[-3:])
        for p in range(2):
            self.assertFalse(os.path.exists(os.path.join(
                self.m.data, "topics", "t", str(p), "clean-shutdown")),
                "clean-shutdown marker present after kill -9")
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start()
        counts = [self.check_partition(p, synced[p]) for p in range(2)]
        # Appends continue at the next offset.
        self.append(writer_record(counts[0]), "t", "0")
        self.assertEqual(self.leo("t", "0"), counts[0] + 1)
        self.check_partition(0, counts[0] + 1)


    def test_torn_tail_and_lost_index_recovered_at_mount(self):
        """What a power loss can leave (CONTRACT section 1): the last batch
        written only in part, and the index gone. The next mount cuts the
        torn batch off (one log line), rebuilds the index, and the
        partition reads back every whole record, offsets dense."""
        os.mkdir(self.m.path("t"))
        for i in range(200):
            self.append(writer_record(i), "t", "0")  # a batch each
        self.m.kill9()
        part = os.path.join(self.m.data, "topics", "t", "0")
        log = os.path.join(part, max(f for f in os.listdir(part)
                                     if f.endswith(".log")))
        index = log[:-len(".log")] + ".index"
        os.truncate(log, os.path.getsize(log) - 3)
        os.unlink(index)
        self.m = Mount(self.tmp, self.mount_opts).start()
        self.assertEqual(self.check_partition(0, 199), 199)
        self.assertTrue(os.path.exists(index), "the index was not rebuilt")
        cut = [l for l in self.m.log_text().splitlines() if "cut at" in l]
        self.assertEqual(len(cut), 1, self.m.log_text())
        self.assertIn("offset 199", cut[0])
        self.assertEqual(self.read("t", "0@150"),
                         b"".join(writer_record(i) for i in range(150, 199)))
        self.append(writer_record(199), "t", "0")
        self.assertEqual(self.check_partition(0, 200), 200)


# ---- bad input ------------------------------------------------------------

class TestBadInput(FaultTest):
    def test_oversized_record(self):
        os.mkdir(self.m.path("t"))
        self.sh("setfattr -n user.topicfs.max.message.bytes -v 100 t")
        self.sh("echo first >> t/0")
        size = os.stat(self.m.path("t", "0")).st_size
        mark = self.log_mark()
        long_line = "x" * 199
        r = self.sh(f"echo {long_line} >> t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Message too long", r.stderr)
        self.assertEqual(self.read("t", "0"), b"first\n")
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, size)
        self.assertEqual(self.leo("t", "0"), 1)
        lines = [l for l in self.log_since(mark) if names_partition(l, "t", 0)]
        self.assertEqual(len(lines), 1, self.log_since(mark))
        # The exact errno, and the same open file keeps working after it.
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"y" * 199 + b"\n")
            self.assertEqual(cm.exception.errno, errno.EMSGSIZE)
            # Also when more lines follow it (the newline scan then takes
            # the long line's end in a whole 64-byte block).
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"y" * 199 + b"\n" + b"w\n" * 40)
            self.assertEqual(cm.exception.errno, errno.EMSGSIZE)
            self.assertEqual(os.write(fd, b"second\n"), 7)
        finally:
            os.close(fd)
        # Through .produce as well.
        r = self.sh(f"echo {long_line} >> t/.produce", check=False)
        self.assertIn(b"Message too long", r.stderr)
        self.sh("echo third >> t/0")
        self.assertEqual(self.read("t", "0"), b"first\nsecond\nthird\n")
        self.assertEqual(self.leo("t", "0"), 3)
        self.assertDaemonUp()

    def test_malformed_binary_frames(self):
        os.mkdir(self.m.path("b"))
        self.sh("setfattr -n user.topicfs.framing -v binary b")
        good = [struct.pack(">I", len(p)) + p
                for p in (b"abc", b"\0\n\xff", b"", b"x" * 1000)]
        self.append(b"".join(good[:2]), "b", "0")
        stored = b"".join(good[:2])
        path = self.m.path("b", "0")

        # A length over max.message.bytes: refused at once, and so is the
        # rest of that frame (what this writer sends next), and close()
        # says so again; a new open starts afresh.
        mark = self.log_mark()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"\xff\xff\xff\xffabc")
            self.assertEqual(cm.exception.errno, errno.EMSGSIZE)
            self.assertErrno(errno.EMSGSIZE, os.write, fd, good[2])
        finally:
            self.assertErrno(errno.EMSGSIZE, os.close, fd)
        self.append(good[2], "b", "0")
        stored += good[2]
        self.assertEqual(self.read("b", "0"), stored)
        self.assertTrue(any(names_partition(l, "b", 0)
                            for l in self.log_since(mark)))

        # A frame cut short: buffered, then refused by close() and fsync().
        for how in ("close", "fsync"):
            mark = self.log_mark()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.write(fd, struct.pack(">I", 10) + b"12345")
            if how == "fsync":
                with self.assertRaises(OSError) as cm:
                    os.fsync(fd)
                self.assertEqual(cm.exception.errno, errno.EINVAL)
                os.close(fd)
            else:
                with self.assertRaises(OSError) as cm:
                    os.close(fd)
                self.assertEqual(cm.exception.errno, errno.EINVAL)
            self.assertEqual(self.read("b", "0"), stored)
            self.assertEqual(self.leo("b", "0"), 3)
            self.assertTrue(any(names_partition(l, "b", 0)
                                for l in self.log_since(mark)),
                            self.log_since(mark))
        self.append(good[3], "b", "0")
        stored += good[3]
        self.assertEqual(self.read("b", "0"), stored)
        self.assertEqual(self.leo("b", "0"), 4)
        self.remount()
        self.assertEqual(self.read("b", "0"), stored)

    def test_bad_topic_names(self):
        bad = ["a b", "a:b", "\u00fcber", "x" * 250, ".hidden", "a*b", "-\t-",
               "semi;colon"]
        for name in bad:
            mark = self.log_mark()
            r = subprocess.run(["mkdir", "--", name], cwd=self.m.mnt,
                               capture_output=True)
            self.assertNotEqual(r.returncode, 0, name)
            self.assertIn(b"Invalid argument", r.stderr, name)
            self.assertEqual(len(self.log_since(mark)), 1,
                             f"{name!r}: {self.log_since(mark)}")
        # Longer than the kernel lets through, or than Kafka allows.
        self.assertErrno(errno.EINVAL, os.mkdir, self.m.path("y" * 255))
        with self.assertRaises(OSError) as cm:
            os.mkdir(self.m.path("z" * 300))
        self.assertIn(cm.exception.errno, (errno.EINVAL, errno.ENAMETOOLONG))
        self.assertEqual(sorted(os.listdir(self.m.mnt)),
                         [".metrics", ".status"])
        self.assertEqual(os.listdir(os.path.join(self.m.data, "topics")), [])
        os.mkdir(self.m.path("x" * 249))
        os.mkdir(self.m.path("A-z_0.9"))
        self.assertEqual(sorted(os.listdir(os.path.join(self.m.data,
                                                        "topics"))),
                         sorted(["x" * 249, "A-z_0.9"]))
        self.assertDaemonUp()

    def test_bad_topic_name_is_one_log_line(self):
        mark = self.log_mark()
        self.assertErrno(errno.EINVAL, os.mkdir, self.m.path("a\nb"))
        self.assertEqual(len(self.log_since(mark)), 1, self.log_since(mark))

    def test_every_refusal_is_one_log_line(self):
        """CONTRACT section 9: every failure is an errno plus one line in
        the daemon's log naming the topic (and partition) and the cause;
        nothing stored changes."""
        os.mkdir(self.m.path("t"))
        self.sh("echo a >> t/0")
        p = lambda *parts: self.m.path("t", *parts)
        wr = os.O_WRONLY
        cases = [  # what, errno, call, its arguments, the log line
            ("> t/0", errno.EPERM, os.open, (p("0"), wr | os.O_TRUNC),
             r"topic t partition 0: open with O_TRUNC .*append-only"),
            ("truncate", errno.EPERM, os.truncate, (p("0"), 0),
             r"topic t partition 0: truncate refused: .*append-only"),
            ("chmod", errno.EPERM, os.chmod, (p("0"), 0o600),
             r"topic t partition 0: change of mode or owner refused"),
            ("rm", errno.EPERM, os.unlink, (p("0"),),
             r"topic t: removing '0' refused: .*append-only"),
            ("mv", errno.EPERM, os.rename, (p("0"), p("5")),
             r"topic t: renaming '0' to '5' refused"),
            ("new file", errno.EPERM, os.open, (p("new"), wr | os.O_CREAT),
             r"topic t: creating 'new' refused"),
            ("symlink", errno.EPERM, os.symlink, ("x", p("l")),
             r"topic t: creating 'l' refused"),
            ("hard link", errno.EPERM, os.link, (p("0"), p("h")),
             r"topic t: creating 'h' refused"),
            ("mkdir in a topic", errno.EPERM, os.mkdir, (p("sub"),),
             r"topic t: mkdir 'sub' refused"),
            ("view out of range", errno.ERANGE, os.open,
             (p("0@99"), os.O_RDONLY),
             r"topic t partition 0: view @99 refused: offset out of range "
             r"\(log start 0, end 1\)"),
            ("bad value", errno.EINVAL, os.setxattr,
             (p(), "user.topicfs.retention.ms", b"abc"),
             r"topic t: setting user\.topicfs\.retention\.ms to 'abc' "
             r"refused: not a valid value"),
            ("unknown setting", errno.ENODATA, os.setxattr,
             (p(), "user.topicfs.nope", b"1"),
             r"topic t: setting user\.topicfs\.nope to '1' refused: no such"),
            ("partition state", errno.EPERM, os.setxattr,
             (p("0"), "user.topicfs.log_end_offset", b"5"),
             r"topic t partition 0: setting user\.topicfs\.log_end_offset "
             r"to '5' refused: read-only"),
            ("remove state", errno.EPERM, os.removexattr,
             (p("0"), "user.topicfs.log_end_offset"),
             r"topic t partition 0: removing user\.topicfs\.log_end_offset "
             r"refused: read-only"),
        ]
        if os.geteuid() == 0:  # others are refused by the kernel's mode check
            cases += [
                ("write to a view", errno.EACCES, os.open, (p("0@0"), wr),
                 r"topic t partition 0 \(a read view\): open for writing "
                 r"refused"),
                ("read .produce", errno.EACCES, os.open,
                 (p(".produce"), os.O_RDONLY),
                 r"topic t \.produce: open for reading refused"),
            ]
        for what, err, fn, args, line in cases:
            with self.subTest(what):
                mark = self.log_mark()
                self.assertErrno(err, fn, *args)
                got = self.log_since(mark)
                self.assertEqual(len(got), 1, got)
                self.assertRegex(got[0], line)
        self.assertEqual(self.read("t", "0"), b"a\n")
        self.assertEqual(sorted(os.listdir(p())), [".groups", ".produce", "0"])
        self.assertDaemonUp()

    def test_partial_line_survives_fork_exec(self):
        os.mkdir(self.m.path("t"))
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"hello ")
            subprocess.run(["true"], check=True)
            os.write(fd, b"world\n")
        finally:
            os.close(fd)
        self.assertEqual(self.read("t", "0"), b"hello world\n")
        self.assertEqual(self.leo("t", "0"), 1)

    def test_zero_byte_writes(self):
        os.mkdir(self.m.path("t"))
        os.mkdir(self.m.path("b"))
        self.sh("setfattr -n user.topicfs.framing -v binary b")
        for parts in (("t", "0"), ("t", ".produce"), ("b", "0")):
            fd = os.open(self.m.path(*parts), os.O_WRONLY | os.O_APPEND)
            try:
                self.assertEqual(os.write(fd, b""), 0)
                os.fsync(fd)
                self.assertEqual(os.write(fd, b""), 0)
            finally:
                os.close(fd)
        self.sh("printf '' >> t/0 && : >> t/0 && printf '' >> b/0")
        for topic in ("t", "b"):
            self.assertEqual(self.leo(topic, "0"), 0)
            self.assertEqual(os.stat(self.m.path(topic, "0")).st_size, 0)
            self.assertEqual(self.read(topic, "0"), b"")
        # Between the bytes of a partial line, a 0-byte write changes nothing.
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"ab")
        os.write(fd, b"")
        os.write(fd, b"c\n")
        os.close(fd)
        self.assertEqual(self.read("t", "0"), b"abc\n")
        self.assertEqual(self.leo("t", "0"), 1)

    def test_huge_xattr_values(self):
        os.mkdir(self.m.path("t"))
        t = self.m.path("t")
        os.setxattr(t, "user.topicfs.retention.ms", b"60000")
        for size in (300, 4096, 65536):
            for name in ("retention.ms", "key.separator", "compression.type",
                         "max.message.bytes"):
                with self.assertRaises(OSError) as cm:
                    os.setxattr(t, "user.topicfs." + name, b"9" * size)
                self.assertIn(cm.exception.errno, (errno.EINVAL, errno.E2BIG),
                              f"{name} = {size} bytes")
        # Over the kernel's 64 KiB limit: refused before the daemon.
        with self.assertRaises(OSError) as cm:
            os.setxattr(t, "user.topicfs.retention.ms", b"1" * 65537)
        self.assertEqual(cm.exception.errno, errno.E2BIG)
        # An unknown name with a huge value, and a 255-byte name.
        with self.assertRaises(OSError) as cm:
            os.setxattr(t, "user.topicfs.no.such", b"1" * 65536)
        self.assertIn(cm.exception.errno, (errno.ENODATA, errno.EINVAL,
                                           errno.E2BIG))
        long_name = "user.topicfs." + "n" * (255 - len("user.topicfs."))
        self.assertErrno(errno.ENODATA, os.getxattr, t, long_name)
        with self.assertRaises(OSError):
            os.setxattr(t, long_name, b"1")
        # A huge value on a read-only partition attribute.
        self.assertErrno(errno.EPERM, os.setxattr, self.m.path("t", "0"),
                         "user.topicfs.high_watermark", b"7" * 65536)
        # Shell tool: a clear message.
        r = self.sh("setfattr -n user.topicfs.retention.ms "
                    f"-v {'8' * 60000} t", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, rb"Invalid argument|Argument list too long")
        self.assertEqual(xattr(t, "retention.ms"), "60000")
        self.assertEqual(xattr(t, "compression.type"), "none")
        self.assertDaemonUp()
        self.sh("echo still-works >> t/0")
        self.remount()
        self.assertEqual(xattr(self.m.path("t"), "retention.ms"), "60000")
        self.assertEqual(self.read("t", "0"), b"still-works\n")

    def test_deleted_topic_paths(self):
        os.mkdir(self.m.path("t"))
        self.sh("echo a >> t/0")
        os.rmdir(self.m.path("t"))
        r = self.sh("echo b >> t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"No such file or directory", r.stderr)
        self.assertNotIn("t", os.listdir(self.m.mnt))
        self.assertEqual(os.listdir(os.path.join(self.m.data, "topics")), [])
        self.assertDaemonUp()

    def test_write_to_partition_of_deleted_topic(self):
        os.mkdir(self.m.path("t"))
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"before\n")
            os.rmdir(self.m.path("t"))
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"after delete\n")
            self.assertIn(cm.exception.errno, (errno.ENOENT, errno.ESTALE))
            os.mkdir(self.m.path("t"))
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"after re-create\n")
            self.assertIn(cm.exception.errno, (errno.ENOENT, errno.ESTALE))
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        self.assertEqual(self.read("t", "0"), b"")
        self.assertDaemonUp()


# ---- a full disk ------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
    for line in sys.stdin:
        op, arg = line.split()
        try:
            if op == "write":
                print("ok", os.write(fd, bytes.fromhex(arg)), flush=True)
            elif op == "fsync":
                os.fsync(fd)
                print("ok 0", flush=True)
            elif op == "close":
                os.close(fd)
                print("ok 0", flush=True)
        except OSError as e:
            print("err", e.errno, flush=True)
""")


class FdHolder:
    """Another process holding one file open for appending, so that the
    file's partial line stays buffered whatever the test itself opens,
    forks and closes meanwhile."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, path],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def _call(self, op, arg="-"):
        self.proc.stdin.write(f"{op} {arg}\n")
        self.proc.stdin.flush()
        kind, val = self.proc.stdout.readline().split()
        if kind == "err":
            raise OSError(int(val), os.strerror(int(val)))
        return int(val)

    def write(self, data):
        return self._call("write", data.hex())

    def fsync(self):
        self._call("fsync")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()

    def close(self):
        if self.proc.poll() is None:
            try:
                self._call("close")
            finally:
                self.proc.stdin.close()
                self.proc.wait(timeout=DEADLINE_S)
                self.proc.stdout.close()


class TestFullDisk(FaultTest):
    """DATADIR on a 4 MiB tmpfs mostly taken by a filler file."""

    # Odd, so that lines straddle page boundaries (a write cut at a page
    # boundary by the kernel must still be refused whole).
    LINE = 1001

    def setUp(self):
        need(os.geteuid() == 0, "mounting a tmpfs needs root")
        need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
        self.tmp = tempfile.mkdtemp(prefix="topicfs-full-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.small = os.path.join(self.tmp, "small")
        os.mkdir(self.small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                        self.small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.small],
                        capture_output=True)
        self.filler = os.path.join(self.small, "filler")
        with open(self.filler, "wb") as f:
            f.write(b"\0" * (3 << 20))
        self.m = Mount(self.tmp, self.mount_opts,
                       datadir=os.path.join(self.small, "data"))
        self.addCleanup(self.m_cleanup)
        self.m.start()
        os.mkdir(self.m.path("t"))
        os.mkdir(self.m.path("u"))
        self.append(b"other topic\n", "u", "0")
        self.w = FdHolder(self.m.path("t", "0"))
        self.addCleanup(self.w.kill)

    def remount(self, opts=None):
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        self.m = Mount(self.tmp, self.mount_opts, datadir=self.m.data)
        self.m.start()
        return self.m

    def line(self, i):
        return (b"%07d " % i).ljust(self.LINE - 1, b"z") + b"\n"

    def fill(self):
        """Write lines until ENOSPC. Returns (complete lines accepted,
        bytes of the next line accepted by a short write)."""
        i = 0
        while i < 10000:
            line = self.line(i)
            try:
                n = self.w.write(line)
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC, e)
                return i, 0
            if n < len(line):
                # A short write (the kernel cut the write at a page
                # boundary): the rest must then fail with ENOSPC.
                with self.assertRaises(OSError) as cm:
                    self.w.write(line[n:])
                self.assertEqual(cm.exception.errno, errno.ENOSPC)
                return i, n
            i += 1
        self.fail("10 MB written to a 4 MiB tmpfs without ENOSPC")

    def test_enospc_then_resume(self):
        path = self.m.path("t", "0")
        full, short = self.fill()
        self.assertGreater(full, 100)
        stored = b"".join(self.line(i) for i in range(full))
        # Still full: refused again, the daemon stays up, reads work.
        with self.assertRaises(OSError) as cm:
            self.w.write(self.line(full)[short:])
        self.assertEqual(cm.exception.errno, errno.ENOSPC)
        # (A small append could still fit in the last page of the
        # segment; a new topic needs new blocks.)
        r = self.sh("mkdir new", check=False)
        self.assertIn(b"No space left on device", r.stderr)
        self.assertNotIn("new", os.listdir(self.m.mnt))
        self.assertDaemonUp()
        self.assertEqual(self.read("t", "0"), stored)
        self.assertEqual(self.sh("cat t/0").stdout, stored)
        self.assertEqual(os.stat(path).st_size, len(stored))
        self.assertEqual(self.leo("t", "0"), full)
        self.assertEqual(self.read("u", "0"), b"other topic\n")
        self.assertEqual(self.sh("tail -n 1 t/0").stdout, self.line(full - 1))
        # Free space: the same open file finishes its line and goes on.
        os.unlink(self.filler)
        rest = self.line(full)[short:]
        self.assertEqual(self.w.write(rest), len(rest))
        for i in range(full + 1, full + 11):
            self.assertEqual(self.w.write(self.line(i)), self.LINE)
        self.w.close()
        self.sh("echo after >> t/0 && mkdir new && echo n >> new/0")
        self.assertEqual(self.read("new", "0"), b"n\n")
        want = b"".join(self.line(i) for i in range(full + 11)) + b"after\n"
        self.assertEqual(self.read("t", "0"), want)
        self.assertEqual(self.leo("t", "0"), full + 12)
        self.remount()
        self.assertEqual(self.read("t", "0"), want)
        self.assertEqual(self.leo("t", "0"), full + 12)
        self.assertEqual(self.read("u", "0"), b"other topic\n")

    def test_enospc_refuses_a_line_whole(self):
        full, short = self.fill()
        self.w.close()
        stored = b"".join(self.line(i) for i in range(full))
        self.assertEqual((short, self.read("t", "0")), (0, stored))
        self.assertEqual(self.leo("t", "0"), full)

    def refuse_one_more(self):
        """Fill the disk, then log what one more refused write logs (the
        same line again: a shorter one could fit in the last page)."""
        full, short = self.fill()
        mark = self.log_mark()
        with self.assertRaises(OSError) as cm:
            self.w.write(self.line(full)[short:])
        self.assertEqual(cm.exception.errno, errno.ENOSPC)
        return self.log_since(mark)

    def test_enospc_log_line(self):
        lines = self.refuse_one_more()
        self.assertTrue(any(names_partition(l, "t", 0) and
                            "No space left on device" in l for l in lines),
                        lines)

    def test_enospc_one_log_line_per_failure(self):
        lines = self.refuse_one_more()
        self.assertEqual(len(lines), 1, lines)


# ---- a corrupt segment -------------------------------------------------------

class TestCorruptSegment(FaultTest):
    mount_opts = ("num.partitions=2",)

    def test_background_scrub_finds_corruption_nobody_read(self):
        """After a mount a background scrub reads every stored batch once
        (starting a few seconds in): a corrupt one is reported in the log
        although no reader went near it."""
        os.mkdir(self.m.path("bad"))
        fd = os.open(self.m.path("bad", "0"), os.O_WRONLY | os.O_APPEND)
        for k in range(100):
            os.write(fd, b"".join(b"rec %06d\n" % (k * 100 + i)
                                  for i in range(100)))
        os.close(fd)
        self.assertEqual(self.m.unmount(), 0)
        seg = os.path.join(self.m.data, "topics", "bad", "0",
                           "00000000000000000000.log")
        with open(seg, "r+b") as f:
            f.seek(5000)
            b = f.read(1)
            f.seek(5000)
            f.write(bytes([b[0] ^ 0xFF]))
        self.m = Mount(self.tmp, self.mount_opts).start()
        line = wait_for(
            lambda: [l for l in self.m.log_text().splitlines()
                     if names_partition(l, "bad", 0) and "corrupt" in l],
            timeout=60, what="the scrub to report the corrupt batch")
        self.assertEqual(len(line), 1, line)
        self.assertIn("1 corrupt batch", line[0])
        self.assertDaemonUp()

    def test_corrupt_segment(self):
        os.mkdir(self.m.path("bad"))
        os.mkdir(self.m.path("good"))
        recs = [b"rec %06d " % i + b"q" * 88 + b"\n" for i in range(40000)]
        # 400 writes of 100 records: 400 batches of 10,000 bytes.
        fd = os.open(self.m.path("bad", "0"), os.O_WRONLY | os.O_APPEND)
        for k in range(0, len(recs), 100):
            os.write(fd, b"".join(recs[k:k + 100]))
        os.close(fd)
        data = b"".join(recs)
        other = b"".join(b"other %d\n" % i for i in range(1000))
        self.append(other, "bad", "1")
        self.append(other, "good", "0")
        self.assertEqual(self.m.unmount(), 0)

        seg = os.path.join(self.m.data, "topics", "bad", "0",
                           "00000000000000000000.log")
        self.assertEqual(os.path.getsize(seg), len(data))
        flip = len(data) // 2 + 1234
        with open(seg, "r+b") as f:
            f.seek(flip)
            b = f.read(1)
            f.seek(flip)
            f.write(bytes([b[0] ^ 0xFF]))

        r = subprocess.run([BIN, "dump-log", "--verify",
                            os.path.dirname(seg)], capture_output=True)
        self.assertEqual(r.returncode, 1, r.stderr)
        r = subprocess.run([BIN, "dump-log", "--verify",
                            os.path.join(self.m.data, "topics", "bad", "1")],
                           capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)

        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start()
        mark = 0
        # The corrupt range: EIO, at once after the mount.
        fd = os.open(self.m.path("bad", "0"), os.O_RDONLY)
        try:
            with self.assertRaises(OSError) as cm:
                os.pread(fd, 4096, flip - flip % 4096)
            self.assertEqual(cm.exception.errno, errno.EIO)
            # Bytes far before it still read back exactly.
            self.assertEqual(os.pread(fd, 4096, 0), data[:4096])
        finally:
            os.close(fd)
        r = self.sh("cat bad/0 > /dev/null", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Input/output error", r.stderr)
        r = self.sh(f"dd if=bad/0 bs=4096 skip={flip // 4096} count=1 "
                    "status=none | wc -c", check=False)
        self.assertIn(b"Input/output error", r.stderr)
        lines = [l for l in self.log_since(mark)
                 if names_partition(l, "bad", 0)]
        self.assertTrue(lines, self.m.log_text())
        # Everything else keeps working.
        self.assertEqual(self.read("bad", "1"), other)
        self.assertEqual(self.read("good", "0"), other)
        self.sh("echo new >> good/0 && echo new >> bad/1")
        self.assertEqual(self.read("good", "0"), other + b"new\n")
        self.assertEqual(self.sh("tail -n 1 bad/1").stdout, b"new\n")
        self.assertEqual(xattr(self.m.path("bad", "0"), "log_end_offset"),
                         str(len(recs)))
        self.assertDaemonUp()


if __name__ == "__main__":
    unittest.main()
