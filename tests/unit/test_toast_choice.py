"""Which TOAST compression a restore's sessions set (pure decision; the restores are in
tests/integration/test_restore_toast.py)."""

from __future__ import annotations

import pytest

from pgkeep.config import ToastCompression
from pgkeep.errors import InvalidRequestError
from pgkeep.pgtools.conninfo import Target
from pgkeep.pgtools.toast import ServerToast, session_method, set_statement

BUILT_IN = ServerToast(setting="pglz", configured=False, methods=("pglz", "lz4"))
CONFIGURED = ServerToast(setting="pglz", configured=True, methods=("pglz", "lz4"))
ALREADY_LZ4 = ServerToast(setting="lz4", configured=True, methods=("pglz", "lz4"))
NO_LZ4 = ServerToast(setting="pglz", configured=False, methods=("pglz",))
BEFORE_14 = ServerToast(setting=None, configured=False, methods=("pglz",))

A, S, L, P = ToastCompression.AUTO, ToastCompression.SERVER, ToastCompression.LZ4, ToastCompression.PGLZ


@pytest.mark.parametrize(
    ("choice", "server", "expected"),
    [
        (A, BUILT_IN, "lz4"),
        (A, CONFIGURED, None),
        (A, ALREADY_LZ4, None),
        (A, NO_LZ4, None),
        (A, BEFORE_14, None),
        (S, BUILT_IN, None),
        (S, NO_LZ4, None),
        (L, BUILT_IN, "lz4"),
        (L, CONFIGURED, "lz4"),
        (L, ALREADY_LZ4, None),
        (P, ALREADY_LZ4, "pglz"),
        (P, BUILT_IN, None),
        (P, BEFORE_14, None),
    ],
)
def test_session_method(choice: ToastCompression, server: ServerToast, expected: str | None) -> None:
    assert session_method(choice, server) == expected


@pytest.mark.parametrize("server", [NO_LZ4, BEFORE_14])
def test_lz4_where_the_server_lacks_it_is_a_clear_refusal(server: ServerToast) -> None:
    with pytest.raises(InvalidRequestError) as err:
        session_method(L, server)
    assert "lz4" in err.value.message and err.value.hint and "--toast-compression" in err.value.hint


def test_session_settings_join_the_urls_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=64MB")  # ignored by libpq when the URL has options
    target = Target.from_url("postgresql://u:secret@h/db?options=-c%20search_path%3Dapp")
    added = target.with_session_settings(default_toast_compression="lz4")
    assert added.params["options"] == "-c search_path=app -c default_toast_compression=lz4"
    assert added.password == "secret" and added.params["dbname"] == "db"
    assert target.params["options"] == "-c search_path=app"  # the original is unchanged


def test_session_settings_keep_pgoptions_when_the_url_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=64MB")
    added = Target.from_url("postgresql://u@h/db").with_session_settings(default_toast_compression="lz4")
    assert added.params["options"] == "-c work_mem=64MB -c default_toast_compression=lz4"
    monkeypatch.delenv("PGOPTIONS")
    added = Target.from_url("postgresql://u@h/db").with_session_settings(default_toast_compression="lz4")
    assert added.params["options"] == "-c default_toast_compression=lz4"


def test_session_setting_values_with_spaces_are_refused() -> None:
    with pytest.raises(ValueError, match="spaces"):
        Target.from_url("postgresql://u@h/db").with_session_settings(search_path="a b")


def test_set_statement_names_only_known_methods() -> None:
    assert set_statement("lz4") == "SET default_toast_compression = lz4;\n"
    with pytest.raises(ValueError, match="unknown"):
        set_statement("lz4; DROP TABLE x")
