"""One WebSocket connection as an ASGI `websocket` connection (receive/send)."""

import asyncio
import base64
import hashlib
import logging
import time
from typing import Any

from . import ws_frames as wf
from .ws_deflate import MIN_SIZE, Deflate, negotiate
from .errors import ClientDisconnected, HttpError, IncompleteRead
from .limits import Limits
from .request import Request
from .response import check_headers, encode_head, plain_response
from .stream import Channel

log = logging.getLogger("aleph_asgi")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONNECTING, OPEN, CLOSING, CLOSED = "connecting", "open", "closing", "closed"


def check_handshake(request: Request) -> bytes:
    """The client's Sec-WebSocket-Key after checking the upgrade request; raises HttpError."""
    if request.http_version != "1.1":
        raise HttpError(400, "WebSocket needs HTTP/1.1")
    if request.chunked or request.content_length:
        raise HttpError(400, "WebSocket upgrade with a body")
    if request.header(b"sec-websocket-version") != b"13":
        raise HttpError(426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")])
    key = request.header(b"sec-websocket-key") or b""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise HttpError(400, "malformed Sec-WebSocket-Key") from None
    return key


def accept_value(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class WebSocketCycle:
    def __init__(self, channel: Channel, request: Request, key: bytes, limits: Limits):
        self.channel = channel
        self.request = request
        self.key = key
        self.limits = limits
        self.state = CONNECTING
        self.response_sent = False  # an HTTP answer instead of the upgrade (denial)
        self._connect_delivered = False
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=limits.ws_queue)
        self._close_code = wf.ABNORMAL
        self._close_reason = ""
        self._disconnect_queued = False
        self._reader: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None
        self._closer: asyncio.TimerHandle | None = None
        self._last_heard = time.monotonic()
        self._denial_started = False
        self._deflate: Deflate | None = None

    # --- receive ---------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        if self.state == CONNECTING:
            raise RuntimeError("accept or close the WebSocket before receiving")
        if self._queue.empty() and (self._disconnect_queued or self._reader is None or self._reader.done()):
            return self._disconnect_message()
        return await self._queue.get()

    def _disconnect_message(self) -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": self._close_code, "reason": self._close_reason}

    # --- send ------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.accept":
            if self.state != CONNECTING or self._denial_started:
                raise RuntimeError("websocket.accept in the wrong state")
            self._accept(message)
        elif kind == "websocket.send":
            if self.state != OPEN:
                raise ClientDisconnected("WebSocket is not open")
            text, data = message.get("text"), message.get("bytes")
            if (text is None) == (data is None):
                raise ValueError("websocket.send needs exactly one of 'text' or 'bytes'")
            opcode, payload = (wf.OP_TEXT, text.encode("utf-8")) if text is not None else (wf.OP_BINARY, bytes(data))
            if self._deflate is not None and len(payload) >= MIN_SIZE:
                self.channel.write(wf.encode_frame(opcode, self._deflate.compress(payload), rsv1=True))
            else:
                self.channel.write(wf.encode_frame(opcode, payload))
            await self.channel.drain(self.limits.send_timeout)
        elif kind == "websocket.close":
            code = int(message.get("code", wf.NORMAL) or wf.NORMAL)
            reason = message.get("reason") or ""
            if self.state == CONNECTING and not self._denial_started:
                self._deny(403, "WebSocket connection refused")
            elif self.state == OPEN:
                self._send_close(code, reason)
            elif self.state == CONNECTING:
                raise RuntimeError("websocket.close during an HTTP denial response")
            # Closing twice, or after the client left: nothing left to do.
        elif kind == "websocket.http.response.start":
            if self.state != CONNECTING or self._denial_started:
                raise RuntimeError("websocket.http.response.start after the handshake")
            self._denial_started = True
            self._denial_status = int(message["status"])
            self._denial_headers = check_headers(message.get("headers"))
            self._denial_body = b""
        elif kind == "websocket.http.response.body":
            if not self._denial_started or self.response_sent:
                raise RuntimeError("websocket.http.response.body without a response start")
            self._denial_body += bytes(message.get("body", b""))
            if not message.get("more_body", False):
                headers = [(n, v) for n, v in self._denial_headers if n not in (b"content-length", b"connection", b"transfer-encoding")]
                headers += [(b"content-length", str(len(self._denial_body)).encode()), (b"connection", b"close")]
                self.channel.write(encode_head(self._denial_status, headers) + self._denial_body)
                self.response_sent = True
                self._finish(wf.ABNORMAL, "")
                self.channel.close()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket connection")

    def _accept(self, message: dict[str, Any]) -> None:
        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"), (b"sec-websocket-accept", accept_value(self.key))]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        reserved = {b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions"}
        headers += [(n, v) for n, v in check_headers(message.get("headers")) if n not in reserved]
        agreed = negotiate([v for n, v in self.request.headers if n == b"sec-websocket-extensions"])
        if agreed is not None:
            headers.append((b"sec-websocket-extensions", agreed[0]))
            self._deflate = agreed[1]
        self.channel.write(encode_head(101, headers))
        self.state = OPEN
        self._reader = asyncio.create_task(self._read_loop())
        if self.limits.ws_ping_interval > 0:
            self._pinger = asyncio.create_task(self._ping_loop())

    def _deny(self, status: int, text: str) -> None:
        self.response_sent = True
        try:
            self.channel.write(plain_response(status, text))
        except ClientDisconnected:
            pass
        self._finish(wf.ABNORMAL, "")
        self.channel.close()

    def _send_close(self, code: int, reason: str) -> None:
        self.state = CLOSING
        self._close_code, self._close_reason = code, reason
        try:
            self.channel.write(wf.encode_frame(wf.OP_CLOSE, wf.close_payload(code, reason)))
        except ClientDisconnected:
            self._finish(wf.ABNORMAL, "")
            return
        # The client should answer with its close frame; don't wait for it forever.
        self._closer = asyncio.get_running_loop().call_later(self.limits.ws_close_timeout, self.channel.abort)

    def _finish(self, code: int, reason: str) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self._close_code, self._close_reason = code, reason

    # --- the reader: client frames -> queue --------------------------------------------

    async def _read_loop(self) -> None:
        message_kind: int | None = None
        compressed = False
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                frame = await wf.read_frame(self.channel, self.limits.ws_max_message, self._deflate is not None)
                self._last_heard = time.monotonic()
                if frame.opcode == wf.OP_PING:
                    if self.state == OPEN:
                        self.channel.write(wf.encode_frame(wf.OP_PONG, frame.payload))
                    continue
                if frame.opcode == wf.OP_PONG:
                    continue
                if frame.opcode == wf.OP_CLOSE:
                    code, reason = wf.parse_close(frame.payload)
                    if self.state == OPEN:
                        # Echo the close (RFC 6455 5.5.1), then the TCP close is ours to do.
                        self.channel.write(wf.encode_frame(wf.OP_CLOSE, wf.close_payload(code, reason)))
                        self._finish(code, reason)
                    else:
                        self._finish(self._close_code, self._close_reason)
                    break
                if frame.opcode == wf.OP_CONTINUATION:
                    if message_kind is None:
                        raise wf.ProtocolError(wf.PROTOCOL_ERROR, "continuation frame without a message")
                elif message_kind is not None:
                    raise wf.ProtocolError(wf.PROTOCOL_ERROR, "new message inside a fragmented one")
                else:
                    message_kind = frame.opcode
                    compressed = frame.rsv1
                size += len(frame.payload)
                if size > self.limits.ws_max_message:
                    raise wf.ProtocolError(wf.TOO_BIG, "message too big")
                parts.append(frame.payload)
                if not frame.fin:
                    continue
                payload = b"".join(parts)
                if compressed:
                    assert self._deflate is not None  # read_frame refuses RSV1 otherwise
                    payload = self._deflate.decompress(payload, self.limits.ws_max_message)
                kind, message_kind, parts, size, compressed = message_kind, None, [], 0, False
                if self.state != OPEN:
                    continue  # we are closing: data from the client is dropped
                if kind == wf.OP_TEXT:
                    try:
                        event = {"type": "websocket.receive", "text": payload.decode("utf-8")}
                    except UnicodeDecodeError:
                        raise wf.ProtocolError(wf.INVALID_DATA, "text message is not UTF-8") from None
                else:
                    event = {"type": "websocket.receive", "bytes": payload}
                await self._queue.put(event)
        except wf.ProtocolError as error:
            if self.state == OPEN:
                try:
                    self.channel.write(wf.encode_frame(wf.OP_CLOSE, wf.close_payload(error.code, error.reason)))
                except ClientDisconnected:
                    pass
            self._finish(error.code, error.reason)
        except (IncompleteRead, ClientDisconnected, ConnectionError):
            self._finish(wf.ABNORMAL, "")
        finally:
            self._finish(wf.ABNORMAL, "")
            if self._closer:
                self._closer.cancel()
            self.channel.close()
        self._disconnect_queued = True
        await self._queue.put(self._disconnect_message())

    async def _ping_loop(self) -> None:
        interval, timeout = self.limits.ws_ping_interval, self.limits.ws_ping_timeout
        while self.state == OPEN:
            await asyncio.sleep(interval)
            if self.state != OPEN:
                return
            if time.monotonic() - self._last_heard < interval or self._queue.full():
                continue  # heard lately, or we stopped reading because the app is behind
            try:
                self.channel.write(wf.encode_frame(wf.OP_PING, b"aleph-asgi"))
            except ClientDisconnected:
                return
            await asyncio.sleep(timeout)
            if self.state == OPEN and not self._queue.full() and time.monotonic() - self._last_heard >= interval + timeout:
                log.info("websocket client silent after a ping, closing")
                self._send_close(wf.INTERNAL_ERROR, "keepalive ping timeout")

    # --- the end (called by the connection when the app returns) ------------------------

    async def finish(self, failed: bool) -> None:
        if self.state == CONNECTING and not self.response_sent:
            if failed:
                self._deny(500, "Internal Server Error")
            else:
                self._deny(403, "WebSocket connection refused")
        elif self.state == OPEN:
            self._send_close(wf.INTERNAL_ERROR if failed else wf.NORMAL, "")
        if self._reader and not self._reader.done() and self.state != CLOSED:
            # Let the closing handshake complete (bounded by ws_close_timeout via _closer).
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), self.limits.ws_close_timeout + 1)
            except (asyncio.TimeoutError, Exception):
                pass
        for task in (self._reader, self._pinger):
            if task and not task.done():
                task.cancel()
        self.channel.close()

    def going_away(self) -> None:
        """The server is stopping: tell an open client (1012, service restart)."""
        if self.state == OPEN:
            self._send_close(wf.SERVICE_RESTART, "server stopping")
