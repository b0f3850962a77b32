#!/usr/bin/env bash
# Does loading several tables at once beat one client on this machine? Starts one
# `mariadbd` (binlog on, buffer pool holding the data), seeds T sysbench-shaped tables of R
# rows, dumps each table into its own file (syncgate's dump arguments), then loads the
# files into an emptied database with 1, 2 and 4 concurrent `mariadb` clients
# (`sql_log_bin = 0`, each client takes the next file), interleaved, `runs` times.
# Usage: benches/parallel_load.sh [tables 4] [rows 1000000] [runs 1]
set -euo pipefail
tables=${1:-4}
rows=${2:-1000000}
runs=${3:-1}
dir=$(mktemp -d /tmp/parallel-load-XXXXXX)
port=$((20000 + RANDOM % 20000))
pool=$((tables * rows * 500 / 1048576 + 256))
trap 'kill $(cat "$dir/pid" 2>/dev/null) 2>/dev/null || true; sleep 2; rm -rf "$dir"' EXIT
mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
  >/dev/null 2>&1
mariadbd --no-defaults --user=root --datadir="$dir/data" --port=$port --bind-address=127.0.0.1 \
  --socket="$dir/sock" --pid-file="$dir/pid" --log-bin="$dir/binlog" --server-id=1 \
  --innodb-buffer-pool-size=${pool}M --innodb-log-file-size=1G \
  --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 >"$dir/err.log" 2>&1 &
cli=(--no-defaults --protocol=TCP -h127.0.0.1 -P$port -uroot)
for _ in $(seq 600); do mariadb "${cli[@]}" -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
mariadb "${cli[@]}" -e 'SELECT 1' >/dev/null || { tail "$dir/err.log"; exit 1; }
echo "== seeding $tables x $rows rows"
seeders=()
mariadb "${cli[@]}" -e 'CREATE DATABASE sbtest'
for t in $(seq "$tables"); do
  mariadb "${cli[@]}" sbtest -e "CREATE TABLE sbtest$t (id INT NOT NULL AUTO_INCREMENT,
    k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '',
    PRIMARY KEY (id), KEY k_$t (k)) ENGINE=InnoDB;
    SET SESSION sql_log_bin = 0;
    INSERT INTO sbtest$t (k, c, pad) SELECT FLOOR(RAND(seq) * $rows),
      CONCAT(SHA2(seq, 256), LEFT(SHA2(seq + 1, 256), 56)), LEFT(SHA2(seq + 2, 256), 59)
      FROM seq_1_to_$rows;" &
  seeders+=($!)
done
wait "${seeders[@]}"
for t in $(seq "$tables"); do
  mariadb-dump "${cli[@]}" --single-transaction --routines --events --triggers --hex-blob \
    --default-character-set=utf8mb4 --master-data=2 --gtid sbtest sbtest$t >"$dir/t$t.sql"
done
echo "dump: $(du -cb "$dir"/t*.sql | tail -1 | cut -f1) bytes in $tables files"
for run in $(seq "$runs"); do
  for jobs in 1 2 4; do
    mariadb "${cli[@]}" -e 'DROP DATABASE IF EXISTS restored; CREATE DATABASE restored'
    start=$(date +%s.%N)
    printf '%s\n' "$dir"/t*.sql | xargs -P "$jobs" -I{} sh -c \
      "mariadb ${cli[*]} --init-command='SET SESSION sql_log_bin = 0' restored < {}"
    end=$(date +%s.%N)
    echo "run $run: $jobs concurrent client(s): $(echo "$end - $start" | bc) s"
  done
done
