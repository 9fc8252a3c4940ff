"""Configuration, read from the environment and a ``.env`` file.

Settings are built once at the edge (CLI callback, API factory) and passed
in; nothing here is an import-time global.
"""

from __future__ import annotations

import re
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgkeep.errors import ConfigError


class DumpFormat(str, Enum):
    CUSTOM = "custom"
    PLAIN = "plain"
    DIRECTORY = "directory"


class S3RetryMode(StrEnum):
    """botocore's retry modes (``legacy`` is left out: it does not retry throttling well)."""

    STANDARD = "standard"
    ADAPTIVE = "adaptive"


MIB = 1 << 20
# Scheduled jobs an empty cron expression turns off (the physical ones are off unless set).
OPTIONAL_CRONS = frozenset(
    {"backup_cron", "cleanup_cron", "drill_cron", "physical_backup_cron", "physical_incremental_cron"}
)


class Compression(str, Enum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


class ToastCompression(StrEnum):
    """How a restore compresses the values it stores (see ``pgtools/toast.py``)."""

    AUTO = "auto"  # lz4 when the server has it and its default was not configured
    SERVER = "server"  # the server's default_toast_compression, whatever it is
    LZ4 = "lz4"
    PGLZ = "pglz"


def _env(name: str) -> Any:
    # Accept both the environment name and the Python name (tests, overrides).
    return Field(validation_alias=AliasChoices(name, name.lower()))


class Settings(BaseSettings):
    """Every setting pgkeep reads. Environment names are given in ``Field`` aliases."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    catalog_url: str = Field(
        default="sqlite:///./.pgkeep/catalog.db",
        validation_alias=AliasChoices("PGKEEP_CATALOG_URL", "catalog_url"),
    )
    storage_url: str = Field(
        default="file://./backups",
        validation_alias=AliasChoices("PGKEEP_STORAGE_URL", "storage_url"),
    )
    backup_prefix: str | None = Field(
        default=None, validation_alias=AliasChoices("PGKEEP_BACKUP_PREFIX", "backup_prefix")
    )
    pg_bin_dir: Path | None = Field(default=None, validation_alias=AliasChoices("PGKEEP_PG_BIN_DIR", "pg_bin_dir"))
    state_dir: Path = Field(default=Path(".pgkeep"), validation_alias=AliasChoices("PGKEEP_STATE_DIR", "state_dir"))
    temp_dir: Path | None = Field(default=None, validation_alias=AliasChoices("PGKEEP_TEMP_DIR", "temp_dir"))

    # S3 (used when PGKEEP_STORAGE_URL is s3://bucket/prefix). Every unset value falls back to
    # boto3's own resolution: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION /
    # AWS_DEFAULT_REGION, the shared config file, and the default credential chain.
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_S3_ENDPOINT_URL", "s3_endpoint_url"),
    )
    s3_region: str | None = Field(default=None, validation_alias=AliasChoices("PGKEEP_S3_REGION", "s3_region"))
    s3_force_path_style: bool = Field(
        default=False,
        validation_alias=AliasChoices("PGKEEP_S3_FORCE_PATH_STYLE", "s3_force_path_style"),
        description="https://endpoint/bucket/key instead of https://bucket.endpoint/key",
    )
    s3_access_key_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_S3_ACCESS_KEY_ID", "s3_access_key_id"),
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_S3_SECRET_ACCESS_KEY", "s3_secret_access_key"),
    )
    s3_part_size: int = Field(
        default=5 * MIB,
        ge=5 * MIB,  # S3's minimum for every part but the last
        le=5 * 1024 * MIB,
        validation_alias=AliasChoices("PGKEEP_S3_PART_SIZE", "s3_part_size"),
        description="bytes per multipart part, doubling every 1,000 parts; memory: part size x (concurrency + 1)",
    )
    s3_max_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        validation_alias=AliasChoices("PGKEEP_S3_MAX_CONCURRENCY", "s3_max_concurrency"),
    )
    s3_retry_mode: S3RetryMode = Field(
        default=S3RetryMode.STANDARD,
        validation_alias=AliasChoices("PGKEEP_S3_RETRY_MODE", "s3_retry_mode"),
    )
    s3_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        validation_alias=AliasChoices("PGKEEP_S3_MAX_ATTEMPTS", "s3_max_attempts"),
        description="attempts per request, the first one included",
    )
    s3_connect_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("PGKEEP_S3_CONNECT_TIMEOUT", "s3_connect_timeout"),
    )
    s3_read_timeout: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices("PGKEEP_S3_READ_TIMEOUT", "s3_read_timeout"),
    )

    local_copy_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_LOCAL_COPY_DIR", "local_copy_dir"),
        description="also keep a copy of every backup (and its manifest) in this local directory",
    )

    # Encryption at rest (age). Backups are encrypted when recipients are set; the private
    # key is needed only to restore or to verify contents, never to take a backup.
    age_recipients: str = Field(
        default="",
        validation_alias=AliasChoices("PGKEEP_AGE_RECIPIENTS", "age_recipients"),
        description="comma-separated age X25519 public keys (age1...) to encrypt backups to",
    )
    age_identity_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_AGE_IDENTITY_FILE", "age_identity_file"),
        description="age identity file (AGE-SECRET-KEY-1...) to decrypt backups for restore and verify",
    )

    lock_wait_timeout: float = Field(
        default=600.0,
        ge=0,
        validation_alias=AliasChoices("PGKEEP_LOCK_WAIT_TIMEOUT", "lock_wait_timeout"),
        description="seconds a backup waits for a table another session holds exclusively (a migration, "
        "an unfinished ALTER), and a logical restore for a table another session uses, before failing "
        "and naming the holders; 0 waits forever",
    )

    default_format: DumpFormat = Field(
        default=DumpFormat.CUSTOM, validation_alias=AliasChoices("PGKEEP_FORMAT", "default_format")
    )
    default_compression: Compression = Field(
        default=Compression.ZSTD,
        validation_alias=AliasChoices("PGKEEP_COMPRESSION", "default_compression"),
    )
    zstd_level: int = Field(default=2, ge=1, le=22, validation_alias=AliasChoices("PGKEEP_ZSTD_LEVEL", "zstd_level"))
    zstd_threads: int = Field(
        default=-1,
        ge=-1,
        validation_alias=AliasChoices("PGKEEP_ZSTD_THREADS", "zstd_threads"),
        description="-1: one compression thread per core",
    )
    gzip_level: int = Field(default=6, ge=1, le=9, validation_alias=AliasChoices("PGKEEP_GZIP_LEVEL", "gzip_level"))

    restore_toast_compression: ToastCompression = Field(
        default=ToastCompression.AUTO,
        validation_alias=AliasChoices("PGKEEP_RESTORE_TOAST_COMPRESSION", "restore_toast_compression"),
        description="how restored values are compressed: auto (lz4 if the server has it and its "
        "default_toast_compression is not configured), server (its default), lz4 or pglz",
    )

    retention_days_manual: int = Field(
        default=30, ge=1, validation_alias=AliasChoices("PGKEEP_RETENTION_DAYS_MANUAL", "retention_days_manual")
    )
    retention_days_full: int = Field(
        default=30, ge=1, validation_alias=AliasChoices("PGKEEP_RETENTION_DAYS_FULL", "retention_days_full")
    )
    retention_days_incremental: int = Field(
        default=30,
        ge=1,
        validation_alias=AliasChoices("PGKEEP_RETENTION_DAYS_INCREMENTAL", "retention_days_incremental"),
    )
    retention_days_scheduled: int = Field(
        default=7,
        ge=1,
        validation_alias=AliasChoices("PGKEEP_RETENTION_DAYS_SCHEDULED", "retention_days_scheduled"),
    )
    retention_days_pre_migration: int = Field(
        default=365,
        ge=1,
        validation_alias=AliasChoices("PGKEEP_RETENTION_DAYS_PRE_MIGRATION", "retention_days_pre_migration"),
    )

    retention_daily: int = Field(
        default=7, ge=0, validation_alias=AliasChoices("PGKEEP_RETENTION_DAILY", "retention_daily")
    )
    retention_weekly: int = Field(
        default=4, ge=0, validation_alias=AliasChoices("PGKEEP_RETENTION_WEEKLY", "retention_weekly")
    )
    retention_monthly: int = Field(
        default=12, ge=0, validation_alias=AliasChoices("PGKEEP_RETENTION_MONTHLY", "retention_monthly")
    )
    retention_yearly: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("PGKEEP_RETENTION_YEARLY", "retention_yearly")
    )
    retention_tz: str = Field(default="UTC", validation_alias=AliasChoices("PGKEEP_RETENTION_TZ", "retention_tz"))
    recovery_window_days: float = Field(
        default=7,
        ge=0,
        validation_alias=AliasChoices("PGKEEP_RECOVERY_WINDOW_DAYS", "recovery_window_days"),
        description="point-in-time recovery: keep the physical backup and WAL to restore to any moment "
        "of the last N days (0: no window)",
    )
    backup_globals: bool = Field(
        default=False,
        validation_alias=AliasChoices("PGKEEP_BACKUP_GLOBALS", "backup_globals"),
        description="also store roles and tablespaces (pg_dumpall --globals-only) with each backup",
    )
    scratch_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_SCRATCH_URL", "scratch_url"),
        description="server for restore drills (a database is created and dropped there)",
    )
    drill_cron: str = Field(default="0 4 * * 0", validation_alias=AliasChoices("PGKEEP_DRILL_CRON", "drill_cron"))
    backup_cron: str = Field(default="0 2 * * *", validation_alias=AliasChoices("PGKEEP_BACKUP_CRON", "backup_cron"))
    cleanup_cron: str = Field(default="0 3 * * *", validation_alias=AliasChoices("PGKEEP_CLEANUP_CRON", "cleanup_cron"))
    physical_backup_cron: str = Field(
        default="",
        validation_alias=AliasChoices("PGKEEP_PHYSICAL_BACKUP_CRON", "physical_backup_cron"),
        description="scheduled full physical backup (crontab syntax; empty: none)",
    )
    physical_incremental_cron: str = Field(
        default="",
        validation_alias=AliasChoices("PGKEEP_PHYSICAL_INCREMENTAL_CRON", "physical_incremental_cron"),
        description="scheduled incremental physical backup, PostgreSQL 17+ (crontab syntax; empty: none)",
    )
    pitr_data_root: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PGKEEP_PITR_DATA_ROOT", "pitr_data_root"),
        description="directory under which the API creates point-in-time restores' data directories "
        "(unset: the API refuses them)",
    )
    schedule_timezone: str = Field(
        default="UTC", validation_alias=AliasChoices("PGKEEP_SCHEDULE_TIMEZONE", "schedule_timezone")
    )
    schedule_grace_seconds: int = Field(
        default=7200,
        ge=0,
        validation_alias=AliasChoices("PGKEEP_SCHEDULE_GRACE_SECONDS", "schedule_grace_seconds"),
        description="a tick missed while nothing ran is run on start if it is at most this old",
    )

    webhook_urls: str = Field(
        default="",
        validation_alias=AliasChoices("PGKEEP_WEBHOOK_URLS", "webhook_urls"),
        description="comma-separated URLs that receive JSON notifications",
    )
    alert_no_backup_hours: float = Field(
        default=26,
        gt=0,
        validation_alias=AliasChoices("PGKEEP_ALERT_NO_BACKUP_HOURS", "alert_no_backup_hours"),
    )

    @field_validator("local_copy_dir", "age_identity_file", "pitr_data_root", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("pitr_data_root")
    @classmethod
    def _check_pitr_data_root(cls, value: Path | None) -> Path | None:
        # Relative to what? The server's working directory is an accident of how it was started.
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("age_recipients")
    @classmethod
    def _check_age_recipients(cls, value: str) -> str:
        from pgkeep.pipeline.crypto import parse_recipients

        try:
            parse_recipients(value)
        except ConfigError as exc:
            raise ValueError(exc.message.split(": ", 1)[-1]) from None
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhooks(cls, value: str) -> str:
        for url in value.split(","):
            url = url.strip()
            if url and not url.startswith(("http://", "https://")):
                raise ValueError("each URL must start with http:// or https://")
        return value

    def webhook_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @field_validator("backup_cron", "cleanup_cron", "drill_cron", "physical_backup_cron", "physical_incremental_cron")
    @classmethod
    def _check_cron(cls, value: str, info: ValidationInfo) -> str:
        from pgkeep.scheduler.ticks import trigger

        if info.field_name in OPTIONAL_CRONS and not value.strip():
            return ""  # that job is off
        try:
            trigger(value)
        except ValueError as exc:
            raise ValueError(f"not a valid cron expression ({exc})") from None
        return value

    @field_validator("schedule_timezone", "retention_tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("scratch_url")
    @classmethod
    def _check_scratch_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        check_conninfo(value, "PGKEEP_SCRATCH_URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        check_conninfo(value, "DATABASE_URL")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("file", "s3"):
            raise ValueError("must start with file:// or s3://")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_s3_endpoint_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("catalog_url")
    @classmethod
    def _check_catalog_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "DATABASE_URL is not set",
                hint="set DATABASE_URL in the environment or in .env to the database to back up",
            )
        return self.database_url

    def retention_days(self, backup_type: str) -> int:
        return int(getattr(self, f"retention_days_{backup_type.lower()}"))


def check_conninfo(value: str, setting: str) -> dict[str, str]:
    """Parse a libpq URL or key=value string; raise ConfigError naming ``setting``.

    libpq's own message is not repeated: it can quote part of the password.
    """
    # Imported here: wal-push and wal-fetch (one process per WAL file) never parse a URL.
    import psycopg.conninfo

    encode = (
        "percent-encode special characters in the user name and password "
        "(@ as %40, : as %3A, / as %2F, % as %25, space as %20)"
    )
    try:
        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(value).items()}
    except psycopg.ProgrammingError as exc:
        # Only an unknown option's name is repeated (it cannot be the password).
        unknown = re.match(r'invalid (?:connection option|URI query parameter:) "([A-Za-z_]+)"', str(exc))
        if unknown:
            raise ConfigError(
                f'{setting} has an unknown connection option "{unknown.group(1)}"',
                hint="libpq's options are listed at https://www.postgresql.org/docs/current/libpq-connect.html"
                "#LIBPQ-PARAMKEYWORDS (sslmode, connect_timeout, application_name, ...)",
            ) from None
        raise ConfigError(f"{setting} is not a valid PostgreSQL connection URL", hint=encode) from None
    host = params.get("host", "")
    if "@" in host and not host.startswith(("/", "@")):  # a socket directory or an abstract socket may
        # postgresql://user:pa@ss@host: libpq splits at the last "@", the rest of the password becomes the host.
        raise ConfigError(f"{setting} has an '@' in its host name: an '@' of the password not encoded?", hint=encode)
    return params


_ENV_NAMES = {
    name: next(
        (a for a in getattr(f.validation_alias, "choices", []) if isinstance(a, str) and a.isupper()),
        name,
    )
    for name, f in Settings.model_fields.items()
}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, ``.env`` and ``overrides``.

    Invalid values raise :class:`ConfigError` naming the environment variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            env_name = _ENV_NAMES.get(field, field)
            problems.append(f"{env_name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except ConfigError:
        raise
