"""permessage-deflate (RFC 7692) on zlib: negotiation and per-message (de)compression.

We always answer `server_no_context_takeover`: each message we send is compressed
on its own, so no compressor (about 256 KiB of zlib state) stays allocated per
connection. The client may keep its context: one inflater per connection reads it.
"""

import zlib

from .ws_frames import INVALID_DATA, TOO_BIG, ProtocolError

NAME = b"permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; RFC 7692 7.2.1 drops it on the wire
MIN_SIZE = 64  # smaller messages go uncompressed (allowed: RSV1 is per message)


class Deflate:
    def __init__(self, server_bits: int):
        self._bits = server_bits
        self._inflater = zlib.decompressobj(-15)  # accepts any client window up to 2^15

    def compress(self, data: bytes) -> bytes:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._bits)
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """Bounded: a small message that inflates past `max_size` is refused, never expanded."""
        try:
            out = self._inflater.decompress(data + _TAIL, max_size + 1)
        except zlib.error:
            raise ProtocolError(INVALID_DATA, "bad compressed message") from None
        if len(out) > max_size:
            raise ProtocolError(TOO_BIG, "message too big")
        return out


def _params(offer: bytes) -> dict[bytes, bytes | None] | None:
    """The offer's parameters, or None if it is not permessage-deflate or has a duplicate."""
    name, *rest = [part.strip() for part in offer.split(b";")]
    if name.lower() != NAME:
        return None
    params: dict[bytes, bytes | None] = {}
    for part in rest:
        key, equals, value = part.partition(b"=")
        key = key.strip().lower()
        if key in params:
            return None
        params[key] = value.strip().strip(b'"') if equals else None
    return params


def negotiate(offers: list[bytes]) -> tuple[bytes, Deflate] | None:
    """The first acceptable offer among the client's Sec-WebSocket-Extensions values:
    (the response header value, the codec); None when there is none we can honour."""
    for value in offers:
        for offer in value.split(b","):
            params = _params(offer)
            if params is None:
                continue
            answer = [NAME, b"server_no_context_takeover"]
            server_bits = 15
            acceptable = True
            for key, arg in params.items():
                if key == b"server_no_context_takeover" and arg is None:
                    pass
                elif key == b"client_no_context_takeover" and arg is None:
                    answer.append(b"client_no_context_takeover")
                elif key == b"server_max_window_bits" and arg is not None and arg.isdigit() and 9 <= int(arg) <= 15:
                    # zlib's raw deflate has no 256-byte window: an offer of 8 is declined.
                    server_bits = int(arg)
                    answer.append(b"server_max_window_bits=" + arg)
                elif key == b"client_max_window_bits" and (arg is None or (arg.isdigit() and 8 <= int(arg) <= 15)):
                    pass  # our inflater takes any window; not answering leaves the client's choice
                else:
                    acceptable = False
                    break
            if acceptable:
                return b"; ".join(answer), Deflate(server_bits)
    return None
