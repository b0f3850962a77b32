#!/usr/bin/env bash
# Installs, when missing, the peer tools the e2e bench compares syncgate with:
#   reladiff           from PyPI, with its MySQL driver (`reladiff[mysql]`)
#   pt-table-checksum  from Debian's percona-toolkit
# Usage: benches/install-peers.sh [reladiff|pt-table-checksum|all]
# The e2e bench runs it for each tool it is not told where to find (or `off`).
set -euo pipefail

want="${1:-all}"

if [[ $want == all || $want == reladiff ]]; then
    if ! command -v reladiff >/dev/null 2>&1 || ! python3 -c 'import mysql.connector' 2>/dev/null; then
        echo "installing reladiff[mysql] from PyPI" >&2
        python3 -m pip install --quiet --disable-pip-version-check 'reladiff[mysql]'
    fi
fi

if [[ $want == all || $want == pt-table-checksum ]]; then
    if ! command -v pt-table-checksum >/dev/null 2>&1; then
        echo "installing percona-toolkit from Debian" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq percona-toolkit >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq percona-toolkit >/dev/null; }
    fi
fi
