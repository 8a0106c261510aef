"""`.status` and `.metrics` as operators' tools read them (issue 8, item 7;
docs/FILESYSTEM.md, ".status and .metrics").

- Their st_size is the length of the text a read returns, so tools that
  trust the size (shutil.copyfile, sendfile, tar, python3 -m http.server,
  which Prometheus scrapes) get the whole text.
- .metrics is the Prometheus text format with each family one group:
  HELP, TYPE, then all its samples (checked structurally, and with
  prometheus_client's parser, Debian's python3-prometheus-client).
- .status has the layout of kafka-topics --describe, topics by name.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import unittest
import urllib.request

from mountlib import DEADLINE_S, MountTest, need, wait_for

P = "user.topicfs."
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "docs", "FILESYSTEM.md")
# The families of .metrics, in order, with their type.
FAMILIES = [
    ("topicfs_bytes_in_total", "counter"),
    ("topicfs_records_in_total", "counter"),
    ("topicfs_batches_in_total", "counter"),
    ("topicfs_bytes_out_total", "counter"),
    ("topicfs_records_out_total", "counter"),
    ("topicfs_log_start_offset", "gauge"),
    ("topicfs_high_watermark", "gauge"),
    ("topicfs_log_end_offset", "gauge"),
    ("topicfs_size_bytes", "gauge"),
    ("topicfs_append_latency_seconds", "histogram"),
    ("topicfs_group_committed_offset", "gauge"),
    ("topicfs_group_lag", "gauge"),
    ("topicfs_scrub_bytes_total", "counter"),
    ("topicfs_scrub_passes_total", "counter"),
    ("topicfs_fsyncs_total", "counter"),
]
# The daemon's own families: one sample, no labels.
PROCESS_FAMILIES = {"topicfs_fsyncs_total", "topicfs_scrub_bytes_total",
                    "topicfs_scrub_passes_total"}
LATENCY_BUCKETS = 12          # fs/topic.h, plus le="+Inf"


def prometheus_client():
    """Debian's python3-prometheus-client, also when python3 is not
    Debian's (its modules live in /usr/lib/python3/dist-packages)."""
    try:
        import prometheus_client.parser as parser
        return parser
    except ImportError:
        pass
    debian = "/usr/lib/python3/dist-packages"
    if os.path.isdir(os.path.join(debian, "prometheus_client")):
        sys.path.append(debian)
        try:
            import prometheus_client.parser as parser
            return parser
        except ImportError:
            pass
        finally:
            sys.path.remove(debian)
    return None


class ReportTest(MountTest):
    mount_opts = ("num.partitions=2",)

    def set(self, path, name, value):
        os.setxattr(self.m.path(path), P + name, str(value).encode())

    def populate(self):
        """Topics b (3 partitions, zstd, retention.ms) and a; records in
        some partitions; group g with a commit on a/0. 5 partitions."""
        os.mkdir(self.m.path("b"))
        os.mkdir(self.m.path("a"))
        self.set("b", "partitions", 3)
        self.set("b", "compression.type", "zstd")
        self.set("b", "retention.ms", 60000)
        self.append(b"a1\na2\na3\n", "a", "0")
        self.append(b"x\n", "b", "2")
        self.set("a/.groups/g", "offset.0", 1)

    def text(self, name):
        with open(self.m.path(name), "rb") as f:
            return f.read()


class TestSize(ReportTest):
    """The size a stat reports is that of the text a read returns."""

    def test_stat_and_fstat_size_is_the_text(self):
        self.populate()
        for name in (".status", ".metrics"):
            size = os.stat(self.m.path(name)).st_size
            with open(self.m.path(name), "rb") as f:
                fsize = os.fstat(f.fileno()).st_size
                data = f.read()
            self.assertGreater(len(data), 0, name)
            self.assertEqual(size, len(data), name)
            self.assertEqual(fsize, len(data), name)
            # lseek(SEEK_END) asks with the open file: its own text.
            with open(self.m.path(name), "rb") as f:
                self.assertEqual(f.seek(0, os.SEEK_END), len(data), name)

    def test_sizes_agree_while_the_mount_changes(self):
        """stat, then open: the open reads the text the stat sized, even
        if a topic came meanwhile (tar reads st_size bytes). open, then
        fstat: the size of the open file's text, not of the present one
        (http.server's Content-Length). The next open sees the change."""
        self.populate()
        for name in (".status", ".metrics"):
            path = self.m.path(name)
            size = os.stat(path).st_size
            os.mkdir(self.m.path("new" + name))
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(len(data), size, name)
            self.assertNotIn(b"new" + name.encode(), data, name)
            with open(path, "rb") as f:
                os.mkdir(self.m.path("newer" + name))
                self.assertEqual(os.fstat(f.fileno()).st_size,
                                 len(f.read()), name)
            self.assertIn(b"newer" + name.encode(), self.text(name), name)

    def test_shutil_copyfile_and_sendfile(self):
        self.populate()
        for name in (".status", ".metrics"):
            dst = os.path.join(self.tmp, "copy" + name)
            shutil.copyfile(self.m.path(name), dst)
            with open(dst, "rb") as f:
                copied = f.read()
            self.assertGreater(len(copied), 0, name)
            self.assertEqual(copied, self.text(name), name)
            # sendfile(2) into a pipe, as a web server would send it.
            fd = os.open(self.m.path(name), os.O_RDONLY)
            r, w = os.pipe()
            try:
                sent = os.sendfile(w, fd, 0, 1 << 20)
                os.close(w)
                w = -1
                got = b""
                while chunk := os.read(r, 65536):
                    got += chunk
            finally:
                os.close(fd)
                os.close(r)
                if w >= 0:
                    os.close(w)
            self.assertEqual(sent, len(copied), name)
            self.assertEqual(got, copied, name)

    def test_tar(self):
        self.populate()
        out = os.path.join(self.tmp, "r.tar")
        subprocess.run(["tar", "-cf", out, "-C", self.m.mnt, ".status",
                        ".metrics"], check=True, capture_output=True)
        with tarfile.open(out) as tar:
            for name in (".status", ".metrics"):
                data = tar.extractfile(name).read()
                self.assertGreater(len(data), 0, name)
                self.assertEqual(data, self.text(name), name)

    def test_http_server_serves_the_whole_text(self):
        """python3 -m http.server (what a Prometheus scrape of a textfile
        often goes through) sends Content-Length from fstat, then the
        file: the body is the whole text."""
        self.populate()
        srv = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "--bind",
             "127.0.0.1", "--directory", self.m.mnt, "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(srv.wait, 10)
        self.addCleanup(srv.kill)
        port = []

        def serving():
            line = srv.stdout.readline()   # "Serving HTTP on ... port N"
            m = re.search(r"port (\d+)", line)
            if m:
                port.append(int(m.group(1)))
            return port or srv.poll() is not None
        wait_for(serving, what="http.server to listen")
        self.assertTrue(port, "http.server did not start")
        for name in (".metrics", ".status"):
            url = f"http://127.0.0.1:{port[0]}/{name}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                length = int(resp.headers["Content-Length"])
                body = resp.read()
            self.assertGreater(len(body), 0, name)
            self.assertEqual(length, len(body), name)
            self.assertEqual(body, self.text(name), name)

    def test_text_follows_changes_and_an_open_file_keeps_its_own(self):
        """A new record or topic shows at the next open; a stat before
        each open matches what that open reads; an open file (here held
        by another thread) reads the text it got at open to the end,
        whatever happens meanwhile."""
        self.populate()
        old = self.text(".status")
        opened, go, got = threading.Event(), threading.Event(), []

        def reader():
            with open(self.m.path(".status"), "rb", buffering=0) as f:
                got.append(f.read(10))
                opened.set()
                go.wait(DEADLINE_S)
                got.append(f.read())
        t = threading.Thread(target=reader)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(go.set)
        self.assertTrue(opened.wait(DEADLINE_S))
        self.append(b"more\n" * 7, "a", "1")
        os.mkdir(self.m.path("c"))
        size = os.stat(self.m.path(".status")).st_size
        data = self.text(".status")
        self.assertEqual(size, len(data))
        self.assertIn(b"\tTopic: a\tPartition: 1\tLeader: 0\tReplicas: 0"
                      b"\tIsr: 0\tLogStartOffset: 0\tHighWatermark: 7\t", data)
        self.assertIn(b"Topic: c\t", data)
        go.set()
        t.join(DEADLINE_S)
        self.assertEqual(b"".join(got), old)


class TestMetricsFormat(ReportTest):
    """Each family is one group: HELP, TYPE, then all of its samples."""

    def families(self, text):
        """[(name, type, help, [sample lines])] in the order of the text;
        fails on a sample outside its family's group."""
        fams = []
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name = line.split()[2]
                self.assertNotIn(name, [f[0] for f in fams],
                                 f"family {name} twice")
                fams.append([name, None, line, []])
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                self.assertEqual(name, fams[-1][0], "TYPE right after HELP")
                self.assertIsNone(fams[-1][1])
                fams[-1][1] = kind
            else:
                self.assertTrue(fams, f"sample before any HELP: {line}")
                name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
                fam, kind = fams[-1][0], fams[-1][1]
                ok = name == fam or (kind == "histogram" and name in
                                     (fam + "_bucket", fam + "_sum",
                                      fam + "_count"))
                self.assertTrue(ok, f"{name} inside family {fam}'s group")
                fams[-1][3].append(line)
        return fams

    def test_families_are_grouped_and_complete(self):
        self.populate()
        text = self.text(".metrics").decode()
        fams = self.families(text)
        self.assertEqual([(f[0], f[1]) for f in fams], FAMILIES)
        for name, kind, _, samples in fams:
            if name.startswith("topicfs_group_"):
                self.assertEqual(len(samples), 1, name)     # a/0 only
                self.assertIn('topic="a",group="g",partition="0"',
                              samples[0])
            elif name in PROCESS_FAMILIES:
                self.assertRegex(samples[0], rf"^{name} \d+$")
                self.assertEqual(len(samples), 1, name)
            elif kind == "histogram":
                self.assertEqual(len(samples), 5 * (LATENCY_BUCKETS + 3),
                                 name)
            else:
                self.assertEqual(len(samples), 5, name)
        hw = [s for f in fams if f[0] == "topicfs_high_watermark"
              for s in f[3]]
        self.assertIn('topicfs_high_watermark{topic="a",partition="0"} 3',
                      hw)
        self.assertIn('topicfs_high_watermark{topic="b",partition="2"} 1',
                      hw)

    def test_prometheus_client_reads_one_family_per_metric(self):
        parser = prometheus_client()
        need(parser is not None, "python3-prometheus-client is missing "
             "(scripts/install-deps installs it)")
        self.populate()
        text = self.text(".metrics").decode()
        fams = list(parser.text_string_to_metric_families(text))
        names = [f.name for f in fams]
        # The parser names a counter family without its _total.
        expect = [re.sub(r"_total$", "", n) for n, _ in FAMILIES]
        self.assertEqual(names, expect)
        for fam in fams:
            kind = dict(FAMILIES).get(fam.name,
                                      dict(FAMILIES).get(fam.name + "_total"))
            self.assertEqual(fam.type, kind, fam.name)
            series = {tuple(sorted((k, v) for k, v in s.labels.items()
                                   if k != "le")) for s in fam.samples}
            if fam.name.startswith("topicfs_group_") or \
                    fam.name + "_total" in PROCESS_FAMILIES:
                self.assertEqual(len(fam.samples), 1, fam.name)
            else:
                self.assertEqual(len(series), 5, fam.name)
                per = LATENCY_BUCKETS + 3 if kind == "histogram" else 1
                self.assertEqual(len(fam.samples), 5 * per, fam.name)

    def fsyncs(self):
        text = self.text(".metrics").decode()
        return int(re.search(r"^topicfs_fsyncs_total (\d+)$", text,
                             re.M).group(1))

    def test_fsync_count_grows_with_an_fsync(self):
        """topicfs_fsyncs_total counts the daemon's syncs: an fsync() of
        records not yet on disk costs at least one (durable_bench.sh
        reports syncs per record from it)."""
        self.populate()
        before = self.fsyncs()
        fd = os.open(self.m.path("a", "0"), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"to be synced\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertGreater(self.fsyncs(), before)

    def test_docs_name_every_metric(self):
        """docs/FILESYSTEM.md documents every family .metrics prints."""
        self.populate()
        with open(DOCS) as f:
            docs = f.read()
        names = re.findall(r"^# TYPE (\S+) ", self.text(".metrics").decode(),
                           re.M)
        self.assertEqual(len(names), len(FAMILIES))
        for name in names:
            self.assertTrue(f"`{name}`" in docs, f"{name} is not documented")


# kafka-topics --describe, as TopicCommand prints it.
TOPIC_LINE = re.compile(
    r"^Topic: (\S+)\tTopicId: ([A-Za-z0-9_-]{22})\tPartitionCount: (\d+)"
    r"\tReplicationFactor: (\d+)\tConfigs: (\S*)$")
PART_LINE = re.compile(
    r"^\tTopic: (\S+)\tPartition: (\d+)\tLeader: 0\tReplicas: 0\tIsr: 0"
    r"\tLogStartOffset: (\d+)\tHighWatermark: (\d+)\tLogEndOffset: (\d+)"
    r"\tSize: (\d+)\tSegments: (\d+)\tCodec: (\w+)$")


class TestStatusLayout(ReportTest):

    def parse(self):
        topics, parts = [], {}
        for line in self.text(".status").decode().splitlines():
            m = TOPIC_LINE.match(line)
            if m:
                topics.append((m.group(1), int(m.group(3)), int(m.group(4)),
                               m.group(5)))
                continue
            m = PART_LINE.match(line)
            self.assertIsNotNone(m, f"not kafka-topics' layout: {line!r}")
            self.assertEqual(m.group(1), topics[-1][0], "partition of "
                             "another topic")
            parts[m.group(1), int(m.group(2))] = tuple(
                int(x) for x in m.groups()[2:7]) + (m.group(8),)
        return topics, parts

    def test_kafka_topics_describe_layout(self):
        self.assertEqual(self.text(".status"), b"")
        for name in ("zeta", "mid"):
            os.mkdir(self.m.path(name))
        self.populate()
        topics, parts = self.parse()
        # Sorted by name, not by creation.
        self.assertEqual(topics, [
            ("a", 2, 1, ""), ("b", 3, 1, "retention.ms=60000,"
                              "compression.type=zstd"),
            ("mid", 2, 1, ""), ("zeta", 2, 1, "")])
        self.assertEqual(parts["a", 0], (0, 3, 3, 9, 1, "none"))
        self.assertEqual(parts["a", 1], (0, 0, 0, 0, 1, "none"))
        self.assertEqual(parts["b", 2][1:3], (1, 1))
        self.assertEqual(parts["b", 2][5], "zstd")
        self.assertEqual(len(parts), 2 + 3 + 2 + 2)
        # What operators' scripts grep for.
        r = subprocess.run(["grep", "-c", "-P",
                            r"^\tTopic: b\tPartition: \d+\tLeader: 0\t",
                            self.m.path(".status")], capture_output=True)
        self.assertEqual(r.stdout, b"3\n")
        # Partitions follow their topic line, in order.
        lines = self.text(".status").decode().splitlines()
        i = lines.index(next(l for l in lines if l.startswith("Topic: b\t")))
        self.assertEqual([l.split("\t")[2] for l in lines[i + 1:i + 4]],
                         ["Partition: 0", "Partition: 1", "Partition: 2"])

    def test_topic_ids_are_kafkas_and_stay_with_their_topics(self):
        os.mkdir(self.m.path("a"))
        os.mkdir(self.m.path("b"))
        ids = dict(m.group(1, 2) for m in map(
            TOPIC_LINE.match, self.text(".status").decode().splitlines())
            if m)
        self.assertEqual(sorted(ids), ["a", "b"])
        self.assertNotEqual(ids["a"], ids["b"])
        self.assertFalse(ids["a"].startswith("-"))
        self.m.unmount()
        self.m.start()
        again = dict(m.group(1, 2) for m in map(
            TOPIC_LINE.match, self.text(".status").decode().splitlines())
            if m)
        self.assertEqual(again, ids)

    def test_failed_topic_is_shown_with_its_reason(self):
        """A topic whose settings cannot be read stays on disk and shows
        as failed, with its reason, among the others in name order."""
        os.mkdir(self.m.path("ok"))
        os.mkdir(self.m.path("bad"))
        self.m.unmount()
        with open(os.path.join(self.m.data, "topics", "bad", "config"),
                  "a") as f:
            f.write("partitions=banana\n")
        self.m.start()
        lines = self.text(".status").decode().splitlines()
        heads = [l for l in lines if not l.startswith("\t")]
        self.assertEqual(len(heads), 2)
        self.assertRegex(heads[0], r"^Topic: bad\tTopicId: unknown\t"
                         r"PartitionCount: 0\tReplicationFactor: 0\t"
                         r"Configs: \tState: failed\tReason: its settings "
                         r"file \(config\): bad value for setting "
                         r"'partitions'$")
        self.assertTrue(heads[1].startswith("Topic: ok\t"))


if __name__ == "__main__":
    unittest.main()
