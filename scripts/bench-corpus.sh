#!/usr/bin/env bash
# Prints the path of the benchmark corpus of SIZE (1G, 100M, …), generating it first with
# ../shared/bench/gen_corpus.py when missing (needs numpy: installed with pip if missing).
#
#   scripts/bench-corpus.sh [SIZE]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SPATE_SHARED:-$here/../shared}
size=${1:-1G}
work=${SPATE_BENCH_DIR:-${TMPDIR:-/tmp}/spate-bench}
mkdir -p "$work"
corpus="$work/corpus_$size.txt"
if [ ! -s "$corpus" ]; then
  python3 -c 'import numpy' 2>/dev/null || pip install -q numpy >&2
  python3 "$shared/bench/gen_corpus.py" "$corpus" "$size" >&2
fi
echo "$corpus"
