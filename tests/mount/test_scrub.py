"""The background scrub through the real mount (issue 9, item 5;
docs/FILESYSTEM.md, "Background work"; docs/FORMAT.md, scrub-checkpoint).

The scrub checks every stored batch once and remembers it across mounts
(DATADIR/topics/<t>/<p>/scrub-checkpoint), so a restart does not read the
data directory again; .metrics counts what it read
(topicfs_scrub_bytes_total) and the passes it finished
(topicfs_scrub_passes_total). Its first pass starts 5 s after the mount.
"""
import os
import re
import unittest

from mountlib import DEADLINE_S, Mount, MountTest, wait_for

SEGMENT = 65536
# About 1 MiB in 100-byte lines: 16 sealed segments and an active one.
LINES = 10500


def line(i):
    return b"scrub %08d " % i + b"x" * 84 + b"\n"   # 100 bytes


def metric(text, name):
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


class ScrubTest(MountTest):
    mount_opts = ("num.partitions=1",)

    def setUp(self):
        super().setUp()
        self.held_fd = None
        self.addCleanup(self.release_metrics)

    def metrics(self):
        # The file is closed at the next call, not at once: ASan's writev
        # interceptor checks the reply buffer after the kernel has taken
        # it, and a release handled in between (it frees the text) looks
        # like a use after free in the ASan build.
        fd = os.open(self.m.path(".metrics"), os.O_RDONLY)
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        if getattr(self, "held_fd", None) is not None:
            os.close(self.held_fd)
        self.held_fd = fd
        text = b"".join(chunks).decode()
        return (metric(text, "topicfs_scrub_bytes_total"),
                metric(text, "topicfs_scrub_passes_total"))

    def wait_pass(self):
        """Wait for the first scrub pass of this mount to finish; the
        bytes it read."""
        wait_for(lambda: (self.metrics()[1] or 0) >= 1,
                 timeout=DEADLINE_S + 10, what="a scrub pass")
        return self.metrics()[0]

    def release_metrics(self):
        if getattr(self, "held_fd", None) is not None:
            os.close(self.held_fd)
            self.held_fd = None

    def restart(self, opts=()):
        self.release_metrics()
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        self.m = Mount(self.tmp, self.mount_opts + tuple(opts)).start()

    def fill(self):
        os.mkdir(self.m.path("t"))
        os.setxattr(self.m.path("t"), "user.topicfs.segment.bytes",
                    str(SEGMENT).encode())
        data = b"".join(line(i) for i in range(LINES))
        for k in range(0, len(data), 10000):   # one batch per write
            self.append(data[k:k + 10000], "t", "0")
        return data

    def part_dir(self):
        return os.path.join(self.m.data, "topics", "t", "0")

    def corrupt(self, seg_index, at):
        """Flip a byte of segment seg_index's payload (DATADIR, unmounted)."""
        segs = sorted(n for n in os.listdir(self.part_dir())
                      if n.endswith(".log"))
        path = os.path.join(self.part_dir(), segs[seg_index])
        with open(path, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0xFF]))

    def corrupt_lines(self):
        return [l for l in self.m.log_text().splitlines()
                if "topic t partition 0" in l and "corrupt" in l]

    def test_checked_data_is_not_read_again_after_a_remount(self):
        data = self.fill()
        # The first pass reads everything stored once (the active
        # segment's batches too: nothing had checked them on disk).
        self.assertEqual(self.wait_pass(), len(data))
        self.assertTrue(os.path.exists(
            os.path.join(self.part_dir(), "scrub-checkpoint")))
        self.restart()
        # The next mount's pass finds everything checked: reads nothing.
        self.assertEqual(self.wait_pass(), 0)
        # What was written since is read, and only that.
        more = b"".join(line(LINES + i) for i in range(100))
        self.append(more, "t", "0")
        self.restart()
        self.assertEqual(self.wait_pass(), len(more))
        self.assertEqual(self.read("t", "0"), data + more)

    def test_corruption_is_reported_once_per_mount(self):
        """Corruption nobody reads is found by the scrub and logged in one
        line; the bad segment is checked (and reported) again at each
        mount, the good ones are not."""
        data = self.fill()
        self.assertEqual(self.wait_pass(), len(data))
        self.release_metrics()
        self.assertEqual(self.m.unmount(), 0)
        self.corrupt(3, 5000)
        self.m = Mount(self.tmp, self.mount_opts).start()
        self.assertEqual(self.wait_pass(), 0, "a checked segment was read "
                         "again although nothing says it changed")
        # (Bytes corrupted after their check are found by the next check:
        # log.scrub.interval.ms; a read of them fails with EIO anyway.)
        with self.assertRaises(OSError) as cm:
            with open(self.m.path("t", "0"), "rb") as f:
                f.read()
        self.assertEqual(cm.exception.errno, 5)
        self.restart(("log.scrub.interval.ms=1",))
        self.wait_pass()
        lines = self.corrupt_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("1 corrupt batch", lines[0])
        # Checked again since: the next mount (default interval) reads
        # only the bad segment again, and reports it once more.
        self.restart()
        got = self.wait_pass()
        self.assertGreater(got, 0)
        self.assertLessEqual(got, SEGMENT + 10000)
        self.assertEqual(len(self.corrupt_lines()), 1)

    def test_damaged_record_means_everything_is_checked_again(self):
        """A record that fails its checksum is ignored, with one log
        line: everything is checked again. (A segment rewritten under its
        name is checked again too: tests/test_log.c.)"""
        data = self.fill()
        self.assertEqual(self.wait_pass(), len(data))
        self.release_metrics()
        self.assertEqual(self.m.unmount(), 0)
        rec = os.path.join(self.part_dir(), "scrub-checkpoint")
        with open(rec, "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 1]))
        self.m = Mount(self.tmp, self.mount_opts).start()
        self.assertEqual(self.wait_pass(), len(data))
        self.assertIn("scrub-checkpoint unreadable", self.m.log_text())

    def test_rate_limit_and_prompt_unmount(self):
        """At 1 byte per second the scrub reads one chunk and waits; the
        unmount does not wait for it."""
        self.fill()
        self.restart(("log.scrub.io.max.bytes.per.second=1",))
        wait_for(lambda: (self.metrics()[0] or 0) > 0,
                 timeout=DEADLINE_S + 10, what="the scrub's first chunk")
        first = self.metrics()[0]
        self.assertLessEqual(first, (1 << 20) + 10000)
        self.assertEqual(self.metrics(), (first, 0))
        self.release_metrics()
        self.assertEqual(self.m.unmount(timeout=10), 0)

    def test_bad_options_are_refused(self):
        self.release_metrics()
        self.assertEqual(self.m.unmount(), 0)
        for opt in ("log.scrub.io.max.bytes.per.second=fast",
                    "log.scrub.io.max.bytes.per.second=-1",
                    "log.scrub.interval.ms=0",
                    "log.scrub.interval.ms=1x"):
            m = Mount(self.tmp, (opt,))
            with self.assertRaises(AssertionError) as cm:
                m.start()
            self.assertIn(opt.split("=")[0], str(cm.exception))


if __name__ == "__main__":
    unittest.main()
