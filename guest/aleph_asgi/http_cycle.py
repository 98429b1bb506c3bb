"""One HTTP request/response as an ASGI `http` connection (receive/send)."""

import asyncio
import logging
from typing import Any

from .body import BodyReader
from .errors import ClientDisconnected, HttpError, IncompleteRead
from .limits import Limits
from .request import Request, tokens
from .response import check_headers, encode_head, plain_response
from .stream import Channel

log = logging.getLogger("aleph_asgi")

_NO_BODY_STATUS = {204, 304}


class HttpCycle:
    def __init__(self, channel: Channel, request: Request, body: BodyReader, limits: Limits, stopping: asyncio.Event):
        self.channel = channel
        self.request = request
        self.body = body
        self.limits = limits
        self.stopping = stopping
        self.keep_alive = request.keep_alive
        self.started = False  # http.response.start received
        self.head_sent = False
        self.complete = False
        self.broken = False  # the connection can't carry another request (body error, client gone)
        self.completed = asyncio.Event()
        # Resolved when the response is complete, or earlier by whoever waits on it.
        self.settled: asyncio.Future = asyncio.get_running_loop().create_future()
        self._body_requested = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._no_body = False
        self._expected: int | None = None
        self._sent = 0

    # --- receive ---------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.broken or self.complete:
            return {"type": "http.disconnect"}
        if not self.body.done or not self._body_requested:
            self._body_requested = True
            if self.request.expect_continue and not self.started and not self.body.done:
                self.request.expect_continue = False
                self.channel.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                data = await self.body.read()
            except HttpError as error:
                self._fail_body(error.status, error.reason)
                return {"type": "http.disconnect"}
            except (IncompleteRead, ClientDisconnected):
                self.broken = True
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": data, "more_body": not self.body.done}
        # Body done: the next event is the client leaving (or the response being over).
        gone = asyncio.ensure_future(self.channel.peer_gone.wait())
        over = asyncio.ensure_future(self.completed.wait())
        try:
            await asyncio.wait({gone, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            over.cancel()
        return {"type": "http.disconnect"}

    def _fail_body(self, status: int, reason: str) -> None:
        self.broken = True
        if not self.head_sent:
            self.head_sent = True
            try:
                self.channel.write(plain_response(status, reason))
            except ClientDisconnected:
                pass
        self.channel.close()

    # --- send ------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if self.broken or self.channel.is_closing:
            raise ClientDisconnected("client disconnected")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message.get("status")
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise ValueError(f"invalid response status {status!r}")
            self._headers = check_headers(message.get("headers"))
            lengths = [v for n, v in self._headers if n == b"content-length"]
            if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
                raise ValueError("invalid content-length header from the app")
            self._status = status
            self.started = True
            # The head waits for the first body message so a one-piece body gets a
            # Content-Length; if the app does anything else first (awaits), it goes out now.
            asyncio.get_running_loop().call_soon(self._flush_head)
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body after the response was complete")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError("http.response.body body must be bytes")
            more = bool(message.get("more_body", False))
            if not self.head_sent:
                self._send_head(final_length=None if more else len(body))
            self._write_body(bytes(body), more)
            await self.channel.drain(self.limits.send_timeout)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http connection")

    def _flush_head(self) -> None:
        if not self.head_sent and not self.broken and not self.channel.is_closing:
            self._send_head(final_length=None)

    def _send_head(self, final_length: int | None) -> None:
        request = self.request
        headers = [(n, v) for n, v in self._headers if n not in (b"transfer-encoding", b"connection", b"keep-alive")]
        if b"close" in tokens(self._headers, b"connection"):
            self.keep_alive = False
        if not self.body.done or self.stopping.is_set():
            # Unread request body (we won't skip it) or the server is stopping: last request here.
            self.keep_alive = False
        self._no_body = request.method == "HEAD" or self._status in _NO_BODY_STATUS
        lengths = [v for n, v in headers if n == b"content-length"]
        if self._status in _NO_BODY_STATUS:
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        elif lengths:
            self._expected = int(lengths[0])
        elif final_length is not None:
            if not (request.method == "HEAD" and final_length == 0):
                headers.append((b"content-length", str(final_length).encode("ascii")))
                self._expected = final_length
        elif self._no_body:
            pass
        elif request.http_version == "1.1":
            headers.append((b"transfer-encoding", b"chunked"))
            self._chunked = True
        else:
            self.keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        elif request.http_version == "1.0":
            headers.append((b"connection", b"keep-alive"))
        self.head_sent = True
        self.channel.write(encode_head(self._status, headers))

    def _write_body(self, body: bytes, more: bool) -> None:
        if self._no_body:
            pass
        elif self._chunked:
            if body:
                self.channel.write(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                self.channel.write(b"0\r\n\r\n")
        elif body:
            if self._expected is not None and self._sent + len(body) > self._expected:
                raise RuntimeError("response body longer than its content-length")
            self._sent += len(body)
            self.channel.write(body)
        if not more:
            if self._expected is not None and self._sent < self._expected and not self._no_body:
                # The client is waiting for bytes that will never come: end the connection.
                self.keep_alive = False
                self.broken = True
                self.channel.close()
            self.complete = True
            self.completed.set()
            if not self.settled.done():
                self.settled.set_result(None)
