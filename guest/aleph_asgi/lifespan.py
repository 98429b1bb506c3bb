"""The ASGI lifespan protocol: startup before we listen, shutdown when we stop."""

import asyncio
import logging
import traceback
from typing import Any, Callable

from .limits import Limits

log = logging.getLogger("aleph_asgi")


class StartupFailed(Exception):
    pass


class Lifespan:
    def __init__(self, app: Callable[..., Any], limits: Limits, asgi: dict[str, str]):
        self.app = app
        self.limits = limits
        self.state: dict[str, Any] = {}  # the lifespan "state" extension, copied into every scope
        self.supported = True
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._received_any = False
        self._startup: asyncio.Future | None = None
        self._shutdown: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._scope = {"type": "lifespan", "asgi": asgi, "state": self.state}

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = asyncio.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            async with asyncio.timeout(self.limits.startup_timeout):
                await asyncio.wait({self._startup, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            self._task.cancel()
            raise StartupFailed(f"lifespan startup did not complete within {self.limits.startup_timeout:g} s") from None
        if self._startup.done():
            ok, message = self._startup.result()
            if not ok:
                raise StartupFailed(message or "lifespan startup failed")
            return
        # The app ended before answering the startup event.
        error = self._task.exception()
        if error is not None and self._received_any:
            raise StartupFailed(f"lifespan startup raised {type(error).__name__}: {error}")
        self.supported = False
        detail = f" ({type(error).__name__}: {error})" if error is not None else ""
        log.info("the app does not support lifespan%s; serving without it", detail)

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        assert self._shutdown is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            async with asyncio.timeout(self.limits.shutdown_timeout):
                await asyncio.wait({self._shutdown, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            log.warning("lifespan shutdown did not complete within %g s", self.limits.shutdown_timeout)
        else:
            if self._shutdown.done():
                ok, message = self._shutdown.result()
                if not ok:
                    log.warning("lifespan shutdown failed: %s", message)
            elif self._task.exception() is not None:
                log.warning("lifespan shutdown raised %r", self._task.exception())
        if not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self.app(self._scope, self._receive, self._send)
        except BaseException as error:
            if self._received_any and not isinstance(error, asyncio.CancelledError):
                log.error("lifespan: the app raised\n%s", "".join(traceback.format_exception(error)).rstrip())
            raise

    async def _receive(self) -> dict[str, Any]:
        self._received_any = True
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        assert self._startup is not None and self._shutdown is not None
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed") and not self._startup.done():
            self._startup.set_result((kind.endswith("complete"), str(message.get("message", ""))))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and not self._shutdown.done():
            self._shutdown.set_result((kind.endswith("complete"), str(message.get("message", ""))))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in lifespan")
