#!/usr/bin/env bash
# Consume rate through a consumer group file (issue 4) against cat of the
# partitions, through a real topicfs mount, and the section "Consumer groups
# (issue 4)" of docs/PERFORMANCE.md.
#
#   tests/bench/groups_bench.sh
#
# A topic of 4 partitions holds GROUPS_BENCH_BYTES of 100-byte records,
# spread evenly. Each case is timed by the wall clock from the start of the
# readers until the last one exits:
#   direct     cat t/0 t/1 t/2 t/3 > /dev/null
#   N members  N processes `cat t/.groups/<g> > /dev/null` started together,
#              on a fresh group each round; each member reads until it is
#              caught up on the partitions it owns (end of file)
# Both are warm: every case runs once untimed first, so the data files are
# in the page cache. After each group round the script checks that the
# group has committed the whole topic (lag 0 on every partition), and one
# extra round per member count pipes each member into `wc -c` to count the
# bytes delivered (more than the topic means records delivered twice).
#
# Settings, all optional, from the environment:
#   GROUPS_BENCH_BYTES   bytes of records (default 1G; 256M with BENCH_QUICK=1);
#                        K, M or G suffix
#   BENCH_QUICK=1        the smaller default above
#   BENCH_ROUNDS         timed rounds of each case (default 3); the median
#                        round is reported
#   BENCH_DIR            parent of the scratch directory (default /var/tmp);
#                        everything written there is removed
#   BENCH_BUILD_DIR      meson build directory whose mount/topicfs is used
#                        (default build-bench, a release build; built first)
#   TOPICFS_BIN          use this topicfs instead (no build)
#   BENCH_OUT            report path (default docs/PERFORMANCE.md)
# The section between "<!-- groups-bench:begin -->" and
# "<!-- groups-bench:end -->" is replaced (or appended); the rest of the
# report is kept.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/report.sh"
root=$(cd "$here/../.." && pwd)
cd "$root"

say() { printf 'groups_bench: %s\n' "$*" >&2; }

size_of() {
	local v=$1
	case "$v" in
	*[kK]) echo $(( ${v%?} * 1024 )) ;;
	*[mM]) echo $(( ${v%?} * 1024 * 1024 )) ;;
	*[gG]) echo $(( ${v%?} * 1024 * 1024 * 1024 )) ;;
	*) echo "$v" ;;
	esac
}

if [[ "${BENCH_QUICK:-}" == 1 ]]; then
	default_bytes=256M
else
	default_bytes=1G
fi
bytes_setting=${GROUPS_BENCH_BYTES:-$default_bytes}
want_bytes=$(size_of "$bytes_setting")
rounds=${BENCH_ROUNDS:-3}
parent=${BENCH_DIR:-/var/tmp}
build_dir=${BENCH_BUILD_DIR:-build-bench}
out_md=${BENCH_OUT:-docs/PERFORMANCE.md}
nparts=4
rec_bytes=100
block_recs=10000                        # records per write()
members_cases=(1 2 4)
title="## Consumer groups (issue 4)"
mark=groups-bench

if [[ -n "${TOPICFS_BIN:-}" ]]; then
	bin=$TOPICFS_BIN
else
	ninja -C "$build_dir" mount/topicfs >&2
	bin=$build_dir/mount/topicfs
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

# Whole blocks of records per partition.
blocks=$(( (want_bytes + rec_bytes * block_recs * nparts - 1) /
	   (rec_bytes * block_recs * nparts) ))
recs_per_part=$(( blocks * block_recs ))
total_bytes=$(( recs_per_part * nparts * rec_bytes ))

work=$(mktemp -d "$parent/topicfs-groups-bench.XXXXXX")
mnt=$work/mnt
daemon_pid=
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" || true
	fi
	if [[ -n "$daemon_pid" ]]; then
		wait "$daemon_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data" "$mnt"

now_ns() { date +%s%N; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
t_start=$(now_ns)
load0=$(cut -d' ' -f1-3 /proc/loadavg)

"$bin" -f -o num.partitions=$nparts "$work/data" "$mnt" 2> "$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do
	mountpoint -q "$mnt" && break
	kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
	sleep 0.05
done
mountpoint -q "$mnt" || { say "the mount did not appear"; exit 1; }

mkdir "$mnt/t"
say "writing $total_bytes bytes ($((recs_per_part * nparts)) records of $rec_bytes bytes) over $nparts partitions"
python3 - "$mnt/t" "$nparts" "$blocks" "$block_recs" "$rec_bytes" <<'EOF'
import os, sys
topic, nparts, blocks, block_recs, rec_bytes = sys.argv[1], *map(int, sys.argv[2:])
for p in range(nparts):
    fd = os.open(f"{topic}/{p}", os.O_WRONLY | os.O_APPEND)
    for b in range(blocks):
        base = b * block_recs
        block = b"".join(b"p%d-%010d-" % (p, base + i) + b"x" * (rec_bytes - 15) + b"\n"
                         for i in range(block_recs))
        assert len(block) == rec_bytes * block_recs
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]
    os.fsync(fd)
    os.close(fd)
EOF

xattr() { getfattr --only-values -n "user.topicfs.$2" "$1" 2>/dev/null; }

for p in $(seq 0 $((nparts - 1))); do
	leo=$(xattr "$mnt/t/$p" high_watermark)
	[[ "$leo" == "$recs_per_part" ]] || { say "partition $p has $leo records"; exit 1; }
done

# Wait (with a deadline) until group $1 has no member left.
wait_empty() {
	local g=$1 p deadline=$(( $(date +%s) + 30 ))
	while :; do
		local busy=0
		for p in $(seq 0 $((nparts - 1))); do
			[[ "$(xattr "$mnt/t/.groups/$g" owner.$p)" == "-" ]] || busy=1
		done
		(( busy == 0 )) && return 0
		(( $(date +%s) < deadline )) || { say "group $g keeps members"; return 1; }
		sleep 0.01
	done
}

# Records not yet committed by group $1, over all partitions.
group_lag() {
	local g=$1 p lag sum=0
	for p in $(seq 0 $((nparts - 1))); do
		lag=$(xattr "$mnt/t/.groups/$g" lag.$p)
		[[ "$lag" == "-" ]] && lag=$recs_per_part
		sum=$(( sum + lag ))
	done
	echo "$sum"
}

run_direct() {
	local t0 t1
	t0=$(now_ns)
	cat "$mnt"/t/{0..3} > /dev/null
	t1=$(now_ns)
	echo $(( t1 - t0 ))
}

group_seq=0
# N members on a fresh group; sets run_ns (wall time) and run_lag (records
# the group has not committed once the members are gone).
run_group() {
	local n=$1 g t0 t1 pids=() i rc=0
	group_seq=$((group_seq + 1))
	g=g$group_seq-$n
	t0=$(now_ns)
	for i in $(seq "$n"); do
		cat "$mnt/t/.groups/$g" > /dev/null &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || rc=1
	done
	t1=$(now_ns)
	(( rc == 0 )) || { say "a member of $g failed"; exit 1; }
	wait_empty "$g"
	run_ns=$(( t1 - t0 ))
	run_lag=$(group_lag "$g")
}

# N members, each piped into wc -c; sets run_bytes, the bytes delivered.
count_group() {
	local n=$1 g i pids=()
	group_seq=$((group_seq + 1))
	g=g$group_seq-$n-count
	for i in $(seq "$n"); do
		cat "$mnt/t/.groups/$g" | wc -c > "$work/count.$i" &
		pids+=($!)
	done
	wait "${pids[@]}"
	wait_empty "$g"
	run_bytes=0
	for i in $(seq "$n"); do
		run_bytes=$(( run_bytes + $(cat "$work/count.$i") ))
	done
}

say "warm-up"
run_direct > /dev/null
for n in "${members_cases[@]}"; do
	run_group "$n"
done

declare -A ns lag
for r in $(seq "$rounds"); do
	say "round $r of $rounds"
	ns[direct,$r]=$(run_direct)
	for n in "${members_cases[@]}"; do
		run_group "$n"
		ns[$n,$r]=$run_ns
		lag[$n,$r]=$run_lag
	done
done
declare -A delivered
for n in "${members_cases[@]}"; do
	count_group "$n"
	delivered[$n]=$run_bytes
done

load1=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( ($(now_ns) - t_start) / 1000000000 ))

# MB/s (10^6 bytes) of the topic's bytes for a time in ns.
mbps() { awk -v b="$total_bytes" -v t="$1" 'BEGIN { printf "%.0f", b / (t / 1e9) / 1e6 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

case_rates() {
	local key=$1 r out=()
	for r in $(seq "$rounds"); do
		out+=("$(mbps "${ns[$key,$r]}")")
	done
	echo "${out[*]}"
}

direct_med=$(median $(for r in $(seq "$rounds"); do echo "${ns[direct,$r]}"; done))
direct_rate=$(mbps "$direct_med")
declare -A rate
for n in "${members_cases[@]}"; do
	med=$(median $(for r in $(seq "$rounds"); do echo "${ns[$n,$r]}"; done))
	rate[$n]=$(mbps "$med")
done
ratio1=$(awk -v a="${rate[1]}" -v b="$direct_rate" 'BEGIN { printf "%.2f", a / b }')
met=$(awk -v r="$ratio1" 'BEGIN { print (r >= 0.5) ? "**met**" : "**not met**" }')

command=$(report_command tests/bench/groups_bench.sh TOPICFS_BIN BENCH_ROUNDS \
	BENCH_QUICK GROUPS_BENCH_BYTES)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n "$(git status --porcelain 2>/dev/null)" ]] && rev="$rev (with uncommitted changes in the working tree)"
fs=$(findmnt -n -o FSTYPE -T "$parent" 2>/dev/null || echo unknown)

section=$work/section.md
{
	echo "<!-- $mark:begin -->"
	echo "$title"
	echo
	echo "Written by \`tests/bench/groups_bench.sh\`; rerun it rather than editing the figures."
	echo
	echo "- Command: \`$command\` (from the repository root); date: $started; took $elapsed s"
	echo "- Commit: $rev; topicfs: \`${bin#$root/}\`"
	echo "- Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) of memory, kernel $(uname -r); data directory on **$fs** under \`$parent\`"
	echo "- Load average before: $load0; after: $load1"
	echo "- Data: $total_bytes bytes ($(awk -v b="$total_bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')), $((recs_per_part * nparts)) records of $rec_bytes bytes, $recs_per_part in each of $nparts partitions"
	echo "- Each case ran once untimed (warm cache), then $rounds timed rounds, interleaved; the figure is the median round. MB/s = the topic's bytes (10^6 per MB) / wall time from starting the readers until the last one exited. A group round uses a fresh group, so it reads the whole topic."
	echo
	echo "| case | readers | MB/s (median) | ratio to direct cat | MB/s of each round | lag after (records) | bytes delivered / topic bytes (extra \`wc -c\` round) |"
	echo "|---|---:|---:|---:|---|---:|---:|"
	echo "| \`cat t/0 t/1 t/2 t/3\` (baseline) | 1 | $direct_rate | 1.00 | $(case_rates direct | sed 's/ /, /g') | | |"
	for n in "${members_cases[@]}"; do
		lags=$(for r in $(seq "$rounds"); do echo "${lag[$n,$r]}"; done | sort -n | tail -1)
		echo "| group, $n member(s) | $n | ${rate[$n]} | $(awk -v a="${rate[$n]}" -v b="$direct_rate" 'BEGIN { printf "%.2f", a / b }') | $(case_rates "$n" | sed 's/ /, /g') | $lags | $(awk -v a="${delivered[$n]}" -v b="$total_bytes" 'BEGIN { printf "%.4f", a / b }') |"
	done
	echo
	echo "Target, one member >= 0.5 x direct cat: $ratio1, $met."
	echo
	echo "\"lag after\" is the largest, over the rounds, of the records the group had not committed once its members exited (0: every member read its partitions to the end and committed them). A \"bytes delivered\" ratio above 1.0000 means records were delivered more than once."
	echo
	echo "What is compared: partition files and group files are both \`direct_io\` (docs/FILESYSTEM.md, \"Why direct_io\"): every \`read()\` of \`cat\` (1 MiB, from \`st_blksize\`) is two 512 KiB FUSE requests answered by splicing from the segment files (it was one 128 KiB request per \`read()\` before 2026-11-24, when one member reached 0.54). For a group file the daemon also finds the member's position, cuts the read at a record boundary (one position-to-offset lookup) and appends the previous read's commit to the group's offsets log (\`fs/group.c\` \`member_read\`). With several members, the \`cat\`s join one after the other, and each join rebalances the group while the earlier ones read; members of one group read one at a time (the group lock is held for a whole read, so that a rebalance never splits a delivery)."
	echo "<!-- $mark:end -->"
} > "$section"

cat "$section"

report_install "$out_md" "$section" "$mark"
say "wrote the section \"${title#\#\# }\" of $out_md"
