"""What a newcomer reads and runs (issue 8 item 6).

- The README's usage block runs line by line as typed, given `topicfs`
  on the PATH (scripts/demo installs it), in an empty directory standing
  in for / (its absolute paths are moved under a temp dir).
- scripts/demo can run again while its mount is live or just unmounted,
  adds no records when run again, and every command it suggests works,
  ending with an unmount that succeeds.
- `meson install` puts the manual page, bash completion and systemd unit
  beside the binary; each is checked as installed into a DESTDIR.
- test_daemon_logs_to_syslog skips where no mount namespace can be made
  (a chroot), and fails there under CI=true.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

from mountlib import BIN, DEADLINE_S, is_mounted, need, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(SOURCE_ROOT, "README.md")
DEMO = os.path.join(SOURCE_ROOT, "scripts", "demo")
MAN_SOURCE = os.path.join(SOURCE_ROOT, "mount", "topicfs.8")


def need_fuse():
    need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
    need(shutil.which("fusermount3") is not None, "fusermount3 is missing")
    need(shutil.which("setfattr") is not None, "setfattr (attr) is missing")


def path_with_topicfs():
    """A PATH on which `topicfs` is the program under test."""
    return os.path.dirname(os.path.abspath(BIN)) + ":" + os.environ["PATH"]


def unmount_and_wait(mnt, datadir):
    """Unmount mnt if mounted (lazily if busy) and wait until the daemon,
    which is not our child, has released DATADIR's lock."""
    if is_mounted(mnt):
        r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
    lock = os.path.join(datadir, ".lock")
    if os.path.exists(lock):
        subprocess.run(["flock", "-w", str(DEADLINE_S), lock, "true"],
                       capture_output=True, timeout=DEADLINE_S + 5)


def follow(test, cmd, env, cwd, expect):
    """Run a `tail -f` command line until its output holds expect, then
    stop it as Ctrl-C would."""
    p = subprocess.Popen(["bash", "-c", cmd], env=env, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    out = b""
    try:
        os.set_blocking(p.stdout.fileno(), False)

        def seen():
            nonlocal out
            chunk = p.stdout.read()
            out += chunk or b""
            return expect in out
        wait_for(seen, what=f"{cmd!r} to print {expect!r}")
    finally:
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=DEADLINE_S)
    test.assertIn(expect, out)


class ReadmeTest(unittest.TestCase):
    """The README's usage block, run as a newcomer types it."""

    def setUp(self):
        need_fuse()
        self.tmp = tempfile.mkdtemp(prefix="topicfs-readme-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def usage_block(self):
        """The README's first sh block that mounts, as lines."""
        with open(README) as f:
            text = f.read()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            if "fusermount3 -u" in block:
                return [ln for ln in block.splitlines() if ln.strip()]
        self.fail("README.md has no usage block")

    def test_usage_block_runs_as_typed(self):
        root = os.path.join(self.tmp, "root")
        os.mkdir(root)
        data, mnt = root + "/var/lib/topicfs", root + "/mnt/kafka"
        self.addCleanup(unmount_and_wait, mnt, data)
        env = dict(os.environ, PATH=path_with_topicfs())
        lines = self.usage_block()
        self.assertTrue(lines[-1].startswith("fusermount3 -u"), lines[-1])
        for line in lines:
            cmd = line.replace("/var/lib/topicfs", data)
            cmd = cmd.replace("/mnt/kafka", mnt)
            if re.match(r"tail -f ", cmd):
                follow(self, cmd, env, self.tmp, b'{"id": 1}\n')
                continue
            r = subprocess.run(["bash", "-c", cmd], env=env, cwd=self.tmp,
                               capture_output=True, timeout=DEADLINE_S)
            self.assertEqual(r.returncode, 0,
                             f"README line {line!r} failed:\n{r.stderr}")
        self.assertFalse(is_mounted(mnt))


class DemoTest(unittest.TestCase):
    """scripts/demo, run with the program under test (TOPICFS_DEMO_BIN
    skips the packages, build and install)."""

    def setUp(self):
        need_fuse()
        need(shutil.which("flock") is not None, "flock is missing")
        self.tmp = tempfile.mkdtemp(prefix="topicfs-demo-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.demo = os.path.join(self.tmp, "demo")
        self.mnt = os.path.join(self.demo, "mnt")
        self.data = os.path.join(self.demo, "data")
        self.addCleanup(unmount_and_wait, self.mnt, self.data)
        self.env = dict(os.environ, PATH=path_with_topicfs(),
                        TOPICFS_DEMO=self.demo,
                        TOPICFS_DEMO_BIN=os.path.abspath(BIN))

    def run_demo(self):
        r = subprocess.run([DEMO], env=self.env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(is_mounted(self.mnt))
        return r.stdout

    def records(self):
        """Every partition of the demo topic, read whole."""
        out = {}
        for p in ("0", "1", "2"):
            with open(os.path.join(self.mnt, "demo", p), "rb") as f:
                out[p] = f.read()
        return out

    def suggestions(self, stdout):
        """The commands the demo prints, indented by two spaces."""
        return [ln.strip() for ln in stdout.splitlines()
                if ln.startswith("  ")]

    def test_rerun_adds_nothing_and_every_suggestion_works(self):
        first = self.records_after(self.run_demo())
        self.assertEqual(sum(v.count(b"\n") for v in first.values()), 4)
        # Again while the mount is live: unmounted, remounted, no records.
        stdout = self.run_demo()
        self.assertEqual(self.records_after(stdout), first)
        rc, out = self.run_suggestions(stdout)
        self.assertEqual(rc, 0, out.decode(errors="replace"))
        self.assertIn(b"another record\n", out)
        self.assertFalse(is_mounted(self.mnt))
        # Again just after that unmount, while the old daemon may still
        # be shutting down: it waits for it, and adds nothing.
        after = self.records_after(self.run_demo())
        self.assertEqual(after["0"][:len(first["0"])], first["0"])
        self.assertEqual(after["0"].count(b"another record\n"), 1)
        self.assertEqual(sum(v.count(b"\n") for v in after.values()), 6)

    def run_suggestions(self, stdout):
        """Run the commands the demo suggests one after the other in one
        shell, as a user pastes them into a terminal (so what one leaves
        running in the background is still there for the next), stopping
        at the first that fails. Return the shell's status and output.
        Whatever is left running afterwards is killed."""
        script = []
        for cmd in self.suggestions(stdout):
            if cmd.startswith("man "):
                continue  # the page is checked in InstallTest
            script.append(cmd)
            script.append(f"rc=$?; [ $rc -eq 0 ] || {{ echo failed with "
                          f"$rc: {shlex.quote(cmd)}; exit 1; }}")
        with tempfile.TemporaryFile(dir=self.tmp) as out:
            p = subprocess.Popen(["bash", "-c", "\n".join(script)],
                                 env=self.env, cwd=self.tmp, stdout=out,
                                 stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                rc = p.wait(timeout=DEADLINE_S)
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
            out.seek(0)
            return rc, out.read()

    def records_after(self, stdout):
        self.assertIn(f"topicfs is mounted at {self.mnt}", stdout)
        return self.records()


class InstallTest(unittest.TestCase):
    """meson install into a DESTDIR: binary, man page, completion, unit."""

    @classmethod
    def setUpClass(cls):
        # BIN is BUILD/mount/topicfs.
        cls.build = os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
        cls.dest = tempfile.mkdtemp(prefix="topicfs-install-")
        if not os.path.isdir(os.path.join(cls.build, "meson-info")):
            return
        r = subprocess.run(["meson", "install", "-C", cls.build,
                            "--no-rebuild", "--quiet", "--destdir", cls.dest],
                           capture_output=True, text=True, timeout=120)
        cls.install_error = r.stderr if r.returncode != 0 else None
        r = subprocess.run(["meson", "introspect", cls.build,
                            "--buildoptions"], capture_output=True,
                           text=True, check=True)
        opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
        cls.prefix = opts["prefix"]
        cls.bindir = os.path.join(cls.prefix, opts["bindir"])
        cls.datadir = os.path.join(cls.prefix, opts["datadir"])
        cls.mandir = os.path.join(cls.prefix, opts["mandir"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def setUp(self):
        need(os.path.isdir(os.path.join(self.build, "meson-info")),
             f"{BIN} is not in a meson build directory")
        self.assertIsNone(self.install_error)

    def installed(self, path):
        """The DESTDIR copy of an installed absolute path; it must exist."""
        p = self.dest + path
        self.assertTrue(os.path.isfile(p), f"{path} was not installed")
        return p

    def test_binary_and_man_page(self):
        exe = self.installed(os.path.join(self.bindir, "topicfs"))
        self.assertTrue(os.access(exe, os.X_OK))
        page = self.installed(os.path.join(self.mandir, "man8", "topicfs.8"))
        need(shutil.which("man") is not None, "man (man-db) is missing")
        r = subprocess.run(["man", "--warnings", "-l", page],
                           env=dict(os.environ, MANWIDTH="80"),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        text = re.sub(r"\s+", " ", r.stdout.replace("\u2010 ", "")
                      .replace("\u2010", "-"))
        for want in ("topicfs - Kafka's partitioned log", "SYNOPSIS",
                     "OPTIONS", "FILES", "EXAMPLES", "SEE ALSO",
                     "dump-log [--verify] path", "groups mountpoint [group]",
                     "groups --list mountpoint", "num.partitions=n",
                     "uid=uid, gid=gid, umask=mask", "allow_other",
                     "max_read=bytes", "fsname=name", "datadir/.lock",
                     "datadir/topics/topic/config"):
            self.assertIn(want, text)

    def test_man_page_source_renders_without_warnings(self):
        need(shutil.which("man") is not None, "man (man-db) is missing")
        r = subprocess.run(["man", "--warnings", "-l", MAN_SOURCE],
                           env=dict(os.environ, MANWIDTH="80"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def complete(self, script, *words):
        """What bash completes for words (the last one being typed)."""
        words_q = " ".join(f"'{w}'" for w in words)
        prog = textwrap.dedent(f"""\
            {script}
            complete -p topicfs
            COMP_WORDS=({words_q})
            COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
            COMP_LINE="${{COMP_WORDS[*]}}"
            COMP_POINT=${{#COMP_LINE}}
            $(complete -p topicfs | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')
            printf '%s\\n' "${{COMPREPLY[@]}}"
            """)
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog],
                           capture_output=True, text=True, cwd=self.dest,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        spec, *reply = r.stdout.splitlines()
        self.assertRegex(spec, r"^complete .*-F \S+ topicfs$")
        return reply

    def completion_file(self):
        return self.installed(os.path.join(
            self.datadir, "bash-completion", "completions", "topicfs"))

    def test_bash_completion(self):
        src = f"source '{self.completion_file()}'"
        self.assertEqual(self.complete(src, "topicfs", "dump"), ["dump-log"])
        self.assertEqual(self.complete(src, "topicfs", "gr"), ["groups"])
        self.assertEqual(self.complete(src, "topicfs", "dump-log", "--v"),
                         ["--verify"])
        self.assertEqual(self.complete(src, "topicfs", "groups", "--l"),
                         ["--list"])
        self.assertEqual(self.complete(src, "topicfs", "--ver"),
                         ["--version"])
        self.assertEqual(self.complete(src, "topicfs", "-o", "num"),
                         ["num.partitions="])
        self.assertEqual(
            self.complete(src, "topicfs", "-o", "allow_other,um"),
            ["allow_other,umask="])

    def test_bash_completion_loads_on_demand(self):
        """bash-completion finds the file by itself under the prefix."""
        loader = "/usr/share/bash-completion/bash_completion"
        need(os.path.exists(loader), "bash-completion is not installed")
        self.completion_file()
        script = textwrap.dedent(f"""\
            export XDG_DATA_DIRS='{self.dest + self.datadir}'
            source {loader}
            __load_completion topicfs
            """)
        self.assertEqual(self.complete(script, "topicfs", "dump"),
                         ["dump-log"])

    def unit(self):
        """The installed unit as {section: [(key, value)]}."""
        path = self.installed(os.path.join(
            self.prefix, "lib", "systemd", "system", "topicfs.service"))
        sections, cur = {}, None
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line[0] in "#;":
                    continue
                m = re.fullmatch(r"\[(\w+)\]", line)
                if m:
                    cur = sections.setdefault(m.group(1), [])
                    continue
                self.assertIsNotNone(cur, f"key outside a section: {line}")
                key, sep, value = line.partition("=")
                self.assertEqual(sep, "=", f"not key=value: {line}")
                cur.append((key.strip(), value.strip()))
        return sections

    def values(self, section, key):
        return [v for k, v in section if k == key]

    def test_systemd_unit(self):
        u = self.unit()
        self.assertEqual(set(u), {"Unit", "Service", "Install"})
        after = set(" ".join(self.values(u["Unit"], "After")).split())
        wants = set(" ".join(self.values(u["Unit"], "Wants")).split())
        self.assertTrue(after)
        self.assertEqual(after, wants)
        self.assertEqual(self.values(u["Service"], "Type"), ["notify"])
        [start] = self.values(u["Service"], "ExecStart")
        argv = start.split()
        self.assertEqual(argv[0], os.path.join(self.bindir, "topicfs"))
        self.assertTrue(os.access(self.dest + argv[0], os.X_OK))
        # Type=notify needs the started process to stay the main one.
        self.assertIn("-f", argv)
        datadir, mnt = argv[-2:]
        for pre in self.values(u["Service"], "ExecStartPre"):
            if "mkdir" in pre:
                self.assertIn(mnt, pre.split())
        self.assertEqual(self.values(u["Install"], "WantedBy"),
                         ["multi-user.target"])

    def test_docs_show_the_shipped_unit(self):
        """docs/MOUNTING.md shows the unit as installed by default."""
        with open(os.path.join(SOURCE_ROOT, "docs", "MOUNTING.md")) as f:
            blocks = re.findall(r"```ini\n(.*?)```", f.read(), re.S)
        with open(os.path.join(SOURCE_ROOT, "mount",
                               "topicfs.service.in")) as f:
            unit = f.read().replace("@bindir@", "/usr/local/bin")
        self.assertIn(unit, blocks)


class SyslogSkipTest(unittest.TestCase):
    """Where `unshare -m` fails as in a chroot, test_daemon_logs_to_syslog
    skips with the reason, and fails under CI=true."""

    def run_syslog_test(self, ci):
        fake = tempfile.mkdtemp(prefix="topicfs-fake-unshare-")
        self.addCleanup(shutil.rmtree, fake, ignore_errors=True)
        with open(os.path.join(fake, "unshare"), "w") as f:
            f.write("#!/bin/sh\necho 'unshare: cannot change root "
                    "filesystem propagation: Invalid argument' >&2\n"
                    "exit 1\n")
        os.chmod(os.path.join(fake, "unshare"), 0o755)
        env = dict(os.environ, PATH=fake + ":" + os.environ["PATH"])
        env.pop("CI", None)
        if ci:
            env["CI"] = "true"
        return subprocess.run(
            [sys.executable, os.path.join(HERE, "run.py"),
             "test_program.ProgramTest.test_daemon_logs_to_syslog"],
            env=env, capture_output=True, text=True, timeout=120)

    def test_skips_without_a_mount_namespace(self):
        need(os.geteuid() == 0, "the syslog test needs root")
        r = self.run_syslog_test(ci=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("skipped", r.stderr)
        self.assertIn("cannot change root filesystem propagation", r.stderr)

    def test_fails_in_ci_without_a_mount_namespace(self):
        need(os.geteuid() == 0, "the syslog test needs root")
        r = self.run_syslog_test(ci=True)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("required in CI", r.stderr)


if __name__ == "__main__":
    unittest.main()
