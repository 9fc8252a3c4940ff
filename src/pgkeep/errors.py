"""The one error hierarchy of pgkeep.

Domain code raises these; the edges map them: the CLI to exit codes
(:class:`ExitCode`), the API to HTTP statuses with problem+json bodies.
Messages must never contain a password: build them from redacted values.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in every command's ``--help``."""

    OK = 0
    FAILED = 1  # the operation ran and failed (pg_dump/pg_restore error, storage error)
    USAGE = 2  # bad command-line arguments (click's own code)
    NOT_FOUND = 3  # unknown backup id or file
    BUSY = 4  # a backup of this database is already in progress
    INVALID = 5  # verification failed: checksum mismatch, unreadable archive
    CONFIG = 6  # invalid configuration, unusable client binaries, catalog behind
    NOT_CONFIRMED = 7  # a restore was not confirmed (no terminal, or not "yes")
    CONFLICT = 8  # the backup is not in a state that allows this (not COMPLETED)


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 operation failed; 2 bad arguments; 3 unknown backup or file; "
    "4 a backup of this database is already in progress; 5 verification failed; "
    "6 configuration error; 7 restore not confirmed; 8 backup not in a usable state; "
    "130 interrupted (Ctrl-C); 143 terminated (SIGTERM), after the same clean-up."
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be (``pgkeep.cli.main``), so the same clean-up runs."""


class PgkeepError(Exception):
    """Base of every error pgkeep reports to a person.

    ``operation`` names what was being done ("backup", "restore", ...),
    ``backup_id`` the backup concerned, ``hint`` how to recover.
    """

    exit_code: ExitCode = ExitCode.FAILED
    http_status: int = 500
    code: str = "operation_failed"
    title: str = "Operation failed"

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        backup_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.backup_id = backup_id
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(PgkeepError):
    """Configuration is invalid or the environment cannot run the operation."""

    exit_code = ExitCode.CONFIG
    http_status = 500
    code = "configuration_error"
    title = "Configuration error"


class ClientVersionError(ConfigError):
    """No pg_dump/pg_restore at least as new as the server was found."""

    code = "client_version_mismatch"


class CatalogOutdatedError(ConfigError):
    """A shared (PostgreSQL) catalog is behind the code's migrations."""

    code = "catalog_outdated"


class CatalogInsideError(ConfigError):
    """The database to back up or restore into holds pgkeep's own catalog."""

    http_status = 409
    code = "catalog_in_database"
    title = "Database holds pgkeep's catalog"


class TargetUnsuitableError(ConfigError):
    """The restore's target server lacks what the backup needs (extensions)."""

    http_status = 422
    code = "target_unsuitable"
    title = "The target server cannot hold this backup"


class NotFoundError(PgkeepError):
    exit_code = ExitCode.NOT_FOUND
    http_status = 404
    code = "not_found"
    title = "Not found"


class BackupInProgressError(PgkeepError):
    exit_code = ExitCode.BUSY
    http_status = 409
    code = "backup_in_progress"
    title = "A backup is already in progress"


class InvalidStateError(PgkeepError):
    """The backup exists but its status does not allow the operation."""

    exit_code = ExitCode.CONFLICT
    http_status = 409
    code = "invalid_state"
    title = "Backup not in a usable state"


class VerificationError(PgkeepError):
    """Stored bytes do not match their checksum, or the archive is unreadable."""

    exit_code = ExitCode.INVALID
    http_status = 422
    code = "verification_failed"
    title = "Backup verification failed"


class NotConfirmedError(PgkeepError):
    exit_code = ExitCode.NOT_CONFIRMED
    http_status = 400
    code = "not_confirmed"
    title = "Restore not confirmed"


class BackupFailedError(PgkeepError):
    code = "backup_failed"
    title = "Backup failed"


class RestoreFailedError(PgkeepError):
    code = "restore_failed"
    title = "Restore failed"


class TargetNotReachedError(RestoreFailedError):
    """Recovery replayed all archived WAL without reaching the requested target."""

    http_status = 422
    code = "recovery_target_not_reached"
    title = "Recovery target not reached"


class StorageError(PgkeepError):
    """A storage backend failed. ``permanent`` errors are never retried."""

    code = "storage_error"
    title = "Storage error"

    def __init__(self, message: str, *, permanent: bool = False, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.permanent = permanent


class ObjectNotFoundError(StorageError, NotFoundError):
    exit_code = ExitCode.NOT_FOUND
    code = "object_not_found"
    title = "Backup file not found"


class InsufficientPrivilegeError(PgkeepError):
    """The database role lacks a privilege the operation needs (named in the message)."""

    exit_code = ExitCode.CONFIG
    http_status = 422
    code = "insufficient_privilege"
    title = "The database role lacks a privilege"


class InvalidRequestError(PgkeepError):
    """The request combines options that cannot work (named in the message)."""

    exit_code = ExitCode.USAGE
    http_status = 422
    code = "invalid_request"
    title = "Invalid request"


class RestoreInProgressError(PgkeepError):
    exit_code = ExitCode.BUSY
    http_status = 409
    code = "restore_in_progress"
    title = "A restore is already in progress"
