"""One client connection: requests one after the other (keep-alive), or one WebSocket."""

import asyncio
import logging
import traceback
from typing import Any, Callable

from .body import body_reader
from .errors import ClientDisconnected, HttpError, IncompleteRead, TooLarge
from .http_cycle import HttpCycle
from .limits import Limits
from .proxy import Trusted, apply_forwarded
from .request import Request, parse_head
from .response import plain_response
from .stream import Channel
from .ws_cycle import WebSocketCycle, check_handshake

log = logging.getLogger("aleph_asgi")

ASGI_HTTP = {"version": "3.0", "spec_version": "2.4"}
ASGI_WEBSOCKET = {"version": "3.0", "spec_version": "2.4"}


class Connection:
    def __init__(self, channel: Channel, app: Callable[..., Any], limits: Limits, state: dict[str, Any] | None,
                 stopping: asyncio.Event, trusted: Trusted):
        self.channel = channel
        self.trusted = trusted
        self.app = app
        self.limits = limits
        self.state = state
        self.stopping = stopping
        self.idle = True  # between requests: safe to close when the server stops
        self.websocket: WebSocketCycle | None = None
        # App calls still running after their response was complete (background tasks).
        self.background: set[asyncio.Future] = set()

    async def run(self) -> None:
        try:
            first = True
            while not self.stopping.is_set():
                self.idle = True
                wait = self.limits.head_timeout if first else self.limits.keep_alive_timeout
                try:
                    async with asyncio.timeout(wait):
                        await self.channel.wait_readable()
                except TimeoutError:
                    return
                if self.channel.at_eof or self.channel.is_closing:
                    return
                self.idle = False
                request = await self._read_request()
                if request is None:
                    return
                if request.websocket:
                    await self._serve_websocket(request)
                    return
                if not await self._serve_http(request):
                    return
                first = False
        except (ClientDisconnected, ConnectionError):
            pass
        finally:
            self.channel.close()
            if self.background:
                # The server's graceful stop waits for this task, so for these calls too.
                try:
                    await asyncio.gather(*self.background, return_exceptions=True)
                except asyncio.CancelledError:
                    for call in self.background:
                        call.cancel()
                    raise

    async def _read_request(self) -> Request | None:
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                while True:
                    head = await self.channel.read_until(b"\r\n\r\n", self.limits.max_head)
                    head = head.lstrip(b"\r\n")  # RFC 9112 2.2: ignore empty lines before a request
                    if head:
                        break
            return parse_head(head if head.endswith(b"\r\n\r\n") else head + b"\r\n\r\n", self.limits)
        except TimeoutError:
            self._refuse(408, "request head timed out")
        except TooLarge:
            self._refuse(431, "request head too large")
        except IncompleteRead:
            pass  # the client left mid-head: nobody to answer
        except HttpError as error:
            self._refuse(error.status, error.reason, error.headers)
        return None

    def _refuse(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        try:
            self.channel.write(plain_response(status, reason, headers))
        except ClientDisconnected:
            pass

    def _scope(self, request: Request, kind: str) -> dict[str, Any]:
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": ASGI_HTTP if kind == "http" else ASGI_WEBSOCKET,
            "http_version": request.http_version,
            "scheme": "http" if kind == "http" else "ws",
            "path": request.path,
            "raw_path": request.raw_path,
            "query_string": request.query_string,
            "root_path": "",
            "headers": request.headers,
            "client": self.channel.address("peername"),
            "server": self.channel.address("sockname"),
            "extensions": {},
        }
        if kind == "http":
            scope["method"] = request.method
        else:
            scope["subprotocols"] = [
                part.strip().decode("latin-1")
                for name, value in request.headers if name == b"sec-websocket-protocol"
                for part in value.split(b",") if part.strip()
            ]
            scope["extensions"] = {"websocket.http.response": {}}
        if self.state is not None:
            scope["state"] = dict(self.state)
        apply_forwarded(scope, self.trusted)
        return scope

    async def _serve_http(self, request: Request) -> bool:
        """Runs the app for one request; True when the connection can carry another.

        Returns as soon as the response is complete: what the app does after its last
        body message (a background task) runs on while the next request is read.
        """
        body = body_reader(self.channel, request.content_length, request.chunked, self.limits)
        cycle = HttpCycle(self.channel, request, body, self.limits, self.stopping)
        call = asyncio.ensure_future(self._call_app(request, cycle))
        # One future for "complete or returned": cheaper per request than asyncio.wait.
        call.add_done_callback(lambda _: cycle.settled.done() or cycle.settled.set_result(None))
        try:
            await cycle.settled
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not call.done():
            self.background.add(call)
            call.add_done_callback(self.background.discard)
        elif not cycle.complete:
            if call.result() and (cycle.broken or self.channel.peer_gone.is_set()):
                self.channel.abort()  # the client left; the app stopping early is no error
            elif call.result():
                log.error("the app returned without completing its response to %s %s", request.method,
                          request.raw_path.decode("ascii", "replace"))
                self._abandon(cycle)
            return False
        # Complete, even if the app raised after its last body message (Starlette
        # re-raises after sending its 500): the response is whole, the connection clean.
        return cycle.keep_alive and not cycle.broken

    async def _call_app(self, request: Request, cycle: HttpCycle) -> bool:
        """False when the app raised (answered with 500, or the response cut, unless it was complete)."""
        try:
            await self.app(self._scope(request, "http"), cycle.receive, cycle.send)
        except ClientDisconnected:
            return False
        except Exception as error:
            log.error("the app raised on %s %s\n%s", request.method, request.raw_path.decode("ascii", "replace"),
                      "".join(traceback.format_exception(error)).rstrip())
            if not cycle.complete:
                self._abandon(cycle)
            return False
        return True

    def _abandon(self, cycle: HttpCycle) -> None:
        if cycle.head_sent or cycle.broken:
            # Mid-response: the only honest signal left is ending the connection without
            # the rest of the body (no last chunk, or fewer bytes than Content-Length).
            # What was sent still goes out first, as with uvicorn, within send_timeout.
            self.channel.close(flush_timeout=self.limits.send_timeout)
        else:
            cycle.head_sent = True  # so a pending head flush of the app's own start never follows
            try:
                # The same bytes as uvicorn's answer, so clients and tests cannot tell them apart.
                self.channel.write(plain_response(500, "Internal Server Error", newline=False))
            except ClientDisconnected:
                pass

    async def _serve_websocket(self, request: Request) -> None:
        try:
            key = check_handshake(request)
        except HttpError as error:
            self._refuse(error.status, error.reason, error.headers)
            return
        cycle = WebSocketCycle(self.channel, request, key, self.limits)
        self.websocket = cycle
        failed = False
        try:
            await self.app(self._scope(request, "websocket"), cycle.receive, cycle.send)
        except ClientDisconnected:
            pass
        except Exception as error:
            failed = True
            log.error("the app raised on WebSocket %s\n%s", request.raw_path.decode("ascii", "replace"),
                      "".join(traceback.format_exception(error)).rstrip())
        await cycle.finish(failed)

    def stop(self) -> None:
        """The server is stopping: close when idle, tell WebSocket clients."""
        if self.websocket is not None:
            self.websocket.going_away()
        elif self.idle:
            self.channel.close()
