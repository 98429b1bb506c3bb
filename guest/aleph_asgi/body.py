"""Request bodies, read only when the app asks (Content-Length or chunked)."""

import asyncio

from .errors import HttpError, IncompleteRead, TooLarge
from .limits import Limits
from .stream import Channel


class BodyReader:
    """`read()` returns the next piece of the body; `done` once all of it was read."""

    done: bool

    async def read(self) -> bytes:
        raise NotImplementedError


class FixedBody(BodyReader):
    def __init__(self, channel: Channel, length: int, limits: Limits):
        self._channel = channel
        self._remaining = length
        self._limits = limits
        self.done = length == 0

    async def read(self) -> bytes:
        if self.done:
            return b""
        async with _body_deadline(self._limits):
            data = await self._channel.read_some(min(self._limits.body_chunk, self._remaining))
        if not data:
            raise IncompleteRead()
        self._remaining -= len(data)
        self.done = self._remaining == 0
        return data


class ChunkedBody(BodyReader):
    def __init__(self, channel: Channel, limits: Limits):
        self._channel = channel
        self._limits = limits
        self._chunk_left = 0  # bytes of the current chunk not read yet
        self.done = False

    async def read(self) -> bytes:
        if self.done:
            return b""
        async with _body_deadline(self._limits):
            if self._chunk_left == 0:
                self._chunk_left = await self._next_size()
                if self._chunk_left == 0:
                    await self._skip_trailers()
                    self.done = True
                    return b""
            data = await self._channel.read_some(min(self._limits.body_chunk, self._chunk_left))
            if not data:
                raise IncompleteRead()
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                if await self._channel.read_exactly(2) != b"\r\n":
                    raise HttpError(400, "malformed chunked body")
                # Say "done" together with the last data when the terminator is already here.
                if self._channel.buffered >= 5 and await self._peek_last_chunk():
                    self.done = True
            return data

    async def _next_size(self) -> int:
        try:
            line = await self._channel.read_until(b"\r\n", self._limits.max_chunk_line)
        except TooLarge:
            raise HttpError(400, "chunk size line too long") from None
        size = line[:-2].split(b";", 1)[0].strip(b" \t")
        if not size or len(size) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in size):
            raise HttpError(400, "malformed chunk size")
        return int(size, 16)

    async def _skip_trailers(self) -> None:
        read = 0
        while True:
            try:
                line = await self._channel.read_until(b"\r\n", self._limits.max_head - read)
            except TooLarge:
                raise HttpError(431, "chunked trailers too large") from None
            read += len(line)
            if line == b"\r\n":
                return

    async def _peek_last_chunk(self) -> bool:
        # A last chunk without extensions or trailers: exactly "0\r\n\r\n" at the buffer's start.
        if not self._channel.starts_with(b"0\r\n\r\n"):
            return False
        await self._channel.read_exactly(5)
        return True


def body_reader(channel: Channel, content_length: int | None, chunked: bool, limits: Limits) -> BodyReader:
    if chunked:
        return ChunkedBody(channel, limits)
    return FixedBody(channel, content_length or 0, limits)


class _body_deadline:
    """A body read that waits longer than `body_timeout` becomes a 408."""

    def __init__(self, limits: Limits):
        self._timeout = asyncio.timeout(limits.body_timeout)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, kind, value, traceback) -> bool:
        try:
            await self._timeout.__aexit__(kind, value, traceback)
        except TimeoutError:
            raise HttpError(408, "request body timed out") from None
        return False
