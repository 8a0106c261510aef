#!/usr/bin/env bash
# Before and after: a benchmark run for revision REV and for the current
# tree back to back on the same machine, both reports printed.
#
#   sudo tests/bench/compare.sh [--quick] REV [BENCH...]
#
# BENCH is any of (default: mount engine groups)
#   mount    tests/bench/mount_bench.sh   append, cold and warm reads,
#                                         one write() per line, tail
#   engine   tests/bench/run.sh           bench_append, bench_partition
#   groups   tests/bench/groups_bench.sh  consumer groups
#   durable  tests/bench/durable_bench.sh durable appends vs Redis
#
# REV (a commit, e.g. fb3c24c, or a branch) is taken with `git archive`
# into a scratch directory (no worktree is registered) and built there in
# release mode. The current tree is the working tree, uncommitted changes
# included. What runs for each side:
#   mount, groups, durable  the current tree's script, with REV's topicfs
#                           (TOPICFS_BIN) on one side and the current
#                           tree's on the other: the same method, only the
#                           program measured differs
#   engine                  each tree's own run.sh and benchmark programs
#                           (they are compiled against that tree's log/
#                           API), the report written to a scratch file
#                           instead of docs/PERFORMANCE.md
# REV runs first, then the current tree; each report's "commit" line names
# the tree of the script that ran, so the headings printed here are the
# ones to trust. Nothing in docs/ is changed.
#
# --quick: small sizes, one round, short loops, for checking that the
# comparison runs (the figures are then not worth comparing). Settings
# given in the environment win over it.
#
# Settings, all optional, from the environment: those of each benchmark
# (passed through), and
#   BENCH_DIR       parent of the scratch directories (default /var/tmp)
#   COMPARE_JOBS    ninja jobs for building REV (default 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

say() { printf 'compare: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
	echo "usage: $0 [--quick] REV [mount|engine|groups|durable]..." >&2
	exit 2
}

quick=0
if [[ "${1:-}" == --quick ]]; then
	quick=1
	shift
fi
[[ $# -ge 1 ]] || usage
rev=$1
shift
benches=("$@")
((${#benches[@]})) || benches=(mount engine groups)
for b in "${benches[@]}"; do
	case $b in
	mount | engine | groups | durable) ;;
	*) usage ;;
	esac
done

sha=$(git rev-parse --verify --quiet "$rev^{commit}") || die "no commit $rev"
short=$(git rev-parse --short "$sha")
cur=$(git rev-parse --short HEAD)
[[ -z "$(git status --porcelain)" ]] || cur+=" with uncommitted changes"

if ((quick)); then
	# Only where the environment says nothing.
	: "${MOUNT_BENCH_BYTES:=64M}" "${MOUNT_BENCH_APPEND_ROUNDS:=1}"
	: "${MOUNT_BENCH_ROUNDS:=1}" "${MOUNT_BENCH_LOOP_SECONDS:=1}"
	: "${MOUNT_BENCH_TAIL_CALLS:=20}"
	: "${BENCH_BYTES:=64M}" "${BENCH_ROUNDS:=1}" "${BENCH_PARTITION_BYTES:=128M}"
	: "${BENCH_TAIL_BYTES:=16M}" "${BENCH_LOOKUPS:=10000}" "${BENCH_RSS_LOOKUPS:=1000}"
	: "${GROUPS_BENCH_BYTES:=64M}"
	: "${DURABLE_BENCH_SECONDS:=1}" "${DURABLE_BENCH_ROUNDS:=1}"
	export MOUNT_BENCH_BYTES MOUNT_BENCH_APPEND_ROUNDS MOUNT_BENCH_ROUNDS \
		MOUNT_BENCH_LOOP_SECONDS MOUNT_BENCH_TAIL_CALLS BENCH_BYTES \
		BENCH_ROUNDS BENCH_PARTITION_BYTES BENCH_TAIL_BYTES BENCH_LOOKUPS \
		BENCH_RSS_LOOKUPS GROUPS_BENCH_BYTES DURABLE_BENCH_SECONDS \
		DURABLE_BENCH_ROUNDS
fi

parent=${BENCH_DIR:-/var/tmp}
mkdir -p "$parent"
work=$(mktemp -d "$parent/topicfs-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- REV's tree and build ------------------------------------------------------

src=$work/rev
mkdir "$src"
git archive "$sha" | tar -x -C "$src"
targets=(mount/topicfs)
for b in "${benches[@]}"; do
	[[ $b != engine ]] || targets+=(tests/bench/bench_append tests/bench/bench_partition)
done
say "building $short in $src"
meson setup "$src/build-bench" "$src" -Dbuildtype=release -Dwerror=false \
	> "$work/rev-setup.log" 2>&1 || die "meson setup of $short failed: $(tail -5 "$work/rev-setup.log")"
ninja -C "$src/build-bench" -j "${COMPARE_JOBS:-2}" "${targets[@]}" \
	> "$work/rev-build.log" 2>&1 || die "building $short failed: $(tail -20 "$work/rev-build.log")"
rev_bin=$src/build-bench/mount/topicfs

# ---- the runs ------------------------------------------------------------------

# Run benchmark $1 for side $2 (rev or cur); its report to stdout.
run_one() {
	local b=$1 side=$2 bin_env=()
	[[ $side == cur ]] || bin_env=(TOPICFS_BIN="$rev_bin")
	case $b in
	mount)
		env "${bin_env[@]}" tests/bench/mount_bench.sh
		;;
	groups)
		env "${bin_env[@]}" BENCH_OUT="$work/$b-$side.doc.md" \
			tests/bench/groups_bench.sh
		;;
	durable)
		env "${bin_env[@]}" tests/bench/durable_bench.sh
		;;
	engine)
		local tree=$root
		[[ $side == cur ]] || tree=$src
		(cd "$tree" && BENCH_OUT="$work/$b-$side.doc.md" tests/bench/run.sh >&2)
		cat "$work/$b-$side.doc.md"
		;;
	esac
}

heading() { # side
	if [[ $1 == rev ]]; then
		echo "$short (REV $rev)"
	else
		echo "current tree ($cur)"
	fi
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
for b in "${benches[@]}"; do
	for side in rev cur; do
		say "$b: $(heading "$side")"
		run_one "$b" "$side" > "$work/$b-$side.md" ||
			die "$b failed for $(heading "$side")"
	done
done

# ---- both reports --------------------------------------------------------------

echo "# Benchmarks: $short vs the current tree"
echo
echo "Started $started on $(hostname), $(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Each benchmark ran for $short first, then for the current tree, back to back."
((quick)) && echo "Quick mode (--quick): small sizes and one round; the figures only show that the comparison runs."
echo
# A report without its hand-written analysis (the same text on both
# sides) and without the heading of a report file made from scratch.
figures() { # report
	awk '/^### Analysis/ { exit } $0 != "# Performance" { print }' "$1"
}

# The lines of a report with a bold figure (ratios, verdicts), table rows
# under their table's header; not the bullets about the machine.
headline() { # report
	figures "$1" | awk '
		/^\|[-:|]+$/ { header = prev; sep = $0; shown = 0 }
		{ prev = $0 }
		!/\*\*/ || /^- / { next }
		/^\|/ && !shown { print header; print sep; shown = 1 }
		{ print }'
}

for b in "${benches[@]}"; do
	echo "## $b: headline figures (the lines with a bold figure)"
	echo
	for side in rev cur; do
		echo "### $(heading "$side")"
		echo
		headline "$work/$b-$side.md"
		echo
	done
done
for b in "${benches[@]}"; do
	for side in rev cur; do
		echo "## $b, full report: $(heading "$side")"
		echo
		# The reports' own headings one level down.
		figures "$work/$b-$side.md" | sed 's/^#/##/'
		echo
	done
done
