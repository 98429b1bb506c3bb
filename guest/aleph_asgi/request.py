"""Parsing and checking an HTTP/1.x request head (RFC 9112)."""

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .errors import HttpError
from .limits import Limits

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, obs-text, space and tab; no other control bytes.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Request targets: visible ASCII only (RFC 3986 characters; raw UTF-8 must be percent-encoded).
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")


@dataclass
class Request:
    method: str
    http_version: str  # "1.0" or "1.1"
    raw_path: bytes
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # names lowercased, in arrival order
    keep_alive: bool
    content_length: int | None  # None when chunked
    chunked: bool
    expect_continue: bool
    websocket: bool  # asks for an upgrade to WebSocket

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The comma-separated, lowercased tokens of every `name` header."""
    found: list[bytes] = []
    for key, value in headers:
        if key == name:
            found.extend(part.strip().lower() for part in value.split(b",") if part.strip())
    return found


def parse_head(head: bytes, limits: Limits) -> Request:
    """`head` is everything up to and including the blank line; raises HttpError."""
    lines = head[:-4].split(b"\r\n") if head.endswith(b"\r\n\r\n") else head.split(b"\r\n")
    request_line = lines[0]
    if len(request_line) > limits.max_request_line:
        raise HttpError(414, "request line too long")
    if len(lines) - 1 > limits.max_headers:
        raise HttpError(431, "too many header fields")

    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpError(400, "malformed method")
    if version == b"HTTP/1.1":
        http_version = "1.1"
    elif version == b"HTTP/1.0":
        http_version = "1.0"
    elif _VERSION.fullmatch(version):
        raise HttpError(505, "HTTP version not supported")
    else:
        raise HttpError(400, "malformed HTTP version")

    headers = [_parse_field(line) for line in lines[1:]]
    raw_path, query_string = _parse_target(method, target)

    hosts = [value for key, value in headers if key == b"host"]
    if http_version == "1.1" and len(hosts) != 1:
        raise HttpError(400, "exactly one Host header is required")
    if len(hosts) > 1:
        raise HttpError(400, "more than one Host header")

    content_length, chunked = _body_framing(headers, http_version)
    connection = tokens(headers, b"connection")
    if http_version == "1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    websocket = (
        method == b"GET"
        and b"upgrade" in connection
        and b"websocket" in tokens(headers, b"upgrade")
    )
    expect = [value.lower() for key, value in headers if key == b"expect"]
    if expect and expect != [b"100-continue"]:
        raise HttpError(417, "only Expect: 100-continue is supported")

    return Request(
        method=method.decode("ascii"),
        http_version=http_version,
        raw_path=raw_path,
        path=unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        query_string=query_string,
        headers=headers,
        keep_alive=keep_alive,
        content_length=content_length,
        chunked=chunked,
        expect_continue=bool(expect) and http_version == "1.1",
        websocket=websocket,
    )


def _parse_field(line: bytes) -> tuple[bytes, bytes]:
    if not line or line[:1] in (b" ", b"\t"):
        raise HttpError(400, "malformed header field (line folding is not allowed)")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise HttpError(400, "malformed header field name")
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise HttpError(400, "control character in header field value")
    return name.lower(), value


def _parse_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    if not target or _BAD_TARGET.search(target) or b"#" in target:
        raise HttpError(400, "malformed request target")
    if target.startswith(b"/"):
        pass
    elif target == b"*" and method == b"OPTIONS":
        return b"*", b""
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        # absolute-form (RFC 9112 3.2.2): keep the path and query, the Host header rules.
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash < 0 or (0 <= query < slash):
            target = b"/" + (rest[query:] if query >= 0 else b"")
        else:
            target = rest[slash:]
    else:
        raise HttpError(400, "malformed request target")
    raw_path, _, query_string = target.partition(b"?")
    return raw_path, query_string


def _body_framing(headers: list[tuple[bytes, bytes]], http_version: str) -> tuple[int | None, bool]:
    """(content_length, chunked); refuses every ambiguous combination (request smuggling)."""
    has_te = any(key == b"transfer-encoding" for key, _ in headers)
    lengths = [value for key, value in headers if key == b"content-length"]
    if has_te:
        if lengths:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if http_version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if tokens(headers, b"transfer-encoding") != [b"chunked"]:
            raise HttpError(501, "only Transfer-Encoding: chunked is supported")
        return None, True
    if not lengths:
        return 0, False
    values = {part.strip() for value in lengths for part in value.split(b",")}
    if len(values) != 1:
        raise HttpError(400, "conflicting Content-Length values")
    value = values.pop()
    if not value.isdigit() or len(value) > 18:
        raise HttpError(400, "malformed Content-Length")
    return int(value), False
