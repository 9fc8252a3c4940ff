"""The objects every service needs, built once at the edge and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgkeep.catalog.db import Catalog
from pgkeep.config import Settings
from pgkeep.fsutil import private_dir
from pgkeep.observability.notify import Notifier
from pgkeep.pgtools.conninfo import Target
from pgkeep.pipeline.codecs import CodecOptions
from pgkeep.pipeline.crypto import Recipient, parse_recipients
from pgkeep.retention import RetentionPolicy
from pgkeep.storage import Storage, open_storage


@dataclass
class Context:
    settings: Settings
    catalog: Catalog
    storage: Storage
    _target: Target | None = field(default=None, repr=False)
    _notifier: Notifier | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, *, check_schema: bool = True) -> Context:
        return cls(
            settings=settings,
            catalog=Catalog(settings.catalog_url, check_schema=check_schema),
            storage=open_storage(settings.storage_url, settings),
        )

    @property
    def target(self) -> Target:
        """The configured database (DATABASE_URL), parsed once."""
        if self._target is None:
            self._target = Target.from_url(self.settings.require_database_url())
        return self._target

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self.settings.webhook_list())
        return self._notifier

    @property
    def retention_policy(self) -> RetentionPolicy:
        s = self.settings
        return RetentionPolicy(
            daily=s.retention_daily,
            weekly=s.retention_weekly,
            monthly=s.retention_monthly,
            yearly=s.retention_yearly,
            tz=s.retention_tz,
        )

    @property
    def codec_options(self) -> CodecOptions:
        s = self.settings
        return CodecOptions(zstd_level=s.zstd_level, zstd_threads=s.zstd_threads, gzip_level=s.gzip_level)

    @property
    def age_recipients(self) -> list[Recipient]:
        """Public keys new backups are encrypted to (PGKEEP_AGE_RECIPIENTS); [] means no encryption."""
        return parse_recipients(self.settings.age_recipients)

    @property
    def database_name(self) -> str | None:
        """The configured database's name (DATABASE_URL), None when unset: what freshness and
        the last-backup metrics are about in a catalog that holds several databases."""
        return self.target.dbname if self.settings.database_url else None

    def temp_root(self) -> Path:
        """Private directory for staging (directory-format dumps, parallel restores)."""
        return private_dir(self.settings.temp_dir or (self.settings.state_dir / "tmp"))

    def close(self) -> None:
        self.catalog.dispose()
