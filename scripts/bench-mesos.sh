#!/usr/bin/env bash
# spate on a real Apache Mesos (../shared/mesos: 1 master with its default 1 s allocation
# interval, 2 agents of 1 cpu each, on loopback) against local-cluster[2], one after the
# other, several rounds:
#   - the wordcount example on the 1 GB benchmark corpus (outputs must be identical),
#   - the many_jobs example (124 small jobs).
# Prints wall times and the ratio mesos / local-cluster per round and their medians.
#
#   scripts/bench-mesos.sh [SIZE] [ROUNDS] [MODE]   (SIZE 1G default; MODE coarse|fine)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SPATE_SHARED:-$here/../shared}
size=${1:-1G}
rounds=${2:-3}
mode=${3:-coarse}
work=${SPATE_BENCH_DIR:-${TMPDIR:-/tmp}/spate-bench}
mkdir -p "$work"
corpus=$("$here/scripts/bench-corpus.sh" "$size")
export SPATE_MESOS_RUN="$work/mesos-run"
cluster="$shared/mesos/cluster.sh"
url=$("$cluster" start --agents 2 --cpus 1 --base-port 35050 | tail -1)
trap '"$cluster" stop > /dev/null' EXIT
(cd "$here" && cargo build --release -q --example wordcount --example many_jobs)
wc="$here/target/release/examples/wordcount"
jobs="$here/target/release/examples/many_jobs"
export SPATE_MESOS_MODE=$mode
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { /usr/bin/time -o "$work/time" -f "%e" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err"; exit 1; }; tail -1 "$work/time"; }
wc_ratios=(); jobs_ratios=(); jobs_only=()
for i in $(seq "$rounds"); do
  lc=$(secs "$wc" "$corpus" --master 'local-cluster[2]' --quiet --no-ui); cp "$work/out" "$work/lc.out"
  me=$(secs "$wc" "$corpus" --master "$url" --quiet --no-ui); cp "$work/out" "$work/mesos.out"
  diff -q "$work/lc.out" "$work/mesos.out" > /dev/null || { echo "OUTPUT DIFFERS"; exit 1; }
  r=$(python3 -c "print(f'{$me/$lc:.2f}')"); wc_ratios+=("$r")
  printf 'round %d: wordcount %s  local-cluster[2] %6.2f s | mesos (%s) %6.2f s | ratio %s\n' "$i" "$size" "$lc" "$mode" "$me" "$r"
  lc=$(secs "$jobs" --master 'local-cluster[2]' --quiet --no-ui); lcj=$(awk '$1=="seconds"{print $2}' "$work/out"); lcs=$(awk '$1=="startup_seconds"{print $2}' "$work/out")
  me=$(secs "$jobs" --master "$url" --quiet --no-ui); mej=$(awk '$1=="seconds"{print $2}' "$work/out"); mes=$(awk '$1=="startup_seconds"{print $2}' "$work/out")
  r=$(python3 -c "print(f'{$me/$lc:.2f}')"); jobs_ratios+=("$r")
  rj=$(python3 -c "print(f'{$mej/$lcj:.2f}')"); jobs_only+=("$rj")
  printf 'round %d: many_jobs (124)  local-cluster[2] %6.2f s | mesos (%s) %6.2f s | ratio %s; start-up %s s vs %s s, the jobs alone %s s vs %s s (ratio %s)\n' \
    "$i" "$lc" "$mode" "$me" "$r" "$mes" "$lcs" "$mej" "$lcj" "$rj"
done
echo "identical wordcount output; median ratio mesos/local-cluster: wordcount $(median "${wc_ratios[@]}"), many_jobs $(median "${jobs_ratios[@]}") (the jobs alone $(median "${jobs_only[@]}"))"
