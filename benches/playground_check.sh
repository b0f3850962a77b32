#!/usr/bin/env bash
# Wall time of `syncgate check` on the playground's default data (4 tables x 100,000
# sysbench rows; the downstream drifted by `playground drift`, 5+5+5 rows per table).
# Usage: benches/playground_check.sh [runs]   (default 5; prints every run and the median)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --quiet
bin=target/release/syncgate
$bin playground up >/dev/null
$bin playground drift --rows 5 >/dev/null || true
times=()
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  set +e
  $bin check -C configs/playground.toml --output-dir target/bench-output >/dev/null 2>&1
  code=$?
  set -e
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc)
  times+=("$t")
  echo "run $i: ${t}s (exit $code)"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median of $runs: ${median}s"
