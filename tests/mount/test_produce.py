"""The acknowledgement of a write through the real mount (issue 9):
acks (0, 1, all) and write.caching say when write() returns, fsync()
makes durable what its file wrote and nothing else, .produce gets an
inode per open, and a .produce write stored in some partitions only
says so with its errno."""
import errno
import os
import subprocess

from mountlib import MountTest, wait_for

P = "user.topicfs."


class ProduceTest(MountTest):
    mount_opts = ("num.partitions=2",)

    def setUp(self):
        super().setUp()
        os.mkdir(self.m.path("t"))

    def set(self, path, name, value):
        os.setxattr(self.m.path(path), P + name, value.encode())

    def get(self, path, name):
        return os.getxattr(self.m.path(path), P + name).decode()

    def state(self, part):
        return (int(self.get(f"t/{part}", "log_end_offset")),
                int(self.get(f"t/{part}", "recovery_point")))

    def open(self, name, flags=os.O_WRONLY | os.O_APPEND):
        fd = os.open(self.m.path("t", name), flags)
        self.addCleanup(_close_quietly, fd)
        return fd

    def lines(self, needle):
        return [l for l in self.m.log_text().splitlines() if needle in l]

    # ---- acks and write.caching ----

    def test_acks_0_errors_reach_only_the_log(self):
        """acks=0 answers before appending: a refused record is not the
        writer's error but one log line; acks=1 and all tell the writer."""
        self.set("t", "max.message.bytes", "10")
        fd = self.open("0")
        for acks in ("1", "all"):
            self.set("t", "acks", acks)
            self.assertErrno(errno.EMSGSIZE, os.write, fd, b"x" * 20 + b"\n")
        self.set("t", "acks", "0")
        self.assertEqual(os.write(fd, b"y" * 20 + b"\n"), 21)
        self.assertEqual(os.write(fd, b"ok\n"), 3)
        wait_for(lambda: self.lines("acks=0 write of 21 bytes lost"),
                 what="the log line of the lost write")
        # Answered before appended: the record shows up soon after.
        wait_for(lambda: self.state(0)[0] == 1, what="the acks=0 record")
        with open(self.m.path("t", "0"), "rb") as f:
            self.assertEqual(f.read(), b"ok\n")

    def test_write_caching_false_returns_when_on_disk(self):
        """With write.caching=false a write() returns only once its
        records are on disk (the recovery point has passed them); with the
        default (true) it returns before."""
        fd = self.open("0")
        os.write(fd, b"cached\n")
        self.assertEqual(self.state(0), (1, 0))
        self.set("t", "write.caching", "false")
        for i in range(2, 6):
            os.write(fd, b"durable\n")
            end, rp = self.state(0)
            self.assertEqual((end, rp), (i, i))
        # acks=1 waits for the leader's disk (every acknowledged record
        # is on disk), and with caching for nothing but the append.
        self.set("t", "acks", "1")
        os.write(fd, b"leader\n")
        self.assertEqual(self.state(0), (6, 6))
        self.set("t", "write.caching", "true")
        os.write(fd, b"cached\n")
        self.assertEqual(self.state(0), (7, 6))

    def test_o_dsync_writes_are_durable(self):
        """A file opened with O_DSYNC (or O_SYNC) gets durable writes."""
        fd = self.open("0", os.O_WRONLY | os.O_APPEND | os.O_DSYNC)
        os.write(fd, b"a\nb\n")
        self.assertEqual(self.state(0), (2, 2))

    def test_fsync_syncs_what_its_file_wrote(self):
        """fsync() of .produce syncs the partitions that file wrote to,
        not the topic's others; fsync() of a reader syncs nothing."""
        self.set("t", "key.separator", ":")
        key = _key_for(self, 1)
        other = self.open("0")
        os.write(other, b"elsewhere\n")
        end0 = self.state(0)[0]
        produce = self.open(".produce")
        os.write(produce, key + b":mine\n")
        reader = os.open(self.m.path("t", "0"), os.O_RDONLY)
        self.addCleanup(_close_quietly, reader)
        os.fsync(reader)
        self.assertEqual(self.state(0)[1], 0)
        os.fsync(produce)
        end1, rp1 = self.state(1)
        self.assertEqual(rp1, end1)
        self.assertEqual(self.state(0), (end0, 0))
        os.fsync(other)
        self.assertEqual(self.state(0), (end0, end0))

    # ---- .produce ----

    def test_produce_has_an_inode_per_open(self):
        """Each lookup of .produce is a new inode, so that writers who
        open it do not wait for each other's writes in the kernel."""
        a, b = self.open(".produce"), self.open(".produce")
        self.assertNotEqual(os.fstat(a).st_ino, os.fstat(b).st_ino)
        os.write(a, b"one\n")
        os.write(b, b"two\n")
        os.close(a)
        os.close(b)
        got = b""
        for p in ("0", "1"):
            with open(self.m.path("t", p), "rb") as f:
                got += f.read()
        self.assertEqual(sorted(got.splitlines()), [b"one", b"two"])

    def test_partly_stored_write_says_so(self):
        """A .produce write whose records go to two partitions, of which
        the second fails after the first stored its records, fails with
        ENOTRECOVERABLE ("State not recoverable"), not the errno of the
        part that failed, and one log line says which part failed."""
        self.set("t", "key.separator", ":")
        self.set("t", "segment.bytes", "4096")
        k0, k1 = _key_for(self, 0), _key_for(self, 1)
        fd = self.open(".produce")
        # Fill partition 1's segment so that its next large record rolls
        # a new one, which its directory, made immutable, refuses.
        for _ in range(4):
            os.write(fd, k1 + b":" + b"f" * 990 + b"\n")
        pdir = os.path.join(self.m.data, "topics", "t", "1")
        subprocess.run(["chattr", "+i", pdir], check=True)
        self.addCleanup(subprocess.run, ["chattr", "-i", pdir])
        before0, before1 = self.state(0)[0], self.state(1)[0]
        self.assertErrno(errno.ENOTRECOVERABLE, os.write, fd,
                         k0 + b":stored\n" + k1 + b":" + b"r" * 990 + b"\n")
        self.assertEqual(self.state(0)[0], before0 + 1)
        self.assertEqual(self.state(1)[0], before1)
        self.assertEqual(len(self.lines("partly stored")), 1)

    def assertErrno(self, err, fn, *args):
        with self.assertRaises(OSError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.errno, err, os.strerror(err))


def _key_for(test, part):
    """A key that .produce sends to partition part (found by asking)."""
    for i in range(100):
        key = f"k{i}".encode()
        before = test.state(part)[0]
        fd = os.open(test.m.path("t", ".produce"), os.O_WRONLY)
        try:
            os.write(fd, key + b":probe\n")
        finally:
            os.close(fd)
        if test.state(part)[0] > before:
            return key
    raise AssertionError(f"no key for partition {part}")


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


if __name__ == "__main__":
    import unittest
    unittest.main()
