#!/usr/bin/env bash
# Build the log engine benchmarks in release mode, run them all on a real
# disk, and rewrite docs/PERFORMANCE.md with the results.
#
#   tests/bench/run.sh
#
# Every figure in the report is set against a baseline measured in the same
# run on the same disk: a plain file written or read the same way, or (for
# lookups and memory) a small partition. The programs print "BENCH ..."
# lines (see tests/bench/bench.h); this script keeps them in
# tests/bench/out/ (ignored by git) and composes the markdown from them.
# It owns the part of the report between the "log-bench:begin" and
# "log-bench:end" markers and leaves the rest of the file alone (other
# benchmarks keep their own sections there); the hand-written analysis
# between the "log-bench-analysis" markers is carried over.
#
# Settings, all optional, from the environment:
#   BENCH_DIR              parent of the scratch directory (default
#                          /var/tmp); must be on the disk to measure, not
#                          tmpfs. Everything written there is removed.
#   BENCH_BUILD_DIR        meson build directory (default build-bench)
#   BENCH_BYTES            bytes written per append case (default 1G)
#   BENCH_ROUNDS           rounds of each append case (default 7)
#   BENCH_PARTITION_BYTES  the large partition (default 2G)
#   BENCH_SMALL_BYTES      the small partition (default 2M)
#   BENCH_TAIL_BYTES       appended past the recovery point (default 64M)
#   BENCH_LOOKUPS          timed lookups of each kind (default 100000)
#   BENCH_RSS_LOOKUPS      lookups before reading VmRSS (default 10000)
#   BENCH_SEED             seed of the data and of the lookups
#   BENCH_OUT              report path (default docs/PERFORMANCE.md)
# Sizes take a K, M or G suffix. About 4 minutes with the defaults on a
# 2-core machine; the drop of the page cache in the recovery benchmark
# needs root (without it the figures are warm, and the report says so).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/report.sh"
root=$(cd "$here/../.." && pwd)
cd "$root"

build_dir=${BENCH_BUILD_DIR:-build-bench}
out_md=${BENCH_OUT:-docs/PERFORMANCE.md}
raw_dir=tests/bench/out
parent=${BENCH_DIR:-/var/tmp}
# Markers of our section of the report and of its hand-written analysis.
section_mark=log-bench
analysis_mark=log-bench-analysis
settings=(BENCH_DIR BENCH_BUILD_DIR BENCH_BYTES BENCH_ROUNDS
	  BENCH_PARTITION_BYTES BENCH_SMALL_BYTES BENCH_TAIL_BYTES
	  BENCH_LOOKUPS BENCH_RSS_LOOKUPS BENCH_SEED BENCH_OUT)

say() { printf 'run.sh: %s\n' "$*" >&2; }

# ---- build ---------------------------------------------------------------

build() {
	if [[ ! -f "$build_dir/build.ninja" ]]; then
		meson setup "$build_dir" -Dbuildtype=release >&2
	else
		meson configure "$build_dir" -Dbuildtype=release >&2
	fi
	# Only the benchmarks: work in progress elsewhere must not stop us.
	ninja -C "$build_dir" tests/bench/bench_append \
		tests/bench/bench_partition >&2
}

# ---- facts about the run -------------------------------------------------

fs_of() {
	findmnt -n -o FSTYPE -T "$1" 2>/dev/null || df -T "$1" | awk 'NR==2{print $2}'
}

source_of() {
	findmnt -n -o SOURCE,OPTIONS -T "$1" 2>/dev/null || echo unknown
}

cpu_model() {
	lscpu 2>/dev/null | awk -F: '/^Model name/{gsub(/^ +/, "", $2); print $2; exit}'
}

git_state() {
	local rev dirty=""
	rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
		dirty=" (with uncommitted changes in the working tree)"
	fi
	printf '%s%s' "$rev" "$dirty"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- the report ----------------------------------------------------------

# Turn the BENCH lines on stdin into the markdown tables and verdicts.
compose_tables() {
	awk '
function median(key, n,    a, i, j, t) {
	for (i = 1; i <= n; i++)
		a[i] = V[key, i] + 0;
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t;
		}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
}
function us(ns) { return sprintf("%.1f", ns / 1000); }
function mib(b) { return sprintf("%.1f", b / 1048576); }
function verdict(ok) { return ok ? "**met**" : "**not met**"; }
/^BENCH append_sample / { sample = substr($0, 21); next }
/^BENCH / {
	name = $2
	delete f
	for (i = 3; i <= NF; i++) {
		eq = index($i, "=")
		f[substr($i, 1, eq - 1)] = substr($i, eq + 1)
	}
	if (name == "append_config") {
		for (k in f) AC[k] = f[k]
	} else if (name == "append") {
		m = f["mode"]; c = f["case"]
		n = ++N[m, c]
		V["mb", m, c, n] = f["mb_s"]; V["cpu", m, c, n] = f["cpu_s"]
		ROUNDS[m, c] = ROUNDS[m, c] (n > 1 ? ", " : "") sprintf("%.0f", f["mb_s"])
		STORED[m, c] = f["stored_bytes"]; DISK[m, c] = f["disk_bytes"]
		BYTES[m, c] = f["bytes"]
		if (!(m in SEEN)) { SEEN[m] = 1; MODES[++nm] = m }
	} else if (name == "build") {
		for (k in f) B[f["name"], k] = f[k]
	} else if (name == "lookup") {
		for (k in f) L[f["size"], f["kind"], k] = f[k]
	} else if (name == "rss") {
		for (k in f) R[f["size"], k] = f[k]
	} else if (name == "recovery") {
		for (k in f) RC[f["what"], k] = f[k]
	}
}
END {
	ncase = split("plain none lz4 zstd", cases, " ")
	desc["buffered"] = "no fsync in either: the clock stops after the last append / write()"
	desc["fsync"] = "the clock stops after log_flush() / fsync() of the plain file"

	print "### 1. Append throughput"
	print ""
	printf "%s bytes (%s MiB) of %s-byte records per case, one `log_append` call of %s records (%s bytes, one batch; `cfg.batch_bytes` = %s) at a time, against `write()` of the same %s-byte buffers to a plain file in the same directory. zstd at level %s. Each case ran %s times, interleaved in rotating order; the figure is the median round. MB/s counts the records'"'"' bytes (10^6 bytes per MB) whatever the codec. The ratio by CPU time (the baseline'"'"'s CPU seconds over the case'"'"'s) is less sensitive to other processes taking the CPU; in the buffered mode, where a run is all CPU, it is the steadier figure.\n", AC["bytes"], mib(AC["bytes"]), AC["record_bytes"], AC["records_per_call"], AC["call_bytes"], AC["batch_bytes_cfg"], AC["call_bytes"], AC["zstd_level"], AC["rounds"]
	print ""
	print "Data: log-like text lines, each cut to 99 characters plus a newline, with an increasing timestamp and random levels, threads, HTTP methods, paths, ids, statuses, latencies, request ids and a 64-bit hex trace id (the incompressible part); 256 distinct batches (32 MiB), generated before the clock starts and cycled through, the same bytes for every case. Before each run as much memory as the run will fill with page cache is touched and freed (`bench_prefault`: this VM hands freed memory back to its host, and a first touch costs a host fault), and after it the files are deleted and the disk synced. The first record:"
	print ""
	print "    " sample
	print ""
	for (im = 1; im <= nm; im++) {
		m = MODES[im]
		base = median("mb" SUBSEP m SUBSEP "plain", N[m, "plain"])
		printf "#### Mode `%s` (%s)\n\n", m, desc[m]
		basecpu = median("cpu" SUBSEP m SUBSEP "plain", N[m, "plain"])
		print "| case | MB/s (median) | ratio to plain | MB/s of each round | CPU s (median) | ratio by CPU time | logical / stored | on-disk bytes / logical |"
		print "|---|---:|---:|---|---:|---:|---:|---:|"
		for (ic = 1; ic <= ncase; ic++) {
			c = cases[ic]
			if (!N[m, c]) continue
			mb = median("mb" SUBSEP m SUBSEP c, N[m, c])
			cpu = median("cpu" SUBSEP m SUBSEP c, N[m, c])
			RATIO[m, c] = base > 0 ? mb / base : 0
			printf "| %s | %.0f | %.2f | %s | %.2f | %.2f | %.2f | %.3f |\n", c == "plain" ? "plain file (baseline)" : c, mb, RATIO[m, c], ROUNDS[m, c], cpu, (cpu > 0 ? basecpu / cpu : 0), BYTES[m, c] / STORED[m, c], DISK[m, c] / BYTES[m, c]
		}
		print ""
		printf "Target, uncompressed >= 0.8 x plain file: %.2f, %s.\n\n", RATIO[m, "none"], verdict(RATIO[m, "none"] >= 0.8)
	}

	print "### 2. Offset and position lookups"
	print ""
	printf "Random `log_offset_to_pos` and `log_pos_to_offset` calls, %s of each, timed one by one, on a %s MiB partition (%s segment(s), default segment.bytes of 1 GiB, uncompressed, 128 KiB batches) and on a %s MiB one, both just written (page cache warm). Reference: random 4 KiB `pread()`s of plain files of the same two sizes on the same disk, which show how much the page cache and the memory hierarchy alone slow down when the data grows. Times in microseconds.\n\n", L["large", "offset_to_pos", "n"], mib(L["large", "offset_to_pos", "bytes"]), B["large", "segments"], mib(L["small", "offset_to_pos", "bytes"]), mib(L["plain_large", "pread_4k", "bytes"])
	print "| call | file | p50 | p90 | p99 | p99.9 | mean |"
	print "|---|---|---:|---:|---:|---:|---:|"
	nk = split("offset_to_pos pos_to_offset pread_4k", kinds, " ")
	for (ik = 1; ik <= nk; ik++)
		for (is = 1; is <= 2; is++) {
			k = kinds[ik]; s = is == 1 ? "small" : "large"
			if (k == "pread_4k") { s = "plain_" s; what = "pread 4 KiB (reference)" } else what = "log_" k
			printf "| %s | %s (%s MiB) | %s | %s | %s | %s | %s |\n", what, s, mib(L[s, k, "bytes"]), us(L[s, k, "p50_ns"]), us(L[s, k, "p90_ns"]), us(L[s, k, "p99_ns"]), us(L[s, k, "p999_ns"]), us(L[s, k, "mean_ns"])
		}
	print ""
	pr50 = L["plain_large", "pread_4k", "p50_ns"] / L["plain_small", "pread_4k", "p50_ns"]
	print "| call | p50 large / small | p99 large / small | p50 ratio / the plain file'"'"'s p50 ratio |"
	print "|---|---:|---:|---:|"
	ok = 1; okrel = 1
	for (ik = 1; ik <= nk; ik++) {
		k = kinds[ik]; sl = "large"; ss = "small"; what = "log_" k
		if (k == "pread_4k") { sl = "plain_large"; ss = "plain_small"; what = "pread 4 KiB (reference)" }
		r50 = L[sl, k, "p50_ns"] / L[ss, k, "p50_ns"]
		r99 = L[sl, k, "p99_ns"] / L[ss, k, "p99_ns"]
		if (k != "pread_4k" && (r50 > 1.5 || r99 > 2)) ok = 0
		if (k != "pread_4k" && r50 / pr50 > 1.25) okrel = 0
		printf "| %s | %.2f | %.2f | %.2f |\n", what, r50, r99, r50 / pr50
	}
	print ""
	printf "Target, large and small close. Taken literally (p50 ratio <= 1.5 and p99 ratio <= 2 for both calls): %s. Taken against the baseline (the engine'"'"'s p50 ratio at most 1.25 times the plain file'"'"'s own p50 ratio, i.e. the engine adds no cost that grows with the partition): %s.\n\n", verdict(ok), verdict(okrel)

	print "### 3. Recovery after an unclean shutdown"
	print ""
	tail = RC["log_open", "tail_bytes"]
	printf "The large partition was opened, flushed (`log_flush`), given %s MiB more past its recovery point, and abandoned (`log_abandon`, as if the process died; the page cache keeps the data). Then `sync` and %s, and `log_open` was timed. Bytes read are the process'"'"' `/proc/self/io` counters around the open: `read_bytes` (fetched from storage) and `rchar` (returned by read calls, page cache included). Baselines: cold sequential `read()`s, 128 KiB each, of the first %s MiB and of the whole of a plain file as large as the partition.\n\n", mib(tail), RC["log_open", "dropped_caches"] ? "the page cache was dropped (`echo 3 > /proc/sys/vm/drop_caches`)" : "**the page cache could NOT be dropped (not root): the figures are warm**", mib(tail)
	print "| what | bytes | seconds | read_bytes (MiB) | rchar (MiB) |"
	print "|---|---:|---:|---:|---:|"
	printf "| `log_open` of %s MiB, %s MiB past the recovery point | %s | %.3f | %s | %s |\n", mib(RC["log_open", "bytes"]), mib(tail), RC["log_open", "bytes"], RC["log_open", "seconds"], mib(RC["log_open", "read_bytes"]), mib(RC["log_open", "rchar"])
	printf "| plain file, first %s MiB, cold | %s | %.3f | %s | %s |\n", mib(tail), RC["plain_tail", "bytes"], RC["plain_tail", "seconds"], mib(RC["plain_tail", "read_bytes"]), mib(RC["plain_tail", "rchar"])
	printf "| plain file, all %s MiB, cold | %s | %.3f | %s | %s |\n\n", mib(RC["plain_whole", "bytes"]), RC["plain_whole", "bytes"], RC["plain_whole", "seconds"], mib(RC["plain_whole", "read_bytes"]), mib(RC["plain_whole", "rchar"])
	rb = RC["log_open", "read_bytes"] / tail
	printf "| ratio | value |\n|---|---:|\n"
	printf "| open time / cold read of the tail | %.2f |\n", RC["log_open", "seconds"] / RC["plain_tail", "seconds"]
	printf "| open time / cold read of the whole file | %.3f |\n", RC["log_open", "seconds"] / RC["plain_whole", "seconds"]
	printf "| bytes read from storage by the open / tail bytes | %.2f |\n", rb
	printf "| bytes read from storage by the open / partition bytes | %.3f |\n\n", RC["log_open", "read_bytes"] / RC["log_open", "bytes"]
	printf "Target, only the tail (plus metadata) is read (taken as: read_bytes <= 1.5 x tail): %.2f x tail, %s%s.\n\n", rb, verdict(rb <= 1.5), RC["log_open", "dropped_caches"] ? "" : " (warm: not conclusive)"

	print "### 4. Resident memory of an open partition"
	print ""
	printf "A fresh process opens and closes a throwaway one-record partition (so that library code and heap set-up are already resident), reads VmRSS, RssAnon and RssFile from `/proc/self/status`, opens the partition, makes %s random lookups (both kinds, alternating), and reads them again. KiB.\n\n", R["large", "lookups"]
	print "| partition | bytes | segments | VmRSS before | VmRSS delta | RssAnon delta | RssFile delta | delta / partition bytes |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|"
	for (is = 1; is <= 2; is++) {
		s = is == 1 ? "small" : "large"
		printf "| %s (%s MiB) | %s | %s | %s | %s | %s | %s | %.5f%% |\n", s, mib(R[s, "bytes"]), R[s, "bytes"], R[s, "segments"], R[s, "rss_before_kib"], R[s, "rss_delta_kib"], R[s, "anon_delta_kib"], R[s, "file_delta_kib"], 100 * R[s, "rss_delta_kib"] * 1024 / R[s, "bytes"]
	}
	rr = R["small", "rss_delta_kib"] > 0 ? R["large", "rss_delta_kib"] / R["small", "rss_delta_kib"] : 0
	ra = R["small", "anon_delta_kib"] > 0 ? R["large", "anon_delta_kib"] / R["small", "anon_delta_kib"] : 0
	frac = R["large", "rss_delta_kib"] * 1024 / R["large", "bytes"]
	printf "\n| ratio, large / small (partition %.0f times larger) | value |\n|---|---:|\n", R["large", "bytes"] / R["small", "bytes"]
	printf "| VmRSS delta | %.2f |\n| RssAnon delta (heap) | %.2f |\n\n", rr, ra
	printf "Target, memory does not grow with the partition beyond its index (taken as: the anonymous part does not grow, ratio <= 1.5, and the whole delta stays under 0.1%% of the partition'"'"'s bytes): anonymous %.2f, whole delta %.4f%% of the bytes, %s.\n\n", ra, 100 * frac, verdict(ra <= 1.5 && frac <= 0.001)
}
'
}

# Our section of the report, between its markers.
compose() {
	local started=$1 elapsed=$2 load0=$3 load1=$4 fs=$5 src=$6
	cat <<EOF
<!-- $section_mark:begin -->
## Log engine

Written by \`tests/bench/run.sh\` from the results of \`tests/bench/bench_append\`
and \`tests/bench/bench_partition\`; rerun it rather than editing the figures.
Only the analysis at the end of this section is written by hand (the script
keeps it), and the script replaces nothing outside its markers.

### The run

- Command: \`$the_command\` (from the repository root)
- Date: $started; took ${elapsed} s
- Commit: $(git_state)
- Machine: $(nproc) cores (\`nproc\`), $(cpu_model), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) of memory, kernel $(uname -r)
- Benchmark directory: a scratch directory under \`$parent\`, filesystem **$fs** ($src)
- Load average (1, 5, 15 min) before: $load0; after: $load1. Other processes
  may share the 2 cores: the append cases are interleaved and the median
  taken so that a disturbance does not favour one side.
- Clocks: CLOCK_MONOTONIC. Raw output: \`tests/bench/out/\` (not in git).

EOF
	compose_tables < "$raw_dir/results.txt"
	echo "### Analysis"
	echo
	report_analysis "$out_md" "$analysis_mark"
	echo "<!-- $section_mark:end -->"
}

# ---- main ----------------------------------------------------------------

# The scratch directory of this run, removed on any exit.
work=""
cleanup() {
	if [[ -n "$work" ]]; then
		rm -rf "$work"
	fi
}

main() {
	local fs started t0 load0 load1

	build
	mkdir -p "$parent" "$raw_dir"
	work=$(mktemp -d "$parent/topicfs-bench-run.XXXXXX")
	trap cleanup EXIT
	fs=$(fs_of "$work")
	if [[ "$fs" == tmpfs ]]; then
		say "warning: $parent is on tmpfs; set BENCH_DIR to a directory on a disk"
	fi
	export BENCH_DIR=$work
	started=$(date -u '+%Y-%m-%d %H:%M UTC')
	load0=$(loadavg)
	t0=$SECONDS
	say "append throughput (bench_append)"
	"$build_dir/tests/bench/bench_append" > "$raw_dir/append.txt"
	say "lookups, memory, recovery (bench_partition all)"
	"$build_dir/tests/bench/bench_partition" all > "$raw_dir/partition.txt"
	load1=$(loadavg)
	cat "$raw_dir/append.txt" "$raw_dir/partition.txt" > "$raw_dir/results.txt"
	compose "$started" "$((SECONDS - t0))" "$load0" "$load1" "$fs" \
		"$(source_of "$work")" > "$raw_dir/section.md"
	report_install "$out_md" "$raw_dir/section.md" "$section_mark"
	say "wrote $out_md"
}

# Before main points BENCH_DIR at its own scratch directory.
the_command=$(report_command tests/bench/run.sh "${settings[@]}")
main "$@"
