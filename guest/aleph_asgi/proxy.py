"""What the node in front tells us about the client, believed only from the node's address.

The edge ends TLS and routes by path, so the app would otherwise see `http`, the
edge's address as its client and links rooted at the node's `/`. The edge drops
every X-Forwarded-* a client sends and sets its own (src/proxy/headers.ts): a
trusted peer's values are the node's facts.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trusted:
    addresses: frozenset[str] | set[str]  # peer IPs, or {"*"}

    def __contains__(self, peer: str | None) -> bool:
        return "*" in self.addresses or (peer is not None and peer in self.addresses)


LOCAL_NODE = Trusted(frozenset({"127.0.0.1"}))


def apply_forwarded(scope: dict[str, Any], trusted: Trusted) -> None:
    """Sets `scheme`, `client` and `root_path` from the node's X-Forwarded-* headers."""
    client = scope.get("client")
    if (client[0] if client else None) not in trusted:
        return
    proto = forwarded_for = prefix = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
        elif name == b"x-forwarded-for":
            forwarded_for = value.decode("latin-1")
        elif name == b"x-forwarded-prefix":
            prefix = value.decode("latin-1").strip()
    if proto in ("http", "https"):
        secure = proto == "https"
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = proto
    if forwarded_for:
        # The nearest hop is the last one; the node sends exactly one. The port is not forwarded.
        host = forwarded_for.rsplit(",", 1)[-1].strip()
        if host:
            scope["client"] = (host, 0)
    if prefix and prefix.startswith("/"):
        # Path-routed (`/vm/<hash>/...`): the app is mounted there; `path` stays the app's own.
        scope["root_path"] = prefix.rstrip("/")
