#!/usr/bin/env bash
# Benchmarks of the mount (issue 3), each as a ratio against a plain file
# on the same disk measured in the same run:
#
#   1. `cat` of a 1 GiB file of 100-byte lines `>>` a partition vs `>>` a
#      plain file                                        (target >= 0.5)
#   2. `cat` of that partition `> /dev/null`, cold (after a remount and
#      `echo 3 > /proc/sys/vm/drop_caches`) and warm (read again), vs the
#      plain file read the same way          (targets >= 0.4 and >= 0.7)
#   3. one write() per 100-byte line from a C loop (mount_write_loop), 1
#      and 4 writer threads, lines/s vs the same loop on a plain file, and
#      vs a loop of fstat() on the partition: on topicfs every fstat() is
#      one FUSE round trip doing no work, the bound for such loops
#   4. `tail -n 10` on a 2 GiB partition vs a 2 MiB one (<= 2x slower)
#
# (1) also runs through libfuse's own passthrough_ll example (built from
# the copy libfuse3-dev ships; -o cache=never: direct_io, as topicfs)
# over another plain file, as a reference for what FUSE itself reaches
# on the machine. Not for (2): that example's direct reads ran at 0.2
# GB/s here, warm as cold, which says more about the example than about
# FUSE.
#
#   sudo tests/bench/mount_bench.sh [--update-doc]
#
# Prints a markdown section "## Mount (issue 3)"; with --update-doc it
# also replaces that section (from its heading to its
# <!-- mount-bench:end --> marker) in docs/PERFORMANCE.md, or appends it.
# The hand-written analysis between <!-- mount-analysis:begin --> and
# <!-- mount-analysis:end --> in the old section is carried over.
# Needs root (drop_caches, mounting) and about 5 GiB free under BENCH_DIR.
#
# Settings, all optional, from the environment:
#   BENCH_DIR                  parent of the scratch directory (default
#                              /var/tmp): on the disk to measure, not tmpfs
#   MOUNT_BENCH_BUILD_DIR      meson build directory, release (default
#                              build-mount-bench; set up if missing)
#   TOPICFS_BIN                use this topicfs instead of the build's
#                              (tests/bench/compare.sh: another revision's)
#   MOUNT_BENCH_BYTES          size of the file of lines (default 1G)
#   MOUNT_BENCH_SMALL_BYTES    the small partition of (4) (default 2M)
#   MOUNT_BENCH_APPEND_ROUNDS  rounds of (1) (default 7: writes into new
#                              page-cache pages vary most on a shared VM)
#   MOUNT_BENCH_ROUNDS         rounds of each other measurement (default 3; the
#                              median is reported)
#   MOUNT_BENCH_LOOP_SECONDS   duration of each write loop (default 3)
#   MOUNT_BENCH_TAIL_CALLS     `tail` calls per timed tail round (default 200)
#   MOUNT_BENCH_OUT            the report to update (default docs/PERFORMANCE.md)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/report.sh"
root=$(cd "$here/../.." && pwd)
cd "$root"

update_doc=0
if [[ "${1:-}" == "--update-doc" ]]; then
	update_doc=1
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--update-doc]" >&2
	exit 2
fi

build_dir=${MOUNT_BENCH_BUILD_DIR:-build-mount-bench}
parent=${BENCH_DIR:-/var/tmp}
rounds=${MOUNT_BENCH_ROUNDS:-3}
append_rounds=${MOUNT_BENCH_APPEND_ROUNDS:-7}
loop_s=${MOUNT_BENCH_LOOP_SECONDS:-3}
tail_calls=${MOUNT_BENCH_TAIL_CALLS:-200}
doc=${MOUNT_BENCH_OUT:-docs/PERFORMANCE.md}
settings=(BENCH_DIR MOUNT_BENCH_BUILD_DIR TOPICFS_BIN MOUNT_BENCH_OUT MOUNT_BENCH_BYTES
	  MOUNT_BENCH_SMALL_BYTES MOUNT_BENCH_APPEND_ROUNDS MOUNT_BENCH_ROUNDS MOUNT_BENCH_LOOP_SECONDS
	  MOUNT_BENCH_TAIL_CALLS)

say() { printf 'mount_bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

bytes_of() {
	local v=$1
	case $v in
	*G) echo $(( ${v%G} << 30 )) ;;
	*M) echo $(( ${v%M} << 20 )) ;;
	*K) echo $(( ${v%K} << 10 )) ;;
	*) echo "$v" ;;
	esac
}

# Whole 100-byte lines.
big_bytes=$(( $(bytes_of "${MOUNT_BENCH_BYTES:-1G}") / 100 * 100 ))
small_bytes=$(( $(bytes_of "${MOUNT_BENCH_SMALL_BYTES:-2M}") / 100 * 100 ))

[[ $(id -u) -eq 0 ]] || die "needs root (drop_caches, mounting)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing"

the_command=$(report_command tests/bench/mount_bench.sh "${settings[@]}")

# ---- build (release) ---------------------------------------------------------

# Without -Werror: a warning that only -O3 finds in work in progress
# elsewhere must not stop a benchmark.
if [[ ! -f "$build_dir/build.ninja" ]]; then
	meson setup "$build_dir" -Dbuildtype=release -Dwerror=false >&2
else
	meson configure "$build_dir" -Dbuildtype=release -Dwerror=false >&2
fi
if [[ -n "${TOPICFS_BIN:-}" ]]; then
	bin=$(cd "$(dirname "$TOPICFS_BIN")" && pwd)/$(basename "$TOPICFS_BIN")
else
	ninja -C "$build_dir" mount/topicfs >&2
	bin=$root/$build_dir/mount/topicfs
fi
ninja -C "$build_dir" tests/bench/mount_write_loop tests/bench/prefault >&2
pt_src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
[[ -f $pt_src ]] || die "$pt_src is missing (package libfuse3-dev)"
pt_bin=$root/$build_dir/tests/bench/passthrough_ll
# shellcheck disable=SC2046
cc -O2 -o "$pt_bin" "$pt_src" $(pkg-config --cflags --libs fuse3) ||
	die "could not build libfuse's passthrough_ll example"
loop=$root/$build_dir/tests/bench/mount_write_loop
prefault=$root/$build_dir/tests/bench/prefault

# ---- scratch directory, mount --------------------------------------------------

mkdir -p "$parent"
work=$(mktemp -d "$parent/topicfs-mount-bench.XXXXXX")
data=$work/data
mnt=$work/mnt
plain=$work/plain
pt_mnt=$work/pt-mnt
pt_dir=$work/pt-backing
mkdir -p "$mnt" "$plain" "$pt_mnt" "$pt_dir"
daemon=""
pt_daemon=""

# Wait for a FUSE daemon (pid, name, its log) to mount dir.
await_mount() {
	local pid=$1 name=$2 log=$3 dir=$4 i
	for ((i = 0; i < 2000; i++)); do
		mountpoint -q "$dir" && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$log")"
		sleep 0.01
	done
	die "the $name mount did not appear"
}

mount_fs() {
	"$bin" -f "$data" "$mnt" 2>>"$work/daemon.log" &
	daemon=$!
	await_mount "$daemon" topicfs "$work/daemon.log" "$mnt"
}

umount_fs() {
	fusermount3 -u "$mnt"
	wait "$daemon" || die "topicfs exited with $? at unmount"
	daemon=""
}

# The reference: passthrough_ll mirrors pt_dir at pt_mnt.
mount_pt() {
	"$pt_bin" -f -o source="$pt_dir" -o cache=never "$pt_mnt" \
		2>>"$work/passthrough.log" &
	pt_daemon=$!
	await_mount "$pt_daemon" passthrough_ll "$work/passthrough.log" "$pt_mnt"
}

umount_pt() {
	fusermount3 -u "$pt_mnt"
	wait "$pt_daemon" || true
	pt_daemon=""
}

cleanup() {
	if [[ -n "$daemon" ]]; then
		fusermount3 -uz "$mnt" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	if [[ -n "$pt_daemon" ]]; then
		fusermount3 -uz "$pt_mnt" 2>/dev/null || true
		wait "$pt_daemon" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

drop_caches() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
}

# Seconds taken by a command (wall clock).
elapsed() {
	local t0=$EPOCHREALTIME t1
	"$@"
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }'
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**not met**"; fi; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Untimed before each timed write or cold read: host-backed memory for the
# page cache it fills (tests/bench/prefault.c says why).
fresh_memory() { "$prefault" $((2 * big_bytes)); }

append_to() { cat "$1" >> "$2"; }
read_all() { cat "$1" > /dev/null; }
tail_once() { tail -n 10 "$1" > /dev/null; }
tail_loop() {
	local i
	for ((i = 0; i < tail_calls; i++)); do
		tail -n 10 "$1" > /dev/null
	done
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(loadavg)
t_start=$SECONDS

say "generating $big_bytes bytes of 100-byte lines in $work"
src=$work/lines
(set +o pipefail; yes "$(printf '%099d' 0 | tr 0 x)" | head -c "$big_bytes" > "$src")
[[ $(stat -c %s "$src") -eq $big_bytes ]] || die "could not write $src"
cat "$src" > /dev/null   # in the page cache: only the writes are measured

mount_fs
mount_pt

# ---- 1. cat >> -----------------------------------------------------------------

say "1. cat >> partition vs plain file, $append_rounds rounds"
ap=() af=() ar=() apt=() apr=()
for ((r = 1; r <= append_rounds; r++)); do
	rm -f "$plain/append" "$pt_dir/append"
	mkdir "$mnt/a$r"
	sync
	if ((r % 2)); then
		fresh_memory
		ap+=("$(elapsed append_to "$src" "$plain/append")"); sync
		fresh_memory
		af+=("$(elapsed append_to "$src" "$mnt/a$r/0")"); sync
	else
		fresh_memory
		af+=("$(elapsed append_to "$src" "$mnt/a$r/0")"); sync
		fresh_memory
		ap+=("$(elapsed append_to "$src" "$plain/append")"); sync
	fi
	fresh_memory
	apt+=("$(elapsed append_to "$src" "$pt_mnt/append")"); sync
	[[ $(stat -c %s "$mnt/a$r/0") -eq $big_bytes ]] || die "partition a$r has the wrong size"
	ar+=("$(calc "%.3f" "${ap[-1]} / ${af[-1]}")")
	apr+=("$(calc "%.3f" "${ap[-1]} / ${apt[-1]}")")
	if ((r > 1)); then
		rmdir "$mnt/a$r"
	fi
done
ap_med=$(median "${ap[@]}")
af_med=$(median "${af[@]}")
apt_med=$(median "${apt[@]}")
umount_pt

# ---- 2. cat > /dev/null, cold and warm --------------------------------------------

say "2. cat > /dev/null, cold and warm, $rounds rounds"
rpc=() rpw=() rfc=() rfw=()
for ((r = 1; r <= rounds; r++)); do
	drop_caches
	fresh_memory
	rpc+=("$(elapsed read_all "$plain/append")")
	rpw+=("$(elapsed read_all "$plain/append")")
	umount_fs
	mount_fs
	drop_caches
	fresh_memory
	rfc+=("$(elapsed read_all "$mnt/a1/0")")
	rfw+=("$(elapsed read_all "$mnt/a1/0")")
done
cmp -s "$mnt/a1/0" "$src" || die "the partition does not read back as written"
rpc_med=$(median "${rpc[@]}") rpw_med=$(median "${rpw[@]}")

rfc_med=$(median "${rfc[@]}") rfw_med=$(median "${rfw[@]}")

# ---- 3. one write() per line ------------------------------------------------------

say "3. write() loops, ${loop_s} s each, $rounds rounds"
mkdir "$mnt/w"
declare -A wl
for th in 1 4; do
	for kind in plain fuse bound; do
		wl[$kind,$th]=""
	done
	for ((r = 1; r <= rounds; r++)); do
		rm -f "$plain/w"
		touch "$plain/w"
		v=$("$loop" write "$plain/w" "$th" "$loop_s" | sed 's/.*per_s=\([0-9]*\).*/\1/')
		wl[plain,$th]+="$v "
		v=$("$loop" write "$mnt/w/0" "$th" "$loop_s" | sed 's/.*per_s=\([0-9]*\).*/\1/')
		wl[fuse,$th]+="$v "
		v=$("$loop" fstat "$mnt/w/0" "$th" "$loop_s" | sed 's/.*per_s=\([0-9]*\).*/\1/')
		wl[bound,$th]+="$v "
	done
done
rm -f "$plain/w"
declare -A wm
for th in 1 4; do
	for kind in plain fuse bound; do
		# shellcheck disable=SC2086
		wm[$kind,$th]=$(median ${wl[$kind,$th]})
	done
done

# ---- 4. tail -n 10 ------------------------------------------------------------

say "4. tail -n 10 on 2 x $big_bytes bytes vs $small_bytes bytes"
append_to "$src" "$mnt/a1/0"
big_size=$(stat -c %s "$mnt/a1/0")
mkdir "$mnt/s"
head -c "$small_bytes" "$src" >> "$mnt/s/0"
[[ "$(tail -n 10 "$mnt/a1/0")" == "$(tail -n 10 "$src")" ]] || die "tail of the big partition is wrong"
# Cold: a fresh mount and no page cache before each call; the bytes the
# daemon then reads from the disk (/proc/PID/io read_bytes) for it.
daemon_read() { awk '/^read_bytes/ { print $2 }' "/proc/$daemon/io"; }
cb=() cs=() cp=() rbb=() rbs=()
for ((r = 1; r <= rounds; r++)); do
	umount_fs
	mount_fs
	drop_caches
	b0=$(daemon_read)
	cb+=("$(elapsed tail_once "$mnt/a1/0")")
	rbb+=("$(( $(daemon_read) - b0 ))")
	drop_caches
	b0=$(daemon_read)
	cs+=("$(elapsed tail_once "$mnt/s/0")")
	rbs+=("$(( $(daemon_read) - b0 ))")
	drop_caches
	cp+=("$(elapsed tail_once "$plain/append")")
done
cb_med=$(median "${cb[@]}") cs_med=$(median "${cs[@]}") cp_med=$(median "${cp[@]}")
rbb_med=$(median "${rbb[@]}") rbs_med=$(median "${rbs[@]}")
tb=() ts=() tp=()
for ((r = 1; r <= rounds; r++)); do
	tb+=("$(elapsed tail_loop "$mnt/a1/0")")
	ts+=("$(elapsed tail_loop "$mnt/s/0")")
	tp+=("$(elapsed tail_loop "$plain/append")")
done
tb_med=$(median "${tb[@]}") ts_med=$(median "${ts[@]}") tp_med=$(median "${tp[@]}")
segments=$(getfattr --only-values -n user.topicfs.segments "$mnt/a1/0" 2>/dev/null || echo "?")

umount_fs
load1=$(loadavg)
elapsed_total=$((SECONDS - t_start))

# ---- the report ----------------------------------------------------------------

mb() { calc "%.0f" "$1 / $2 / 1e6"; }
ms() { calc "%.2f" "$1 * 1000"; }
list_mb() { local b=$1 s out=""; shift; for s in "$@"; do out+="$(mb "$b" "$s"), "; done; echo "${out%, }"; }
list_ms() { local s out=""; for s in "$@"; do out+="$(calc "%.1f" "$s * 1000"), "; done; echo "${out%, }"; }
list_s() { local s out=""; for s in "$@"; do out+="$(calc "%.2f" "$s"), "; done; echo "${out%, }"; }

r_app=$(calc "%.2f" "$(median "${ar[@]}")")
r_app_pt=$(calc "%.2f" "$(median "${apr[@]}")")
r_cold=$(calc "%.2f" "$rpc_med / $rfc_med")
r_warm=$(calc "%.2f" "$rpw_med / $rfw_med")
r_tail=$(calc "%.2f" "$tb_med / $ts_med")
gib=$(calc "%.2f" "$big_bytes / 1073741824")
fs=$(findmnt -n -o FSTYPE -T "$parent" 2>/dev/null || echo unknown)
fs_src=$(findmnt -n -o SOURCE -T "$parent" 2>/dev/null || echo unknown)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || rev+=" (with uncommitted changes in the working tree)"
cpu=$(lscpu 2>/dev/null | awk -F: '/^Model name/{gsub(/^ +/, "", $2); print $2; exit}')

report() {
	cat <<EOF
## Mount (issue 3)

<!-- mount-bench:begin -->
Written by \`tests/bench/mount_bench.sh --update-doc\` (not by run.sh);
rerun it rather than editing the figures (only the analysis at the end of
this section is written by hand; the script keeps it). Every figure is a ratio against
a plain file on the same disk in the same run (the median of $rounds
rounds, $append_rounds for (1); a ratio >= 1 means topicfs is as fast as the plain file).

- Command: \`sudo $the_command --update-doc\` (from the repository root)
- Date: $started; took ${elapsed_total} s; commit $rev
- topicfs: \`${bin#"$root"/}\` (release build), one mount in the foreground (\`-f\`), default settings
- Machine: $(nproc) cores, ${cpu:-unknown CPU}, kernel $(uname -r)
- Disk: a scratch directory under \`$parent\`, **$fs** on $fs_src (not tmpfs)
- Load average (1, 5, 15 min) before: $load0; after: $load1 (the machine
  is shared: other sessions build and test on the same cores)

### 1. \`cat lines >> MNT/t/0\` vs \`cat lines >> plain\`

$gib GiB of 100-byte lines, read from the page cache; the clock stops when
\`cat\` exits (no fsync in either; \`sync\` between runs, not timed;
before each run, as much fresh memory as it fills is touched and freed:
tests/bench/prefault.c).

| target | MB/s (median) | MB/s of each round |
|---|---:|---|
| plain file | $(mb "$big_bytes" "$ap_med") | $(list_mb "$big_bytes" "${ap[@]}") |
| partition | $(mb "$big_bytes" "$af_med") | $(list_mb "$big_bytes" "${af[@]}") |
| reference: a file through libfuse's passthrough_ll | $(mb "$big_bytes" "$apt_med") | $(list_mb "$big_bytes" "${apt[@]}") |

Ratio partition / plain: **$r_app** (target >= 0.5: $(verdict "$r_app >= 0.5")),
the median of each round's ratio (a round writes the plain file and the
partition back to back, in alternating order, then the reference): $(printf '%s, ' "${ar[@]}" | sed 's/, $//').
The reference, libfuse's passthrough_ll example (\`-o cache=never\`,
direct I/O like topicfs; one \`pwrite\` per request and nothing else) over
a plain file on the same disk, reaches **$r_app_pt** of the plain file
(rounds: $(printf '%s, ' "${apr[@]}" | sed 's/, $//')).
\`cat\` sizes its buffer from the larger \`st_blksize\` of its input and output: 1 MiB
for a partition (see docs/FILESYSTEM.md), 128 KiB for the plain file and
the reference.

### 2. \`cat MNT/t/0 > /dev/null\`, cold and warm

Cold: after \`echo 3 > /proc/sys/vm/drop_caches\` (and, for the
partition, a fresh mount); warm: the same read again at once.

| read | plain MB/s | partition MB/s | ratio | target |
|---|---:|---:|---:|---|
| cold | $(mb "$big_bytes" "$rpc_med") | $(mb "$big_bytes" "$rfc_med") | **$r_cold** | >= 0.4: $(verdict "$r_cold >= 0.4") |
| warm | $(mb "$big_bytes" "$rpw_med") | $(mb "$big_bytes" "$rfw_med") | **$r_warm** | >= 0.7: $(verdict "$r_warm >= 0.7") |

Seconds of each round: plain cold $(list_s "${rpc[@]}"); partition cold
$(list_s "${rfc[@]}"); plain warm $(list_s "${rpw[@]}"); partition warm
$(list_s "${rfw[@]}").

### 3. One \`write()\` per 100-byte line

\`mount_write_loop write PATH THREADS ${loop_s}\`: each thread has its own
\`O_APPEND\` descriptor and writes one line per call. The bound is
\`mount_write_loop fstat MNT/w/0 THREADS ${loop_s}\`: one FUSE round trip per
call that does no work in the daemon (attributes are never cached).

| writers | plain lines/s | partition lines/s | partition / plain | FUSE round trips/s (fstat) | partition / round-trip bound |
|---:|---:|---:|---:|---:|---:|
EOF
	for th in 1 4; do
		printf '| %s | %s | %s | **%s** | %s | **%s** |\n' "$th" \
			"${wm[plain,$th]}" "${wm[fuse,$th]}" \
			"$(calc "%.3f" "${wm[fuse,$th]} / ${wm[plain,$th]}")" \
			"${wm[bound,$th]}" \
			"$(calc "%.2f" "${wm[fuse,$th]} / ${wm[bound,$th]}")"
	done
	cat <<EOF

Rounds (lines/s): 1 writer: plain ${wl[plain,1]% }; partition ${wl[fuse,1]% }; fstat ${wl[bound,1]% }.
4 writers: plain ${wl[plain,4]% }; partition ${wl[fuse,4]% }; fstat ${wl[bound,4]% }.

### 4. \`tail -n 10\`: $(calc "%.2f" "$big_size / 1073741824") GiB partition vs $(calc "%.1f" "$small_bytes / 1048576") MiB

Warm: $tail_calls calls of \`tail -n 10 FILE > /dev/null\` per round (each
call forks and execs \`tail\`: the plain file row shows that cost). Cold:
one call per round right after a fresh mount and \`drop_caches\`, with the
bytes the daemon read from the disk for it (\`read_bytes\` of
\`/proc/PID/io\`). The big partition has $segments segments.

| file | warm ms per call | cold ms per call | daemon read_bytes, cold (MiB) |
|---|---:|---:|---:|
| $(calc "%.2f" "$big_size / 1073741824") GiB partition | $(calc "%.3f" "$tb_med * 1000 / $tail_calls") | $(ms "$cb_med") | $(calc "%.1f" "$rbb_med / 1048576") |
| $(calc "%.1f" "$small_bytes / 1048576") MiB partition | $(calc "%.3f" "$ts_med * 1000 / $tail_calls") | $(ms "$cs_med") | $(calc "%.1f" "$rbs_med / 1048576") |
| plain file, $gib GiB (reference) | $(calc "%.3f" "$tp_med * 1000 / $tail_calls") | $(ms "$cp_med") | |

Ratio big / small, warm: **$r_tail** (target <= 2: $(verdict "$r_tail <= 2")).
Cold: **$(calc "%.2f" "$cb_med / $cs_med")** ($(verdict "$cb_med / $cs_med <= 2") for the same target).
Cold rounds (ms): big $(list_ms "${cb[@]}"); small $(list_ms "${cs[@]}").

### Analysis

$(report_analysis "$doc" mount-analysis)
<!-- mount-bench:end -->
EOF
}

report > "$work/report.md"
cat "$work/report.md"

if ((update_doc)); then
	report_install "$doc" "$work/report.md" mount-bench "## Mount (issue 3)"
	say "updated $doc"
fi
