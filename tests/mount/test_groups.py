"""Consumer groups through the real mount: issue 4, CONTRACT.md section 6,
docs/GROUPS.md.

Each open file on MNT/t/.groups/<g> is one member. The tests open members
with os.open so that they decide when each member reads, and identify
members by the order they joined (member-N is the N-th open of the group
since the mount). Records are text lines "p<partition>-<index>", so every
record read says where it came from and where it was in its partition.
"""
import collections
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest

from mountlib import BIN, Mount, MountTest, wait_for

NPARTS = 6
P = "user.topicfs."


def rec(p, i):
    return b"p%d-%06d\n" % (p, i)   # 10 bytes


def parse(data):
    """Records of one read: whole lines only."""
    if not data:
        return []
    assert data.endswith(b"\n"), f"a read returned part of a record: {data[-40:]!r}"
    return data.splitlines(keepends=True)


def part_of(r):
    return int(r[1:r.index(b"-")])


def index_of(r):
    return int(r[r.index(b"-") + 1:-1])


def now_ms():
    return time.time_ns() // 1_000_000


# A reader in its own process, for kill -9: opens the group, reads as told
# (fsync in between when asked), prints each read's records, then waits to
# be killed.
READER = textwrap.dedent("""
    import os, sys
    path = sys.argv[1]
    fd = os.open(path, os.O_RDONLY)
    for step in sys.argv[2:]:
        if step == "fsync":
            os.fsync(fd)
            print("FSYNC", flush=True)
        else:
            data = os.read(fd, int(step))
            print("READ " + data.hex(), flush=True)
    print("READY", flush=True)
    sys.stdin.read()
""")


class GroupTest(MountTest):
    mount_opts = (f"num.partitions={NPARTS}",)

    def setUp(self):
        super().setUp()
        os.mkdir(self.m.path("t"))

    # ---- helpers ---------------------------------------------------------

    def gpath(self, g, topic="t"):
        return self.m.path(topic, ".groups", g)

    def gget(self, g, name, topic="t"):
        return os.getxattr(self.gpath(g, topic), P + name).decode()

    def gset(self, g, name, value, topic="t"):
        os.setxattr(self.gpath(g, topic), P + name, str(value).encode())

    def owners(self, g, n=NPARTS):
        return [self.gget(g, f"owner.{p}") for p in range(n)]

    def committed(self, g, n=NPARTS):
        return [self.gget(g, f"offset.{p}") for p in range(n)]

    def fill(self, counts, start=None, topic="t"):
        """Append counts[p] records to partition p; returns them."""
        out = []
        for p, n in enumerate(counts):
            first = 0 if start is None else start[p]
            data = b"".join(rec(p, i) for i in range(first, first + n))
            if data:
                self.append(data, topic, str(p))
            out += data.splitlines(keepends=True)
        return out

    def join(self, g, topic="t"):
        """Open a member; the test's end closes it if the test did not."""
        if not hasattr(self, "members"):
            self.members = set()
            self.addCleanup(lambda: [os.close(fd) for fd in self.members])
        fd = os.open(self.gpath(g, topic), os.O_RDONLY)
        self.members.add(fd)
        return fd

    def leave(self, fd):
        self.members.remove(fd)
        os.close(fd)

    def wait_left(self, g, member):
        """Closing is asynchronous (FUSE release): wait until it is gone."""
        wait_for(lambda: member not in self.owners(g),
                 what=f"{member} to leave group {g}")

    def read_to_eof(self, fd, size=65536):
        out = []
        while True:
            r = parse(os.read(fd, size))
            if not r:
                return out
            out += r

    def assertInOrder(self, records):
        """Records of one partition come in offset order, without gaps."""
        last = {}
        for r in records:
            p, i = part_of(r), index_of(r)
            if p in last:
                self.assertEqual(i, last[p] + 1, f"partition {p} out of order")
            last[p] = i

    # ---- assignment ------------------------------------------------------

    def check_three_members(self, strategy, expect):
        self.fill([5] * NPARTS)
        g = "g-" + strategy
        self.gset(g, "partition.assignment.strategy", strategy)
        fds = [self.join(g) for _ in range(3)]
        owners = self.owners(g)
        self.assertEqual(owners, [f"member-{k + 1}" for k in expect])
        self.assertEqual(sorted(collections.Counter(owners).values()), [2, 2, 2])
        # Each member reads exactly the records of its own partitions.
        for k, fd in enumerate(fds):
            got = self.read_to_eof(fd)
            mine = {p for p in range(NPARTS) if expect[p] == k}
            self.assertEqual({part_of(r) for r in got}, mine)
            self.assertEqual(len(got), 10)
            self.assertInOrder(got)

    def test_range_three_members_two_partitions_each(self):
        self.check_three_members("range", [0, 0, 1, 1, 2, 2])

    def test_roundrobin_three_members_two_partitions_each(self):
        self.check_three_members("roundrobin", [0, 1, 2, 0, 1, 2])

    def test_strategy_change_rebalances_and_bad_settings_are_refused(self):
        fds = [self.join("g") for _ in range(3)]
        self.assertEqual(self.owners("g"), ["member-1"] * 2 + ["member-2"] * 2
                         + ["member-3"] * 2)
        self.gset("g", "partition.assignment.strategy", "roundrobin")
        self.assertEqual(self.owners("g"),
                         ["member-1", "member-2", "member-3"] * 2)
        for name, value in (("partition.assignment.strategy", "fifo"),
                            ("enable.auto.commit", "yes"),
                            ("max.poll.interval.ms", "0"),
                            ("auto.offset.reset", "never")):
            self.assertErrno(errno.EINVAL, self.gset, "g", name, value)
        self.assertErrno(errno.ENODATA, self.gget, "g", "no.such.setting")
        self.assertErrno(errno.ENODATA, self.gget, "g", f"offset.{NPARTS}")
        self.assertEqual(self.gget("g", "partition.assignment.strategy"),
                         "roundrobin")
        names = os.listxattr(self.gpath("g"))
        for p in range(NPARTS):
            for kind in ("offset", "log_end_offset", "lag", "owner"):
                self.assertIn(f"{P}{kind}.{p}", names)
        del fds

    def test_group_settings_are_refused_as_a_topics_are(self):
        """Group settings go through the topic settings' table and parser:
        a value that parser refuses is refused here too, with one log line
        each (max.poll.interval.ms took " 100" and values past Kafka's
        int before)."""
        bad = (" 100", "2147483648", "99999999999999999999", "1e3", "")
        for value in bad:
            self.assertErrno(errno.EINVAL, self.gset, "g",
                             "max.poll.interval.ms", value)
        log = self.m.log_text()
        self.assertEqual(log.count("max.poll.interval.ms to"), len(bad), log)
        self.gset("g", "max.poll.interval.ms", "2147483647")
        self.assertEqual(self.gget("g", "max.poll.interval.ms"), "2147483647")
        self.gset("g", "enable.auto.commit", "false\n")  # echo's newline
        self.assertEqual(self.gget("g", "enable.auto.commit"), "false")

    def group_files(self, g):
        """Every file of group g in DATADIR, with its bytes."""
        top = os.path.join(self.m.data, "topics", "t", "groups", g)
        out = {}
        for d, _, names in os.walk(top):
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    out[os.path.relpath(os.path.join(d, n), top)] = f.read()
        return out

    def test_stored_group_with_unknown_setting_is_left_untouched(self):
        """A stored group whose settings file names a setting this
        topicfs does not know (a newer one wrote it) is not loaded with a
        default in its place, as a topic is not: the mount says why in one
        line, lists it, refuses to use it (EIO, one line per attempt) and
        never writes its files; rm deletes it."""
        self.fill([3] * NPARTS)
        fd = self.join("g")
        self.assertEqual(len(self.read_to_eof(fd)), 3 * NPARTS)
        self.leave(fd)
        wait_for(lambda: self.committed("g") == ["3"] * NPARTS,
                 what="the commit at close")
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        config = os.path.join(self.m.data, "topics", "t", "groups", "g",
                              "config")
        with open(config, "ab") as f:
            f.write(b"future.setting=1\n")
        before = self.group_files("g")
        self.m = Mount(self.tmp, self.mount_opts).start()
        log = self.m.log_text()
        self.assertIn("group g: cannot load: its settings file (config): "
                      "unknown setting 'future.setting'", log)
        self.assertEqual(os.listdir(self.m.path("t", ".groups")), ["g"])
        self.assertErrno(errno.EIO, os.open, self.gpath("g"), os.O_RDONLY)
        self.assertErrno(errno.EIO, self.gget, "g", "offset.0")
        self.assertErrno(errno.EIO, self.gset, "g", "offset.0", "0")
        self.assertErrno(errno.EIO, self.gset, "g", "enable.auto.commit",
                         "false")
        self.assertEqual(self.m.log_text().count("group g: cannot be used"), 2)
        self.assertEqual(self.m.log_text().count("refused"), 2)
        self.assertEqual(self.m.unmount(), 0, self.m.log_text())
        self.assertEqual(self.group_files("g"), before)
        self.m = Mount(self.tmp, self.mount_opts).start()
        os.unlink(self.gpath("g"))
        self.assertEqual(os.listdir(self.m.path("t", ".groups")), [])
        fd = self.join("g")
        self.assertEqual(len(self.read_to_eof(fd)), 3 * NPARTS)
        self.leave(fd)

    def test_seventh_member_on_six_partitions_reads_eof(self):
        self.fill([3] * NPARTS)
        fds = [self.join("g") for _ in range(7)]
        owners = self.owners("g")
        self.assertEqual(sorted(owners), [f"member-{k}" for k in range(1, 7)])
        self.assertNotIn("member-7", owners)
        self.assertEqual(os.read(fds[6], 65536), b"")
        for fd in fds[:6]:
            got = self.read_to_eof(fd)
            self.assertEqual(len(got), 3)
            self.assertEqual(len({part_of(r) for r in got}), 1)
        # The idle member gets a partition once another leaves.
        self.fill([2] * NPARTS, start=[3] * NPARTS)
        self.leave(fds[0])
        self.wait_left("g", "member-1")
        self.assertIn("member-7", self.owners("g"))
        got = self.read_to_eof(fds[6])
        self.assertEqual(len(got), 2)

    def consume_with_handover(self, manual):
        """3 members read in turns, one closes midway, more records arrive,
        the other two read to the end; every record must be delivered
        exactly once."""
        written = self.fill([200] * NPARTS)
        if manual:
            self.gset("g", "enable.auto.commit", "false")
        fds = [self.join("g") for _ in range(3)]
        got = []
        for _ in range(4):
            for fd in fds:
                r = parse(os.read(fd, 97))      # 9 whole records
                self.assertEqual(len(r), 9)
                got += r
                if manual:
                    os.fsync(fd)
        before = self.owners("g")
        self.leave(fds[0])
        self.wait_left("g", "member-1")
        after = self.owners("g")
        self.assertEqual(set(after), {"member-2", "member-3"})
        self.assertTrue(any(before[p] != after[p] and before[p] != "member-1"
                            for p in range(NPARTS)),
                        "the handover should also move a partition between "
                        f"the remaining members: {before} -> {after}")
        written += self.fill([40] * NPARTS, start=[200] * NPARTS)
        live = fds[1:]
        while True:
            batch = []
            for fd in live:
                r = parse(os.read(fd, 1000))
                batch += r
                if manual and r:
                    os.fsync(fd)
            if not batch:
                break
            got += batch
        for fd in live:
            self.leave(fd)
        wait_for(lambda: self.owners("g") == ["-"] * NPARTS,
                 what="every member to leave")
        dup = [r for r, c in collections.Counter(got).items() if c > 1]
        self.assertEqual(dup, [], "records delivered twice")
        self.assertEqual(sorted(got), sorted(written))
        self.assertEqual(self.committed("g"), ["240"] * NPARTS)
        self.assertEqual([self.gget("g", f"lag.{p}") for p in range(NPARTS)],
                         ["0"] * NPARTS)

    def test_handover_consumes_each_record_once_auto_commit(self):
        self.consume_with_handover(manual=False)

    def test_handover_consumes_each_record_once_fsync_commits(self):
        self.consume_with_handover(manual=True)

    def test_rebalance_during_reads_repeats_nothing(self):
        # Members join and leave while two others read in threads: with
        # auto commit and every member closing cleanly, each record is
        # still delivered exactly once.
        n = 20000
        written = self.fill([n] * NPARTS)
        readers = [self.join("g"), self.join("g")]
        got = [[], []]
        errors = []

        def read(k):
            try:
                fd = readers[k]
                while True:
                    r = parse(os.read(fd, 4096))
                    if not r:
                        return
                    got[k] += r
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=read, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        churn = 0
        while any(t.is_alive() for t in threads) and churn < 2000:
            fd = os.open(self.gpath("g"), os.O_RDONLY)
            os.close(fd)
            churn += 1
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        # The churn may have left partitions unread by the two: finish.
        for fd in readers:
            self.leave(fd)
        wait_for(lambda: self.owners("g") == ["-"] * NPARTS,
                 what="every member to leave")
        fd = self.join("g")
        rest = self.read_to_eof(fd)
        all_got = got[0] + got[1] + rest
        dup = collections.Counter(all_got) - collections.Counter(written)
        self.assertEqual(len(dup), 0, f"{len(dup)} records delivered twice "
                         f"({churn} joins during the reads), e.g. "
                         f"{sorted(dup)[:3]}")
        self.assertEqual(sorted(all_got), sorted(written))

    def test_cat_of_a_group_reads_the_topic_once(self):
        written = self.fill([3000] * NPARTS)        # 180 KB: several reads
        out = self.sh("cat t/.groups/g").stdout
        self.assertEqual(sorted(parse(out)), sorted(written))
        self.assertInOrder(parse(out))
        wait_for(lambda: self.committed("g") == ["3000"] * NPARTS,
                 what="cat's close to commit")
        self.assertEqual(self.sh("cat t/.groups/g").stdout, b"")
        more = self.fill([1] * NPARTS, start=[3000] * NPARTS)
        self.assertEqual(sorted(parse(self.sh("cat t/.groups/g").stdout)),
                         sorted(more))

    def test_reads_rotate_over_the_members_partitions(self):
        self.fill([100] * NPARTS)
        fd = self.join("g")
        firsts = [part_of(parse(os.read(fd, 50))[0]) for _ in range(NPARTS)]
        self.assertEqual(sorted(firsts), list(range(NPARTS)),
                         "a partition starves while another is read")

    def test_reads_return_whole_records_and_split_only_oversized_ones(self):
        big = b"B" * 250 + b"\n"
        self.append(rec(0, 0) + big + rec(0, 2), "t", "0")
        fd = self.join("g")
        self.assertEqual(os.read(fd, 100), rec(0, 0))   # not cut into big
        # A record larger than the read comes alone, in pieces.
        pieces = [os.read(fd, 100) for _ in range(3)]
        self.assertEqual([len(x) for x in pieces], [100, 100, 51])
        self.assertEqual(b"".join(pieces), big)
        self.assertEqual(os.read(fd, 100), rec(0, 2))
        self.assertEqual(os.read(fd, 100), b"")
        self.leave(fd)
        wait_for(lambda: self.gget("g", "offset.0") == "3",
                 what="the commit at close")

    def test_partitions_added_to_the_topic_are_assigned(self):
        self.gset("g", "partition.assignment.strategy", "roundrobin")
        a, b = self.join("g"), self.join("g")
        os.setxattr(self.m.path("t"), P + "partitions", b"8")
        new = self.fill([0] * NPARTS + [2, 2])
        got = self.read_to_eof(a) + self.read_to_eof(b)
        self.assertEqual(sorted(got), sorted(new))
        self.assertEqual(self.owners("g", 8), ["member-1", "member-2"] * 4)

    # ---- commits ---------------------------------------------------------

    def test_auto_commit_at_next_read_and_close(self):
        self.fill([10] + [0] * (NPARTS - 1))
        fd = self.join("g")
        first = parse(os.read(fd, 30))           # 3 records of 10 bytes
        self.assertEqual(first, [rec(0, i) for i in range(3)])
        self.assertEqual(self.gget("g", "offset.0"), "-",
                         "committed before the member read again")
        second = parse(os.read(fd, 20))
        self.assertEqual(second, [rec(0, 3), rec(0, 4)])
        self.assertEqual(self.gget("g", "offset.0"), "3")
        self.leave(fd)
        wait_for(lambda: self.gget("g", "offset.0") == "5",
                 what="the commit at close")
        self.assertEqual(self.gget("g", "lag.0"), "5")
        fd = self.join("g")
        self.assertEqual(self.read_to_eof(fd), [rec(0, i) for i in range(5, 10)])

    def test_member_of_a_deleted_topic_never_writes_into_its_successor(self):
        """A member still open on a deleted topic commits nowhere, even
        when a new topic has taken the old one's name (and path)."""
        self.fill([10] + [0] * (NPARTS - 1))
        fd = self.join("g")
        self.assertEqual(len(parse(os.read(fd, 30))), 3)
        os.rmdir(self.m.path("t"))
        os.mkdir(self.m.path("t"))
        self.leave(fd)  # auto commit of the 3 records read, refused
        wait_for(lambda: "topic t group g: commit failed" in
                 self.m.log_text(), what="the commit at close")
        self.assertEqual(os.listdir(self.gpath("").rstrip("/")), [])
        stored = os.path.join(self.m.data, "topics", "t", "groups")
        self.assertFalse(os.path.exists(os.path.join(stored, "g")),
                         "the old topic's commit landed in the new topic")

    def test_manual_commit_only_on_fsync(self):
        self.fill([10] + [0] * (NPARTS - 1))
        self.gset("g", "enable.auto.commit", "false")
        fd = self.join("g")
        self.assertEqual(len(parse(os.read(fd, 30))), 3)
        self.assertEqual(len(parse(os.read(fd, 20))), 2)
        self.assertEqual(self.gget("g", "offset.0"), "-")
        os.fsync(fd)
        self.assertEqual(self.gget("g", "offset.0"), "5")
        self.assertEqual(len(parse(os.read(fd, 20))), 2)
        self.leave(fd)
        self.wait_left("g", "member-1")
        self.assertEqual(self.gget("g", "offset.0"), "5")
        fd = self.join("g")
        self.assertEqual(self.read_to_eof(fd), [rec(0, i) for i in range(5, 10)])

    def run_reader(self, g, steps):
        """A child process reads the group as told and waits; we kill -9 it.
        Returns the records of each of its reads."""
        proc = subprocess.Popen([sys.executable, "-c", READER, self.gpath(g)]
                                + [str(s) for s in steps],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(proc.stdin.close)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        reads = []
        for line in proc.stdout:
            line = line.decode().strip()
            if line == "READY":
                break
            if line.startswith("READ "):
                reads.append(parse(bytes.fromhex(line[5:])))
        else:
            self.fail(f"the reader exited with {proc.wait()}")
        self.assertIn("member-1", self.owners(g))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.wait_left(g, "member-1")
        return reads

    def test_kill9_reader_without_auto_commit_redelivers(self):
        self.fill([20] + [0] * (NPARTS - 1))
        self.gset("g", "enable.auto.commit", "false")
        reads = self.run_reader("g", [40, "fsync", 50])
        self.assertEqual(reads, [[rec(0, i) for i in range(4)],
                                 [rec(0, i) for i in range(4, 9)]])
        # Only the fsynced read is committed; the rest comes again.
        self.assertEqual(self.gget("g", "offset.0"), "4")
        fd = self.join("g")
        self.assertEqual(self.read_to_eof(fd), [rec(0, i) for i in range(4, 20)])

    def test_kill9_reader_with_auto_commit_commits_its_last_read(self):
        # Documented (GROUPS.md): the kernel closes the killed process's
        # file, and a close commits what the last read returned, so those
        # records are not delivered again (at-most-once for the last read).
        self.fill([20] + [0] * (NPARTS - 1))
        reads = self.run_reader("g", [40, 50])
        self.assertEqual(sum(map(len, reads)), 9)
        self.assertEqual(self.gget("g", "offset.0"), "9")
        fd = self.join("g")
        self.assertEqual(self.read_to_eof(fd), [rec(0, i) for i in range(9, 20)])

    # ---- eviction --------------------------------------------------------

    def poll_until_owner_of_all(self, group, fd, member):
        """Read from fd (a member that keeps polling) until member owns
        every partition, the idle one having been evicted; the records
        read on the way."""
        got = []

        def polls_and_owns_all():
            got.extend(parse(os.read(fd, 65536)))
            return self.owners(group) == [member] * NPARTS
        wait_for(polls_and_owns_all, timeout=15,
                 what="the idle member to lose its partitions")
        return got

    def test_member_that_stops_reading_is_evicted(self):
        self.fill([10] * NPARTS)
        self.gset("g", "max.poll.interval.ms", 1500)
        self.gset("g", "enable.auto.commit", "false")
        a, b = self.join("g"), self.join("g")
        self.assertEqual(self.owners("g"), ["member-1"] * 3 + ["member-2"] * 3)
        a_got = parse(os.read(a, 40))           # read, never committed
        self.assertTrue(a_got)
        self.assertLessEqual({part_of(r) for r in a_got}, {0, 1, 2})
        start = time.monotonic()
        b_got = self.poll_until_owner_of_all("g", b, "member-2")
        self.assertGreaterEqual(time.monotonic() - start, 1.0,
                                "evicted before max.poll.interval.ms")
        b_got += self.read_to_eof(b)
        # What a read but did not commit is delivered again, to b.
        self.assertEqual(sorted(b_got), sorted(self.fill_records()))
        self.assertTrue(re.search(r"member-1 did not read for "
                                  r"max\.poll\.interval\.ms", self.m.log_text()),
                        "no log line about the eviction")
        # An evicted member cannot commit; its next read fails with
        # ETIMEDOUT, then it rejoins.
        self.assertErrno(errno.ETIMEDOUT, os.fsync, a)
        self.assertEqual(self.committed("g")[:3], ["-"] * 3)
        self.assertErrno(errno.ETIMEDOUT, os.read, a, 40)
        self.assertEqual(sorted(set(self.owners("g"))), ["member-2", "member-3"])
        again = parse(os.read(a, 65536))
        self.assertTrue(again, "the rejoined member reads nothing")
        owned = {p for p, o in enumerate(self.owners("g")) if o == "member-3"}
        self.assertLessEqual({part_of(r) for r in again}, owned)

    def test_evicted_member_with_auto_commit_loses_its_last_read(self):
        # GROUPS.md, Eviction: "What it had read but not committed is
        # delivered again to the new owner (an evicted member cannot
        # commit, as in Kafka)". With auto commit the records of the last
        # read are not committed until the next read or close.
        self.fill([10] + [0] * (NPARTS - 1))
        self.gset("g", "max.poll.interval.ms", 1000)
        a = self.join("g")
        a_got = parse(os.read(a, 40))
        self.assertEqual(a_got, [rec(0, i) for i in range(4)])
        self.assertEqual(self.gget("g", "offset.0"), "-")
        b = self.join("g")
        b_got = self.poll_until_owner_of_all("g", b, "member-2")
        b_got += self.read_to_eof(b)
        self.assertEqual(b_got, [rec(0, i) for i in range(10)])

    def fill_records(self, n=10):
        return [rec(p, i) for p in range(NPARTS) for i in range(n)]

    # ---- durability of committed offsets ---------------------------------

    def commit_some(self):
        self.fill([10] * NPARTS)
        self.gset("g", "partition.assignment.strategy", "roundrobin")
        self.gset("g", "enable.auto.commit", "false")
        fd = self.join("g")
        got = parse(os.read(fd, 100))        # ten 10-byte records
        os.fsync(fd)
        self.leave(fd)
        self.wait_left("g", "member-1")
        offsets = self.committed("g")
        self.assertEqual(sum(int(o) for o in offsets if o != "-"), len(got))
        return offsets, got

    def check_after_restart(self, offsets, got):
        self.assertIn("g", os.listdir(self.m.path("t", ".groups")))
        self.assertEqual(self.committed("g"), offsets)
        self.assertEqual(self.gget("g", "partition.assignment.strategy"),
                         "roundrobin")
        self.assertEqual(self.gget("g", "enable.auto.commit"), "false")
        fd = self.join("g")
        rest = self.read_to_eof(fd)
        self.assertEqual(sorted(got + rest), sorted(self.fill_records()))

    def test_committed_offsets_survive_remount(self):
        offsets, got = self.commit_some()
        self.remount()
        self.check_after_restart(offsets, got)

    def test_committed_offsets_survive_kill9_of_daemon(self):
        offsets, got = self.commit_some()
        self.m.kill9()
        self.m = Mount(self.tmp, self.mount_opts).start()
        self.check_after_restart(offsets, got)

    def test_newest_commit_survives_many_commits_and_remount(self):
        # Each commit appends a snapshot to the group's offsets log, which
        # rolls 1 MiB segments and keeps 2 MiB: the newest must win.
        n = 20000
        self.fill([n] + [0] * (NPARTS - 1))
        self.gset("g", "enable.auto.commit", "false")
        fd = self.join("g")
        for i in range(n - 1):
            self.assertEqual(os.read(fd, 10), rec(0, i))
            os.fsync(fd)
        self.leave(fd)
        self.wait_left("g", "member-1")
        self.assertEqual(self.gget("g", "offset.0"), str(n - 1))
        self.remount()
        self.assertEqual(self.gget("g", "offset.0"), str(n - 1))
        fd = self.join("g")
        self.assertEqual(self.read_to_eof(fd), [rec(0, n - 1)])

    # ---- resets ----------------------------------------------------------

    def test_offset_resets(self):
        self.fill([5] + [0] * (NPARTS - 1))
        mark = now_ms() + 1
        wait_for(lambda: now_ms() > mark + 1, what="the clock to pass the mark")
        self.fill([5] + [0] * (NPARTS - 1), start=[5] + [0] * (NPARTS - 1))
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mark // 1000)) \
            + ".%03dZ" % (mark % 1000)

        def consume_from(value, first):
            self.gset("g", "offset.0", value)
            self.assertEqual(self.gget("g", "offset.0"), str(first))
            self.assertEqual(self.gget("g", "lag.0"), str(10 - first))
            fd = self.join("g")
            self.assertEqual(self.read_to_eof(fd),
                             [rec(0, i) for i in range(first, 10)])
            self.leave(fd)
            wait_for(lambda: self.gget("g", "offset.0") == "10"
                     and self.gget("g", "owner.0") == "-",
                     what="the member to commit and leave")

        consume_from("7", 7)
        consume_from("earliest", 0)
        consume_from("3", 3)
        consume_from(f"@t={mark}", 5)
        consume_from("@" + iso, 5)
        consume_from("@t=0", 0)
        consume_from("latest", 10)
        consume_from("@2999-01-01T00:00:00Z", 10)
        # The selector views take (FILESYSTEM.md): the last N, times
        # without "@", a number too large to parse is ERANGE.
        consume_from("-3", 7)
        consume_from("-99999999999999999999999", 0)
        consume_from(f"t={mark}", 5)
        consume_from(iso, 5)
        # Refused while the group has a member; bad values.
        fd = self.join("g")
        self.assertErrno(errno.EBUSY, self.gset, "g", "offset.0", "earliest")
        self.leave(fd)
        wait_for(lambda: self.gget("g", "owner.0") == "-",
                 what="the member to leave")
        self.assertErrno(errno.ERANGE, self.gset, "g", "offset.0", "11")
        self.assertErrno(errno.ERANGE, self.gset, "g", "offset.0",
                         "99999999999999999999999")
        self.assertErrno(errno.EINVAL, self.gset, "g", "offset.0", "soon")
        self.assertErrno(errno.EPERM, self.gset, "g", "lag.0", "0")
        self.assertEqual(self.gget("g", "offset.0"), "10")
        consume_from("0", 0)

    def test_auto_offset_reset_latest_reads_records_appended_later(self):
        self.fill([4] * NPARTS)
        self.gset("g", "auto.offset.reset", "latest")
        fd = self.join("g")
        self.assertEqual(os.read(fd, 65536), b"")
        new = self.fill([1] * NPARTS, start=[4] * NPARTS)
        self.assertEqual(sorted(self.read_to_eof(fd)), sorted(new))

    def test_auto_offset_reset_latest_skips_existing_records(self):
        self.fill([4] * NPARTS)
        self.gset("g", "auto.offset.reset", "latest")
        fd = self.join("g")
        self.assertEqual(os.read(fd, 65536), b"")
        self.assertEqual(self.committed("g"), ["-"] * NPARTS)

    def test_auto_offset_reset_none_without_commit_fails_with_erange(self):
        self.fill([4] * NPARTS)
        self.gset("g", "auto.offset.reset", "none")
        fd = self.join("g")
        self.assertErrno(errno.ERANGE, os.read, fd, 100)
        self.leave(fd)
        self.wait_left("g", "member-1")
        for p in range(NPARTS):
            self.gset("g", f"offset.{p}", 1)
        fd = self.join("g")
        self.assertEqual(len(self.read_to_eof(fd)), 3 * NPARTS)

    def test_reset_none_below_log_start_fails_with_erange(self):
        t = self.m.path("t")
        os.setxattr(t, P + "segment.bytes", b"4096")
        os.setxattr(t, P + "retention.bytes", b"4096")
        line = lambda i: b"%099d\n" % i          # 100-byte records
        self.append(b"".join(line(i) for i in range(20)), "t", "0")
        self.gset("g", "enable.auto.commit", "false")
        self.gset("g", "auto.offset.reset", "none")
        for p in range(NPARTS):
            self.gset("g", f"offset.{p}", 10 if p == 0 else 0)
        # Control: the committed offset is in the log, so the read works.
        fd = self.join("g")
        self.assertEqual(parse(os.read(fd, 100)), [line(10)])
        self.leave(fd)
        self.wait_left("g", "member-1")
        for k in range(20):
            self.append(b"".join(line(i) for i in range(20 + 10 * k,
                                                        30 + 10 * k)), "t", "0")
        wait_for(lambda: int(os.getxattr(self.m.path("t", "0"),
                                         P + "log_start_offset")) > 10,
                 what="retention to pass the committed offset")
        self.assertEqual(self.gget("g", "offset.0"), "10")
        fd = self.join("g")
        self.assertErrno(errno.ERANGE, os.read, fd, 100)
        self.assertIn("auto.offset.reset=none", self.m.log_text())
        self.leave(fd)
        self.wait_left("g", "member-2")
        # With earliest, the same group resumes at the log start.
        self.gset("g", "auto.offset.reset", "earliest")
        start = int(os.getxattr(self.m.path("t", "0"), P + "log_start_offset"))
        fd = self.join("g")
        self.assertEqual(parse(os.read(fd, 100)), [line(start)])

    # ---- sticky ----------------------------------------------------------

    def moved(self, before, after):
        return [p for p in range(len(before)) if before[p] != after[p]]

    def test_sticky_moves_only_what_must(self):
        self.gset("g", "partition.assignment.strategy", "sticky")
        a, b = self.join("g"), self.join("g")
        two = self.owners("g")
        self.assertEqual(sorted(collections.Counter(two).values()), [3, 3])
        c = self.join("g")
        three = self.owners("g")
        self.assertEqual(sorted(collections.Counter(three).values()), [2, 2, 2])
        moved = self.moved(two, three)
        self.assertEqual(len(moved), 2, f"{two} -> {three}")
        self.assertEqual({three[p] for p in moved}, {"member-3"})
        d = self.join("g")
        four = self.owners("g")
        self.assertEqual(sorted(collections.Counter(four).values()), [1, 1, 2, 2])
        self.assertEqual(len(self.moved(three, four)), 1, f"{three} -> {four}")
        # A member leaving: only its partitions move.
        self.leave(b)
        self.wait_left("g", "member-2")
        three_again = self.owners("g")
        self.assertEqual(sorted(collections.Counter(three_again).values()),
                         [2, 2, 2])
        self.assertEqual(self.moved(four, three_again),
                         [p for p in range(NPARTS) if four[p] == "member-2"])
        del a, c, d

    def test_range_moves_more_than_sticky(self):
        a, b = self.join("g"), self.join("g")
        two = self.owners("g")
        c = self.join("g")
        three = self.owners("g")
        self.assertEqual(self.moved(two, three), [2, 4, 5])
        del a, b, c

    # ---- listing, deleting, describing -----------------------------------

    def test_ls_lists_stored_groups_and_rm_deletes(self):
        gdir = self.m.path("t", ".groups")
        self.assertEqual(os.listdir(gdir), [])
        self.fill([3] * NPARTS)
        fd = self.join("g")
        # Listed while it has members, before any commit (issue 8).
        self.assertEqual(os.listdir(gdir), ["g"], "not listed with a member")
        self.assertErrno(errno.EBUSY, os.unlink, self.gpath("g"))
        self.assertEqual(len(parse(os.read(fd, 65536))), 3 * NPARTS)
        self.leave(fd)
        wait_for(lambda: os.listdir(gdir) == ["g"], what="g to be listed")
        # A group whose members left without committing is not listed.
        fd = self.join("passing")
        self.assertEqual(sorted(os.listdir(gdir)), ["g", "passing"])
        self.leave(fd)
        wait_for(lambda: os.listdir(gdir) == ["g"], what="passing to go")
        self.gset("configured", "enable.auto.commit", "false")
        self.assertEqual(sorted(os.listdir(gdir)), ["configured", "g"])
        # rm: EBUSY with members; rmdir cannot work on a file.
        fd = self.join("g")
        self.assertErrno(errno.EBUSY, os.unlink, self.gpath("g"))
        self.assertErrno(errno.ENOTDIR, os.rmdir, self.gpath("g"))
        self.leave(fd)
        self.wait_left("g", "member-2")
        os.unlink(self.gpath("g"))
        self.assertEqual(os.listdir(gdir), ["configured"])
        self.assertEqual(self.committed("g"), ["-"] * NPARTS)
        self.assertErrno(errno.ENOENT, os.unlink, self.gpath("g"))
        # Deleted means forgotten: it reads the topic from the start again.
        fd = self.join("g")
        self.assertEqual(len(self.read_to_eof(fd)), 3 * NPARTS)
        self.leave(fd)
        wait_for(lambda: "g" in os.listdir(gdir), what="g to be stored again")
        self.remount()
        self.assertEqual(sorted(os.listdir(gdir)), ["configured", "g"])

    def describe_setup(self):
        self.fill([10 + p for p in range(NPARTS)])
        for p in range(NPARTS - 1):           # the last one: no commit
            self.gset("g", f"offset.{p}", p)
        self.gset("g", "partition.assignment.strategy", "roundrobin")
        self.gset("h", f"offset.0", "latest")
        fds = [self.join("g"), self.join("g")]
        return fds

    def groups_cmd(self, *args):
        r = subprocess.run([BIN, "groups", *args], capture_output=True,
                           timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def tables(self, out):
        """kafka-consumer-groups --describe output: per group a blank
        line, the header, the rows; returns [(header, [rows])]."""
        tables = []
        lines = out.split("\n")
        self.assertEqual(lines[-1], "", "output ends with a newline")
        i = 0
        while i < len(lines) - 1:
            self.assertEqual(lines[i], "", f"no blank line before {lines[i]!r}")
            header, rows = lines[i + 1], []
            i += 2
            while i < len(lines) - 1 and lines[i]:
                rows.append(lines[i].split())
                i += 1
            tables.append((header, rows))
        return tables

    def test_groups_command_prints_the_table(self):
        """kafka-consumer-groups --describe: one table per group, Kafka's
        columns and widths, the owner's HOST and CLIENT-ID."""
        fds = self.describe_setup()
        rc, out, err = self.groups_cmd(self.m.mnt)
        self.assertEqual(rc, 0, err)
        tables = self.tables(out)
        self.assertEqual(len(tables), 2)
        header = tables[0][0]
        self.assertEqual(header.split(),
                         ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
                          "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST",
                          "CLIENT-ID"])
        # Kafka's widths: GROUP and TOPIC at least 15, PARTITION 10, ...
        self.assertEqual(header.index("TOPIC"), 16)
        self.assertEqual(header.index("PARTITION"), 32)
        self.assertEqual(header.index("CURRENT-OFFSET"), 43)
        host = socket.gethostname()
        with open("/proc/self/comm") as f:
            client = f"{f.read().strip()}[{os.getpid()}]"
        expect_g = [["g", "t", str(p),
                     str(p) if p < NPARTS - 1 else "-", str(10 + p),
                     str(10) if p < NPARTS - 1 else "-",
                     f"member-{p % 2 + 1}", host, client]
                    for p in range(NPARTS)]
        expect_h = [["h", "t", "0", "10", "10", "0", "-", "-", "-"]] + \
            [["h", "t", str(p), "-", str(10 + p), "-", "-", "-", "-"]
             for p in range(1, NPARTS)]
        self.assertEqual(tables[0][1], expect_g)
        self.assertEqual(tables[1][1], expect_h)
        # Kafka's line for a group nobody reads, on stderr; none for g.
        self.assertEqual(err, "\nConsumer group 'h' has no active members.\n")
        rc, out, err = self.groups_cmd(self.m.mnt, "h")
        self.assertEqual(rc, 0, err)
        self.assertEqual([t[1] for t in self.tables(out)], [expect_h])
        self.assertIn("Consumer group 'h' has no active members.", err)
        rc, out, err = self.groups_cmd(self.m.mnt, "nope")
        self.assertEqual(rc, 1)
        self.assertEqual(err, "Error: Consumer group 'nope' does not exist.\n")
        del fds

    def test_member_attribute_names_host_and_process(self):
        """user.topicfs.member.<p>: CONSUMER-ID HOST CLIENT-ID of the
        owner, the client being the command and pid of the process that
        opened the member file; read-only."""
        self.fill([1] * NPARTS)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, self.gpath("g")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(reader.wait)
        self.addCleanup(reader.kill)
        self.assertEqual(reader.stdout.readline(), b"READY\n")
        with open(f"/proc/{reader.pid}/comm") as f:
            comm = f.read().strip()
        want = f"member-1 {socket.gethostname()} {comm}[{reader.pid}]"
        self.assertEqual([self.gget("g", f"member.{p}")
                          for p in range(NPARTS)], [want] * NPARTS)
        self.assertIn(P + "member.0", os.listxattr(self.gpath("g")))
        self.assertErrno(errno.EPERM, os.setxattr, self.gpath("g"),
                         P + "member.0", b"x")
        self.assertEqual(self.gget("other", "member.0"), "-")
        # Shown by `topicfs groups` before the group ever commits.
        rc, out, err = self.groups_cmd(self.m.mnt, "g")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        rows = self.tables(out)[0][1]
        self.assertEqual(rows, [["g", "t", str(p), "-", "1", "-", "member-1",
                                 socket.gethostname(), f"{comm}[{reader.pid}]"]
                                for p in range(NPARTS)])

    def test_groups_list(self):
        """--list: every group name once, sorted, also a group that only
        has members so far and one used on two topics."""
        os.mkdir(self.m.path("u"))
        self.gset("zed", "enable.auto.commit", "false")
        self.gset("alpha", "offset.0", 0)
        self.gset("alpha", "offset.0", 0, topic="u")
        fd = self.join("active", topic="u")
        rc, out, err = self.groups_cmd("--list", self.m.mnt)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "active\nalpha\nzed\n")
        # A group on two topics is one table with rows of both.
        rc, out, err = self.groups_cmd(self.m.mnt, "alpha")
        self.assertEqual(rc, 0, err)
        rows = self.tables(out)[0][1]
        self.assertEqual([(r[1], r[2]) for r in rows],
                         [("t", str(p)) for p in range(NPARTS)] +
                         [("u", str(p)) for p in range(NPARTS)])
        self.leave(fd)

    def test_groups_help_and_bad_command_lines(self):
        for arg in ("-h", "--help"):
            rc, out, err = self.groups_cmd(arg)
            self.assertEqual((rc, err), (0, ""), arg)
            self.assertTrue(out.startswith("usage: topicfs groups"), out)
            self.assertIn("--list", out)
        for args in ((), ("--bogus", self.m.mnt),
                     ("--list", self.m.mnt, "extra"),
                     (self.m.mnt, "g", "extra")):
            rc, out, err = self.groups_cmd(*args)
            self.assertEqual(rc, 2, args)
            self.assertIn("usage: topicfs groups", err)

    def test_groups_refuses_what_is_not_a_topicfs_mount(self):
        """A plain directory, a directory inside the mount and a missing
        path: one line naming the path, exit 1, nothing on stdout."""
        plain = os.path.join(self.tmp, "plain")
        os.mkdir(plain)
        for path in (plain, self.m.path("t"), "/proc"):
            for args in ((path,), ("--list", path)):
                rc, out, err = self.groups_cmd(*args)
                self.assertEqual((rc, out), (1, ""), args)
                self.assertEqual(err, f"topicfs groups: {path} is not a "
                                 "topicfs mount (no topicfs file system is "
                                 "mounted there)\n")
        missing = os.path.join(self.tmp, "missing")
        rc, out, err = self.groups_cmd(missing)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err, f"topicfs groups: {missing}: No such file or "
                         "directory\n")

    def test_metrics_export_lag_per_group_and_partition(self):
        self.describe_setup()
        self.append(rec(0, 10), "t", "0")
        text = self.read(".metrics").decode()
        found = {}
        for m in re.finditer(r'^topicfs_group_(lag|committed_offset)\{topic="t",'
                             r'group="(\w+)",partition="(\d+)"\} (\d+)$',
                             text, re.M):
            found[m.group(1), m.group(2), int(m.group(3))] = int(m.group(4))
        expect = {}
        for p in range(NPARTS - 1):
            expect["committed_offset", "g", p] = p
            expect["lag", "g", p] = 10 + p + (p == 0) - p
        expect["committed_offset", "h", 0] = 10
        expect["lag", "h", 0] = 1
        self.assertEqual(found, expect)


if __name__ == "__main__":
    unittest.main()
