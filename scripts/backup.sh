#!/usr/bin/env bash
# Usage: scripts/backup.sh [manual|full|scheduled|pre_migration]
# Takes a backup of DATABASE_URL (from the environment or ./.env) into
# BACKUP_DIR (default ./backups) and prints the file, its size and checksum.
# A thin wrapper over `pgkeep backup`: no URL parsing here, the password never
# reaches a command line. Exit codes are pgkeep's (see `pgkeep backup --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_pgkeep.sh"
PGKEEP_BIN=$(find_pgkeep)

BACKUP_TYPE=${1:-manual}
if [ -z "${BACKUP_DIR:-}" ] && [ -f .env ]; then
    # dotenv (python-dotenv, installed with pgkeep) reads quoted and unquoted values alike.
    BACKUP_DIR=$("$(dirname "$PGKEEP_BIN")/dotenv" -f .env get BACKUP_DIR 2>/dev/null || true)
fi
BACKUP_DIR=${BACKUP_DIR:-./backups}

echo "🔄 Starting ${BACKUP_TYPE} backup..."
exec "$PGKEEP_BIN" backup --type "$BACKUP_TYPE" --dir "$BACKUP_DIR" --quiet
