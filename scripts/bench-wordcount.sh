#!/usr/bin/env bash
# Word count on the 1 GB benchmark corpus: spate's wordcount example in local[2] against
# the single-threaded hand-written baseline (../shared/bench/rust-wc), one after the other,
# several rounds. Prints wall time and peak memory of each run, the ratio per round and the
# median ratio, and checks that both print identical output.
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
for i in $(seq "$rounds"); do
  /usr/bin/time -o "$work/time.base" -f "%e %M" "$base" "$corpus" > "$work/base.out" 2>/dev/null
  /usr/bin/time -o "$work/time.spate" -f "%e %M" "$spate" "$corpus" --master 'local[2]' > "$work/spate.out" 2>/dev/null
  b=$(tail -1 "$work/time.base")
  s=$(tail -1 "$work/time.spate")
  read -r bt bm <<< "$b"
  read -r st sm <<< "$s"
  ratio=$(python3 -c "print(f'{$st/$bt:.3f}')")
  ratios+=("$ratio")
  printf 'round %d: rust-wc %6.2f s %7.1f MiB | spate local[2] %6.2f s %7.1f MiB | ratio %s\n' \
    "$i" "$bt" "$(python3 -c "print($bm/1024)")" "$st" "$(python3 -c "print($sm/1024)")" "$ratio"
  diff -q "$work/base.out" "$work/spate.out" > /dev/null || { echo "OUTPUT DIFFERS"; diff "$work/base.out" "$work/spate.out"; exit 1; }
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "identical output; median ratio spate/rust-wc = $median"
