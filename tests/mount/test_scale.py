"""Many partitions under a low descriptor limit (issue 9, Scale).

The daemon runs under `prlimit --nofile=512:512`: with four descriptors
held per partition, as before, a few hundred partitions were the end
(creation failed with EMFILE and the next mount hid whole topics). Now
idle partitions' files are closed and reopened on demand within a budget
derived from the limit: thousands of partitions can be created, written,
read, and loaded again after a remount, and running out of descriptors
(readers holding more segments open than the limit allows) fails only the
requests that needed one."""
import errno
import os
import shutil

from mountlib import Mount, MountTest, need

LIMIT = 512
TOPICS = 25
PARTS = 100


def daemon_fds(m):
    return len(os.listdir(f"/proc/{m.proc.pid}/fd"))


class ScaleTest(MountTest):
    mount_opts = (f"num.partitions={PARTS}",)

    def setUp(self):
        need(shutil.which("prlimit") is not None, "prlimit is missing")
        super().setUp()
        # Again under the limit (the base class started it without).
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        self.start()

    def start(self, opts=None):
        self.m = Mount(self.tmp, opts if opts is not None else self.mount_opts)
        self.m.start(prefix=["prlimit", f"--nofile={LIMIT}:{LIMIT}"])
        return self.m

    def remount_limited(self):
        self.assertEqual(self.m.unmount(timeout=60), 0, self.m.log_text())
        return self.start()

    def line(self, t, p, n):
        return f"topic {t} partition {p} line {n}\n".encode()

    def test_thousands_of_partitions_under_a_low_limit(self):
        for t in range(TOPICS):
            os.mkdir(self.m.path(f"t{t}"))
        for t in range(TOPICS):
            for p in range(PARTS):
                data = self.line(t, p, 0)
                self.assertEqual(self.append(data, f"t{t}", str(p)),
                                 len(data))
                self.assertEqual(self.read(f"t{t}", str(p)), data)
        self.assertLess(daemon_fds(self.m), LIMIT)

        # Every topic loads again, each partition readable and writable.
        self.remount_limited()
        self.assertEqual(sorted(n for n in os.listdir(self.m.path())
                                if not n.startswith(".")),
                         sorted(f"t{t}" for t in range(TOPICS)))
        for t in range(TOPICS):
            self.assertEqual(sorted(int(n) for n in
                                    os.listdir(self.m.path(f"t{t}"))
                                    if n.isdigit()), list(range(PARTS)))
            for p in range(PARTS):
                first = self.line(t, p, 0)
                self.assertEqual(self.read(f"t{t}", str(p)), first)
                more = self.line(t, p, 1)
                self.append(more, f"t{t}", str(p))
                self.assertEqual(self.read(f"t{t}", str(p)), first + more)
        self.assertLess(daemon_fds(self.m), LIMIT)
        self.assertNotIn("cannot load", self.m.log_text())
        self.assertNotIn("cannot open partition", self.m.log_text())

    def test_out_of_descriptors_fails_only_that_request(self):
        os.mkdir(self.m.path("r"))
        for p in range(PARTS):
            self.append(self.line("r", p, 0), "r", str(p))
        # A reader that has read keeps its segment's files open (the
        # daemon may still splice from them): 3 descriptors each, so 100
        # and some other topics' readers need more than the limit.
        os.mkdir(self.m.path("s"))
        for p in range(PARTS):
            self.append(self.line("s", p, 0), "s", str(p))
        readers, failed = [], 0
        try:
            for topic in ("r", "s"):
                for p in range(PARTS):
                    fd = os.open(self.m.path(topic, str(p)), os.O_RDONLY)
                    readers.append(fd)
                    try:
                        self.assertEqual(os.read(fd, 5), b"topic")
                    except OSError as e:
                        self.assertEqual(e.errno, errno.EMFILE)
                        failed += 1
            self.assertGreater(failed, 0, "the limit was never reached")
            self.assertLess(failed, 2 * PARTS)
            # Meanwhile the others are served (a writer needs the
            # active segment of one partition only once it is free).
        finally:
            for fd in readers:
                os.close(fd)
        lines = [l for l in self.m.log_text().splitlines()
                 if "no file descriptor left" in l]
        self.assertEqual(len(lines), failed)
        # Nothing was hidden or broken: every partition reads and takes
        # appends again, now and after a remount.
        for topic in ("r", "s"):
            for p in range(PARTS):
                self.assertEqual(self.read(topic, str(p)),
                                 self.line(topic, p, 0))
        self.remount_limited()
        for topic in ("r", "s"):
            for p in range(PARTS):
                more = self.line(topic, p, 1)
                self.append(more, topic, str(p))
                self.assertEqual(self.read(topic, str(p)),
                                 self.line(topic, p, 0) + more)
        self.assertNotIn("cannot load", self.m.log_text())
