"""The configuration reference lists every setting (it is what operators read)."""

from __future__ import annotations

from pathlib import Path

from pgkeep.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    env_names = [
        next(a for a in field.validation_alias.choices if isinstance(a, str) and a.isupper())  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    ]
    missing = [name for name in env_names if f"`{name}`" not in text]
    assert missing == []
