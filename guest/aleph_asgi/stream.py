"""One TCP connection as an asyncio Protocol with async reads and writes.

Reads come from a buffer the transport fills; when it holds more than `high_water`
bytes the transport stops reading, so a client that sends faster than the app
consumes is held back by TCP (backpressure) instead of filling memory. Writes go
straight to the transport; `drain()` waits while the kernel and transport buffers
are full.
"""

import asyncio
from typing import Callable

from .errors import ClientDisconnected, IncompleteRead, TooLarge

HIGH_WATER = 256 * 1024  # read buffer and write buffer; one full body_chunk fits


class Channel(asyncio.Protocol):
    def __init__(self, on_open: Callable[["Channel"], None], high_water: int = HIGH_WATER):
        self._on_open = on_open
        self._high = high_water
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._read_waiter: asyncio.Future | None = None
        self._drain_waiters: list[asyncio.Future] = []
        self.transport: asyncio.Transport | None = None
        # Set when the client half-closed or the connection is gone.
        self.peer_gone = asyncio.Event()
        self.closed = asyncio.Event()

    # --- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._high)
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake_reader()
        if len(self._buffer) > self._high and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        self._eof = True
        self.peer_gone.set()
        self._wake_reader()
        return True  # keep the write side open: a half-closed client still gets its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = True
        self.peer_gone.set()
        self.closed.set()
        self._wake_reader()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ClientDisconnected("connection lost"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- reading --------------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter and not waiter.done():
            waiter.set_result(None)

    async def _wait_for_data(self) -> None:
        if self._eof:
            return
        if self._reading_paused and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        self._read_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._read_waiter
        finally:
            self._read_waiter = None

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._reading_paused and len(self._buffer) <= self._high and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def starts_with(self, prefix: bytes) -> bool:
        return self._buffer.startswith(prefix)

    async def wait_readable(self) -> None:
        """Returns when at least one byte is buffered or the client is done sending."""
        while not self._buffer and not self._eof:
            await self._wait_for_data()

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        """Bytes up to and including `separator`; TooLarge past `limit`, IncompleteRead at EOF."""
        start = 0
        while True:
            index = self._buffer.find(separator, start)
            if index >= 0:
                end = index + len(separator)
                if end > limit:
                    raise TooLarge()
                return self._take(end)
            if len(self._buffer) > limit:
                raise TooLarge()
            if self._eof:
                raise IncompleteRead()
            start = max(0, len(self._buffer) - len(separator) + 1)
            await self._wait_for_data()

    async def read_some(self, n: int) -> bytes:
        """Up to `n` bytes, as soon as any are there; b'' once the client is done sending."""
        while not self._buffer:
            if self._eof:
                return b""
            await self._wait_for_data()
        return self._take(min(n, len(self._buffer)))

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self._eof:
                raise IncompleteRead()
            await self._wait_for_data()
        return self._take(n)

    # --- writing --------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self._lost or self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.is_closing:
            raise ClientDisconnected("connection closed")
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Waits until the client has taken our bytes; drops it after `timeout` seconds."""
        if self._lost:
            raise ClientDisconnected("connection lost")
        if not self._writing_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            self.abort()
            raise ClientDisconnected("client stopped reading") from None

    def close(self, flush_timeout: float | None = None) -> None:
        """Closes after the buffered bytes are sent; with `flush_timeout`, a client not
        taking them in that time is dropped (without it, the bytes are at most a head)."""
        if self.transport and not self.transport.is_closing():
            self.transport.close()
            if flush_timeout is not None:
                asyncio.get_running_loop().call_later(flush_timeout, self.abort)

    def abort(self) -> None:
        if self.transport:
            self.transport.abort()

    def address(self, which: str) -> tuple[str, int] | None:
        info = self.transport.get_extra_info(which) if self.transport else None
        if isinstance(info, tuple) and len(info) >= 2:
            return (str(info[0]), int(info[1]))
        return None
