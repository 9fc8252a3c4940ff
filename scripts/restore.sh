#!/usr/bin/env bash
# Usage: scripts/restore.sh <backup-file> [--dry-run | --yes]
# Verifies the file (checksum, integrity), asks for `yes` (--yes: without a
# terminal, e.g. from automation, confirmed in advance), then replaces the
# contents of DATABASE_URL (from the environment or ./.env) with it, in one
# transaction: on any error nothing changes. Any backup file works, catalogued
# or not. Exit codes are pgkeep's (see `pgkeep restore --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_pgkeep.sh"

BACKUP_FILE=${1:-}
DRY_RUN=${2:-}

if [ -z "$BACKUP_FILE" ]; then
    echo "Usage: ./scripts/restore.sh <backup-file> [--dry-run | --yes]"
    exit 2
fi
if [ ! -f "$BACKUP_FILE" ]; then
    echo "❌ Backup file not found: $BACKUP_FILE"
    exit 3
fi
args=(restore --file "$BACKUP_FILE")
case "$DRY_RUN" in
    "") ;;
    --dry-run) args+=(--dry-run) ;;
    --yes) args+=(--yes) ;;
    *) echo "Usage: ./scripts/restore.sh <backup-file> [--dry-run | --yes]"; exit 2 ;;
esac
exec "$(find_pgkeep)" "${args[@]}"
