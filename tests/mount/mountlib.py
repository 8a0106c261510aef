"""Shared helpers for the real-mount tests.

Each test gets a private temporary directory holding DATADIR and
MOUNTPOINT, a topicfs daemon started in the foreground (-f) with its
stderr captured to a log file, and a teardown that unmounts (lazily if
needed) and kills the daemon. Waiting is always on a condition with a
deadline, never a bare sleep.

Environment:
  TOPICFS_BIN   path of the topicfs program (meson passes it)
  CI=true       tests that cannot run (no /dev/fuse, not root) fail
                instead of skipping
"""
import errno
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

BIN = os.environ.get("TOPICFS_BIN", "topicfs")
IN_CI = os.environ.get("CI") == "true"
DEADLINE_S = 20.0


def wait_for(cond, timeout=DEADLINE_S, what="condition", interval=0.01):
    """Poll cond() until it returns a truthy value; fail after timeout."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unescape_mountinfo(field):
    """A /proc/self/mountinfo field as it was: the kernel writes space,
    tab, newline and backslash as \\040, \\011, \\012 and \\134."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_mounted(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(unescape_mountinfo(line.split()[4]) == real for line in f)


def daemon_state(pid):
    """Where a stuck daemon is: user stacks (gdb), kernel stacks and the
    FUSE connections' pending request counts."""
    out = []
    if shutil.which("gdb"):
        r = subprocess.run(["gdb", "-batch", "-p", str(pid),
                            "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=60)
        out.append(r.stdout[-20000:])
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        for name in ("wchan", "stack"):
            try:
                with open(f"/proc/{pid}/task/{tid}/{name}") as f:
                    out.append(f"task {tid} {name}: {f.read().strip()}")
            except OSError:
                pass
    conns = "/sys/fs/fuse/connections"
    if os.path.isdir(conns):
        for c in sorted(os.listdir(conns)):
            try:
                with open(os.path.join(conns, c, "waiting")) as f:
                    out.append(f"fuse connection {c}: {f.read().strip()} waiting")
            except OSError:
                pass
    return "\n".join(out)


def need(cond, why):
    """Skip outside CI when a prerequisite is missing; fail in CI."""
    if not cond:
        if IN_CI:
            raise AssertionError(f"required in CI: {why}")
        raise unittest.SkipTest(why)


class Mount:
    """One topicfs daemon: DATADIR and MOUNTPOINT under a temp dir."""

    def __init__(self, base, opts=(), datadir=None):
        self.base = base
        self.data = datadir or os.path.join(base, "data")
        self.mnt = os.path.join(base, "mnt")
        self.opts = list(opts)
        self.log_path = os.path.join(base, f"daemon-{time.monotonic_ns()}.log")
        self.proc = None
        os.makedirs(self.mnt, exist_ok=True)

    def start(self, extra_args=(), prefix=()):
        """Start the daemon; prefix is a command it runs under (prlimit)."""
        args = list(prefix) + [BIN, "-f"]
        if self.opts:
            args += ["-o", ",".join(self.opts)]
        args += list(extra_args) + [self.data, self.mnt]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or is_mounted(self.mnt),
                 what="the mount to appear")
        if self.proc.poll() is not None:
            raise AssertionError(f"topicfs exited with {self.proc.returncode}:\n"
                                 + self.log_text())
        return self

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_exit(self, timeout=DEADLINE_S):
        """Wait for the daemon to exit and return its status. If it does
        not exit in time, fail with what it was doing: its log, each
        thread's stack, and the kernel's count of requests it has not
        answered."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"topicfs (pid {self.proc.pid}) did not exit within "
                f"{timeout}s\n{self.log_text()}\n{daemon_state(self.proc.pid)}"
            ) from None

    def unmount(self, timeout=DEADLINE_S):
        """fusermount3 -u and wait for the daemon to exit cleanly."""
        if self.proc is None:
            return None
        subprocess.run(["fusermount3", "-u", self.mnt], check=True,
                       capture_output=True)
        rc = self.wait_exit(timeout)
        self.proc = None
        self.log.close()
        return rc

    def kill9(self):
        """kill -9 the daemon and clear the dead mount."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE_S)
        self.proc = None
        self.log.close()
        subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        wait_for(lambda: not is_mounted(self.mnt), what="the dead mount to go")

    def cleanup(self):
        if self.proc is not None:
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        elif is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)


class MountTest(unittest.TestCase):
    """Base class: self.m is a started Mount in a private temp dir."""

    mount_opts = ("num.partitions=1",)

    def setUp(self):
        need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
        need(shutil.which("fusermount3") is not None, "fusermount3 is missing")
        self.tmp = tempfile.mkdtemp(prefix="topicfs-mount-")
        self.m = Mount(self.tmp, self.mount_opts)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.addCleanup(self.m_cleanup)
        self.m.start()

    def m_cleanup(self):
        if self._outcome_failed():
            print(f"\n--- daemon log of {self.id()} ---\n{self.m.log_text()}")
        self.m.cleanup()

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(outcome, "errors", None) or []
        result = getattr(outcome, "result", None)
        if result is not None:
            errors = list(getattr(result, "errors", [])) + \
                list(getattr(result, "failures", []))
        return any(e for e in errors)

    def remount(self, opts=None):
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        self.m = Mount(self.tmp, opts if opts is not None else self.mount_opts)
        self.m.start()
        return self.m

    def sh(self, cmd, check=True, **kw):
        """Run a shell command (with cwd at the mountpoint)."""
        r = subprocess.run(["bash", "-c", cmd], cwd=self.m.mnt,
                           capture_output=True, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd!r} failed ({r.returncode}): "
                                 f"{r.stderr.decode(errors='replace')}")
        return r

    def assertErrno(self, err, fn, *args):
        with self.assertRaises(OSError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.errno, err,
                         f"expected {errno.errorcode[err]}, got "
                         f"{errno.errorcode.get(cm.exception.errno)}")

    def read(self, *parts):
        with open(self.m.path(*parts), "rb") as f:
            return f.read()

    def append(self, data, *parts):
        fd = os.open(self.m.path(*parts), os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
