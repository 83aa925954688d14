#!/usr/bin/env bash
# Install the benchmark anchors into .bench/, away from clerk's own virtualenv:
# organize-tool 3.3.0 pins its own dependencies (pydantic, jinja2, ...).
#   bash benchmarks/setup.sh            # uses python3 from PATH
#   PYTHON=python3.11 bash benchmarks/setup.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.bench/organize-venv"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/organize" ] && "$venv/bin/organize" --version 2>/dev/null | grep -q 'v3.3.0'; then
    echo "organize-tool 3.3.0 already in $venv"
    exit 0
fi
mkdir -p "$repo/.bench"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'organize-tool==3.3.0'
"$venv/bin/organize" --version
