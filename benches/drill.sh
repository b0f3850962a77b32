#!/usr/bin/env bash
# `syncgate dr drill` at several write rates on the same data: the recovery point (data
# lost), time to a writable secondary, the switchover's write freeze and each gate's time.
# Usage: benches/drill.sh [TPS...]   (default 100 1000; TABLES, ROWS from the environment,
# default 10 x 100000). Prints one table row per rate; each drill's reports stay in
# target/drill-<tps>/.
set -euo pipefail
cd "$(dirname "$0")/.."
tables=${TABLES:-10}
rows=${ROWS:-100000}
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(100 1000)
cargo build --release --quiet --bin syncgate
bin=target/release/syncgate
echo "| TPS asked | achieved | lost / acknowledged | time to writable | switchover freeze | writer's longest wait | gate 1 | gate 2 (each) | gate 3 (failover in all) | gate 4 (reseed in all) | final gate | drill |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for tps in "${rates[@]}"; do
  dir=target/drill-$tps
  start=$(date +%s.%N)
  set +e
  $bin dr drill --dir "$dir" --tps "$tps" --tables "$tables" --rows "$rows" >"target/drill-$tps.log" 2>&1
  code=$?
  set -e
  end=$(date +%s.%N)
  python3 - "$dir/drill.json" "$code" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
code, start, end = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
t = {e["step"]: e for e in r["timeline"]}
s = lambda name: "%.1f s" % (t[name]["duration_ms"] / 1000) if name in t else "-"
g2 = [e["duration_ms"] for e in r["timeline"] if e["step"].startswith("gate 2 (")]
ms = lambda v: "-" if v is None else "%d ms" % v
print("| %d | %.0f | %d / %d | %s | %s | %s | %s | %s | %s | %s | %s | %s, exit %s, %.0f s |" % (
    r["tps"], r["achieved_tps"], r["data_lost_transactions"], r["acknowledged_before_kill"],
    ms(r["writable_after_ms"]), ms(r["switchover_freeze_ms"]), ms(r["writer_longest_wait_ms"]),
    s("restore, gate 1"), ", ".join("%.1f s" % (d / 1000) for d in g2) or "-",
    s("failover, gate 3"), s("reseed onto spare, gate 4"), s("final gate"),
    r["result"], code, end - start))
PY
done
