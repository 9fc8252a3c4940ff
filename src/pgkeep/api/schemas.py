"""Request and response bodies, with the spec's camelCase keys.

Request bodies reject unknown keys: a misspelt ``dryrun: false`` must be a
422, not a silent dry run. Response models allow extra keys so a field the
services add later reaches clients without a change here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Text a client may put in a filter or name: no control characters (NUL breaks PostgreSQL).
SafeText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]

CreatableType = Literal["FULL", "MANUAL", "PRE_MIGRATION"]
BackupTypeName = Literal["FULL", "INCREMENTAL", "SCHEDULED", "MANUAL", "PRE_MIGRATION"]
BackupStatusName = Literal["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "EXPIRED", "DELETED"]
Outcome = Literal["started", "success", "failure", "denied"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


BackupKind = Literal["logical", "physical"]


class CreateBackupRequest(_Request):
    # ``kind`` first: the check of ``type`` reads it (and a refused type is then named as the field).
    kind: BackupKind = Field(
        default="logical", description="logical: pg_dump of the database; physical: base backup of its cluster (PITR)."
    )
    type: Literal[CreatableType, "INCREMENTAL"] = Field(
        default="MANUAL",
        description="Default MANUAL (logical) or FULL (physical). INCREMENTAL: physical only, PostgreSQL 17+.",
    )

    @field_validator("type")
    @classmethod
    def _incremental_is_physical(cls, value: str, info: ValidationInfo) -> str:
        # No ``kind`` in info.data: it was invalid itself and is reported already.
        if value == "INCREMENTAL" and info.data.get("kind", "physical") != "physical":
            raise ValueError('INCREMENTAL backups are physical: add "kind": "physical"')
        return value

    def backup_type(self) -> str:
        """The type asked for, or the kind's default (a physical backup is FULL unless told)."""
        if "type" not in self.model_fields_set and self.kind == "physical":
            return "FULL"
        return self.type


Identifier = Annotated[SafeText, StringConstraints(min_length=1, max_length=127)]


class VerifyRequest(_Request):
    level: Literal["checksum", "archive", "restore"] = Field(
        "archive", description="checksum: stored bytes; archive: also readable; restore: a restore drill."
    )


class CleanupRequest(_Request):
    dryRun: StrictBool = Field(False, description="Only show the retention plan; delete nothing.")


class KeepRequest(_Request):
    keep: StrictBool = Field(description="true: retention never deletes this backup; false: release it.")


class RestoreRequest(_Request):
    dryRun: StrictBool = Field(True, description="Verify only (the default); false replaces the data.")
    atomic: StrictBool = Field(False, description="Restore into a new database and swap names at the end.")
    safetyBackup: StrictBool = Field(True, description="Back up the target's current contents first.")
    tables: list[Identifier] = Field(default_factory=list, max_length=100, description="Selective: schema.table.")
    schemas: list[Identifier] = Field(default_factory=list, max_length=100, description="Selective: whole schemas.")
    intoSchema: Identifier | None = Field(None, description="Put the selected tables in this schema.")
    noOwner: StrictBool = False
    noAcl: StrictBool = False
    toastCompression: Literal["auto", "server", "lz4", "pglz"] | None = Field(
        None,
        description="How restored values are compressed: auto (lz4 when the server has it and its "
        "default_toast_compression is not configured), server, lz4 or pglz; default: the server's "
        "PGKEEP_RESTORE_TOAST_COMPRESSION.",
    )
    confirmRestore: Literal[True] = Field(description="Must be literally true.")
    targetDatabase: Annotated[SafeText, StringConstraints(min_length=1, max_length=63)] | None = Field(
        None, description="Restore into this existing database on the same server instead."
    )

    @field_validator("confirmRestore", mode="before")
    @classmethod
    def _literally_true(cls, value: Any) -> Any:
        # Literal[True] alone admits 1 and 1.0 (they equal True in Python); the spec says true.
        if value is not True:
            raise ValueError("must be literally true")
        return value


DirectoryName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"),
]
Lsn = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")]
TARGET_FIELDS = ("toTime", "toLsn", "toXid", "toName")


class PitrRestoreRequest(_Request):
    """A point-in-time restore into a new data directory under the server's PGKEEP_PITR_DATA_ROOT."""

    directory: DirectoryName | None = Field(
        None,
        description="The new data directory's name under the configured root: one path component, absent or "
        "empty. Omitted: pgkeep chooses pitr-<UTC time>-<random>.",
    )
    toTime: Annotated[SafeText, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="Recover to this time (ISO 8601; without a zone: UTC)."
    )
    toLsn: Lsn | None = Field(None, description="Recover to this WAL location, e.g. 0/3000148.")
    toXid: Annotated[StrictInt, Field(ge=1, le=2**63 - 1)] | None = Field(
        None, description="Recover to this transaction id."
    )
    toName: Annotated[SafeText, StringConstraints(min_length=1, max_length=63)] | None = Field(
        None, description="Recover to this restore point (pg_create_restore_point)."
    )
    latest: StrictBool = Field(False, description="Recover all archived WAL.")
    backupId: Annotated[SafeText, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="The base backup (default: the newest that ended before the target)."
    )
    start: StrictBool = Field(
        False, description="Start the restored server on the server's localhost, wait until recovery ends."
    )
    port: Annotated[StrictInt, Field(ge=1024, le=65535)] | None = Field(
        None, description="The restored server's port (default with start: a free one)."
    )
    dryRun: StrictBool = Field(False, description="Only check and return the plan; write nothing.")

    @field_validator("toTime")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("not an ISO 8601 time, e.g. 2026-11-26T14:05:00+01:00 (no zone: UTC)") from None
        return value

    @model_validator(mode="after")
    def _one_target(self) -> PitrRestoreRequest:
        given = [name for name in TARGET_FIELDS if getattr(self, name) is not None]
        given += ["latest"] if self.latest else []
        if len(given) != 1:
            raise ValueError(
                "give exactly one recovery target: toTime, toLsn, toXid, toName or latest: true"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class Pagination(_Response):
    page: int
    limit: int
    total: int
    pages: int


class Backup(_Response):
    id: str
    filename: str
    size: int
    type: BackupTypeName
    status: BackupStatusName
    storageUrl: str | None = None
    checksum: str | None = None
    metadata: dict[str, Any] | None = None
    startedAt: str | None = None
    completedAt: str | None = None
    expiresAt: str | None = None
    createdById: str | None = None
    errorMessage: str | None = None
    bytesWritten: int = Field(0, description="Bytes stored so far: progress while IN_PROGRESS.")
    kind: Literal["logical", "physical"] = Field(
        "logical", description="logical: pg_dump of one database; physical: base backup of the cluster (PITR)."
    )
    timeline: int | None = Field(None, description="Physical: the WAL timeline of the backup.")
    startLsn: str | None = Field(None, description="Physical: WAL location where the backup starts.")
    endLsn: str | None = Field(None, description="Physical: WAL location from which it is consistent.")
    backupStartAt: str | None = Field(None, description="Physical: server time before the backup started.")
    backupEndAt: str | None = Field(None, description="Physical: server time after it ended (restorable from here).")
    walStart: str | None = Field(None, description="Physical: first WAL segment a restore needs.")
    walEnd: str | None = Field(None, description="Physical: segment holding endLsn.")
    parentId: str | None = Field(None, description="Physical incremental: the backup it builds on.")


class BackupList(_Response):
    backups: list[Backup]
    pagination: Pagination


class BackupResult(_Response):
    id: str
    filename: str
    size: int
    checksum: str
    duration: int = Field(description="Milliseconds.")
    storageUrl: str | None = None


class BackupCreated(_Response):
    message: str
    backup: BackupResult


class BackupAccepted(_Response):
    message: str
    backup: Backup


class VerifyResult(_Response):
    valid: bool
    message: str
    level: str | None = None


class Message(_Response):
    message: str


class CleanupResult(_Response):
    message: str
    deletedCount: int


class RestoreJob(_Response):
    id: str
    backupId: str
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED"]
    dryRun: bool
    target: str | None = None
    message: str | None = None
    errorCode: str | None = None
    checksum: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    requestedBy: str | None = None
    bytesRead: int = Field(
        0,
        description="Progress: bytes of the stored backup read so far by the restore's current pass (a dry run "
        "or a selective restore reads it twice, once to verify), updated about every second.",
    )
    totalBytes: int | None = Field(None, description="The stored backup's size: bytesRead's end.")
    safetyBackupId: str | None = Field(
        None, description="Once COMPLETED: the backup of the target's previous contents."
    )
    toastCompression: Literal["lz4", "pglz"] | None = Field(
        None, description="Once COMPLETED: as in the synchronous answer (RestoreDone)."
    )
    otherSessions: int | None = Field(
        None, description="Once COMPLETED: as in the synchronous answer (RestoreDone); null before."
    )


class RestoreDone(_Response):
    message: str
    jobId: str
    checksum: str = Field(description="SHA-256 of the stored backup, checked while it was read.")
    safetyBackupId: str | None = Field(None, description="The backup of the target's previous contents.")
    toastCompression: Literal["lz4", "pglz"] | None = Field(
        None,
        description="What the restore set (or, in a dry run, would set) for long values; "
        "null: the server's default_toast_compression.",
    )
    otherSessions: int | None = Field(
        None,
        description="Client sessions connected to the target when it was inspected: a table one of them "
        "uses holds an in-place restore up (PGKEEP_LOCK_WAIT_TIMEOUT at most); an atomic one ends them.",
    )


class RestoreAccepted(_Response):
    message: str
    job: RestoreJob


class PitrTarget(_Response):
    kind: Literal["time", "lsn", "xid", "name", "latest"]
    value: str | None = None


class PitrLink(_Response):
    id: str
    type: BackupTypeName
    parentId: str | None = None
    timeline: int | None = None
    endLsn: str | None = None
    backupEndAt: str | None = None


class PitrPlan(_Response):
    message: str
    dryRun: Literal[True]
    directory: str
    dataDir: str
    target: PitrTarget
    backupId: str
    chain: list[PitrLink] = Field(description="The full backup first, then its incrementals.")
    start: bool
    port: int | None = None
    checks: list[str]


class PitrResult(_Response):
    backupId: str
    dataDir: str
    started: bool
    port: int | None = None
    reachedLsn: str | None = None
    reachedTime: str | None = None
    timeline: int | None = None
    targetReached: bool | None = None


class PitrJob(_Response):
    id: str
    kind: Literal["physical"]
    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED"]
    backupId: str
    chain: list[str]
    directory: str | None = None
    dataDir: str | None = None
    target: PitrTarget | None = None
    start: bool
    port: int | None = None
    message: str | None = None
    errorCode: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    requestedBy: str | None = None
    bytesRead: int = Field(
        0, description="Stored bytes of the chain read so far (written about once a second while it runs)."
    )
    totalBytes: int | None = Field(None, description="The chain's stored size: bytesRead's end.")
    result: PitrResult | None = Field(None, description="Once COMPLETED: where recovery stopped.")


class PitrAccepted(_Response):
    message: str
    job: PitrJob


class AuditEntry(_Response):
    id: str
    adminId: str | None = None
    action: str
    resource: str
    resourceId: str | None = None
    details: dict[str, Any] | None = None
    outcome: Outcome
    error: dict[str, Any] | None = None
    clientIp: str | None = None
    userAgent: str | None = None
    requestId: str | None = None
    createdAt: str


class AuditLogList(_Response):
    logs: list[AuditEntry]
    pagination: Pagination


class Me(_Response):
    id: str
    name: str | None = None
    role: Literal["viewer", "operator", "admin"]
    expiresAt: str | None = Field(None, description="When the token stops working; null: until revoked.")


class Health(_Response):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
