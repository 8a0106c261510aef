"""Reading (CONTRACT section 5): cat, head, grep, dd, tail -n, tail -f
and tail -F (also while retention deletes segments), the read views
<p>@<selector>, ERANGE for out-of-range offsets, and complete records
only."""
import datetime
import errno
import os
import re
import subprocess
import sys
import threading
import time
import unittest

from mountlib import MountTest, wait_for


def lines(prefix, a, b, pad=0):
    return [b"%s-%06d %s\n" % (prefix, i, b"." * ((i * 7) % 41 + pad))
            for i in range(a, b)]


def now_ms():
    return time.time_ns() // 1_000_000


class ReadTest(MountTest):
    def topic(self, name="t", **settings):
        os.mkdir(self.m.path(name))
        for k, v in settings.items():
            os.setxattr(self.m.path(name),
                        "user.topicfs." + k.replace("_", "."),
                        str(v).encode())
        return name

    def attr(self, path, name):
        return int(os.getxattr(self.m.path(path), "user.topicfs." + name))

    def write_lines(self, path, recs, per_write=1):
        fd = os.open(self.m.path(path), os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(0, len(recs), per_write):
                os.write(fd, b"".join(recs[i:i + per_write]))
        finally:
            os.close(fd)

    def start_tail(self, args, path):
        out = open(os.path.join(self.tmp, f"tail-{time.monotonic_ns()}"),
                   "w+b")
        p = subprocess.Popen(["tail"] + args + [path], cwd=self.m.mnt,
                             stdout=out, stderr=subprocess.PIPE)

        def stop():
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=10)
            out.close()
        self.addCleanup(stop)
        return p, out

    def wait_open(self, p, path):
        """Wait until process p has path open."""
        def is_open():
            self.assertIsNone(p.poll(), "tail exited")
            try:
                fds = os.listdir(f"/proc/{p.pid}/fd")
            except FileNotFoundError:
                return False
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{p.pid}/fd/{fd}") == path:
                        return True
                except OSError:
                    pass
            return False
        wait_for(is_open, what=f"tail to open {path}")

    @staticmethod
    def output(out):
        out.flush()
        with open(out.name, "rb") as f:
            return f.read()

    def wait_output(self, p, out, want, what, timeout=10):
        """Wait until the tail's output is exactly want (fail early if it
        has more than want or something else)."""
        def cond():
            got = self.output(out)
            if not want.startswith(got):
                raise AssertionError(
                    f"{what}: tail printed unexpected bytes: "
                    f"{got[-200:]!r} (want ...{want[-200:]!r})")
            self.assertIsNone(p.poll(), "tail exited")
            return got == want
        wait_for(cond, timeout=timeout, what=what)


class TestCatHeadGrepDd(ReadTest):
    """Whole-file and positioned reads over a multi-segment partition."""

    def setUp(self):
        super().setUp()
        # Small segments so that reads cross many segment boundaries.
        self.topic(segment_bytes=4096)
        self.recs = lines(b"rec", 0, 6000)
        self.write_lines("t/0", self.recs, per_write=50)
        self.data = b"".join(self.recs)

    def test_cat_exact_bytes(self):
        """cat prints exactly the bytes written, over many segments."""
        self.assertGreater(self.attr("t/0", "segments"), 20)
        self.assertEqual(self.sh("cat t/0").stdout, self.data)
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size,
                         len(self.data))
        # Twice: the second read may come from the page cache.
        self.assertEqual(self.sh("cat t/0").stdout, self.data)

    def test_head_grep(self):
        """head -n / -c and grep return the right lines."""
        self.assertEqual(self.sh("head -n 7 t/0").stdout,
                         b"".join(self.recs[:7]))
        self.assertEqual(self.sh("head -c 1000 t/0").stdout, self.data[:1000])
        self.assertEqual(self.sh("grep -F 'rec-0042' t/0").stdout,
                         b"".join(r for r in self.recs if b"rec-0042" in r))
        self.assertEqual(self.sh("grep -c '^rec-00[0-9]*5 ' t/0").stdout,
                         b"%d\n" % sum(1 for r in self.recs
                                      if re.match(rb"^rec-00\d*5 ", r)))
        self.assertEqual(self.sh("grep -n 'rec-005999' t/0").stdout,
                         b"6000:" + self.recs[-1])

    def test_dd_at_arbitrary_positions(self):
        """dd skip= bs= count= reads the bytes at any position, including
        across segment boundaries."""
        n = len(self.data)
        cases = [(1, 0, 17), (1, 4095, 3), (1, 12345, 77), (7, 585, 100),
                 (512, 8, 9), (1000, 7, 3), (4096, 1, 2), (4096, 5, 40),
                 (65536, 2, 3), (1, n - 5, 100), (1000, n // 1000, 5),
                 (4096, n // 4096 + 1, 1)]
        for bs, skip, count in cases:
            with self.subTest(bs=bs, skip=skip, count=count):
                got = self.sh(f"dd if=t/0 bs={bs} skip={skip} count={count} "
                              "status=none").stdout
                self.assertEqual(got, self.data[bs * skip:bs * (skip + count)])
        got = self.sh("dd if=t/0 iflag=skip_bytes,count_bytes skip=99999 "
                      "count=33333 bs=8192 status=none").stdout
        self.assertEqual(got, self.data[99999:99999 + 33333])

    def test_pread_random_positions(self):
        """pread at many positions and sizes returns the right bytes."""
        fd = os.open(self.m.path("t", "0"), os.O_RDONLY)
        try:
            n = len(self.data)
            for i in range(300):
                off = (i * 7919) % n
                size = 1 + (i * 104729) % 70000
                self.assertEqual(os.pread(fd, size, off),
                                 self.data[off:off + size], (off, size))
            self.assertEqual(os.pread(fd, 100, n), b"")
            self.assertEqual(os.pread(fd, 100, n + 12345), b"")
        finally:
            os.close(fd)

    def test_tail_n(self):
        """tail -n 10 and tail -c print the end of the partition."""
        self.assertEqual(self.sh("tail -n 10 t/0").stdout,
                         b"".join(self.recs[-10:]))
        self.assertEqual(self.sh("tail -n 1 t/0").stdout, self.recs[-1])
        self.assertEqual(self.sh("tail -c 5000 t/0").stdout,
                         self.data[-5000:])
        self.assertEqual(self.sh("tail -n +5990 t/0").stdout,
                         b"".join(self.recs[5989:]))


class TestLargeIO(ReadTest):
    """Data files ask for 1 MiB I/O (st_blksize), so cat, cp and dd move
    1 MiB per round trip; reads of that size come back whole, also when
    the kernel splits them into several FUSE requests."""

    MIB = 1 << 20

    def test_blksize(self):
        self.topic()
        for name in ("0", "0@earliest", ".groups/g"):
            self.assertEqual(os.stat(self.m.path("t", name)).st_blksize,
                             self.MIB, name)
        # Half, so that a tool's write() is never cut into requests.
        self.assertEqual(os.stat(self.m.path("t", ".produce")).st_blksize,
                         self.MIB // 2)

    def test_one_mib_writes_and_reads(self):
        for segment_bytes in (None, 256 << 10):
            with self.subTest(segment_bytes=segment_bytes):
                if segment_bytes:
                    self.topic("s", segment_bytes=segment_bytes)
                else:
                    self.topic("s")
                recs = lines(b"big", 0, 40000, pad=60)
                data = b"".join(recs)
                # 1 MiB writes that cut lines in two, as cat's do.
                fd = os.open(self.m.path("s", "0"), os.O_WRONLY | os.O_APPEND)
                try:
                    for i in range(0, len(data), self.MIB):
                        chunk = data[i:i + self.MIB]
                        self.assertEqual(os.write(fd, chunk), len(chunk))
                finally:
                    os.close(fd)
                self.assertEqual(self.attr("s/0", "log_end_offset"), len(recs))
                fd = os.open(self.m.path("s", "0"), os.O_RDONLY)
                try:
                    got = []
                    while (b := os.read(fd, self.MIB)):
                        got.append(b)
                finally:
                    os.close(fd)
                self.assertEqual(b"".join(got), data)
                self.assertEqual([len(b) for b in got[:-1]],
                                 [self.MIB] * (len(got) - 1))
                os.rmdir(self.m.path("s"))


class TestZeroCopy(ReadTest):
    """Reads of an uncompressed partition are spliced from the segment
    files: the bytes never pass through the daemon's memory, so its read()
    and pread() calls (rchar in /proc/PID/io; splice does not count there)
    take a tiny fraction of what the reader gets. A compressed partition
    is read and decompressed by the daemon: that shows as rchar."""

    SIZE = 16 << 20

    def daemon_rchar(self):
        with open(f"/proc/{self.m.proc.pid}/io") as f:
            return int(next(l for l in f if l.startswith("rchar:")).split()[1])

    def rchar_of_reading(self, topic):
        # Random hex: compressible to about half, not to nothing.
        data = b"".join(b"%08d %s\n" % (i, os.urandom(45).hex().encode())
                        for i in range(self.SIZE // 100))
        with open(self.m.path(topic, "0"), "ab") as f:
            f.write(data)
        before = self.daemon_rchar()
        with open(self.m.path(topic, "0"), "rb") as f:
            self.assertEqual(f.read(), data)
        return self.daemon_rchar() - before

    def test_uncompressed_reads_do_not_pass_through_the_daemon(self):
        self.topic("t")
        self.assertLess(self.rchar_of_reading("t"), self.SIZE // 64)

    def test_compressed_reads_do(self):
        self.topic("z", compression_type="zstd")
        self.assertGreater(self.rchar_of_reading("z"), self.SIZE // 64)

    def test_tail_after_a_remount_reads_only_the_end(self):
        """tail -n 10 costs the same on a big partition as on a small one:
        after a remount (nothing verified yet) the daemon reads the last
        batches to check them, not the partition."""
        self.topic("t")
        recs = [b"%08d %s\n" % (i, os.urandom(45).hex().encode())
                for i in range(2 * self.SIZE // 100)]
        with open(self.m.path("t", "0"), "ab") as f:
            for k in range(0, len(recs), 10000):
                f.write(b"".join(recs[k:k + 10000]))
        self.remount()
        before = self.daemon_rchar()
        self.assertEqual(self.sh("tail -n 10 t/0").stdout,
                         b"".join(recs[-10:]))
        self.assertLess(self.daemon_rchar() - before, 4 << 20)


class TestUserMaxRead(TestLargeIO):
    """A user's -o max_read is the mount's (topicfs sets 512 KiB only when
    none is given), and reads of 1 MiB still come back whole through
    requests of that size."""
    mount_opts = ("num.partitions=1", "max_read=65536")

    def test_mount_option(self):
        with open("/proc/self/mountinfo") as f:
            line = next(l for l in f
                        if l.split()[4] == os.path.realpath(self.m.mnt))
        self.assertRegex(line, r"[ ,]max_read=65536(,|\s|$)")


class TestTailFollow(ReadTest):
    def follow(self, opts, path="t/0", extra=()):
        """Start tail with opts on path; the topic already holds 5 lines.
        Append in rounds (through the partition and through .produce),
        waiting for each round to be printed."""
        first = lines(b"old", 0, 5)
        self.write_lines("t/0", first)
        p, out = self.start_tail(opts, path)
        want = b"".join(first)
        self.wait_output(p, out, want, "the existing lines")
        for r in range(6):
            new = lines(b"r%d" % r, 0, 1 + 3 * r)
            via = ".produce" if r % 2 else "0"
            self.write_lines("t/" + via, new, per_write=1 + r % 3)
            want += b"".join(new)
            self.wait_output(p, out, want, f"round {r} via {via}",
                             timeout=10)
        return p, out

    def test_tail_f(self):
        """tail -f follows appends, no line twice, none skipped."""
        self.topic()
        self.follow(["-n", "+1", "-f"])

    def test_tail_F(self):
        """tail -F (follow by name, retry) follows appends too."""
        self.topic()
        self.follow(["-n", "+1", "-F"])

    def test_tail_f_within_about_a_second(self):
        """With tail's default poll interval an append shows in ~1 s."""
        self.topic()
        self.write_lines("t/0", [b"start\n"])
        p, out = self.start_tail(["-f"], "t/0")
        self.wait_output(p, out, b"start\n", "the first line")
        t0 = time.monotonic()
        self.write_lines("t/0", [b"next\n"])
        self.wait_output(p, out, b"start\nnext\n", "the appended line",
                         timeout=5)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_tail_f_while_retention_deletes(self):
        """tail -f prints every record exactly once while retention deletes
        old segments under it (segment.bytes=4096, retention.bytes=8192)."""
        self.follow_during_retention("-f")

    def test_tail_F_while_retention_deletes(self):
        self.follow_during_retention("-F")

    def follow_during_retention(self, flag):
        self.topic(segment_bytes=4096, retention_bytes=8192)
        p, out = self.start_tail(["-s", "0.2", "-n", "+1", flag], "t/0")
        want = b""
        i = 0
        deleted_at = None
        for r in range(200):
            new = lines(b"ret", i, i + 25, pad=10)
            i += 25
            self.write_lines("t/0", new, per_write=1 + r % 4)
            want += b"".join(new)
            self.wait_output(p, out, want, f"round {r}")
            lso = self.attr("t/0", "log_start_offset")
            if lso > 0 and deleted_at is None:
                deleted_at, first_lso = r, lso
            # Go on until retention has run again under the follower.
            if deleted_at is not None and r >= deleted_at + 5 and \
                    lso > first_lso:
                break
        self.assertIsNotNone(deleted_at, "retention never ran")
        got = self.output(out)
        self.assertEqual(got, want)
        # And cat now prints the retained records only, from the first
        # (retention may run again between the xattr and cat).
        lso = self.attr("t/0", "log_start_offset")
        got = self.sh("cat t/0").stdout
        recs = want.splitlines(True)
        start = len(recs) - len(got.splitlines(True))
        self.assertGreaterEqual(start, lso)
        self.assertEqual(got, b"".join(recs[start:]))


class TestRetentionRead(ReadTest):
    def test_cat_after_retention(self):
        """After retention removed the head, cat prints every retained
        record starting at the first retained one, and exits."""
        self.topic(segment_bytes=4096, retention_bytes=8192)
        recs = lines(b"r", 0, 1000)
        self.write_lines("t/0", recs, per_write=10)
        wait_for(lambda: self.attr("t/0", "log_start_offset") > 0,
                 timeout=10, what="retention to delete segments")
        lso = self.attr("t/0", "log_start_offset")
        self.assertGreater(lso, 0)
        r = subprocess.run(["cat", self.m.path("t", "0")],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Retention may run again between the xattr and cat: accept a
        # later start, but it must be a suffix that starts at a record.
        got = r.stdout
        start = len(recs) - len(got.splitlines(True))
        self.assertGreaterEqual(start, lso)
        self.assertEqual(got, b"".join(recs[start:]))
        self.assertLess(len(got), len(b"".join(recs)))
        # Views: earliest is the log start; below it is ERANGE.
        lso = self.attr("t/0", "log_start_offset")
        self.assertEqual(self.read("t", "0@earliest"), b"".join(recs[lso:]))
        r = self.sh(f"cat t/0@{lso - 1}", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Numerical result out of range", r.stderr)
        self.assertErrno(errno.ERANGE, os.stat, self.m.path("t", "0@0"))
        self.assertEqual(self.read("t", f"0@{lso}"), b"".join(recs[lso:]))
        self.assertEqual(self.sh("tail -n 3 t/0").stdout,
                         b"".join(recs[-3:]))

    def test_positions_stable_after_retention(self):
        """After retention, stat size is still the end position and the
        byte at position P (at or above the log start) is the same byte:
        dd skip=P of a fresh open reads it."""
        self.topic(segment_bytes=4096, retention_bytes=8192)
        recs = lines(b"s", 0, 800)
        data = b"".join(recs)
        self.write_lines("t/0", recs, per_write=20)
        wait_for(lambda: self.attr("t/0", "log_start_position") > 0,
                 timeout=10, what="retention to delete segments")
        start = self.attr("t/0", "log_start_position")
        lso = self.attr("t/0", "log_start_offset")
        self.assertEqual(start, len(b"".join(recs[:lso])))
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, len(data))
        for p in (start, start + 1, (start + len(data)) // 2, len(data) - 5):
            with self.subTest(p=p):
                got = self.sh(f"dd if=t/0 bs=1 skip={p} count=50 "
                              "status=none").stdout
                self.assertEqual(got, data[p:p + 50])
        self.assertEqual(self.sh("tail -c 100 t/0").stdout, data[-100:])


class TestViews(ReadTest):
    def setUp(self):
        super().setUp()
        self.topic()
        self.recs = lines(b"v", 0, 10)
        self.write_lines("t/0", self.recs)

    def cat(self, name):
        return self.sh(f"cat 't/{name}'").stdout

    def test_offset_views(self):
        """0@<offset>, 0@earliest, 0@latest, 0@-3 read from the right
        record."""
        data = b"".join(self.recs)
        self.assertEqual(self.cat("0@0"), data)
        self.assertEqual(self.cat("0@4"), b"".join(self.recs[4:]))
        self.assertEqual(self.cat("0@9"), self.recs[9])
        self.assertEqual(self.cat("0@10"), b"")
        self.assertEqual(self.cat("0@earliest"), data)
        self.assertEqual(self.cat("0@latest"), b"")
        self.assertEqual(self.cat("0@-3"), b"".join(self.recs[7:]))
        self.assertEqual(self.cat("0@-1"), self.recs[9])
        self.assertEqual(self.cat("0@-10"), data)
        self.assertEqual(self.cat("0@-100"), data)  # fewer if shorter
        self.assertEqual(self.sh("head -n 2 t/0@5").stdout,
                         b"".join(self.recs[5:7]))
        self.assertEqual(os.stat(self.m.path("t", "0@4")).st_size,
                         len(b"".join(self.recs[4:])))
        self.assertEqual(self.sh("dd if=t/0@3 bs=1 skip=2 count=5 "
                                 "status=none").stdout,
                         b"".join(self.recs[3:])[2:7])

    def test_view_is_stable_and_grows(self):
        """A view opened before an append sees the append; its start
        stays at the record chosen."""
        with open(self.m.path("t", "0@8"), "rb") as f:
            self.assertEqual(f.read(), b"".join(self.recs[8:]))
            more = lines(b"w", 0, 3)
            self.write_lines("t/0", more)
            self.assertEqual(f.read(), b"".join(more))
        self.assertEqual(self.cat("0@-2"), b"".join(more[1:]))

    def test_views_not_listed(self):
        """Views are opened by name only: ls never shows them."""
        with open(self.m.path("t", "0@3"), "rb"):
            self.read("t", "0@latest")
            self.assertEqual(self.sh("ls t").stdout, b"0\n")
            self.assertEqual(sorted(os.listdir(self.m.path("t"))),
                             [".groups", ".produce", "0"])
            self.assertEqual(self.sh("ls -a t | grep -c @",
                                     check=False).stdout, b"0\n")

    def test_out_of_range_erange(self):
        """Offsets past the end give ERANGE with a clear message."""
        for name in ("0@11", "0@12345", "0@18446744073709551615"):
            with self.subTest(name=name):
                r = self.sh(f"cat t/{name}", check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(b"Numerical result out of range", r.stderr)
                self.assertErrno(errno.ERANGE, os.open, self.m.path("t", name),
                                 os.O_RDONLY)
                self.assertEqual(r.stdout, b"")

    def test_bad_selectors_enoent(self):
        """Something that is not a selector is simply no such file."""
        for name in ("0@", "0@abc", "0@-", "0@-x", "0@t=", "0@t=abc",
                     "5@0", "0@1.5", "0@2026-13-45T99:00:00Z"):
            with self.subTest(name=name):
                with self.assertRaises(OSError) as cm:
                    os.stat(self.m.path("t", name))
                self.assertIn(cm.exception.errno, (errno.ENOENT, errno.EINVAL))

    def test_views_are_read_only(self):
        """A view cannot be written."""
        r = self.sh("echo x >> t/0@3", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.attr("t/0", "log_end_offset"), 10)

    def test_latest_with_tail_f(self):
        """0@latest is empty now; tail -f on it shows later appends only."""
        self.assertEqual(self.cat("0@latest"), b"")
        p, out = self.start_tail(["-s", "0.2", "-f"], "t/0@latest")
        self.wait_open(p, self.m.path("t", "0@latest"))
        self.assertEqual(self.output(out), b"")
        new = lines(b"late", 0, 4)
        want = b""
        for rec in new:
            self.write_lines("t/0", [rec])
            want += rec
            self.wait_output(p, out, want, f"{rec!r}")
        self.write_lines("t/.produce", [b"via produce\n"])
        self.wait_output(p, out, want + b"via produce\n", "the .produce line")

    def wait_next_ms(self):
        """A millisecond later than every record written so far."""
        t = now_ms()
        wait_for(lambda: now_ms() > t, what="the clock to tick",
                 interval=0.0005)
        return now_ms()

    def test_time_views(self):
        """0@t=<ms> and 0@<ISO time> start at the first record appended at
        or after that time."""
        t1 = self.wait_next_ms()
        b = lines(b"b", 0, 5)
        self.write_lines("t/0", b, per_write=2)
        t2 = self.wait_next_ms()
        c = lines(b"c", 0, 3)
        self.write_lines("t/0", c)
        t3 = self.wait_next_ms()
        self.assertEqual(self.cat(f"0@t={t1}"), b"".join(b + c))
        self.assertEqual(self.cat(f"0@t={t2}"), b"".join(c))
        self.assertEqual(self.cat(f"0@t={t3}"), b"")    # after the newest
        self.assertEqual(self.cat("0@t=0"), b"".join(self.recs + b + c))

        def iso(ms, tz=datetime.timezone.utc):
            d = datetime.datetime.fromtimestamp(ms / 1000, tz)
            s = d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03d" % (ms % 1000)
            off = d.strftime("%z")
            return s + ("Z" if off == "+0000" else off[:3] + ":" + off[3:])
        self.assertEqual(self.cat("0@" + iso(t1)), b"".join(b + c))
        self.assertEqual(self.cat("0@" + iso(t2)), b"".join(c))
        plus2 = datetime.timezone(datetime.timedelta(hours=2))
        minus5 = datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))
        self.assertTrue(iso(t2, plus2).endswith("+02:00"))
        self.assertEqual(self.cat("0@" + iso(t2, plus2)), b"".join(c))
        self.assertEqual(self.cat("0@" + iso(t1, minus5)), b"".join(b + c))
        self.assertEqual(self.cat("0@2000-01-01T00:00:00Z"),
                         b"".join(self.recs + b + c))
        self.assertEqual(self.cat("0@2999-01-01T00:00:00Z"), b"")

    def test_iso_time_whole_seconds(self):
        """An ISO time without fraction selects from that second on."""
        t = now_ms()
        wait_for(lambda: now_ms() // 1000 > t // 1000, timeout=3,
                 what="the next second")
        sec = now_ms() // 1000
        d = lines(b"d", 0, 3)
        self.write_lines("t/0", d)
        name = datetime.datetime.fromtimestamp(
            sec, datetime.timezone.utc).strftime("0@%Y-%m-%dT%H:%M:%SZ")
        self.assertEqual(self.cat(name), b"".join(d))


# Writers that cut their lines anywhere, and .produce writers.
WRITER = r"""
import os, random, sys
w, n = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(w)
data = b"".join(b"w%d-%06d-%s\n" % (w, i, b"z" * (i % 31)) for i in range(n))
at = 0
while at < len(data):
    at += os.write(1, data[at:at + rnd.randint(1, 300)])
"""


class TestCompleteRecords(ReadTest):
    # These read through a view (direct_io, no kernel page cache): the
    # cached partition file has its own race, see
    # test_no_nul_bytes_while_stat_races_reads.
    def test_readers_see_complete_records_only(self):
        """While writers append to .produce (cutting lines across
        write()s), every read of the partition ends at a record boundary
        and holds only whole lines."""
        self.topic()
        self.sh("echo seed >> t/0")
        self._race(".produce")

    def test_readers_see_complete_records_only_partition_writers(self):
        """The same with writers appending `>>` to the partition file."""
        self.topic()
        self.sh("echo seed >> t/0")
        self._race("0")

    # Regression: with the page cache, a READ reply ending at the HW that
    # raced with a GETATTR raising i_size left zeros in the last page.
    def test_no_nul_bytes_while_stat_races_reads(self):
        """Reading the end of a partition while writers append and other
        threads stat it: only whole written lines, never NUL bytes."""
        self.topic()
        writer = r'''
import os, sys
w = int(sys.argv[1])
for i in range(1000000):
    os.write(1, b"w%d-%06d-%s\n" % (w, i, b"z" * (i % 31)))
'''
        procs = [subprocess.Popen(
            ["bash", "-c", f'exec "$0" -c "$1" {w} >> t/.produce',
             sys.executable, writer], cwd=self.m.mnt,
            stderr=subprocess.DEVNULL) for w in range(2)]
        stop = threading.Event()

        def statter():
            while not stop.is_set():
                os.stat(self.m.path("t", "0"))
        threads = [threading.Thread(target=statter) for _ in range(2)]
        for t in threads:
            t.start()
        pat = re.compile(rb"^w\d-\d{6}-z*$")
        try:
            end = time.monotonic() + 8
            reads = 0
            while time.monotonic() < end:
                with open(self.m.path("t", "0"), "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(0, size - 65536))
                    data = f.read()
                reads += 1
                nul = data.find(b"\0")
                self.assertEqual(nul, -1, f"read {reads}: NUL bytes: "
                                 f"{data[max(0, nul - 60):nul + 20]!r}")
                for line in data.split(b"\n")[1:-1]:
                    self.assertRegex(line, pat)
        finally:
            stop.set()
            for t in threads:
                t.join()
            for p in procs:
                p.kill()
                p.wait()

    def _race(self, target):
        procs = [subprocess.Popen(
            ["bash", "-c", f'exec "$0" -c "$1" {w} 4000 >> t/{target}',
             sys.executable, WRITER], cwd=self.m.mnt,
            stderr=subprocess.PIPE) for w in range(3)]
        pat = re.compile(rb"^(seed|w\d-\d{6}-z*)$")
        reads = 0
        try:
            while reads < 5 or any(p.poll() is None for p in procs):
                with open(self.m.path("t", "0"), "rb") as f:
                    data = f.read()
                size = os.stat(self.m.path("t", "0")).st_size
                self.assertGreaterEqual(size, len(data))
                self.assertTrue(data.endswith(b"\n"), data[-100:])
                for line in data.split(b"\n")[:-1]:
                    self.assertRegex(line, pat)
                reads += 1
                # A partial read through the shell as well.
                out = self.sh("tail -c 200 t/0").stdout
                self.assertTrue(out.endswith(b"\n"), out)
        finally:
            for p in procs:
                _, err = p.communicate(timeout=120)
                self.assertEqual(p.returncode, 0, err)
        self.assertGreaterEqual(reads, 5)


if __name__ == "__main__":
    unittest.main()
