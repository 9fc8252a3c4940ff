# Shared by backup.sh and restore.sh: find the pgkeep CLI.
# $PGKEEP wins, then pgkeep on PATH, then this checkout's virtualenv.
find_pgkeep() {
    if [ -n "${PGKEEP:-}" ]; then echo "$PGKEEP"; return; fi
    if command -v pgkeep >/dev/null 2>&1; then command -v pgkeep; return; fi
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -x "$here/.venv/bin/pgkeep" ]; then echo "$here/.venv/bin/pgkeep"; return; fi
    echo "pgkeep is not installed: run scripts/demo.sh once, or pip install pgkeep" >&2
    exit 6
}
