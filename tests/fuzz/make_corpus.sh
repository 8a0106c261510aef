#!/bin/sh
# Regenerate the seed corpus in tests/fuzz/corpus from a real partition
# written by the engine (see gen_corpus.c).
#
#   tests/fuzz/make_corpus.sh [BUILD_DIR]
#
# BUILD_DIR is a clang build with the fuzz targets (default: build-fuzz,
# set up with CC=clang meson setup build-fuzz -Dfuzz=enabled). Only the
# seed-* files are replaced; regress-* files (inputs that once crashed a
# target) are kept. The output is the same on every run.
set -eu

src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
build=${1:-$top/build-fuzz}

ninja -C "$build" tests/fuzz/fuzz_gen_corpus
for t in fuzz_batch fuzz_index fuzz_checkpoint; do
	mkdir -p "$src/corpus/$t"
	rm -f "$src/corpus/$t"/seed-*
done
"$build/tests/fuzz/fuzz_gen_corpus" "$src/corpus"
for t in fuzz_batch fuzz_index fuzz_checkpoint; do
	echo "$t: $(ls "$src/corpus/$t" | wc -l) files"
done
