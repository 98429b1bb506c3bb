"""Encoding response heads and the server's own plain-text answers."""

import http
import re

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def reason_phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""

def check_headers(raw: object) -> list[tuple[bytes, bytes]]:
    """The app's headers as (lowercase name, value) pairs; TypeError/ValueError when malformed."""
    if raw is None:
        return []
    checked: list[tuple[bytes, bytes]] = []
    for pair in raw:  # type: ignore[union-attr]
        name, value = pair
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        if not isinstance(name, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
            raise TypeError("header names and values must be bytes")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {bytes(name)!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"invalid header value for {bytes(name)!r}")
        checked.append((bytes(name).lower(), bytes(value)))
    return checked

def encode_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))]
    if not any(name == b"server" for name, _ in headers):
        lines.append(b"server: aleph_asgi\r\n")  # as uvicorn names itself; the app's own wins
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines)

def plain_response(status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None, close: bool = True,
                   newline: bool = True) -> bytes:
    """A complete short answer from the server itself (errors, refusals)."""
    body = (text + ("\n" if newline else "")).encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *(extra or []),
    ]
    if close:
        headers.append((b"connection", b"close"))
    return encode_head(status, headers) + body
