"""Topics on disk, through the real mount: nothing is lost on remount,
a topic that cannot be loaded is left untouched, inode numbers stay
with their topics, and settings changes are all or nothing."""
import hashlib
import os
import subprocess

from mountlib import Mount, MountTest, wait_for


def parts(path):
    """The partition files of a topic directory."""
    return sorted((n for n in os.listdir(path) if n.isdigit()), key=int)


def tree(path):
    """{relative path: (size, sha256)} of every file under path."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                data = f.read()
            out[os.path.relpath(p, path)] = (len(data),
                                             hashlib.sha256(data).hexdigest())
    return out


class TestTopicsOnDisk(MountTest):
    mount_opts = ("num.partitions=2",)

    def log_lines(self, needle):
        return [l for l in self.m.log_text().splitlines() if needle in l]

    def test_remount_with_other_num_partitions_keeps_the_topic(self):
        os.mkdir(self.m.path("t"))
        self.sh("echo a >> t/0; echo b >> t/1; echo c >> t/1")
        self.remount(("num.partitions=3",))
        self.assertEqual(parts(self.m.path("t")), ["0", "1"])
        self.assertEqual(self.read("t", "0"), b"a\n")
        self.assertEqual(self.read("t", "1"), b"b\nc\n")
        self.assertEqual(os.getxattr(self.m.path("t"),
                                     "user.topicfs.partitions"), b"2")
        self.assertEqual(self.log_lines("cannot load"), [])
        os.mkdir(self.m.path("u"))  # new topics get the new default
        self.assertEqual(parts(self.m.path("u")), ["0", "1", "2"])

    def test_a_topic_that_cannot_load_is_left_untouched(self):
        os.mkdir(self.m.path("t"))
        os.mkdir(self.m.path("ok"))
        self.sh("seq 1 100 >> t/0; echo x >> ok/0")
        self.m.unmount()
        config = os.path.join(self.m.data, "topics", "t", "config")
        with open(config, "a") as f:
            f.write("some.future.setting=1\n")
        before = tree(self.m.data + "/topics/t")
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start()
        self.assertEqual(sorted(os.listdir(self.m.mnt)), [".metrics", ".status", "ok"])
        self.assertEqual(self.read("ok", "0"), b"x\n")
        lines = self.log_lines("topic t: cannot load")
        self.assertEqual(len(lines), 1, self.m.log_text())
        self.assertIn("unknown setting 'some.future.setting'", lines[0])
        r = self.sh("mkdir t", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"File exists", r.stderr)
        self.assertEqual(len(self.log_lines("mkdir t refused")), 1,
                         self.m.log_text())
        self.assertEqual(tree(self.m.data + "/topics/t"), before)
        self.m.unmount()
        self.assertEqual(tree(self.m.data + "/topics/t"), before)
        # Mended by hand, it is back whole.
        with open(config) as f:
            text = f.read().replace("some.future.setting=1\n", "")
        with open(config, "w") as f:
            f.write(text)
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start()
        self.assertEqual(self.read("t", "0"),
                         b"".join(b"%d\n" % i for i in range(1, 101)))

    def inos(self, *names):
        return {n: os.stat(self.m.path(n)).st_ino for n in names}

    def test_inode_numbers_survive_remounts_and_are_never_reused(self):
        for t in ("c", "b", "a"):
            os.mkdir(self.m.path(t))
            self.sh(f"echo {t} >> {t}/1")
        names = ("a", "a/0", "a/1", "b", "b/0", "b/1", "c", "c/0", "c/1")
        first = self.inos(*names)
        self.assertEqual(len(set(first.values())), len(names))
        os.rmdir(self.m.path("c"))
        self.remount()
        kept = ("a", "a/0", "a/1", "b", "b/0", "b/1")
        self.assertEqual(self.inos(*kept), {n: first[n] for n in kept})
        # A new topic of a deleted one's name gets numbers of its own.
        os.mkdir(self.m.path("c"))
        now = self.inos("c", "c/0", "c/1")
        self.assertFalse(set(now.values()) & set(first.values()))
        self.sh("rmdir a; mkdir a")
        again = self.inos("a", "a/0", "a/1")
        self.assertFalse(set(again.values()) & set(first.values()))
        self.assertFalse(set(again.values()) & set(now.values()))
        self.remount()
        self.assertEqual(self.inos("c", "c/0", "c/1"), now)
        self.assertEqual(self.inos("a", "a/0", "a/1"), again)

    def test_growing_partitions_past_the_descriptor_limit(self):
        """300 partitions need far more than 96 descriptors if each keeps
        its files open; idle ones are closed (issue 9), so the growth
        succeeds, and all of them load again under the same limit. (That
        a growth failing part way changes nothing is test_topic.c's
        test_partition_growth_is_all_or_nothing.)"""
        limit = ("prlimit", "--nofile=96:96")
        self.m.unmount()
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start(prefix=limit)
        os.mkdir(self.m.path("t"))
        self.sh("echo kept >> t/0")
        self.sh("setfattr -n user.topicfs.partitions -v 300 t")
        self.assertEqual(os.getxattr(self.m.path("t"),
                                     "user.topicfs.partitions"), b"300")
        self.assertEqual(len(parts(self.m.path("t"))), 300)
        for p in range(300):
            self.append(f"p{p}\n".encode(), "t", str(p))
        self.m.unmount()
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start(prefix=limit)
        self.assertEqual(len(parts(self.m.path("t"))), 300)
        self.assertEqual(self.read("t", "0"), b"kept\np0\n")
        for p in range(1, 300):
            self.assertEqual(self.read("t", str(p)), f"p{p}\n".encode())

    def test_kill_9_right_after_mkdir_keeps_the_whole_topic(self):
        os.mkdir(self.m.path("t"))
        ino = os.stat(self.m.path("t", "1")).st_ino
        self.m.kill9()
        self.m = Mount(self.tmp, self.mount_opts)
        self.m.start()
        self.assertEqual(parts(self.m.path("t")), ["0", "1"])
        self.assertEqual(os.stat(self.m.path("t", "1")).st_ino, ino)
        self.sh("echo after >> t/1")
        self.assertEqual(self.read("t", "1"), b"after\n")


class TestDeleteDoesNotStall(MountTest):
    """rmdir of a large topic does its disk work (rename, syncs, removal
    of the files) outside the mount-wide lock: appends to another topic
    go on meanwhile."""

    # Files that make the topic's removal take a noticeable time. They are
    # put straight into its directory on disk (the removal takes the whole
    # tree): making as many real segments through the mount would take
    # minutes on the shared test machine.
    BULK_FILES = 30000

    def test_rmdir_of_a_large_topic_does_not_stall_appends(self):
        import threading
        import time
        os.mkdir(self.m.path("big"))
        os.mkdir(self.m.path("other"))
        self.sh("echo a >> big/0; echo b >> other/0")
        bulk = os.path.join(self.m.data, "topics", "big", "bulk")
        os.mkdir(bulk)
        for i in range(self.BULK_FILES):
            with open(os.path.join(bulk, str(i)), "wb") as f:
                f.write(b"x" * 64)
        os.sync()
        done = threading.Event()
        took = {}

        def remove():
            t0 = time.monotonic()
            os.rmdir(self.m.path("big"))
            took["rmdir"] = time.monotonic() - t0
            done.set()

        th = threading.Thread(target=remove)
        worst, n = 0.0, 0
        th.start()
        while not done.is_set():
            t0 = time.monotonic()
            self.append(b"during\n", "other", "0")
            worst = max(worst, time.monotonic() - t0)
            n += 1
        th.join()
        self.assertFalse(os.path.exists(bulk))
        self.assertGreaterEqual(n, 2, "the rmdir ended before any append")
        self.assertGreater(took["rmdir"], 0.2,
                           "the removal was too quick to tell anything")
        self.assertLess(worst, took["rmdir"] / 4,
                        f"an append took {worst:.3f} s during an rmdir "
                        f"of {took['rmdir']:.3f} s")
        self.assertEqual(self.read("other", "0").count(b"during\n"), n)
