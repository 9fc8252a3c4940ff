"""Configuration: invalid values fail at start, naming the setting and never the password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from pgkeep.config import Compression, DumpFormat, load_settings
from pgkeep.errors import ConfigError, ExitCode
from pgkeep.pgtools.conninfo import Target

SECRET = "s3cr%zzet-Pa55"
AWKWARD = "p@ss:w/o%r'd\" $x \\y"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DATABASE_URL/PGKEEP_* from the caller, and no .env file in the working directory."""
    import os

    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("PGKEEP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@db.example:5432/app",  # bad percent-encoding
        f"postgresql://app:{AWKWARD}@db.example:5432/app",  # the raw awkward password
        f"postgresql://app:{quote(SECRET)}@db.example/app?nosuch=1",
        f"postgresql://app:{quote(SECRET)}@[::1/app",
        f"host=db.example password={SECRET} sslmode='",
    ],
)
def test_invalid_database_url_names_the_setting_not_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(database_url=url)
    text = str(info.value)
    assert "DATABASE_URL" in text
    assert info.value.exit_code is ExitCode.CONFIG
    for secret in (SECRET, quote(SECRET), AWKWARD, "o%r'd"):
        assert secret not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # An "@" of the password not encoded: libpq takes the rest of the password for the host.
        ("postgresql://app:Tr0ub4dor@Horse-Battery@127.0.0.1:5432/app", "has an '@' in its host name"),
        ("postgresql://app:pw@db.example/app?sslmod=require", 'has an unknown connection option "sslmod"'),
        ("host=db.example sslmod=require password=Horse-Battery", 'has an unknown connection option "sslmod"'),
    ],
)
def test_a_mistyped_url_says_what_is_wrong_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(database_url=url)
    assert info.value.message == f"DATABASE_URL {message}" + (
        "" if "option" in message else ": an '@' of the password not encoded?"
    )
    assert "Horse-Battery" not in str(info.value) and "Tr0ub4dor" not in str(info.value)


def test_socket_directories_and_abstract_sockets_may_hold_an_at_sign() -> None:
    for host in ("/run/user@1000/pg", "@pgkeep-abstract"):
        assert load_settings(database_url=f"host={host} dbname=app").database_url


def test_invalid_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{SECRET}@db.example/app")
    with pytest.raises(ConfigError, match="DATABASE_URL") as info:
        load_settings()
    assert SECRET not in str(info.value)


def test_invalid_database_url_in_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL='postgresql://app:{SECRET}@db.example/app'\n")
    with pytest.raises(ConfigError, match="DATABASE_URL") as info:
        load_settings()
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://host/dir", "/var/backups", "S3:/bucket", ""])
def test_invalid_storage_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="PGKEEP_STORAGE_URL"):
        load_settings(storage_url=url)


def test_invalid_storage_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGKEEP_STORAGE_URL", "gopher://x")
    with pytest.raises(ConfigError, match="PGKEEP_STORAGE_URL"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("PGKEEP_CATALOG_URL", "mysql://x/y"),
        ("PGKEEP_FORMAT", "tar"),
        ("PGKEEP_COMPRESSION", "lz4"),
        ("PGKEEP_RETENTION_DAYS_SCHEDULED", "0"),
        ("PGKEEP_ZSTD_LEVEL", "99"),
    ],
)
def test_other_invalid_settings_are_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env):
        load_settings()


def test_missing_database_url_is_a_config_error() -> None:
    settings = load_settings()
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        settings.require_database_url()


def test_defaults_and_retention_by_type() -> None:
    settings = load_settings()
    assert settings.storage_url == "file://./backups"
    assert settings.catalog_url.startswith("sqlite:///")
    assert settings.default_format is DumpFormat.CUSTOM
    assert settings.default_compression is Compression.ZSTD
    days = {t: settings.retention_days(t) for t in ("PRE_MIGRATION", "SCHEDULED", "MANUAL", "FULL", "INCREMENTAL")}
    assert days == {"PRE_MIGRATION": 365, "SCHEDULED": 7, "MANUAL": 30, "FULL": 30, "INCREMENTAL": 30}


def test_retention_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGKEEP_RETENTION_DAYS_PRE_MIGRATION", "400")
    assert load_settings().retention_days("PRE_MIGRATION") == 400


def test_awkward_password_url_is_valid_and_parsed_exactly() -> None:
    url = (
        f"postgresql://{quote('app user', safe='')}:{quote(AWKWARD, safe='')}@db.example:6543/"
        f"{quote('my db', safe='')}?sslmode=require&application_name=x"
    )
    settings = load_settings(database_url=url)
    target = Target.from_url(settings.require_database_url())
    assert target.password == AWKWARD
    assert target.params["user"] == "app user"
    assert target.params["dbname"] == "my db"
    assert target.params["sslmode"] == "require"
    # What goes on command lines and into messages has no password.
    assert AWKWARD not in target.conninfo()
    assert AWKWARD not in target.describe()
    assert AWKWARD not in repr(target)
    assert target.scrub(f"FATAL: bad {AWKWARD}!") == "FATAL: bad ********!"
    # A driver error on one line, the password gone even when it holds runs of spaces.
    spaced = Target.from_url(f"postgresql://u:{quote('a  b' + chr(10) + 'c', safe='')}@h/d")
    error = RuntimeError("FATAL: password a  b\nc rejected\nIs the server running?")
    assert spaced.error_text(error) == "FATAL: password ******** rejected Is the server running?"


def test_an_empty_cron_turns_its_job_off() -> None:
    from pgkeep.scheduler.worker import job_specs
    from pgkeep.services.context import Context

    settings = load_settings(
        database_url="postgresql://app@db.example/app",
        catalog_url="sqlite:///:memory:",
        backup_cron="",
        cleanup_cron=" ",
        physical_backup_cron="30 2 * * *",
    )
    ctx = Context.build(settings)
    try:
        assert [spec.name for spec in job_specs(ctx)] == ["drill", "physical-backup"]
    finally:
        ctx.close()
    with pytest.raises(ConfigError, match="PGKEEP_BACKUP_CRON"):
        load_settings(database_url="postgresql://app@db.example/app", backup_cron="every night")
