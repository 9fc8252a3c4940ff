"""Encryption at rest in the age format (https://age-encryption.org/v1), through pyrage.

Backups are encrypted *after* compression to one or more X25519 recipients
(``age1...`` public keys, PGKEEP_AGE_RECIPIENTS). Only a restore, or a
verification that reads the contents, needs a private key
(PGKEEP_AGE_IDENTITY_FILE); a server that only takes backups never holds one.
The stored file is a standard age file: ``age -d -i key.txt FILE`` decrypts it.

Why a helper thread: pyrage streams only through ``encrypt_io(reader, writer)``
and ``decrypt_io(reader, writer)``, which *pull* all their input from a reader
and *push* their output into a writer. The backup pipeline pushes (pg_dump ->
compressor -> here) and the restore pipeline pulls (iterators), so each call runs
in a thread driven in lockstep (:class:`_Lockstep`): the caller hands over one
chunk and waits until pyrage asks for the next one or finishes. Only one of the
two threads runs at any moment, so the downstream writer, hash and counters are
never used concurrently, a chunk given by the caller is never read after the
call returns (no copy needed), and memory stays one chunk plus age's 64 KiB.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519
from pyrage.x25519 import Identity, Recipient

from pgkeep.errors import ConfigError, PgkeepError, VerificationError

AGE_MAGIC = b"age-encryption.org/v1\n"
SUFFIX = ".age"
ENCRYPTION = "age"  # the catalog's ``encryption`` value
RECIPIENTS_SETTING = "PGKEEP_AGE_RECIPIENTS"
IDENTITY_SETTING = "PGKEEP_AGE_IDENTITY_FILE"

__all__ = [
    "Encryptor",
    "Identity",
    "Keys",
    "Recipient",
    "decrypt",
    "fingerprint",
    "load_identities",
    "parse_recipients",
]


# --- keys ---------------------------------------------------------------------------------------


def fingerprint(recipient: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256.

    By hand: ``printf %s age1... | sha256sum | cut -c1-16``.
    """
    return hashlib.sha256(recipient.strip().encode("ascii")).hexdigest()[:16]


def parse_recipients(value: str, setting: str = RECIPIENTS_SETTING) -> list[Recipient]:
    """Comma-separated ``age1...`` public keys; [] when ``value`` is empty."""
    out = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            out.append(x25519.Recipient.from_str(entry))
        except pyrage.RecipientError as exc:
            # A public key is not a secret: naming it helps find the typo.
            raise ConfigError(
                f"{setting}: {entry!r} is not an age X25519 public key ({exc})",
                hint="list public keys as printed by `age-keygen -y key.txt` (age1...), separated by commas",
            ) from None
    return out


@dataclass(frozen=True)
class Keys:
    """The private keys for reading, and where they came from (for messages)."""

    identities: tuple[Identity, ...]
    source: str

    @property
    def fingerprints(self) -> list[str]:
        return [fingerprint(str(i.to_public())) for i in self.identities]


def load_identities(path: Path | None, what: str, recipients: Sequence[str] = ()) -> Keys:
    """The identities in an age identity file (``AGE-SECRET-KEY-1...`` lines, ``#`` comments).

    ``what`` names the encrypted object and ``recipients`` its recipients'
    fingerprints, for the message when no key is configured.
    """
    if path is None:
        raise ConfigError(
            f"{what} is encrypted (age) and {IDENTITY_SETTING} is not set",
            hint=f"set {IDENTITY_SETTING} to the age identity file whose public key is one of the backup's "
            f"recipients{_listed(recipients)}; the key is needed only to restore or verify contents",
        )
    source = f"{IDENTITY_SETTING} ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not an age identity file (not text)") from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # Never echo the line: it may be (part of) a private key.
            raise ConfigError(
                f"{source}: line {number} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                hint="create one with `age-keygen -o key.txt`; passphrase-protected and SSH keys are not supported",
            ) from None
    if not identities:
        raise ConfigError(f"{source} holds no identity (AGE-SECRET-KEY-1... line)")
    return Keys(tuple(identities), source)


def _listed(fingerprints: Sequence[str]) -> str:
    return f" (fingerprints {', '.join(fingerprints)})" if fingerprints else ""


# --- the lockstep thread ------------------------------------------------------------------------

_NEED = object()  # worker -> caller: give me the next chunk
_DONE = object()  # worker -> caller: finished (see error)
_EOF = object()  # caller -> worker: no more input
_CANCEL = object()  # caller -> worker: stop now


class _Cancelled(Exception):
    pass


class _Source:
    """The reader pyrage pulls from; it asks the caller for each new chunk."""

    def __init__(self, step: _Lockstep) -> None:
        self._step = step
        self._view = memoryview(b"")
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._view:
            if self._eof:
                return b""
            item = self._step.next_input()
            if item is _EOF:
                self._eof = True
                return b""
            if item is _CANCEL:
                raise _Cancelled
            self._view = memoryview(item).cast("B")  # type: ignore[arg-type]  # bytes or memoryview
        if n is None or n < 0:
            n = len(self._view)
        out = bytes(self._view[:n])
        self._view = self._view[n:]
        return out

    def leftover(self) -> int:
        return len(self._view)

    @property
    def at_end(self) -> bool:
        """The caller said the input ended, and all of it was read."""
        return self._eof and not self._view


class _Sink:
    """The writer pyrage pushes into; remembers the downstream error it hides behind its own."""

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self._out = out
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self._out(data)
        except BaseException as exc:
            self.error = exc
            raise
        return len(data)

    def flush(self) -> None:
        pass


class _Lockstep:
    """Runs ``target(source)`` in a thread that runs only while the caller waits."""

    def __init__(self, target: Callable[[_Source], Any], name: str) -> None:
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.source = _Source(self)
        self.error: BaseException | None = None
        self.done = False
        self._thread = threading.Thread(target=self._main, args=(target,), name=name, daemon=True)
        self._thread.start()
        self._wait()

    def _main(self, target: Callable[[_Source], Any]) -> None:
        try:
            target(self.source)
        except BaseException as exc:
            self.error = exc
        finally:
            self._outbox.put(_DONE)

    def next_input(self) -> object:
        """Worker side: ask for the next chunk and wait for it."""
        self._outbox.put(_NEED)
        return self._inbox.get()

    def _wait(self) -> None:
        if self._outbox.get() is _DONE:
            self.done = True
            self._thread.join()

    def feed(self, item: object) -> None:
        """Hand ``item`` over; return once the worker wants more or has finished."""
        if not self.done:
            self._inbox.put(item)
            self._wait()

    def cancel(self) -> None:
        """Stop the worker (idempotent). Safe after an interrupted ``feed``."""
        while not self.done:
            self._inbox.put(_CANCEL)
            self._wait()


# --- encryption (backups) -----------------------------------------------------------------------


class Encryptor:
    """Push API over ``pyrage.encrypt_io``: plaintext in through ``write``, ciphertext to ``out``.

    ``out`` is called from the helper thread, but only while ``write`` or
    ``finish`` runs in the caller, never concurrently with the caller.
    """

    def __init__(self, recipients: Sequence[Recipient], out: Callable[[bytes], None]) -> None:
        if not recipients:
            raise ValueError("no recipients")
        self._sink = _Sink(out)
        recipient_list = list(recipients)
        self._step = _Lockstep(
            lambda source: pyrage.encrypt_io(source, self._sink, recipient_list), "pgkeep-age-encrypt"
        )
        self._check()

    def write(self, data: bytes | memoryview) -> None:
        if data:
            self._step.feed(data)
            self._check()

    def finish(self) -> None:
        """End the stream: the last chunk and its tag are written to ``out``."""
        self._step.feed(_EOF)
        self._check()
        if not self._step.done:
            self.abort()
            raise PgkeepError("age encryption did not finish after the end of its input")

    def abort(self) -> None:
        self._step.cancel()

    def _check(self) -> None:
        if not self._step.done:
            return
        if self._sink.error is not None:
            raise self._sink.error  # the storage's own error, with its hint
        if self._step.error is not None and not isinstance(self._step.error, _Cancelled):
            raise PgkeepError(f"age encryption failed: {self._step.error}") from None
        if not self._step.source.at_end:
            raise PgkeepError("age encryption stopped before the end of its input")


# --- decryption (verify, restore) ---------------------------------------------------------------


def decrypt(
    stored: Iterable[bytes], keys: Keys, what: str, recipients: Sequence[str] = ()
) -> Generator[bytes, None, None]:
    """Decrypt an age stream chunk by chunk (one output chunk per input chunk).

    A key that is not a recipient is a :class:`ConfigError` naming
    PGKEEP_AGE_IDENTITY_FILE; a damaged, truncated or altered stream (age
    authenticates every 64 KiB chunk and marks the last one) is a
    :class:`VerificationError`.
    """
    out: list[bytes] = []
    sink = _Sink(out.append)
    identities = list(keys.identities)
    step = _Lockstep(lambda source: pyrage.decrypt_io(source, sink, identities), "pgkeep-age-decrypt")
    try:
        for chunk in stored:
            if not chunk:
                continue
            if step.done:
                _raise_decrypt_error(step, what, keys, recipients)
                raise VerificationError(f"{what} has data after the end of its encrypted stream")
            step.feed(chunk)
            if out:
                yield b"".join(out)
                out.clear()
        step.feed(_EOF)
        if out:
            yield b"".join(out)
            out.clear()
        _raise_decrypt_error(step, what, keys, recipients)
        if not step.done:
            raise VerificationError(f"{what}: age decryption did not finish at the end of the stream")
        if step.source.leftover():
            raise VerificationError(f"{what} has data after the end of its encrypted stream")
    finally:
        step.cancel()


def _raise_decrypt_error(step: _Lockstep, what: str, keys: Keys, recipients: Sequence[str]) -> None:
    exc = step.error
    if exc is None or isinstance(exc, _Cancelled):
        return
    text = str(exc)
    if isinstance(exc, pyrage.DecryptError) and "no matching keys" in text.lower():
        raise ConfigError(
            f"cannot decrypt {what}: the key in {keys.source} (fingerprint "
            f"{', '.join(keys.fingerprints)}) is not one of its recipients{_listed(recipients)}",
            hint=f"point {IDENTITY_SETTING} at the identity file of one of the backup's recipients",
        ) from None
    if isinstance(exc, pyrage.DecryptError):
        raise VerificationError(f"{what} is not a valid age file: {text}") from None
    raise VerificationError(
        f"{what}: the encrypted stream is corrupt or truncated (age: {text})",
        hint="the file was altered or damaged; use another backup",
    ) from None
