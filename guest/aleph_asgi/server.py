"""The server: lifespan startup, then listen; on SIGTERM/SIGINT stop, then lifespan shutdown."""

import asyncio
import logging
import signal
import socket
from typing import Any, Callable

from .connection import ASGI_HTTP, Connection
from .lifespan import Lifespan, StartupFailed
from .limits import Limits
from .proxy import LOCAL_NODE, Trusted
from .stream import Channel

log = logging.getLogger("aleph_asgi")

EXIT_OK = 0
EXIT_STARTUP_FAILED = 3


class Server:
    def __init__(self, app: Callable[..., Any], host: str, port: int, limits: Limits, trusted: Trusted = LOCAL_NODE):
        self.app = app
        self.trusted = trusted
        self.host = host
        self.port = port
        self.limits = limits
        self.stopping = asyncio.Event()
        self.connections: dict[Connection, asyncio.Task] = {}
        self.sockets: list[socket.socket] = []
        self._listener: asyncio.base_events.Server | None = None
        self._state: dict[str, Any] | None = None

    async def start(self) -> None:
        """Binds and accepts; call after lifespan startup succeeded."""
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: Channel(self._on_open), self.host, self.port,
                                                  reuse_address=True, backlog=1024)
        self.sockets = list(self._listener.sockets)
        for sock in self.sockets:
            address = sock.getsockname()
            log.info("listening on http://%s:%d", address[0], address[1])

    def _on_open(self, channel: Channel) -> None:
        if self.stopping.is_set():
            channel.abort()
            return
        connection = Connection(channel, self.app, self.limits, self._state, self.stopping, self.trusted)
        task = asyncio.create_task(connection.run())
        self.connections[connection] = task
        task.add_done_callback(lambda _: self.connections.pop(connection, None))

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then drop the rest."""
        self.stopping.set()
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.connections):
            connection.stop()
        tasks = list(self.connections.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.limits.graceful_timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d request(s) still running at stop", len(pending))
                await asyncio.wait(pending, timeout=1)
        if self._listener is not None:
            await self._listener.wait_closed()


async def serve(app: Callable[..., Any], host: str = "0.0.0.0", port: int = 8080, limits: Limits | None = None,
                ready: Callable[[Server], None] | None = None, stop: asyncio.Event | None = None,
                trusted: Trusted = LOCAL_NODE) -> int:
    """Runs until SIGTERM/SIGINT (or `stop` is set); returns the process exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: `stop` is set by the caller
    try:
        return await _serve(app, host, port, limits or Limits(), ready, stop, trusted)
    finally:
        for sig in installed:
            # A second signal while we exit must not turn a clean stop into a kill.
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


async def _serve(app: Callable[..., Any], host: str, port: int, limits: Limits,
                 ready: Callable[[Server], None] | None, stop: asyncio.Event, trusted: Trusted) -> int:
    lifespan = Lifespan(app, limits, ASGI_HTTP)
    startup = asyncio.create_task(lifespan.startup())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not startup.done():
        # Stopped while starting: nothing was served, end the startup and leave.
        startup.cancel()
        await asyncio.gather(startup, return_exceptions=True)
        await lifespan.shutdown()
        return EXIT_OK
    stopped.cancel()
    try:
        startup.result()
    except StartupFailed as error:
        log.error("lifespan startup failed: %s", error)
        return EXIT_STARTUP_FAILED

    server = Server(app, host, port, limits, trusted)
    server._state = lifespan.state if lifespan.supported else None
    await server.start()
    if ready:
        ready(server)
    await stop.wait()
    log.info("stopping")
    await server.stop()
    await lifespan.shutdown()
    log.info("stopped")
    return EXIT_OK
