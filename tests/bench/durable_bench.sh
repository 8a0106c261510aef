#!/usr/bin/env bash
# The per-round tables are read through namerefs (med, each):
# shellcheck disable=SC2034
#
# Durable appends side by side with Redis (issue 9), in the same run on
# the same disk:
#
#   1. 8 writers, each write() carrying 64 lines of 100 bytes, through
#      MNT/t/.produce (each writer its own open()), on a topic with
#      write.caching=false and acks=all: a write() returns once its
#      records are on disk. Against `redis-benchmark -c 8 -P 64` of
#      `XADD bench * v <100 bytes>` on a Redis started by this script with
#      appendonly yes and appendfsync always (a reply only after the AOF
#      is fsynced), its directory beside topicfs's DATADIR.
#                                   (target: topicfs >= 2 x Redis records/s)
#   2. One line per write(), 1, 8 and 32 writers, against Redis with -P 1
#      and -c 1, 8, 32.
#
# For every topicfs case, the daemon's syncs per record: the growth of
# topicfs_fsyncs_total in .metrics over the records the topic gained
# (which must equal the records the writers were told were written).
# Group commit should make it fall as writers are added.
#
# On a build without the write.caching setting the script says so
# ("not supported by this build") and makes each write() durable the way
# such a build can: every writer calls fdatasync() on its descriptor after
# each write() (mode "fsync"). Without topicfs_fsyncs_total in .metrics
# the syncs column reads n/a. Without redis-server, the Redis rows do.
#
#   sudo tests/bench/durable_bench.sh [--update-doc]
#
# Prints a markdown section "## Durable appends vs Redis (issue 9)"; with
# --update-doc it also replaces that section (from its heading to the
# <!-- durable-bench:end --> marker) in docs/PERFORMANCE.md, or appends
# it, keeping the hand-written analysis between <!-- durable-analysis:begin
# --> and <!-- durable-analysis:end -->. Needs root (mounting).
#
# Settings, all optional, from the environment:
#   BENCH_DIR                  parent of the scratch directory (default
#                              /var/tmp): the disk to measure, not tmpfs;
#                              topicfs's DATADIR and Redis's dir are both in it
#   DURABLE_BENCH_BUILD_DIR    meson build directory, release (default
#                              build-bench; set up if missing)
#   TOPICFS_BIN                use this topicfs instead of the build's
#                              (compare.sh: another revision's)
#   DURABLE_BENCH_SECONDS      duration of each measurement (default 5)
#   DURABLE_BENCH_ROUNDS       rounds of each case (default 3; the median
#                              round is reported)
#   DURABLE_BENCH_PARTITIONS   partitions of the topic (default 1: one
#                              ordered log, as Redis's one stream)
#   DURABLE_BENCH_MODE         auto (default): write.caching=false if the
#                              build has it, else fsync; caching: fail
#                              without it; fsync: fdatasync() after each
#                              write() even where write.caching exists
#   DURABLE_BENCH_OUT          the report to update (default docs/PERFORMANCE.md)
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

build_dir=${DURABLE_BENCH_BUILD_DIR:-build-bench}
parent=${BENCH_DIR:-/var/tmp}
seconds=${DURABLE_BENCH_SECONDS:-5}
rounds=${DURABLE_BENCH_ROUNDS:-3}
partitions=${DURABLE_BENCH_PARTITIONS:-1}
mode_setting=${DURABLE_BENCH_MODE:-auto}
doc=${DURABLE_BENCH_OUT:-docs/PERFORMANCE.md}
settings=(BENCH_DIR DURABLE_BENCH_BUILD_DIR TOPICFS_BIN DURABLE_BENCH_SECONDS
	  DURABLE_BENCH_ROUNDS DURABLE_BENCH_PARTITIONS DURABLE_BENCH_MODE
	  DURABLE_BENCH_OUT)
title="## Durable appends vs Redis (issue 9)"
mark=durable-bench
line_bytes=100
# The cases: name, writers (Redis: clients), lines per write() (Redis: -P).
cases=("batch-8:8:64" "line-1:1:1" "line-8:8:1" "line-32:32:1")

say() { printf 'durable_bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case $mode_setting in
auto | caching | fsync) ;;
*) die "DURABLE_BENCH_MODE must be auto, caching or fsync" ;;
esac
[[ $(id -u) -eq 0 ]] || die "needs root (mounting)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing"
the_command=$(report_command tests/bench/durable_bench.sh "${settings[@]}")

# ---- build (release) -----------------------------------------------------------

# Without -Werror: a warning that only -O3 finds in work in progress
# elsewhere must not stop a benchmark.
if [[ ! -f "$build_dir/build.ninja" ]]; then
	meson setup "$build_dir" -Dbuildtype=release -Dwerror=false >&2
else
	meson configure "$build_dir" -Dbuildtype=release -Dwerror=false >&2
fi
if [[ -n "${TOPICFS_BIN:-}" ]]; then
	ninja -C "$build_dir" tests/bench/produce_writers >&2
	bin=$(cd "$(dirname "$TOPICFS_BIN")" && pwd)/$(basename "$TOPICFS_BIN")
else
	ninja -C "$build_dir" mount/topicfs tests/bench/produce_writers >&2
	bin=$root/$build_dir/mount/topicfs
fi
writers_bin=$root/$build_dir/tests/bench/produce_writers

have_redis=1
for prog in redis-server redis-cli redis-benchmark; do
	command -v "$prog" >/dev/null || have_redis=0
done
if ((have_redis)); then
	redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
else
	redis_version="not installed"
	say "redis-server, redis-cli or redis-benchmark is missing" \
		"(scripts/install-deps installs them): topicfs only"
fi

# ---- scratch directory, the two servers ------------------------------------------

mkdir -p "$parent"
work=$(mktemp -d "$parent/topicfs-durable-bench.XXXXXX")
data=$work/data
mnt=$work/mnt
redis_dir=$work/redis
redis_sock=$work/redis.sock
mkdir -p "$data" "$mnt" "$redis_dir"
daemon=""
redis_pid=""

await() { # what, pid, log, test command...
	local what=$1 pid=$2 log=$3 i
	shift 3
	for ((i = 0; i < 2000; i++)); do
		"$@" && return 0
		kill -0 "$pid" 2>/dev/null || die "$what exited: $(tail -5 "$log")"
		sleep 0.01
	done
	die "$what did not come up"
}

mount_fs() {
	"$bin" -f "$data" "$mnt" 2>>"$work/daemon.log" &
	daemon=$!
	await topicfs "$daemon" "$work/daemon.log" mountpoint -q "$mnt"
}

umount_fs() {
	fusermount3 -u "$mnt"
	wait "$daemon" || die "topicfs exited with $? at unmount"
	daemon=""
}

redis() { redis-cli -s "$redis_sock" "$@"; }
redis_up() { [[ "$(redis ping 2>/dev/null)" == PONG ]]; }

# Private: no TCP port, a socket in the scratch directory, no snapshots,
# no automatic AOF rewrite (a fork in the middle of a measurement), and
# every write fsynced before its reply.
start_redis() {
	redis-server --port 0 --unixsocket "$redis_sock" --unixsocketperm 700 \
		--dir "$redis_dir" --daemonize no --save "" \
		--appendonly yes --appendfsync always \
		--auto-aof-rewrite-percentage 0 \
		--logfile "$work/redis.log" &
	redis_pid=$!
	await redis-server "$redis_pid" "$work/redis.log" redis_up
	[[ "$(redis config get appendfsync | tail -1)" == always ]] ||
		die "redis-server did not take appendfsync always"
}

stop_redis() {
	kill "$redis_pid"
	wait "$redis_pid" || true
	redis_pid=""
}

cleanup() {
	if [[ -n "$daemon" ]]; then
		fusermount3 -uz "$mnt" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	if [[ -n "$redis_pid" ]]; then
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**not met**"; fi; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
field() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p"; }

# .metrics: the daemon's sync count (empty if this build has none) and
# the records appended to topic $1.
fsyncs_now() { awk '$1 == "topicfs_fsyncs_total" { print $2 }' "$mnt/.metrics"; }
records_in() {
	awk -v t="topic=\"$1\"," 'index($1, "topicfs_records_in_total{") == 1 &&
		index($1, t) { n += $2 } END { print n + 0 }' "$mnt/.metrics"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(loadavg)
t_start=$SECONDS
mount_fs
((have_redis)) && start_redis

# ---- what this build supports ----------------------------------------------------

# A topic with the durable settings: mode "caching" if write.caching=false
# was taken, else "fsync". Unknown settings are ENODATA (docs/FILESYSTEM.md).
setting() { setfattr -n "user.topicfs.$2" -v "$3" "$mnt/$1" 2>/dev/null; }
acks_note="acks=all"
caching_note="write.caching=false"
topic_seq=0
new_topic() {
	topic_seq=$((topic_seq + 1))
	topic=t$topic_seq
	mkdir "$mnt/$topic"
	if ((partitions > 1)); then
		setting "$topic" partitions "$partitions" ||
			die "could not give topic $topic $partitions partitions"
	fi
	setting "$topic" acks all || acks_note="acks=all: not supported by this build"
	mode=fsync
	if [[ $mode_setting != fsync ]] && setting "$topic" write.caching false; then
		mode=caching
	elif [[ $mode_setting == fsync ]]; then
		caching_note="write.caching left at its default (DURABLE_BENCH_MODE=fsync)"
	else
		caching_note="write.caching: not supported by this build"
	fi
	[[ $mode_setting != caching || $mode == caching ]] ||
		die "write.caching: not supported by this build (DURABLE_BENCH_MODE=caching)"
}

new_topic
rmdir "$mnt/$topic"
if [[ $mode == fsync ]]; then
	say "$caching_note: each writer calls fdatasync() after every write()"
	durability="every writer calls \`fdatasync()\` on its descriptor after each \`write()\` ($caching_note)"
else
	durability="topic settings \`write.caching=false\`: a \`write()\` returns once its records are on disk"
fi
[[ -n "$(fsyncs_now)" ]] || say "this build's .metrics has no topicfs_fsyncs_total: syncs per record n/a"

# ---- one measurement of each side -------------------------------------------------

# Per case and round.
declare -A rps p50 p99 spr syncs rrps rp50 rp99

# topicfs: case name, writers, lines per write(), round. A fresh topic each
# time, removed afterwards (the disk does not fill over the rounds).
run_topicfs() {
	local c=$1 n=$2 lines=$3 r=$4 out f0 f1 got want i
	new_topic
	f0=$(fsyncs_now)
	local sync_arg=()
	[[ $mode != fsync ]] || sync_arg=(sync)
	out=$("$writers_bin" "$mnt/$topic/.produce" "$n" "$seconds" "$lines" \
		"${sync_arg[@]}") ||
		die "produce_writers failed ($c, round $r): $(tail -3 "$work/daemon.log")"
	want=$(field records <<<"$out")
	# The counters may trail the replies by a moment: wait, with a deadline.
	for ((i = 0; i < 500; i++)); do
		got=$(records_in "$topic")
		((got < want)) || break
		sleep 0.01
	done
	f1=$(fsyncs_now)
	((got >= want)) || die "$c: the writers were told $want records were written, the topic has $got"
	((got == want)) || say "$c: $got records stored for $want acknowledged (a write() interrupted at the end?)"
	rps[$c,$r]=$(field records_per_s <<<"$out")
	p50[$c,$r]=$(field p50_us <<<"$out")
	p99[$c,$r]=$(field p99_us <<<"$out")
	if [[ -n "$f0" && -n "$f1" ]]; then
		syncs[$c,$r]=$((f1 - f0))
		spr[$c,$r]=$(calc "%.5f" "($f1 - $f0) / $got")
	else
		syncs[$c,$r]=n/a
		spr[$c,$r]=n/a
	fi
	rmdir "$mnt/$topic"
}

value=$(printf "%0${line_bytes}d" 0 | tr 0 v)
# redis-benchmark of XADD with this many clients, pipeline and requests:
# the CSV line's rps, p50 and p99 (ms).
xadd() { # clients, pipeline, requests
	redis-benchmark -s "$redis_sock" -c "$1" -P "$2" -n "$3" --csv \
		XADD bench '*' v "$value" 2>/dev/null | tail -1 | tr -d '"' |
		awk -F, '{ print $2, $5, $7 }'
}

# redis-benchmark runs a number of requests, not a time: a short run first
# tells how many make $seconds seconds (and warms the server up).
declare -A redis_n
run_redis() {
	local c=$1 n=$2 lines=$3 r=$4 a b d
	if [[ -z "${redis_n[$c]:-}" ]]; then
		a=$((n * lines * 50))
		((a >= 2000)) || a=2000
		read -r a b d < <(xadd "$n" "$lines" "$a")
		[[ -n "$a" ]] || die "redis-benchmark failed: $(tail -3 "$work/redis.log")"
		redis_n[$c]=$(calc "%.0f" "$a * $seconds")
		((redis_n[$c] >= n * lines)) || redis_n[$c]=$((n * lines))
	fi
	read -r a b d < <(xadd "$n" "$lines" "${redis_n[$c]}")
	[[ -n "$a" ]] || die "redis-benchmark failed: $(tail -3 "$work/redis.log")"
	rrps[$c,$r]=$(calc "%.0f" "$a")
	rp50[$c,$r]=$b
	rp99[$c,$r]=$d
	redis del bench >/dev/null    # memory stays bounded over the rounds
}

for ((r = 1; r <= rounds; r++)); do
	for spec in "${cases[@]}"; do
		IFS=: read -r c n lines <<<"$spec"
		say "round $r of $rounds: $c ($n writer(s), $lines line(s) per write)"
		# Alternate which side goes first.
		if ((r % 2 == 0 && have_redis)); then
			run_redis "$c" "$n" "$lines" "$r"
		fi
		run_topicfs "$c" "$n" "$lines" "$r"
		if ((r % 2 == 1 && have_redis)); then
			run_redis "$c" "$n" "$lines" "$r"
		fi
	done
done

((have_redis)) && stop_redis
umount_fs
load1=$(loadavg)
elapsed_total=$((SECONDS - t_start))

# ---- the report ------------------------------------------------------------------

# The median over the rounds of array $1 for case $2 ("n/a" if any is).
med() {
	local -n arr=$1
	local c=$2 r vals=()
	for ((r = 1; r <= rounds; r++)); do
		[[ "${arr[$c,$r]:-n/a}" != n/a ]] || { echo n/a; return; }
		vals+=("${arr[$c,$r]}")
	done
	median "${vals[@]}"
}
each() {
	local -n arr=$1
	local c=$2 r out=""
	for ((r = 1; r <= rounds; r++)); do
		out+="${arr[$c,$r]:-n/a}, "
	done
	echo "${out%, }"
}
ms() { [[ $1 == n/a ]] && echo n/a || calc "%.3f" "$1 / 1000"; }
ratio() { # topicfs, redis
	[[ $1 != n/a && $2 != n/a && $2 != 0 ]] || { echo n/a; return; }
	calc "%.2f" "$1 / $2"
}

fs=$(findmnt -n -o FSTYPE -T "$parent" 2>/dev/null || echo unknown)
fs_src=$(findmnt -n -o SOURCE -T "$parent" 2>/dev/null || echo unknown)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || rev+=" (with uncommitted changes in the working tree)"
cpu=$(lscpu 2>/dev/null | awk -F: '/^Model name/{gsub(/^ +/, "", $2); print $2; exit}')

rows() { # cases...
	local c n lines t rd
	for spec in "$@"; do
		IFS=: read -r c n lines <<<"$spec"
		if ((have_redis)); then
			rd=$(med rrps "$c")
		else
			rd=n/a
		fi
		t=$(med rps "$c")
		printf '| %s | %s | %s | %s | **%s** | %s | %s | %s / %s | %s / %s |\n' \
			"$n" "$lines" "$t" "$rd" "$(ratio "$t" "$rd")" \
			"$(med syncs "$c")" "$(med spr "$c")" \
			"$(ms "$(med p50 "$c")")" "$(ms "$(med p99 "$c")")" \
			"$( ((have_redis)) && med rp50 "$c" || echo n/a)" \
			"$( ((have_redis)) && med rp99 "$c" || echo n/a)"
	done
}

report() {
	local t rd r1
	t=$(med rps batch-8)
	rd=$( ((have_redis)) && med rrps batch-8 || echo n/a)
	r1=$(ratio "$t" "$rd")
	cat <<EOF
$title

<!-- $mark:begin -->
Written by \`tests/bench/durable_bench.sh --update-doc\`; rerun it rather
than editing the figures (only the analysis at the end is written by
hand; the script keeps it).

- Command: \`sudo $the_command --update-doc\` (from the repository root)
- Date: $started; took ${elapsed_total} s; commit $rev; topicfs: \`${bin#"$root"/}\`
- Machine: $(nproc) cores, ${cpu:-unknown CPU}, kernel $(uname -r)
- Disk: a scratch directory under \`$parent\`, **$fs** on $fs_src (not
  tmpfs), holding both topicfs's DATADIR and Redis's \`dir\`
- Load average (1, 5, 15 min) before: $load0; after: $load1 (the machine
  is shared: other sessions build and test on the same cores)

Method. topicfs: \`produce_writers MNT/t/.produce WRITERS $seconds LINES\`
(tests/bench/produce_writers.c): WRITERS threads, each with its own
\`open(O_WRONLY | O_APPEND)\` of \`.produce\`, each \`write()\` carrying LINES
lines of $line_bytes bytes (newline included), for $seconds s; a fresh topic
of $partitions partition(s) per run (one ordered log, as Redis's one
stream), with $acks_note; durability: $durability.
Records/s counts the records of the \`write()\` calls that returned, and
the script checks that the topic holds at least that many. Syncs are the
growth of \`topicfs_fsyncs_total\` in \`.metrics\` over the run (every
\`fsync\` and \`fdatasync\` of the daemon; docs/FILESYSTEM.md), per record
stored. Redis $redis_version (Debian's \`redis-server\`), started by the
script on a private unix socket with no TCP port, \`--appendonly yes
--appendfsync always\` (a reply only once the AOF is fsynced), no
snapshots and no automatic AOF rewrite (no fork in the middle of a
measurement), stopped at the end; \`redis-benchmark\` with N requests set
from a short untimed run so that a run takes about $seconds s. Rounds:
$rounds of each case, the two sides back to back in alternating order;
figures are the medians. Latency: topicfs per \`write()\` call (the upper
bound of its power-of-two-microsecond bucket); Redis as redis-benchmark
reports it (per command, from the sending of its pipeline). By hand, the
two sides of the first case are:

\`\`\`
setfattr -n user.topicfs.write.caching -v false MNT/t
setfattr -n user.topicfs.acks -v all MNT/t
$build_dir/tests/bench/produce_writers MNT/t/.produce 8 $seconds 64
redis-server --port 0 --unixsocket DIR/redis.sock --dir DIR/redis --save "" \\
    --appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0 &
redis-benchmark -s DIR/redis.sock -c 8 -P 64 -n N --csv \\
    XADD bench '*' v "\$(printf '%0${line_bytes}d' 0 | tr 0 v)"
\`\`\`

| writers (Redis: -c) | lines per write() (Redis: -P) | topicfs records/s | Redis records/s | topicfs / Redis | topicfs syncs | syncs per record | topicfs p50 / p99 ms | Redis p50 / p99 ms |
|---:|---:|---:|---:|---:|---:|---:|---|---|
EOF
	rows "${cases[0]}"
	cat <<EOF

Target, 8 writers of 64 lines, topicfs >= 2 x Redis: **$r1** ($([[ $r1 == n/a ]] && echo "n/a" || verdict "$r1 >= 2")).

### One line per \`write()\`

| writers (Redis: -c) | lines per write() (Redis: -P) | topicfs records/s | Redis records/s | topicfs / Redis | topicfs syncs | syncs per record | topicfs p50 / p99 ms | Redis p50 / p99 ms |
|---:|---:|---:|---:|---:|---:|---:|---|---|
EOF
	rows "${cases[@]:1}"
	echo
	echo "Rounds (records/s, topicfs; Redis):"
	for spec in "${cases[@]}"; do
		IFS=: read -r c n lines <<<"$spec"
		echo "$n writer(s) x $lines line(s): $(each rps "$c"); $(each rrps "$c")."
	done
	cat <<EOF

### Analysis

$(report_analysis "$doc" durable-analysis)
<!-- $mark:end -->
EOF
}

report > "$work/report.md"
cat "$work/report.md"

if ((update_doc)); then
	report_install "$doc" "$work/report.md" "$mark" "$title"
	say "updated $doc"
fi
