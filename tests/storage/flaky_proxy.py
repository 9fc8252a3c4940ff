"""A tiny HTTP/1.1 proxy on loopback that breaks chosen requests, for fault tests.

It relays bytes between clients and one upstream server and understands just
enough HTTP (request line, headers, a Content-Length body) to act on whole
requests. Faults are armed with :meth:`FlakyProxy.arm` and hit the next
requests whose request line contains a marker, in arrival order: no timing.

- ``throttle``: answer ``503 SlowDown`` without forwarding the request;
- ``reset``: forward half the request body, then reset the connection;
- ``lose``: forward the request, wait for the server's answer, throw it away
  and reset the connection (the client cannot know that it succeeded);
- ``truncate``: forward the request, relay the first 64 KiB of the answer,
  then reset the connection (a download cut short).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

Fault = Literal["throttle", "reset", "lose", "truncate"]
TRUNCATE_AFTER = 64 * 1024

_SLOW_DOWN_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b"<Error><Code>SlowDown</Code><Message>Reduce your request rate</Message></Error>\n"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


class _Cut(Exception):
    """The client connection was deliberately reset."""


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Rule:
    fault: Fault
    marker: bytes
    remaining: int


class FlakyProxy:
    """Listens on 127.0.0.1:<port>, forwards to 127.0.0.1:<upstream_port>."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.requests: list[bytes] = []  # request lines seen, in order
        self.hits: Counter[str] = Counter()  # faults applied, by kind
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, fault: Fault, times: int = 1, marker: bytes = b"") -> None:
        """Apply ``fault`` to the next ``times`` requests whose request line has ``marker``."""
        with self._lock:
            self._rules.append(_Rule(fault, marker, times))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _decide(self, request_line: bytes) -> Fault | None:
        with self._lock:
            self.requests.append(request_line)
            for rule in self._rules:
                if rule.remaining and rule.marker in request_line:
                    rule.remaining -= 1
                    self.hits[rule.fault] += 1
                    return rule.fault
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None  # shared by the connection's plain requests
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                head += b"\r\n\r\n"
                request_line = head.split(b"\r\n", 1)[0]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value.strip())
                fault = self._decide(request_line)
                if fault == "throttle":
                    client.sendall(SLOW_DOWN)
                    return
                if fault in ("lose", "truncate"):
                    # A connection of its own, so that no relay thread forwards the answer.
                    with socket.create_connection(self.upstream) as own:
                        own.sendall(head)
                        buf = self._relay_body(client, own, buf, length, cut=False)
                        own.settimeout(30)
                        answer = own.recv(65536)  # the server has processed the request
                        if fault == "truncate":
                            while len(answer) < TRUNCATE_AFTER:
                                more = own.recv(65536)
                                if not more:
                                    break
                                answer += more
                            client.sendall(answer[:TRUNCATE_AFTER])
                    _reset(client)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
                upstream.sendall(head)
                buf = self._relay_body(client, upstream, buf, length, cut=fault == "reset")
        except (OSError, _Cut):
            return
        finally:
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()
            with contextlib.suppress(OSError):
                client.close()

    @staticmethod
    def _relay_body(client: socket.socket, dst: socket.socket, buf: bytes, length: int, *, cut: bool) -> bytes:
        """Forward a ``length``-byte body; with ``cut``, reset the client halfway instead."""
        sent = 0
        while sent < length:
            if not buf:
                buf = client.recv(min(length - sent, 1 << 20))
                if not buf:
                    raise _Cut
            piece, buf = buf[: length - sent], buf[length - sent :]
            if cut and sent + len(piece) >= length // 2:
                _reset(client)
                raise _Cut
            dst.sendall(piece)
            sent += len(piece)
        if cut:  # a request without a body is cut before anything is forwarded
            _reset(client)
            raise _Cut
        return buf

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
