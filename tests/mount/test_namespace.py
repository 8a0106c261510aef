"""Namespace of the mount (CONTRACT sections 2 and 4): topics as
directories with Kafka's name rule, partition files that behave like
`chattr +a` files, sizes that are current at once, root listing, topic
re-creation and persistence across a remount."""
import datetime
import errno
import os
import time
import unittest

from mountlib import MountTest, wait_for

VALID_CHARS = ("abcdefghijklmnopqrstuvwxyz" "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789._-")


class TestTopicNames(MountTest):
    """mkdir/rmdir of topics with Kafka's name rule."""

    def ls_root(self):
        return sorted(os.listdir(self.m.mnt))

    def test_valid_names_create_topics(self):
        """Names of 1..249 chars of [A-Za-z0-9._-] become topics."""
        names = ["a", "Z", "0", "_", "-", "a.b", "x..y", "my-topic_v1.2",
                 VALID_CHARS, "n" * 249, "a" + "." * 248]
        for name in names:
            os.mkdir(self.m.path(name))
        self.assertEqual(sorted(n for n in self.ls_root()
                                if not n.startswith(".")), sorted(names))
        for name in names:
            self.assertTrue(os.path.isdir(self.m.path(name)), name)
            self.assertEqual(os.listdir(self.m.path(name)).count("0"), 1)

    def test_mkdir_with_shell(self):
        """`mkdir t` then `ls` shows the topic, `rmdir t` removes it."""
        self.sh("mkdir orders && ls")
        self.assertIn("orders", self.sh("ls").stdout.decode().split())
        self.sh("rmdir orders")
        self.assertNotIn("orders", self.sh("ls").stdout.decode().split())
        self.assertFalse(os.path.exists(self.m.path("orders")))

    def test_invalid_names_einval_nothing_created(self):
        """Bad names: EINVAL and nothing created."""
        before = self.ls_root()
        bad = ["n" * 250, "a b", "a:b", "a*b", "a\\b", "é", "a\tb",
               "a\nb", "topic!", "a#b", "a+b", "a@b", "a,b",
               ".hidden", "...", ".produce", ".x" + "y" * 100]
        for name in bad:
            with self.subTest(name=name):
                self.assertErrno(errno.EINVAL, os.mkdir, self.m.path(name))
                self.assertFalse(os.path.exists(self.m.path(name)))
        self.assertEqual(self.ls_root(), before)

    def test_250_chars_einval_from_shell(self):
        """mkdir of a 250-char name prints Invalid argument."""
        r = self.sh("mkdir " + "k" * 250, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Invalid argument", r.stderr)
        os.mkdir(self.m.path("k" * 249))  # one less is fine

    def test_dot_and_dotdot_not_topics(self):
        """`.` and `..` cannot be created as topics."""
        before = self.ls_root()
        for name in (".", ".."):
            with self.assertRaises(OSError) as cm:
                os.mkdir(self.m.path(name))
            # The kernel answers these itself (EEXIST); never a success.
            self.assertIn(cm.exception.errno, (errno.EEXIST, errno.EINVAL))
        self.assertEqual(self.ls_root(), before)

    def test_mkdir_existing_eexist(self):
        """mkdir of an existing topic: EEXIST."""
        os.mkdir(self.m.path("t"))
        self.assertErrno(errno.EEXIST, os.mkdir, self.m.path("t"))

    def test_rmdir_missing_enoent(self):
        """rmdir of an unknown topic: ENOENT."""
        self.assertErrno(errno.ENOENT, os.rmdir, self.m.path("nope"))

    def test_no_directories_inside_topics(self):
        """A topic holds no user directories."""
        os.mkdir(self.m.path("t"))
        with self.assertRaises(OSError) as cm:
            os.mkdir(self.m.path("t", "sub"))
        self.assertIn(cm.exception.errno, (errno.EPERM, errno.EINVAL))
        self.assertNotIn("sub", os.listdir(self.m.path("t")))

    def test_rmdir_then_mkdir_gives_empty_topic(self):
        """rmdir of a topic with data, then mkdir: empty, default config."""
        os.mkdir(self.m.path("t"))
        self.sh("echo one >> t/0 && echo two >> t/0")
        os.setxattr(self.m.path("t"), "user.topicfs.retention.ms", b"1234")
        os.setxattr(self.m.path("t"), "user.topicfs.partitions", b"3")
        self.assertEqual(len([n for n in os.listdir(self.m.path("t"))
                              if n.isdigit()]), 3)
        self.sh("rmdir t")
        self.assertFalse(os.path.exists(self.m.path("t")))
        self.sh("mkdir t")
        self.assertEqual(self.read("t", "0"), b"")
        self.assertEqual(os.stat(self.m.path("t", "0")).st_size, 0)
        self.assertEqual(sorted(n for n in os.listdir(self.m.path("t"))
                                if not n.startswith(".")), ["0"])
        self.assertEqual(os.getxattr(self.m.path("t"),
                                     "user.topicfs.retention.ms"),
                         b"604800000")
        self.assertEqual(os.getxattr(self.m.path("t", "0"),
                                     "user.topicfs.log_end_offset"), b"0")
        self.sh("echo three >> t/0")
        self.assertEqual(self.read("t", "0"), b"three\n")

    def test_open_file_of_deleted_topic(self):
        """A reader of a deleted topic keeps its bytes; a new topic of the
        same name does not see them."""
        os.mkdir(self.m.path("t"))
        self.sh("echo old >> t/0")
        with open(self.m.path("t", "0"), "rb") as f:
            os.rmdir(self.m.path("t"))
            os.mkdir(self.m.path("t"))
            self.sh("echo new >> t/0")
            self.assertEqual(f.read(), b"old\n")
        self.assertEqual(self.read("t", "0"), b"new\n")


class TestRootListing(MountTest):
    def test_readdir_root(self):
        """ls -a of the root lists every topic, .status and .metrics."""
        for name in ("alpha", "beta", "gamma"):
            os.mkdir(self.m.path(name))
        out = self.sh("ls -a").stdout.decode().split()
        self.assertEqual(sorted(out), sorted([".", "..", ".metrics",
                                              ".status", "alpha", "beta",
                                              "gamma"]))
        self.assertEqual(sorted(self.sh("ls").stdout.decode().split()),
                         ["alpha", "beta", "gamma"])
        os.rmdir(self.m.path("beta"))
        self.assertEqual(sorted(os.listdir(self.m.mnt)),
                         [".metrics", ".status", "alpha", "gamma"])

    def test_readdir_many_topics(self):
        """A root with more topics than fit one readdir reply lists all."""
        names = {f"topic-{i:04d}-{'x' * 150}" for i in range(100)}
        for n in names:
            os.mkdir(self.m.path(n))
        listed = os.listdir(self.m.mnt)
        self.assertEqual(len(listed), len(set(listed)), "duplicates")
        self.assertEqual(set(listed) - {".status", ".metrics"}, names)


class TestPartitionCount(MountTest):
    mount_opts = ("num.partitions=5",)

    def test_num_partitions_option(self):
        """-o num.partitions=5: a new topic lists files 0..4 in ls."""
        self.sh("mkdir t")
        out = self.sh("ls t").stdout.decode().split()
        self.assertEqual(out, ["0", "1", "2", "3", "4"])
        self.assertEqual(sorted(os.listdir(self.m.path("t"))),
                         [".groups", ".produce", "0", "1", "2", "3", "4"])
        self.assertEqual(os.getxattr(self.m.path("t"),
                                     "user.topicfs.partitions"), b"5")
        for p in range(5):
            st = os.stat(self.m.path("t", str(p)))
            self.assertEqual(st.st_size, 0)
        self.assertErrno(errno.ENOENT, os.stat, self.m.path("t", "5"))
        self.assertErrno(errno.ENOENT, os.stat, self.m.path("t", "01"))

    def test_many_partitions_listed(self):
        """A topic grown to 150 partitions lists 0..149 once each (more
        than one readdir reply)."""
        self.sh("mkdir t")
        os.setxattr(self.m.path("t"), "user.topicfs.partitions", b"150")
        names = self.sh("ls t").stdout.decode().split()
        self.assertEqual(sorted(names, key=int), [str(p) for p in range(150)])
        self.assertEqual(len(os.listdir(self.m.path("t"))), 152)
        self.sh("echo last >> t/149")
        self.assertEqual(self.read("t", "149"), b"last\n")
        self.assertErrno(errno.ENOENT, os.stat, self.m.path("t", "150"))

    def test_option_applies_to_new_topics_only(self):
        """Remounting with another num.partitions keeps existing topics."""
        self.sh("mkdir t")
        self.remount(("num.partitions=2",))
        self.sh("mkdir u")
        self.assertEqual(self.sh("ls t").stdout.decode().split(),
                         ["0", "1", "2", "3", "4"])
        self.assertEqual(self.sh("ls u").stdout.decode().split(), ["0", "1"])


class TestAppendOnly(MountTest):
    """Partition files behave like `chattr +a` files."""

    def setUp(self):
        super().setUp()
        os.mkdir(self.m.path("t"))
        self.sh("echo first >> t/0")

    def assertUnchanged(self):
        self.assertEqual(self.read("t", "0"), b"first\n")
        self.assertEqual(sorted(n for n in os.listdir(self.m.path("t"))
                                if not n.startswith(".")), ["0"])

    def test_redirect_truncate_eperm(self):
        """`echo x > t/0` prints Operation not permitted, data kept."""
        r = self.sh("echo x > t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertUnchanged()

    def test_append_redirect(self):
        """`>>` appends."""
        self.sh("echo second >> t/0; printf 'third\\nfourth\\n' >> t/0")
        self.assertEqual(self.read("t", "0"),
                         b"first\nsecond\nthird\nfourth\n")

    def test_truncate_eperm(self):
        """truncate(1), truncate(2), ftruncate(2), O_TRUNC: EPERM."""
        r = self.sh("truncate -s 0 t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertErrno(errno.EPERM, os.truncate, self.m.path("t", "0"), 0)
        self.assertErrno(errno.EPERM, os.truncate, self.m.path("t", "0"), 100)
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            self.assertErrno(errno.EPERM, os.ftruncate, fd, 0)
        finally:
            os.close(fd)
        self.assertErrno(errno.EPERM, os.open, self.m.path("t", "0"),
                         os.O_WRONLY | os.O_TRUNC)
        self.assertUnchanged()

    def test_unlink_eperm(self):
        """rm of a partition file: EPERM."""
        r = self.sh("rm -f t/0", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertErrno(errno.EPERM, os.unlink, self.m.path("t", "0"))
        self.assertUnchanged()

    def test_rename_eperm(self):
        """mv of a partition file (or onto one) or of a topic: EPERM."""
        r = self.sh("mv t/0 t/7", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertErrno(errno.EPERM, os.rename, self.m.path("t", "0"),
                         self.m.path("t", "1"))
        os.mkdir(self.m.path("u"))
        self.assertErrno(errno.EPERM, os.rename, self.m.path("u", "0"),
                         self.m.path("t", "0"))
        self.assertUnchanged()
        self.assertEqual(self.read("u", "0"), b"")

    def test_create_eperm(self):
        """New files cannot be created, in a topic or in the root."""
        r = self.sh("touch t/1", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertErrno(errno.EPERM, os.open, self.m.path("t", "9"),
                         os.O_WRONLY | os.O_CREAT, 0o644)
        self.assertErrno(errno.EPERM, os.mknod, self.m.path("t", "notes"))
        r = self.sh("echo x > newfile", check=False)
        self.assertIn(b"Operation not permitted", r.stderr)
        self.assertFalse(os.path.exists(self.m.path("newfile")))
        self.assertUnchanged()

    def test_touch_accepted(self):
        """touch of an existing partition succeeds and changes nothing."""
        self.sh("touch t/0")
        self.assertUnchanged()

    def test_write_ignores_file_position(self):
        """A write appends whatever the file position (O_APPEND semantics)."""
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b"second\n")
            os.pwrite(fd, b"third\n", 1)
        finally:
            os.close(fd)
        self.assertEqual(self.read("t", "0"), b"first\nsecond\nthird\n")


class TestSizes(MountTest):
    mount_opts = ("num.partitions=3",)

    def size(self, p):
        return os.stat(self.m.path("t", str(p))).st_size

    def ls_sizes(self):
        out = self.sh("ls -l t").stdout.decode().splitlines()
        sizes = {}
        for line in out[1:]:
            f = line.split()
            sizes[f[-1]] = int(f[4])
        return sizes

    def test_stat_current_after_each_append(self):
        """stat and ls -l give the new size right after each write."""
        os.mkdir(self.m.path("t"))
        total = 0
        fd = os.open(self.m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(50):
                line = b"line %d %s\n" % (i, b"z" * i)
                os.write(fd, line)
                total += len(line)
                self.assertEqual(self.size(0), total)
                self.assertEqual(os.fstat(fd).st_size, total)
        finally:
            os.close(fd)
        self.sh("echo more >> t/0")
        total += 5
        self.assertEqual(int(self.sh("stat -c %s t/0").stdout), total)
        self.assertEqual(self.ls_sizes()["0"], total)

    def test_stat_current_after_produce(self):
        """Appends through .produce show in stat and ls -l at once, also for
        a reader holding the partition open."""
        os.mkdir(self.m.path("t"))
        readers = [open(self.m.path("t", str(p)), "rb") for p in range(3)]
        try:
            for f in readers:  # fill the kernel's view of the files
                self.assertEqual(f.read(), b"")
                self.assertEqual(os.fstat(f.fileno()).st_size, 0)
            expect = [b"", b"", b""]
            for i in range(12):
                line = b"rec-%02d\n" % i
                self.append(line, "t", ".produce")
                sizes = [self.size(p) for p in range(3)]
                self.assertEqual(sum(sizes),
                                 sum(len(e) for e in expect) + len(line))
                p = [k for k in range(3)
                     if sizes[k] != len(expect[k])]
                self.assertEqual(len(p), 1, sizes)
                expect[p[0]] += line
                self.assertEqual(self.ls_sizes(),
                                 {str(k): len(expect[k]) for k in range(3)})
                self.assertEqual([os.fstat(f.fileno()).st_size
                                  for f in readers],
                                 [len(e) for e in expect])
            for k, f in enumerate(readers):
                self.assertEqual(f.read(), expect[k])
            for k in range(3):
                self.assertEqual(self.read("t", str(k)), expect[k])
        finally:
            for f in readers:
                f.close()

    def test_dir_size_not_stale_after_rmdir(self):
        """stat of a recreated topic's partition is 0, not the old size."""
        os.mkdir(self.m.path("t"))
        self.sh("echo hello >> t/0")
        self.assertEqual(self.size(0), 6)
        os.rmdir(self.m.path("t"))
        os.mkdir(self.m.path("t"))
        self.assertEqual(self.size(0), 0)


class TestPersistence(MountTest):
    mount_opts = ("num.partitions=2",)

    def test_data_and_xattrs_survive_remount(self):
        """Records, topics, partition counts and settings survive."""
        os.mkdir(self.m.path("t"))
        os.mkdir(self.m.path("u"))
        self.sh("for i in $(seq 1 500); do echo line-$i; done >> t/0")
        self.sh("printf 'a\\nb\\n' >> t/1; echo c >> u/0")
        self.sh("setfattr -n user.topicfs.retention.ms -v 3600000 t && "
                "setfattr -n user.topicfs.key.separator -v ':' t && "
                "setfattr -n user.topicfs.partitions -v 4 u && "
                "setfattr -n user.topicfs.compression.type -v zstd u")
        self.sh("echo d >> u/3")
        before = {p: self.read(*p.split("/"))
                  for p in ("t/0", "t/1", "u/0", "u/1", "u/2", "u/3")}
        xattrs_t = self.sh("getfattr -d -m - t").stdout
        xattrs_u = self.sh("getfattr -d -m - u").stdout
        self.remount()
        self.assertEqual(sorted(os.listdir(self.m.mnt)),
                         [".metrics", ".status", "t", "u"])
        self.assertEqual(self.sh("ls u").stdout.decode().split(),
                         ["0", "1", "2", "3"])
        for p, data in before.items():
            self.assertEqual(self.read(*p.split("/")), data, p)
            self.assertEqual(os.stat(self.m.path(p)).st_size, len(data))
        self.assertEqual(self.sh("getfattr -d -m - t").stdout, xattrs_t)
        self.assertEqual(self.sh("getfattr -d -m - u").stdout, xattrs_u)
        self.assertEqual(os.getxattr(self.m.path("t", "0"),
                                     "user.topicfs.log_end_offset"), b"500")
        # Offsets continue after the remount.
        self.sh("echo line-501 >> t/0")
        self.assertEqual(os.getxattr(self.m.path("t", "0"),
                                     "user.topicfs.log_end_offset"), b"501")
        self.assertEqual(self.read("t", "0@500"), b"line-501\n")

    def test_deleted_topic_stays_deleted(self):
        """A topic removed by rmdir does not come back after a remount."""
        os.mkdir(self.m.path("gone"))
        self.sh("echo x >> gone/0")
        os.rmdir(self.m.path("gone"))
        self.remount()
        self.assertFalse(os.path.exists(self.m.path("gone")))
        os.mkdir(self.m.path("gone"))
        self.assertEqual(self.read("gone", "0"), b"")


class TestTimeViews(MountTest):
    """<p>@<ISO time> takes the zone offsets people write (Z, +hh:mm,
    +hhmm, +hh) and names no file for anything else."""

    def test_zone_forms(self):
        os.mkdir(self.m.path("t"))
        self.append(b"before\n", "t", "0")
        t0 = time.time_ns() // 1000000
        wait_for(lambda: time.time_ns() // 1000000 > t0,
                 what="the clock to tick")
        mark = time.time_ns() // 1000000
        wait_for(lambda: time.time_ns() // 1000000 > mark,
                 what="the clock to tick")
        self.append(b"after\n", "t", "0")

        def iso(ms, hours, minutes=0):
            tz = datetime.timezone(datetime.timedelta(hours=hours,
                                                      minutes=minutes))
            d = datetime.datetime.fromtimestamp(ms / 1000, tz)
            return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03d" % (ms % 1000)
        forms = [iso(mark, 0) + "Z", iso(mark, 0) + "000Z",
                 iso(mark, 1) + "+01:00", iso(mark, 1) + "+0100",
                 iso(mark, 1) + "+01", iso(mark, -5, -30) + "-05:30",
                 iso(mark, -5, -30) + "-0530"]
        for sel in forms:
            with self.subTest(sel=sel):
                self.assertEqual(self.read("t", "0@" + sel), b"after\n")
        for sel in (iso(mark, 0) + "+ab:cd", iso(mark, 0) + "z",
                    iso(mark, 0), iso(mark, 0) + "+1:00",
                    iso(mark, 0).replace("T", "t") + "Z"):
            with self.subTest(sel=sel):
                self.assertErrno(errno.ENOENT, os.stat,
                                 self.m.path("t", "0@" + sel))


if __name__ == "__main__":
    unittest.main()
