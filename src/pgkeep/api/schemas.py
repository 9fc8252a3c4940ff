"""Request and response bodies, with the spec's camelCase keys.

Request bodies reject unknown keys: a misspelt ``dryrun: false`` must be a
422, not a silent dry run. Response models allow extra keys so a field the
services add later reaches clients without a change here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

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


class CreateBackupRequest(_Request):
    type: CreatableType = "MANUAL"


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


class RestoreAccepted(_Response):
    message: str
    job: RestoreJob


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


class Health(_Response):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
