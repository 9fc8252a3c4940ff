#!/usr/bin/env bash
# Set-up command 1: install pgkeep in ./.venv and run the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -c constraints.txt -e ".[api,demo]"
exec .venv/bin/pgkeep demo "$@"
