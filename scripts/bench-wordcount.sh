#!/usr/bin/env bash
# Word count on the 1 GB benchmark corpus: spate's wordcount example in local[2] and in
# local-cluster[2] against the single-threaded hand-written baseline (../shared/bench/rust-wc),
# one after the other, several rounds. Prints wall time and peak memory of each run (for
# local-cluster, the driver's), the ratios per round and their medians, and checks that all
# print identical output.
#
#   scripts/bench-wordcount.sh [SIZE] [ROUNDS]     (SIZE: 1G default, or 100M …)
#
# Needs python3 with numpy for the corpus generator (installed with pip if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SPATE_SHARED:-$here/../shared}
size=${1:-1G}
rounds=${2:-3}
# outside the workspace, so the copied rust-wc builds as its own package
work=${SPATE_BENCH_DIR:-${TMPDIR:-/tmp}/spate-bench}
mkdir -p "$work"
corpus=$("$here/scripts/bench-corpus.sh" "$size")
if [ ! -x "$work/rust-wc/target/release/rust-wc" ]; then
  rm -rf "$work/rust-wc" && cp -r "$shared/bench/rust-wc" "$work/rust-wc"
  (cd "$work/rust-wc" && cargo build --release -q)
fi
(cd "$here" && cargo build --release -q --example wordcount)
base="$work/rust-wc/target/release/rust-wc"
spate="$here/target/release/examples/wordcount"
ratios=()
cluster_ratios=()
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
for i in $(seq "$rounds"); do
  /usr/bin/time -o "$work/time.base" -f "%e %M" "$base" "$corpus" > "$work/base.out" 2>/dev/null
  /usr/bin/time -o "$work/time.spate" -f "%e %M" "$spate" "$corpus" --master 'local[2]' > "$work/spate.out" 2>/dev/null
  /usr/bin/time -o "$work/time.cluster" -f "%e %M" "$spate" "$corpus" --master 'local-cluster[2]' > "$work/cluster.out" 2>/dev/null
  read -r bt bm <<< "$(tail -1 "$work/time.base")"
  read -r st sm <<< "$(tail -1 "$work/time.spate")"
  read -r ct cm <<< "$(tail -1 "$work/time.cluster")"
  ratio=$(python3 -c "print(f'{$st/$bt:.3f}')")
  cluster_ratio=$(python3 -c "print(f'{$ct/$bt:.3f}')")
  ratios+=("$ratio")
  cluster_ratios+=("$cluster_ratio")
  printf 'round %d: rust-wc %6.2f s %7s MiB | local[2] %6.2f s %6s MiB ratio %s | local-cluster[2] %6.2f s %6s MiB ratio %s\n' \
    "$i" "$bt" "$(mib "$bm")" "$st" "$(mib "$sm")" "$ratio" "$ct" "$(mib "$cm")" "$cluster_ratio"
  for out in spate cluster; do
    diff -q "$work/base.out" "$work/$out.out" > /dev/null || { echo "OUTPUT DIFFERS ($out)"; diff "$work/base.out" "$work/$out.out"; exit 1; }
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "identical output; median ratio to rust-wc: local[2] $(median "${ratios[@]}"), local-cluster[2] $(median "${cluster_ratios[@]}")"
