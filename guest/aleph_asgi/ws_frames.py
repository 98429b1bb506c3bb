"""RFC 6455 framing: reading client frames, writing server frames, close payloads."""

import struct
from dataclasses import dataclass

from .stream import Channel

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_KNOWN = {OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}

# Close codes (RFC 6455 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
NO_STATUS = 1005
ABNORMAL = 1006
INVALID_DATA = 1007
TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False  # permessage-deflate: the message is compressed


def unmask(payload: bytes, mask: bytes) -> bytes:
    # One big-integer XOR: fast enough in pure Python for multi-megabyte frames.
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


async def read_frame(channel: Channel, max_size: int, rsv1_allowed: bool = False) -> Frame:
    """The next client frame; ProtocolError for anything RFC 6455 forbids a client to send.
    `rsv1_allowed`: permessage-deflate was negotiated (RSV1 marks a compressed message)."""
    first, second = await channel.read_exactly(2)
    fin = bool(first & 0x80)
    rsv1 = bool(first & 0x40)
    opcode = first & 0x0F
    if first & 0x30 or (rsv1 and not (rsv1_allowed and opcode in (OP_TEXT, OP_BINARY))):
        # RSV1 only on the first frame of a data message (RFC 7692 6), and only when negotiated.
        raise ProtocolError(PROTOCOL_ERROR, "reserved bits set")
    if opcode not in _KNOWN:
        raise ProtocolError(PROTOCOL_ERROR, "unknown opcode")
    if not second & 0x80:
        raise ProtocolError(PROTOCOL_ERROR, "client frames must be masked")
    length = second & 0x7F
    if opcode >= OP_CLOSE and (length > 125 or not fin):
        raise ProtocolError(PROTOCOL_ERROR, "control frames must be short and unfragmented")
    if length == 126:
        (length,) = struct.unpack("!H", await channel.read_exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await channel.read_exactly(8))
        if length >> 63:
            raise ProtocolError(PROTOCOL_ERROR, "frame length out of range")
    if length > max_size:
        raise ProtocolError(TOO_BIG, "frame too big")
    mask = await channel.read_exactly(4)
    payload = unmask(await channel.read_exactly(length), mask)
    return Frame(fin, opcode, payload, rsv1)


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A server frame (never masked); `rsv1` marks a compressed message."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError(PROTOCOL_ERROR, "close frame with a one-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not valid_close_code(code):
        raise ProtocolError(PROTOCOL_ERROR, "invalid close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def close_payload(code: int, reason: str = "") -> bytes:
    if code == NO_STATUS:
        return b""
    data = reason.encode("utf-8")
    # A control frame carries at most 125 bytes: 2 for the code, the rest for the reason.
    while len(data) > 123:
        reason = reason[:-1]
        data = reason.encode("utf-8")
    return struct.pack("!H", code) + data
