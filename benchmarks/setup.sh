#!/usr/bin/env bash
# Install the benchmark anchors into .bench/, away from clerk's own virtualenv (they pin
# their own dependencies): organize-tool 3.3.0 (bench_scan.py), Luigi 3.8 (bench_engine.py)
# and, from Debian, inotify-tools for the inotifywait reference loop (bench_daemon.py).
#   bash benchmarks/setup.sh            # uses python3 from PATH
#   PYTHON=python3.11 bash benchmarks/setup.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
mkdir -p "$repo/.bench"

venv="$repo/.bench/organize-venv"
if [ -x "$venv/bin/organize" ] && "$venv/bin/organize" --version 2>/dev/null | grep -q 'v3.3.0'; then
    echo "organize-tool 3.3.0 already in $venv"
else
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'organize-tool==3.3.0'
    "$venv/bin/organize" --version
fi

venv="$repo/.bench/luigi-venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import luigi' 2>/dev/null; then
    echo "luigi already in $venv"
else
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'luigi>=3.8,<3.9'
    "$venv/bin/python" -c 'import luigi; print("luigi", luigi.__version__)'
fi

if command -v inotifywait >/dev/null; then
    echo "inotifywait already installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null
    echo "installed inotify-tools"
else
    echo "inotifywait missing: install inotify-tools (sudo apt-get install inotify-tools)" >&2
fi
