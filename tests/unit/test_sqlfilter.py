"""A newer client's script preamble is made acceptable to older servers, and nothing else changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgkeep.pipeline.sqlfilter import PREAMBLE_LIMIT, adapt_for_server

# The start of a script written by a PostgreSQL 18 pg_dump (-Fp) or pg_restore -f.
PREAMBLE = (
    b"--\n"
    b"-- PostgreSQL database dump\n"
    b"--\n"
    b"\\restrict AbCdEf\n"
    b"\n"
    b"-- Dumped from database version 15.18\n"
    b"-- Dumped by pg_dump version 18.1\n"
    b"\n"
    b"SET statement_timeout = 0;\n"
    b"SET lock_timeout = 0;\n"
    b"SET idle_in_transaction_session_timeout = 0;\n"
    b"SET transaction_timeout = 0;\n"
    b"SET client_encoding = 'UTF8';\n"
    b"SET standard_conforming_strings = on;\n"
    b"SELECT pg_catalog.set_config('search_path', '', false);\n"
    b"SET check_function_bodies = false;\n"
    b"\n"
)
# Later on the same words can be data or a function body: they must pass untouched.
BODY = (
    b"CREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $$\n"
    b"SET transaction_timeout = 0;\n"
    b"$$;\n"
    b"COPY public.notes (body) FROM stdin;\n"
    b"SET transaction_timeout = 0;\n"
    b"\\.\n"
    b"\n"
    b"SET transaction_timeout = 0;\n"
    b"--\n"
    b"-- PostgreSQL database dump complete\n"
    b"--\n"
)
SCRIPT = PREAMBLE + BODY
WITHOUT = PREAMBLE.replace(b"SET transaction_timeout = 0;\n", b"") + BODY


def split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def adapt(data: bytes, server_major: int, size: int = 1 << 20) -> bytes:
    return b"".join(adapt_for_server(split(data, size), server_major))


@pytest.mark.parametrize("server_major", [12, 15, 16])
@pytest.mark.parametrize("chunk", [1 << 20, 10, 1])
def test_stripped_from_the_preamble_for_older_servers(server_major: int, chunk: int) -> None:
    assert adapt(SCRIPT, server_major, chunk) == WITHOUT


@pytest.mark.parametrize("server_major", [17, 18])
def test_kept_for_servers_that_know_it(server_major: int) -> None:
    assert adapt(SCRIPT, server_major, 7) == SCRIPT


def test_only_the_preamble_is_touched() -> None:
    out = adapt(SCRIPT, 15)
    assert out.count(b"SET transaction_timeout = 0;\n") == 3  # the three in BODY
    assert out.endswith(BODY)


def test_other_settings_in_the_preamble_are_kept() -> None:
    out = adapt(SCRIPT, 15)
    for line in PREAMBLE.splitlines(keepends=True):
        if b"transaction_timeout" not in line:
            assert line in out


def test_large_script_passes_through_whole() -> None:
    rows = b"".join(b"%d\tSET transaction_timeout = 0;\n" % i for i in range(20_000))
    script = PREAMBLE + b"COPY public.t (a, b) FROM stdin;\n" + rows + b"\\.\n"
    assert len(script) > 4 * PREAMBLE_LIMIT
    expected = script.replace(b"SET transaction_timeout = 0;\nSET client", b"SET client", 1)
    assert adapt(script, 15, 4096) == expected


def test_script_without_the_setting_is_unchanged() -> None:
    script = PREAMBLE.replace(b"SET transaction_timeout = 0;\n", b"") + BODY
    assert adapt(script, 15, 3) == script


def test_empty_input() -> None:
    assert adapt(b"", 15) == b""
