"""A loopback HTTP server that serves one file from memory, with faults on demand.

Used by the download tests and the fault suite::

    with serve_bytes(data, drop_after_bytes=[1000], status_override=[500]) as server:
        download(server.url, dest, sha)
        assert server.requests[1].range == "bytes=0-"

Bound to 127.0.0.1 on a port the OS assigns; ``Range: bytes=A-`` / ``bytes=A-B`` is honoured
with 206 and ``Content-Range`` (416 past the end). Every fault knob takes either a scalar,
applied to every request, or an iterable, consumed one value per request to the served path
(``None`` = no fault for that request; once exhausted, no more faults):

- ``drop_after_bytes``: send the headers with the full Content-Length, write N body bytes of this
  response, then close the socket (the client sees a truncated transfer);
- ``status_override``: answer with this status (e.g. 404, 500, 429) and a short body instead;
- ``hold``: ``"reply"`` reads the request and answers nothing, ``"body"`` sends the headers and
  no body, until the test calls ``server.release()`` (or the server closes, or ``hold_limit_s``
  passes: a client that never times out then gets its answer late, and the test sees one
  request too few instead of hanging);
- ``ignore_range`` (bool): always answer 200 with the whole file;
- ``misalign_range`` (bool): answer ``Range: bytes=A-`` with 206 from byte 0 (and a truthful
  ``Content-Range: bytes 0-...``), as a broken proxy might;
- ``corrupt`` (bool): serve different bytes of the same length (every byte inverted).

``server.requests`` is the log: one :class:`Request` (method, path, Range header, status, body
bytes sent, whether it was held) per request received, in arrival order.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_INVERT = bytes(255 - i for i in range(256))


@dataclass
class Request:
    """One request as the server saw it; ``status`` and ``bytes_sent`` (body bytes the server
    wrote, or was writing when the client hung up) are filled in on reply."""

    method: str
    path: str
    range: str | None
    status: int = 0
    bytes_sent: int = 0
    held: bool = False


def _per_request(knob: Any) -> Iterator[Any]:
    """A scalar repeats forever; an iterable yields its values, then ``None`` forever."""
    if knob is None or isinstance(knob, (int, float, str)):
        while True:
            yield knob
    yield from knob
    while True:
        yield None


class FaultyServer:
    """Serves ``data`` at ``path`` on 127.0.0.1; see the module docstring for the fault knobs."""

    def __init__(
        self,
        data: bytes,
        path: str = "/Galaxy10_DECals.h5",
        *,
        drop_after_bytes: int | Iterable[int | None] | None = None,
        status_override: int | Iterable[int | None] | None = None,
        hold: str | Iterable[str | None] | None = None,
        hold_limit_s: float = 60,
        ignore_range: bool = False,
        misalign_range: bool = False,
        corrupt: bool = False,
    ):
        self.data = bytes(data)
        self.path = path
        self.ignore_range = ignore_range
        self.misalign_range = misalign_range
        self._body = self.data.translate(_INVERT) if corrupt else self.data
        self._drops = _per_request(drop_after_bytes)
        self._statuses = _per_request(status_override)
        self._holds = _per_request(hold)
        self.hold_limit_s = hold_limit_s
        self._released = threading.Event()
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        # A short poll keeps close() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.path}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def release(self) -> None:
        """Let every held request (and any held later) go on."""
        self._released.set()

    def start(self) -> FaultyServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()  # wakes held handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, h: _Handler, send_body: bool) -> None:
        with self._lock:
            req = Request(h.command, h.path, h.headers.get("Range"))
            self._log.append(req)
            if h.path == self.path:
                status, drop, hold = next(self._statuses), next(self._drops), next(self._holds)
        if h.path != self.path:
            return _reply_short(h, req, 404, b"not found\n")
        if hold == "reply":
            self._hold(req)
        if status is not None:
            return _reply_short(h, req, status, b"injected fault\n")
        size = len(self._body)
        start, end, code = 0, size - 1, 200
        m = _RANGE.fullmatch((req.range or "").strip())
        if m and not self.ignore_range:  # a malformed Range is ignored, as RFC 9110 allows
            start = 0 if self.misalign_range else int(m[1])
            end = min(int(m[2]), size - 1) if m[2] else size - 1
            if int(m[1]) >= size:
                return _reply_short(h, req, 416, b"", {"Content-Range": f"bytes */{size}"})
            code = 206
        req.status = code
        h.send_response(code)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(end - start + 1))
        h.send_header("Accept-Ranges", "bytes")
        if code == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if not send_body:
            return
        if hold == "body":
            h.wfile.flush()
            self._hold(req)
        piece = self._body[start : end + 1]
        if drop is not None and drop < len(piece):
            req.bytes_sent = drop
            h.wfile.write(piece[:drop])
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)  # FIN mid-body: a cut-off transfer
            return
        req.bytes_sent = len(piece)  # set first: the client may finish before write() returns
        h.wfile.write(piece)

    def _hold(self, req: Request) -> None:
        req.held = True
        self._released.wait(self.hold_limit_s)


def _reply_short(
    h: _Handler, req: Request, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    req.status = status
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, send_body: bool) -> None:
        try:
            self.server.owner._handle(self, send_body)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timed out)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log replaces stderr chatter


@contextlib.contextmanager
def serve_bytes(
    data: bytes, path: str = "/Galaxy10_DECals.h5", **faults: Any
) -> Iterator[FaultyServer]:
    """Serve ``data`` at ``path`` on 127.0.0.1 for the duration of the ``with`` block."""
    with FaultyServer(data, path, **faults) as server:
        yield server
