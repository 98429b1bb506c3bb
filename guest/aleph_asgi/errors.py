"""Errors shared by the protocol modules."""


class ClientDisconnected(OSError):
    """The client went away; raised by `send()` as the ASGI spec (2.4) asks."""


class HttpError(Exception):
    """A request we refuse before the app sees it; becomes a plain-text error response."""

    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class TooLarge(Exception):
    """More bytes than the limit before the expected delimiter."""


class IncompleteRead(Exception):
    """The connection ended in the middle of something."""


class AppLoadError(Exception):
    """The --app value cannot be resolved to a callable."""
