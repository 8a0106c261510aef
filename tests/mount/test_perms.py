"""Permissions (issue 8 item 4, MOUNTING.md "Security"): the kernel checks
every access (default_permissions is always on) against the owner, group
and mode topicfs reports: the mounting user by default, or -o uid=, gid=,
umask= (the vfat and ntfs-3g names). With allow_other another local user
can do exactly what those bits allow.

The other user is `nobody` (uid and gid 65534), switched to with setpriv;
it must be able to reach the mountpoint, so the temp dir is made 0755.
"""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import unittest

from mountlib import DEADLINE_S, MountTest, need

NOBODY = 65534

# Run as the other user: try each operation on the mount and print the
# outcome of each ("ok" or the errno's name) as JSON.
AS_OTHER = r"""
import errno, json, os, sys
mnt = sys.argv[1]
p = lambda *a: os.path.join(mnt, *a)
def read(path):
    with open(path, "rb") as f:
        return f.read()
def append(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
ops = {
    "ls": lambda: os.listdir(mnt),
    "read": lambda: read(p("t", "0")),
    "read view": lambda: read(p("t", "0@0")),
    "read .status": lambda: read(p(".status")),
    "getxattr": lambda: os.getxattr(p("t"), "user.topicfs.retention.ms"),
    "append": lambda: append(p("t", "0"), b"from nobody\n"),
    "produce": lambda: append(p("t", ".produce"), b"via produce\n"),
    "mkdir": lambda: os.mkdir(p("new")),
    "setxattr": lambda: os.setxattr(p("t"), "user.topicfs.retention.ms",
                                    b"1000"),
    "rmdir": lambda: os.rmdir(p("t")),
    "chmod": lambda: os.chmod(p("t", "0"), 0o666),
}
out = {}
for name in sys.argv[2:]:
    try:
        ops[name]()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
print(json.dumps(out))
"""

OPS = ["ls", "read", "read view", "read .status", "getxattr", "append",
       "produce", "mkdir", "setxattr", "rmdir", "chmod"]


class PermsBase(MountTest):
    mount_opts = ("num.partitions=1", "allow_other")

    def setUp(self):
        need(os.geteuid() == 0, "needs root to act as another user")
        need(shutil.which("setpriv") is not None, "setpriv is missing")
        super().setUp()
        os.chmod(self.tmp, 0o755)   # nobody must reach the mountpoint
        os.mkdir(self.m.path("t"))
        self.append(b"first\n", "t", "0")

    def as_nobody(self, *ops):
        r = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
             "--clear-groups", sys.executable, "-c", AS_OTHER, self.m.mnt]
            + list(ops), capture_output=True, timeout=DEADLINE_S,
            stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def modes(self):
        """Permission bits of each kind of file, and the owners."""
        paths = {"root": "", ".status": ".status", "topic": "t",
                 "partition": "t/0", "view": "t/0@0", ".produce": "t/.produce",
                 ".groups": "t/.groups"}
        got = {}
        for kind, rel in paths.items():
            st = os.stat(self.m.path(rel) if rel else self.m.mnt)
            got[kind] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        return got


class TestDefaults(PermsBase):
    def test_owner_and_modes(self):
        """The mounting user owns everything; umask 022."""
        u, g = os.getuid(), os.getgid()
        self.assertEqual(self.modes(), {
            "root": (0o755, u, g), ".status": (0o444, u, g),
            "topic": (0o755, u, g), "partition": (0o644, u, g),
            "view": (0o444, u, g), ".produce": (0o200, u, g),
            ".groups": (0o755, u, g)})

    def test_other_user_can_read_only(self):
        """Another user reads; every change is EACCES from the kernel
        (or EPERM for chmod, which only the owner may try), and nothing
        changes."""
        got = self.as_nobody(*OPS)
        self.assertEqual(got, {
            "ls": "ok", "read": "ok", "read view": "ok", "read .status": "ok",
            "getxattr": "ok", "append": "EACCES", "produce": "EACCES",
            "mkdir": "EACCES", "setxattr": "EACCES", "rmdir": "EACCES",
            "chmod": "EPERM"})
        self.assertEqual(self.read("t", "0"), b"first\n")
        self.assertEqual(sorted(os.listdir(self.m.mnt)),
                         [".metrics", ".status", "t"])
        self.assertNotEqual(os.getxattr(self.m.path("t"),
                                        "user.topicfs.retention.ms"), b"1000")

    def test_chmod_refused_for_the_owner(self):
        """Modes come from the mount options only."""
        self.assertErrno(errno.EPERM, os.chmod, self.m.path("t", "0"), 0o666)
        self.assertIn("mount options uid, gid, umask", self.m.log_text())


class TestGroupWritable(PermsBase):
    """nginx's case: workers run as nobody and append to a partition."""
    mount_opts = ("num.partitions=1", "allow_other", f"gid={NOBODY}",
                  "umask=002")

    def test_modes(self):
        u = os.getuid()
        self.assertEqual(self.modes(), {
            "root": (0o775, u, NOBODY), ".status": (0o444, u, NOBODY),
            "topic": (0o775, u, NOBODY), "partition": (0o664, u, NOBODY),
            "view": (0o444, u, NOBODY), ".produce": (0o220, u, NOBODY),
            ".groups": (0o775, u, NOBODY)})

    def test_group_member_appends(self):
        got = self.as_nobody("append", "produce", "read")
        self.assertEqual(got, {"append": "ok", "produce": "ok",
                               "read": "ok"})
        self.assertEqual(self.read("t", "0"),
                         b"first\nfrom nobody\nvia produce\n")


class TestOwnerOption(PermsBase):
    mount_opts = ("num.partitions=1", "allow_other", f"uid={NOBODY}",
                  "gid=0", "umask=077")

    def test_owner_does_what_its_bits_allow(self):
        self.assertEqual(self.modes()["partition"], (0o600, NOBODY, 0))
        self.assertEqual(self.modes()["root"], (0o700, NOBODY, 0))
        got = self.as_nobody("append", "mkdir", "setxattr", "read")
        self.assertEqual(got, {"append": "ok", "mkdir": "ok",
                               "setxattr": "ok", "read": "ok"})
        self.assertEqual(self.read("t", "0"), b"first\nfrom nobody\n")
        self.assertTrue(os.path.isdir(self.m.path("new")))


class TestWithoutAllowOther(PermsBase):
    """Without allow_other FUSE itself keeps every other user out,
    whatever the modes say."""
    mount_opts = ("num.partitions=1", "umask=000")

    def test_other_user_shut_out(self):
        got = self.as_nobody("ls", "read", "append")
        self.assertEqual(got, {"ls": "EACCES", "read": "EACCES",
                               "append": "EACCES"})


class TestBadOptions(unittest.TestCase):
    def run_topicfs(self, opts):
        from mountlib import BIN
        r = subprocess.run([BIN, "-f", "-o", opts, "/nonexistent/data",
                            "/nonexistent/mnt"], capture_output=True,
                           timeout=DEADLINE_S, stdin=subprocess.DEVNULL)
        return r.returncode, r.stderr.decode(errors="replace")

    def test_bad_values_refused(self):
        for opts, words in (("umask=0778", "umask=0778: must be octal"),
                            ("umask=1000", "umask=1000: must be octal"),
                            ("umask=", "umask=: must be octal"),
                            ("uid=abc", "uid=abc: must be a number"),
                            ("uid=12abc", "uid=12abc: must be a number"),
                            ("uid=-1", "uid=-1: must be a number"),
                            ("gid=4294967295", "gid=4294967295: must be")):
            with self.subTest(opts):
                rc, err = self.run_topicfs(opts)
                self.assertNotEqual(rc, 0)
                lines = [l for l in err.splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, err)
                self.assertIn(words, lines[0])


if __name__ == "__main__":
    unittest.main()
