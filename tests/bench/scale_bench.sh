#!/usr/bin/env bash
# Scale benchmark (issue 9): a mount of many partitions. For N = 100,
# 1,000 and 10,000 partitions (T topics of N/T partitions, T = 100 or N
# if smaller, each partition holding a few records) it reports
#
#   create   mkdir of the T topics (N partitions made)
#   mount    `topicfs -f DATADIR MNT` of the clean data directory, until
#            the mount appears (every topic is loaded before it does)
#   umount   `fusermount3 -u` until the daemon has exited (every
#            partition closed cleanly, clean-shutdown markers written):
#            after the round that appended to every partition, and the
#            median of the rounds that only mounted (idle)
#   RSS, fds the daemon's VmRSS and `ls /proc/PID/fd | wc -l` right after
#            the mount, and again after one append to and one read of
#            every partition
#   created  topics whose mkdir succeeded (must be T)
#   loaded   topics listed by `ls MNT` after the remount (must be
#            created)
#
# and, as the baseline measured in the same run on the same disk, a
# plain directory tree of the same shape (N directories of 4 files):
#
#   plain read   reading every file of the tree once (`xargs cat`): the
#                least a mount that opened every file would do
#   plain sync   one line appended to each of N files, then `sync -f`
#
# Ratios are per partition against the figures at the smallest N, so
# "flat" means a ratio near 1.
#
#   sudo tests/bench/scale_bench.sh
#
# Settings, all optional, from the environment:
#   TOPICFS_BIN          the program (default build/mount/topicfs)
#   BENCH_DIR            parent of the scratch directory (default
#                        /var/tmp): on the disk to measure, not tmpfs
#   SCALE_BENCH_SIZES    partition counts (default "100 1000 10000")
#   SCALE_BENCH_TOPICS   topics per size, at most (default 100)
#   SCALE_BENCH_ROUNDS   mount/unmount rounds, the median is reported
#                        (default 3)
#   SCALE_BENCH_OPTS     extra -o options for every mount
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

bin=${TOPICFS_BIN:-$root/build/mount/topicfs}
parent=${BENCH_DIR:-/var/tmp}
sizes=${SCALE_BENCH_SIZES:-"100 1000 10000"}
max_topics=${SCALE_BENCH_TOPICS:-100}
rounds=${SCALE_BENCH_ROUNDS:-3}
extra_opts=${SCALE_BENCH_OPTS:-}

say() { printf 'scale_bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[[ -x $bin ]] || die "no program at $bin (set TOPICFS_BIN)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

scratch=$(mktemp -d "$parent/topicfs-scale.XXXXXX")
mnt=$scratch/mnt
mkdir -p "$mnt"
pid=

cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -uz "$mnt" || true
	fi
	[[ -n $pid ]] && wait "$pid" || true
	rm -rf "$scratch"
}
trap cleanup EXIT

now_ns() { date +%s%N; }

# Seconds between two now_ns values, 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# Mount data directory $1, the daemon in the foreground (-f) in the
# background: daemonized, its unmount waited a second or two for the
# kernel to end the FUSE connection, the same with or without any
# partition, which would hide what is measured. Sets pid, and took to the
# seconds until the mount is there (every topic loaded).
do_mount() {
	local t0 t1 opts=(-o "num.partitions=$2")
	[[ -n $extra_opts ]] && opts+=(-o "$extra_opts")
	t0=$(now_ns)
	"$bin" -f "${opts[@]}" "$1" "$mnt" 2>> "$scratch/daemon.log" &
	pid=$!
	until mountpoint -q "$mnt"; do
		[[ -e /proc/$pid ]] || die "mount of $1 failed: $(tail -3 "$scratch/daemon.log")"
		sleep 0.002
	done
	t1=$(now_ns)
	took=$(secs "$t0" "$t1")
}

# Unmount and wait for the daemon to exit; took is the seconds.
do_umount() {
	local t0 t1
	t0=$(now_ns)
	fusermount3 -u "$mnt"
	wait "$pid" || die "the daemon exited with $?: $(tail -3 "$scratch/daemon.log")"
	t1=$(now_ns)
	pid=
	took=$(secs "$t0" "$t1")
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
nfds() { ls "/proc/$pid/fd" | wc -l; }

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 }
	END { print v[int((NR + 1) / 2)] }'; }

# The plain baseline: N directories of 4 small files.
plain() {
	local n=$1 dir=$scratch/plain t0 t1 t2 i
	rm -rf "$dir"
	mkdir -p "$dir"
	for (( i = 0; i < n; i++ )); do
		mkdir "$dir/$i"
		for f in a.log a.meta a.index checkpoint; do
			printf 'a\nb\nc\n' > "$dir/$i/$f"
		done
	done
	sync -f "$dir"
	t0=$(now_ns)
	find "$dir" -type f -print0 | xargs -0 cat > /dev/null
	t1=$(now_ns)
	for (( i = 0; i < n; i++ )); do
		printf 'd\n' >> "$dir/$i/a.log"
	done
	sync -f "$dir"
	t2=$(now_ns)
	rm -rf "$dir"
	echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2")"
}

# Append one line to every partition and read each back (no fork each).
touch_all() {
	local parts=$1 t p line
	for t in "$mnt"/t*; do
		for (( p = 0; p < parts; p++ )); do
			printf 'touch\n' >> "$t/$p" || die "append to $t/$p failed"
			while read -r line; do :; done < "$t/$p" ||
				die "read of $t/$p failed"
		done
	done
}

echo "| partitions | topics | created | create s | mount s | umount s (all touched) | umount s (idle) | RSS KiB (mounted) | RSS KiB (all touched) | fds (mounted) | fds (all touched) | loaded | plain read s | plain sync s |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
	topics=$(( n < max_topics ? n : max_topics ))
	parts=$(( n / topics ))
	data=$scratch/data-$n
	say "$n partitions: $topics topics of $parts"
	do_mount "$data" "$parts"
	t0=$(now_ns)
	made=0
	for (( i = 0; i < topics; i++ )); do
		mkdir "$mnt/t$i" 2>/dev/null || break
		made=$(( made + 1 ))
	done
	t1=$(now_ns)
	create=$(secs "$t0" "$t1")
	(( made == topics )) || say "mkdir t$made failed: only $made topics made"
	for (( i = 0; i < made; i++ )); do
		for (( p = 0; p < parts; p++ )); do
			printf 'one\ntwo\nthree\n' >> "$mnt/t$i/$p" ||
				die "write to t$i/$p failed"
		done
	done
	do_umount
	mounts=() umounts=()
	for (( r = 0; r < rounds; r++ )); do
		do_mount "$data" "$parts"
		mounts+=("$took")
		if (( r == 0 )); then
			loaded=$(ls "$mnt" | grep -c '^t' || true)
			rss0=$(rss_kb)
			fds0=$(nfds)
			touch_all "$parts"
			rss1=$(rss_kb)
			fds1=$(nfds)
		fi
		do_umount
		if (( r == 0 )); then
			umount_touched=$took
		else
			umounts+=("$took")
		fi
	done
	read -r pread psync < <(plain "$n")
	rm -rf "$data"
	echo "| $n | $topics | $made | $create | $(echo "${mounts[*]}" | median) |" \
	     "$umount_touched | $(echo "${umounts[*]:-$umount_touched}" | median) | $rss0 | $rss1 | $fds0 |" \
	     "$fds1 | $loaded | $pread | $psync |"
done
