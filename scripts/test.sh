#!/usr/bin/env bash
# Set-up command 2: install what the tests need, then run the whole suite.
# Installs Debian packages when they are missing (needs root or sudo), creates
# ./.venv, and runs pytest. Every server the tests use (PostgreSQL clusters,
# SeaweedFS) is started by the test fixtures themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15 postgresql-client-15)
command -v zstd >/dev/null || need+=(zstd)
command -v age >/dev/null || need+=(age)
# The benchmark's physical reference (tests/bench runs it in the --tiny run).
command -v pgbackrest >/dev/null || need+=(pgbackrest)
# The dashboard's browser tests drive the system Chromium (never a downloaded one); fonts for its screenshots.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -c constraints.txt -e ".[api,demo,test]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest "$@"
