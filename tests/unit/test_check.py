"""pgkeep check's wording helpers, and sizes for people (pure)."""

from __future__ import annotations

import pytest

from pgkeep.services.serialize import human_bytes, named


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (138_445, "135.2 KiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5.0 TiB"),
    ],
)
def test_sizes_read_in_binary_units(nbytes: int, text: str) -> None:
    assert human_bytes(nbytes) == text


def test_long_lists_are_cut_with_a_count() -> None:
    assert named(["a", "b"]) == "a, b"
    assert named([str(i) for i in range(8)]) == "0, 1, 2, 3, 4 and 3 more"
