"""The topicfs program: command line, mounting, daemonizing, shutdown.

CONTRACT.md section 1 and issue 3 item 1. Every refusal must give exactly
one clear line on stderr, a non-zero exit status and no mount (checked in
/proc/self/mountinfo); every clean shutdown (fusermount3 -u, SIGTERM,
SIGINT) must keep every record whose write() returned, turn a buffered
partial line into a record, and leave the clean-shutdown marker.
"""
import fcntl
import filecmp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from mountlib import (BIN, DEADLINE_S, Mount, is_mounted, need,
                      unescape_mountinfo, wait_for)


def mounts_under(base):
    """Mount points in /proc/self/mountinfo at or below base."""
    real = os.path.realpath(base)
    with open("/proc/self/mountinfo") as f:
        points = [unescape_mountinfo(line.split()[4]) for line in f]
    return [p for p in points if p == real or p.startswith(real + "/")]


def mount_namespace_problem():
    """Why `unshare -m` cannot make a mount namespace here, or None. In a
    chroot it fails with "unshare: cannot change root filesystem
    propagation": the root of a chroot is not a mount point."""
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True,
                       text=True, timeout=DEADLINE_S)
    if r.returncode == 0:
        return None
    return r.stderr.strip() or f"unshare -m exited with {r.returncode}"


def mount_fstype(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == real:
                return fields[fields.index("-") + 1]
    return None


def daemon_pids(mnt):
    """Pids of topicfs processes whose command line names mnt."""
    names = {os.fsencode(mnt), os.fsencode(os.path.realpath(mnt))}
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"topicfs":
            continue
        if names & set(argv[1:]):
            pids.append(int(d))
    return pids


def stderr_lines(text):
    return [line for line in text.splitlines() if line.strip()]


class ProgramBase(unittest.TestCase):
    """A private temp dir; no mount is started for you."""

    def setUp(self):
        need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
        need(shutil.which("fusermount3") is not None, "fusermount3 is missing")
        self.tmp = tempfile.mkdtemp(prefix="topicfs-program-")
        self.data = os.path.join(self.tmp, "data")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.mounts = []
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.addCleanup(self.unmount_all)

    def unmount_all(self):
        for m in self.mounts:
            m.cleanup()
        for p in reversed(mounts_under(self.tmp)):
            subprocess.run(["umount", "-l", p], capture_output=True)
            subprocess.run(["fusermount3", "-uz", p], capture_output=True)
        for pid in daemon_pids(self.mnt):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def mount(self, data=None, mnt=None, opts=()):
        """A foreground daemon (the harness's Mount) at mnt."""
        base = self.tmp if mnt is None else os.path.dirname(mnt)
        m = Mount(base, opts, datadir=data or self.data)
        if mnt is not None:
            m.mnt = mnt
        self.mounts.append(m)
        return m.start()

    def run_topicfs(self, args, timeout=DEADLINE_S, env=None):
        """Run topicfs to completion; stdout and stderr through files
        (a daemonized child must not hold our pipes)."""
        out_path = os.path.join(self.tmp, f"out-{time.monotonic_ns()}")
        err_path = out_path + ".err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            p = subprocess.Popen([BIN] + list(args), stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, env=env)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.fail(f"topicfs {args} did not return within {timeout}s")
        with open(out_path, "rb") as f:
            stdout = f.read().decode(errors="replace")
        with open(err_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        return rc, stdout, stderr

    def assertRefused(self, args, *, mounts_before=None, contains=()):
        """topicfs -f ARGS: non-zero exit, exactly one line on stderr, and
        /proc/self/mountinfo unchanged (with -f no daemon outlives the
        command). Returns the line."""
        if mounts_before is None:
            mounts_before = mounts_under(self.tmp)
        rc, out, err = self.run_topicfs(["-f"] + list(args))
        self.assertNotEqual(rc, 0, f"topicfs -f {args} succeeded")
        lines = stderr_lines(err)
        self.assertEqual(len(lines), 1,
                         f"topicfs -f {args}: want exactly one line on "
                         f"stderr, got {len(lines)}:\n{err}")
        for word in contains:
            self.assertIn(word, lines[0])
        self.assertEqual(mounts_under(self.tmp), mounts_before,
                         "a refused mount changed /proc/self/mountinfo")
        return lines[0]


class ProgramTest(ProgramBase):
    # ---- --help, --version ------------------------------------------------

    def test_help(self):
        for flag in ("--help", "-h"):
            rc, out, err = self.run_topicfs([flag])
            self.assertEqual(rc, 0, err)
            self.assertEqual(err, "")
            self.assertTrue(out.startswith("usage: topicfs"), out)
            self.assertIn("DATADIR MOUNTPOINT", out)
            self.assertIn("fusermount3 -u", out)

    def test_version(self):
        for flag in ("--version", "-V"):
            rc, out, err = self.run_topicfs([flag])
            self.assertEqual(rc, 0, err)
            self.assertEqual(err, "")
            self.assertRegex(out, r"^topicfs \d+\.\d+\.\d+")
            self.assertEqual(len(out.splitlines()), 1, out)

    # ---- defaults, -f and -d -------------------------------------------------

    def test_new_topic_has_one_partition_by_default(self):
        m = self.mount()
        os.mkdir(m.path("t"))
        self.assertEqual(sorted(os.listdir(m.path("t"))),
                         [".groups", ".produce", "0"])
        self.assertEqual(os.getxattr(m.path("t"), "user.topicfs.partitions"),
                         b"1")
        self.assertEqual(m.unmount(), 0)

    def start_foreground(self, flag):
        """topicfs FLAG DATA MNT with stdout and stderr in files of their
        own; returns the process and the two paths once mounted."""
        out_path = os.path.join(self.tmp, "fg.out")
        err_path = os.path.join(self.tmp, "fg.err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            p = subprocess.Popen([BIN, flag, self.data, self.mnt], stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for(lambda: p.poll() is not None or is_mounted(self.mnt),
                 what="the mount to appear")
        self.assertIsNone(p.poll(), "topicfs exited")
        return p, out_path, err_path

    def stop_foreground(self, p):
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        self.assertEqual(p.wait(timeout=DEADLINE_S), 0)

    def test_foreground_logs_to_stderr(self):
        """-f: the daemon stays in the foreground and logs to stderr,
        nothing to stdout."""
        p, out_path, err_path = self.start_foreground("-f")
        os.mkdir(os.path.join(self.mnt, "t"))
        self.stop_foreground(p)
        with open(err_path) as f:
            err = f.read()
        self.assertIn("topicfs: serving", err)
        self.assertIn("topicfs: topic t created with 1 partition(s)", err)
        self.assertEqual(os.path.getsize(out_path), 0)

    def test_debug_flag_prints_libfuse_debug_in_the_foreground(self):
        p, out_path, err_path = self.start_foreground("-d")
        os.listdir(self.mnt)
        self.stop_foreground(p)
        with open(err_path) as f:
            err = f.read()
        self.assertRegex(err, r"opcode: (INIT|LOOKUP|GETATTR|OPENDIR)")
        self.assertIn("topicfs: serving", err)

    def test_daemon_logs_to_syslog(self):
        """Without -f the daemon logs to syslog. Its /dev/log is this
        test's socket: the daemon runs in a mount namespace of its own
        whose /dev holds that socket, /dev/fuse and /dev/null."""
        need(os.geteuid() == 0, "needs root (a mount namespace)")
        need(shutil.which("unshare") is not None, "unshare is missing")
        problem = mount_namespace_problem()
        need(problem is None, f"no mount namespace can be made here: {problem}")
        dev = os.path.join(self.tmp, "dev")
        os.mkdir(dev)
        for name in ("fuse", "null"):
            open(os.path.join(dev, name), "w").close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(dev, "log"))
        script = textwrap.dedent(f"""\
            set -e
            mount --bind /dev/fuse '{dev}/fuse'
            mount --bind /dev/null '{dev}/null'
            mount --rbind '{dev}' /dev
            '{BIN}' '{self.data}' '{self.mnt}'
            mkdir '{self.mnt}/t'
            fusermount3 -u '{self.mnt}'
            """)
        r = subprocess.run(["unshare", "-m", "sh", "-c", script],
                           capture_output=True, timeout=DEADLINE_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout + r.stderr, b"")
        got = []
        sock.settimeout(DEADLINE_S)
        while not any(b"unmounting" in g for g in got):
            got.append(sock.recv(4096))
        text = b"\n".join(got).decode()
        self.assertRegex(text, r"topicfs\[\d+\]: serving ")
        self.assertIn("topic t created with 1 partition(s)", text)

    # ---- refusals: one line, non-zero, nothing mounted ---------------------

    def test_unknown_option(self):
        line = self.assertRefused(["-o", "nosuchoption", self.data, self.mnt])
        self.assertIn("nosuchoption", line)
        line = self.assertRefused(["--no-such-flag", self.data, self.mnt])
        self.assertIn("--no-such-flag", line)

    def test_bad_option_value(self):
        for opt in ("num.partitions=0", "num.partitions=100000",
                    "num.partitions=x"):
            self.assertRefused(["-o", opt, self.data, self.mnt],
                               contains=["num.partitions"])

    def test_missing_arguments(self):
        self.assertRefused([])
        self.assertRefused([self.data])

    def test_extra_argument(self):
        self.assertRefused([self.data, self.mnt, "extra"], contains=["extra"])

    def test_datadir_is_a_file(self):
        f = os.path.join(self.tmp, "file")
        with open(f, "w") as fh:
            fh.write("not a directory\n")
        self.assertRefused([f, self.mnt], contains=[f, "Not a directory"])
        self.assertRefused([os.path.join(f, "sub"), self.mnt],
                           contains=["Not a directory"])
        with open(f) as fh:
            self.assertEqual(fh.read(), "not a directory\n")

    def test_datadir_unreadable(self):
        """A mode-000 DATADIR, as an unprivileged user (root reads it)."""
        need(os.geteuid() == 0, "needs root to switch to nobody")
        need(shutil.which("setpriv") is not None, "setpriv is missing")
        os.chmod(self.tmp, 0o755)
        data = os.path.join(self.tmp, "locked")
        os.mkdir(data, 0o000)
        os.chmod(data, 0o000)
        nobody = 65534
        os.chown(data, nobody, nobody)
        os.chown(self.mnt, nobody, nobody)
        # A copy nobody can run, wherever the build tree is.
        exe = os.path.join(self.tmp, "topicfs")
        shutil.copy2(shutil.which(BIN) or BIN, exe)
        os.chmod(exe, 0o755)
        for d in (data, os.path.join(data, "sub")):
            before = mounts_under(self.tmp)
            cmd = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}",
                   "--clear-groups", exe, "-f", d, self.mnt]
            r = subprocess.run(cmd, capture_output=True, timeout=DEADLINE_S,
                               stdin=subprocess.DEVNULL)
            err = r.stderr.decode(errors="replace")
            self.assertNotEqual(r.returncode, 0, err)
            lines = stderr_lines(err)
            self.assertEqual(len(lines), 1, err)
            self.assertIn("Permission denied", lines[0])
            self.assertIn(d, lines[0])
            self.assertEqual(mounts_under(self.tmp), before)
        self.assertEqual(os.listdir(data), [])

    def test_mountpoint_missing_or_not_a_directory(self):
        self.assertRefused([self.data, os.path.join(self.tmp, "nosuch")])
        f = os.path.join(self.tmp, "file")
        open(f, "w").close()
        self.assertRefused([self.data, f], contains=[f])

    def test_busy_mountpoint(self):
        """Something (another topicfs, a tmpfs) is mounted there."""
        first = self.mount(data=os.path.join(self.tmp, "other"))
        os.mkdir(first.path("t"))
        subprocess.run(f"echo one >> {first.path('t', '0')}", shell=True,
                       check=True)
        before = mounts_under(self.tmp)
        self.assertEqual(before, [os.path.realpath(self.mnt)])
        line = self.assertRefused([self.data, self.mnt],
                                  mounts_before=before)
        self.assertIn(self.mnt, line)
        # The first mount is untouched and still serves.
        self.assertIsNone(first.proc.poll())
        with open(first.path("t", "0"), "rb") as f:
            self.assertEqual(f.read(), b"one\n")
        self.assertEqual(first.unmount(), 0)

        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", self.mnt],
                           check=True)
            before = mounts_under(self.tmp)
            self.assertRefused([self.data, self.mnt], mounts_before=before)
            self.assertEqual(mount_fstype(self.mnt), "tmpfs")
            subprocess.run(["umount", self.mnt], check=True)

    def test_stale_mountpoint(self):
        """After kill -9 the dead mount stays until fusermount3 -u."""
        m = self.mount()
        os.mkdir(m.path("t"))
        subprocess.run(f"echo kept >> {m.path('t', '0')}", shell=True,
                       check=True)
        m.proc.send_signal(signal.SIGKILL)
        m.wait_exit()
        m.proc = None
        m.log.close()
        self.assertTrue(is_mounted(self.mnt))
        before = mounts_under(self.tmp)
        self.assertRefused([self.data, self.mnt], mounts_before=before)
        # Clearing the dead mount lets the same command work again.
        subprocess.run(["fusermount3", "-u", self.mnt], check=True,
                       capture_output=True)
        m2 = self.mount()
        with open(m2.path("t", "0"), "rb") as f:
            self.assertEqual(f.read(), b"kept\n")
        self.assertEqual(m2.unmount(), 0)

    def test_stale_mountpoint_message(self):
        m = self.mount()
        m.proc.send_signal(signal.SIGKILL)
        m.wait_exit()
        m.proc = None
        m.log.close()
        line = self.assertRefused([self.data, self.mnt])
        self.assertIn("fusermount3 -u", line)

    def test_second_mount_of_same_datadir(self):
        first = self.mount()
        os.mkdir(first.path("t"))
        mnt2 = os.path.join(self.tmp, "mnt2")
        os.mkdir(mnt2)
        before = mounts_under(self.tmp)
        line = self.assertRefused([self.data, mnt2], mounts_before=before)
        self.assertIn(self.data, line)
        self.assertFalse(is_mounted(mnt2))
        self.assertTrue(os.path.isdir(first.path("t")))
        subprocess.run(f"echo x >> {first.path('t', '0')}", shell=True,
                       check=True)
        self.assertEqual(first.unmount(), 0)

    def test_second_mount_of_live_datadir_fails_at_once(self):
        """A DATADIR that a live mount serves is refused without waiting,
        naming the mount; only a daemon that is shutting down is waited
        for."""
        first = self.mount()
        mnt2 = os.path.join(self.tmp, "mnt2")
        os.mkdir(mnt2)
        t0 = time.monotonic()
        line = self.assertRefused([self.data, mnt2])
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertIn("in use by another topicfs mount on "
                      + os.path.realpath(self.mnt), line)
        self.assertEqual(first.unmount(), 0)

    def test_remount_at_once(self):
        """`fusermount3 -u MNT && topicfs DATADIR MNT`: the new daemon waits
        for the old one to finish its clean shutdown (it still holds the
        DATADIR lock after the kernel has dropped the mount), five times
        in a row, on a DATADIR with data."""
        m = self.mount()
        os.mkdir(m.path("t"))
        want = b""
        for i in range(5):
            recs = b"".join(b"round %d record %05d\n" % (i, k)
                            for k in range(20000))
            fd = os.open(m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
            os.write(fd, recs)
            os.write(fd, b"partial line %d" % i)   # flushed at unmount
            os.close(fd)
            want += recs + b"partial line %d" % i
            subprocess.run(["fusermount3", "-u", self.mnt], check=True,
                           capture_output=True)
            old = m
            m = self.mount()
            self.assertEqual(old.wait_exit(), 0, old.log_text())
            old.proc = None
            old.log.close()
            with open(m.path("t", "0"), "rb") as f:
                self.assertEqual(f.read(), want, f"round {i}")
            waits = [l for l in m.log_text().splitlines() if "waiting" in l]
            self.assertLessEqual(len(waits), 1, waits)
            if waits:
                self.assertIn("waiting up to 30 s for the previous topicfs "
                              "to finish shutting down", waits[0])
        self.assertEqual(m.unmount(), 0)

    def test_findmnt_shows_datadir(self):
        """findmnt and df show the DATADIR (absolute, even when given
        relative, with spaces and commas intact) as the source, and the
        type fuse.topicfs."""
        need(shutil.which("findmnt") is not None, "findmnt is missing")
        data = os.path.join(self.tmp, "my data, v1")
        p = subprocess.Popen([BIN, "-f", os.path.basename(data), self.mnt],
                             cwd=self.tmp, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for(lambda: p.poll() is not None or is_mounted(self.mnt),
                 what="the mount to appear")
        self.assertIsNone(p.poll(), "topicfs exited")
        r = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-P",
                            "--mountpoint", self.mnt],
                           capture_output=True, text=True, check=True)
        self.assertEqual(r.stdout.strip(),
                         f'SOURCE="{os.path.realpath(data)}" '
                         'FSTYPE="fuse.topicfs"')
        r = subprocess.run(["df", "--output=source", self.mnt],
                           capture_output=True, text=True, check=True)
        self.assertEqual(r.stdout.splitlines()[-1].strip(),
                         os.path.realpath(data))
        # The live-mount check reads that source back, escapes and all.
        mnt2 = os.path.join(self.tmp, "mnt2")
        os.mkdir(mnt2)
        t0 = time.monotonic()
        line = self.assertRefused([data, mnt2])
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertIn("in use by another topicfs mount on", line)
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        self.assertEqual(p.wait(timeout=DEADLINE_S), 0)

    def test_mountpoint_with_space_mounted_twice(self):
        """/proc/self/mountinfo writes a space as \\040: a second topicfs
        on "mnt sp" is refused like on any busy mountpoint."""
        mnt = os.path.join(self.tmp, "mnt sp")
        os.mkdir(mnt)
        first = self.mount(mnt=mnt)
        os.mkdir(first.path("t"))
        before = mounts_under(self.tmp)
        self.assertEqual(before, [os.path.realpath(mnt)])
        line = self.assertRefused([os.path.join(self.tmp, "other"), mnt],
                                  mounts_before=before,
                                  contains=["something is already mounted"])
        self.assertIn(mnt, line)
        self.assertTrue(os.path.isdir(first.path("t")))
        self.assertEqual(first.unmount(), 0)

    # ---- dump-log --------------------------------------------------------

    def test_dump_log_help(self):
        for flag in ("--help", "-h"):
            rc, out, err = self.run_topicfs(["dump-log", flag])
            self.assertEqual(rc, 0, err)
            self.assertEqual(err, "")
            self.assertTrue(out.startswith("usage: topicfs dump-log"), out)
            self.assertIn("--verify", out)

    def test_dump_log_verify_live_partition(self):
        """--verify on the data of a live mount reads the index as the
        daemon does: the zeros allocated ahead are not errors. A copy
        with real damage still fails."""
        m = self.mount()
        os.mkdir(m.path("t"))
        fd = os.open(m.path("t", "0"), os.O_WRONLY | os.O_APPEND)
        for k in range(200):
            os.write(fd, b"".join(b"rec %d %d\n" % (k, j) for j in range(50)))
        os.close(fd)
        part = os.path.join(self.data, "topics", "t", "0")
        idx = os.path.join(part, "00000000000000000000.index")
        self.assertNotEqual(os.path.getsize(idx) % 24, 0)  # allocated ahead
        rc, out, err = self.run_topicfs(["dump-log", "--verify", part])
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(err, "")
        self.assertNotIn("bad (", out)
        self.assertRegex(out, r"index: \d+ entries, 0 bad")
        self.assertIn("allocated ahead", out)

        def damaged(fn):
            copy = os.path.join(self.tmp, f"copy-{time.monotonic_ns()}")
            shutil.copytree(part, copy)
            fn(copy)
            return self.run_topicfs(["dump-log", "--verify", copy])

        def poke(name, at):
            def fn(copy):
                with open(os.path.join(copy, name), "r+b") as f:
                    f.seek(at)
                    b = f.read(1)
                    f.seek(at)
                    f.write(bytes([b[0] ^ 0x5A]))
            return fn
        size = os.path.getsize(idx)
        for what, fn, words in (
                ("garbage after the entries",
                 poke("00000000000000000000.index", size - 1), "not zeros"),
                ("a flipped record byte",
                 poke("00000000000000000000.log", 1000), "crc mismatch"),
                ("a flipped index entry",
                 poke("00000000000000000000.index", 30), "index entry 1")):
            with self.subTest(what):
                rc, out, err = damaged(fn)
                self.assertEqual(rc, 1, out + err)
                self.assertIn(words, out)
        self.assertEqual(m.unmount(), 0)

    # ---- daemonizing -------------------------------------------------------

    def test_daemonizes_without_f(self):
        rc, out, err = self.run_topicfs([self.data, self.mnt])
        self.assertEqual(rc, 0, err)
        # Mounted before the command returned (mount, then daemonize).
        self.assertTrue(is_mounted(self.mnt))
        self.assertEqual(mount_fstype(self.mnt), "fuse.topicfs")
        pids = daemon_pids(self.mnt)
        self.assertEqual(len(pids), 1, pids)
        r = subprocess.run("mkdir t && echo hello >> t/0 && cat t/0",
                           shell=True, cwd=self.mnt, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello\n")
        subprocess.run(["fusermount3", "-u", self.mnt], check=True,
                       capture_output=True)
        wait_for(lambda: not daemon_pids(self.mnt), what="the daemon to exit")
        self.assertFalse(is_mounted(self.mnt))
        self.assertTrue(os.path.exists(os.path.join(
            self.data, "topics", "t", "0", "clean-shutdown")))
        # Logs went to syslog, not to the terminal.
        self.assertEqual(out, "")
        self.assertEqual(err, "")

    def notify_test(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address if address[0] != "@" else "\0" + address[1:])
        sock.settimeout(DEADLINE_S)
        env = dict(os.environ, NOTIFY_SOCKET=address)
        log = open(os.path.join(self.tmp, "notify.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([BIN, "-f", self.data, self.mnt], env=env,
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            msg = sock.recv(4096)
            self.assertIn(b"READY=1", msg.split(b"\n"))
            # Ready means mounted and serving.
            self.assertTrue(is_mounted(self.mnt))
            os.mkdir(os.path.join(self.mnt, "t"))
            subprocess.run(["fusermount3", "-u", self.mnt], check=True)
            self.assertEqual(p.wait(timeout=DEADLINE_S), 0)
        finally:
            if p.poll() is None:
                subprocess.run(["fusermount3", "-uz", self.mnt],
                               capture_output=True)
                p.kill()
                p.wait()

    def test_systemd_notify_socket(self):
        self.notify_test(os.path.join(self.tmp, "notify.sock"))

    def test_systemd_notify_abstract_socket(self):
        self.notify_test(f"@topicfs-test-{os.getpid()}-{time.monotonic_ns()}")

    # ---- clean shutdown with files still open ------------------------------

    HOLDER = textwrap.dedent("""
        import os, sys
        fds = [os.open(p, os.O_WRONLY | os.O_APPEND) for p in sys.argv[2:]]
        n = int(sys.argv[1])
        for k, fd in enumerate(fds):
            for i in range(n):
                b = b"p%d line %d\\n" % (k, i)
                assert os.write(fd, b) == len(b)
            assert os.write(fd, b"p%d partial" % k) == len(b"p%d partial" % k)
        print("ready", flush=True)
        for line in sys.stdin:
            k, text = line.split(" ", 1)
            b = text.encode().replace(b"\\\\n", b"\\n").rstrip(b"\\n")
            assert os.write(fds[int(k)], b) == len(b)
            print("wrote", flush=True)
        for fd in fds:
            try:
                os.close(fd)
            except OSError as e:
                print("close", e.errno, flush=True)
    """)

    def start_holder(self, m, n):
        """A process holding t/0 and t/1 open for writing, n lines each
        and a partial line (no newline) buffered."""
        p = subprocess.Popen(
            [sys.executable, "-c", self.HOLDER, str(n),
             m.path("t", "0"), m.path("t", "1")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        def stop():
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout):
                if not f.closed:
                    f.close()
        self.addCleanup(stop)
        self.assertEqual(p.stdout.readline(), "ready\n")
        return p

    def expected(self, k, n, extra=b""):
        return b"".join(b"p%d line %d\n" % (k, i) for i in range(n)) + \
            b"p%d partial" % k + extra

    def check_after_shutdown(self, n, extra=(b"", b"")):
        for k in range(2):
            part = os.path.join(self.data, "topics", "t", str(k))
            self.assertTrue(os.path.exists(os.path.join(part, "clean-shutdown")),
                            f"no clean-shutdown marker in {part}: "
                            f"{sorted(os.listdir(part))}")
        m = self.mount(opts=["num.partitions=2"])
        for k in range(2):
            with open(m.path("t", str(k)), "rb") as f:
                got = f.read()
            want = self.expected(k, n, extra[k])
            self.assertEqual(got, want)
            records = want.count(b"\n") + (0 if want.endswith(b"\n") else 1)
            leo = os.getxattr(m.path("t", str(k)),
                              "user.topicfs.log_end_offset")
            self.assertEqual(int(leo), records)
        self.assertEqual(m.unmount(), 0)

    def shutdown_by_signal(self, sig):
        m = self.mount(opts=["num.partitions=2"])
        os.mkdir(m.path("t"))
        n = 500
        holder = self.start_holder(m, n)
        m.proc.send_signal(sig)
        rc = m.wait_exit()
        m.proc = None
        m.log.close()
        self.assertFalse(is_mounted(self.mnt),
                         "the daemon exited but left its mount behind")
        holder.stdin.close()
        holder.wait(timeout=DEADLINE_S)
        self.check_after_shutdown(n)
        return rc, m

    def test_sigterm_with_open_files(self):
        self.shutdown_by_signal(signal.SIGTERM)

    def test_sigint_with_open_files(self):
        self.shutdown_by_signal(signal.SIGINT)

    def test_signal_exit_status_is_zero(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            m = self.mount()
            m.proc.send_signal(sig)
            rc = m.wait_exit()
            m.proc = None
            m.log.close()
            self.assertEqual(rc, 0, f"exit status after {sig.name}\n"
                             + m.log_text())

    def test_fusermount_with_open_files(self):
        """fusermount3 -u of a busy mount is refused by the kernel (EBUSY)
        and leaves the mount whole; fusermount3 -uz detaches it at once,
        the open files keep working, and the daemon shuts down cleanly
        when the last one is closed."""
        m = self.mount(opts=["num.partitions=2"])
        os.mkdir(m.path("t"))
        n = 300
        holder = self.start_holder(m, n)
        r = subprocess.run(["fusermount3", "-u", self.mnt],
                           capture_output=True)
        if r.returncode != 0:
            self.assertIn(b"busy", r.stderr)
            self.assertTrue(is_mounted(self.mnt))
            self.assertIsNone(m.proc.poll())
            with open(m.path("t", "1"), "rb") as f:
                self.assertEqual(f.read(), self.expected(1, n)[:-len(b"p1 partial")])
            r = subprocess.run(["fusermount3", "-uz", self.mnt],
                               capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(is_mounted(self.mnt))
        # Still writable through the open file after the detach.
        holder.stdin.write("0  and more\\nlast bit\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline(), "wrote\n")
        self.assertIsNone(m.proc.poll())
        holder.stdin.close()
        self.assertEqual(holder.wait(timeout=DEADLINE_S), 0)
        self.assertEqual(m.wait_exit(), 0, m.log_text())
        m.proc = None
        m.log.close()
        self.check_after_shutdown(n, extra=(b" and more\nlast bit", b""))


# ---- mount.fuse3: mount -t fuse.topicfs and /etc/fstab lines -------------

HELPER_DIR = "/usr/local/sbin"   # on the PATH mount(8) gives its helpers
INSTALLED = os.path.join(HELPER_DIR, "topicfs")


class MountHelperTest(ProgramBase):
    """mount.fuse3 runs `topicfs DATADIR MNT -o rw,...,dev,suid` found on
    a standard PATH, so these tests install a copy of the binary under
    test into /usr/local/sbin (and remove it afterwards)."""

    def setUp(self):
        super().setUp()
        need(os.geteuid() == 0, "mount(8) of a FUSE type needs root here")
        need(shutil.which("mount.fuse3") is not None, "mount.fuse3 is missing")
        lock = open("/tmp/topicfs-mount-helper-test.lock", "w")
        self.addCleanup(lock.close)
        fcntl.flock(lock, fcntl.LOCK_EX)
        real_bin = shutil.which(BIN) or BIN
        if os.path.exists(INSTALLED):
            need(filecmp.cmp(INSTALLED, real_bin, shallow=False),
                 f"a different {INSTALLED} is installed; not replacing it")
        else:
            shutil.copy2(real_bin, INSTALLED)
            os.chmod(INSTALLED, 0o755)
            self.addCleanup(os.unlink, INSTALLED)

    def check_helper_mount(self, partitions):
        self.assertTrue(is_mounted(self.mnt))
        self.assertEqual(mount_fstype(self.mnt), "fuse.topicfs")
        self.assertEqual(len(daemon_pids(self.mnt)), 1)
        os.mkdir(os.path.join(self.mnt, "t"))
        self.assertEqual(sorted(p for p in os.listdir(
            os.path.join(self.mnt, "t")) if not p.startswith(".")),
            [str(i) for i in range(partitions)])
        r = subprocess.run("echo via-helper >> t/0 && cat t/0", shell=True,
                           cwd=self.mnt, capture_output=True)
        self.assertEqual(r.stdout, b"via-helper\n", r.stderr)
        r = subprocess.run(["umount", self.mnt], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: not daemon_pids(self.mnt), what="the daemon to exit")
        self.assertFalse(is_mounted(self.mnt))
        self.assertTrue(os.path.exists(os.path.join(
            self.data, "topics", "t", "0", "clean-shutdown")))

    def test_mount_t_fuse_topicfs(self):
        r = subprocess.run(["mount", "-t", "fuse.topicfs", self.data,
                            self.mnt, "-o", "num.partitions=2"],
                           capture_output=True, timeout=DEADLINE_S,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_helper_mount(2)

    def test_fstab_line(self):
        need("--fstab" in subprocess.run(["mount", "--help"],
                                         capture_output=True,
                                         text=True).stdout,
             "mount(8) without -T/--fstab")
        fstab = os.path.join(self.tmp, "fstab")
        with open(fstab, "w") as f:
            f.write("# a topicfs line as it would be in /etc/fstab\n")
            f.write(f"{self.data} {self.mnt} fuse.topicfs "
                    "num.partitions=3,noauto,nofail,_netdev,"
                    "x-systemd.requires=network-online.target 0 0\n")
        r = subprocess.run(["mount", "-T", fstab, self.mnt],
                           capture_output=True, timeout=DEADLINE_S,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_helper_mount(3)

    def test_helper_reports_errors(self):
        """A refusal through mount(8) still gives a clear line and no mount."""
        f = os.path.join(self.tmp, "file")
        open(f, "w").close()
        r = subprocess.run(["mount", "-t", "fuse.topicfs", f, self.mnt],
                           capture_output=True, timeout=DEADLINE_S,
                           stdin=subprocess.DEVNULL)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Not a directory", r.stderr)
        self.assertEqual(mounts_under(self.tmp), [])
        self.assertEqual(daemon_pids(self.mnt), [])


if __name__ == "__main__":
    unittest.main()
