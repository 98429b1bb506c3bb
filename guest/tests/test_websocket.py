"""WebSocket (RFC 6455) through real sockets: handshake, echo, fragments, limits, closing."""

import base64
import hashlib
import json
import os
import signal
import struct
import time
import zlib

from .support import Reader, ServerProcess, ServerTestCase, closed_by_peer, close_code, request, ws_connect, ws_frame, ws_read

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


class WebSocketTest(ServerTestCase):
    limits = ["ws_max_message=2097152"]

    def open(self, path="/ws", extra=None):
        sock, reader, status, headers = ws_connect(self.server, path, extra)
        self.assertEqual(status, 101)
        self.addCleanup(sock.close)
        return sock, reader, dict(headers)

    def test_handshake_accept_value_and_subprotocol(self):
        sock = self.server.connect()
        self.addCleanup(sock.close)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(request("/ws", headers={"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
                                             "Sec-WebSocket-Key": key.decode(), "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Protocol": "chat, superchat"}))
        status, headers = Reader(sock).head()
        headers = dict(headers)
        self.assertEqual(status, 101)
        expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.assertEqual(headers["sec-websocket-accept"], expected)
        self.assertEqual(headers["sec-websocket-protocol"], "chat")

    def test_text_and_binary_echo(self):
        sock, reader, _ = self.open()
        sock.sendall(ws_frame(TEXT, "héllo".encode()))
        self.assertEqual(ws_read(reader), (TEXT, True, "héllo".encode()))
        sock.sendall(ws_frame(BINARY, b"\x00\x01\xff"))
        self.assertEqual(ws_read(reader), (BINARY, True, b"\x00\x01\xff"))

    def test_fragmented_message_with_a_ping_in_between(self):
        sock, reader, _ = self.open()
        sock.sendall(ws_frame(TEXT, b"frag", fin=False))
        sock.sendall(ws_frame(PING, b"are you there"))
        self.assertEqual(ws_read(reader), (PONG, True, b"are you there"))
        sock.sendall(ws_frame(CONT, b"men", fin=False) + ws_frame(CONT, b"ted", fin=True))
        self.assertEqual(ws_read(reader), (TEXT, True, b"fragmented"))

    def test_large_frames(self):
        sock, reader, _ = self.open()
        for size in (125, 126, 65535, 65536, 1024 * 1024 + 7):
            payload = os.urandom(size)
            sock.sendall(ws_frame(BINARY, payload))
            opcode, fin, echoed = ws_read(reader)
            self.assertEqual((opcode, len(echoed)), (BINARY, size))
            self.assertEqual(echoed, payload)

    def test_client_close_is_echoed_and_reaches_the_app(self):
        sock, reader, _ = self.open()
        sock.sendall(ws_frame(CLOSE, struct.pack("!H", 4321) + b"bye"))
        opcode, _, payload = ws_read(reader)
        self.assertEqual((opcode, close_code(payload)), (CLOSE, 4321))
        self.assertTrue(closed_by_peer(sock, 3))
        self.assertIn("ws:4321", self.disconnects())

    def test_app_close_with_code(self):
        sock, reader, _ = self.open()
        sock.sendall(ws_frame(TEXT, b"close-me"))
        opcode, _, payload = ws_read(reader)
        self.assertEqual((opcode, close_code(payload), payload[2:]), (CLOSE, 4001, b"asked"))
        sock.sendall(ws_frame(CLOSE, payload[:2]))
        self.assertTrue(closed_by_peer(sock, 3))

    def protocol_error(self, frame: bytes, code: int):
        sock, reader, _ = self.open()
        sock.sendall(frame)
        opcode, _, payload = ws_read(reader)
        self.assertEqual((opcode, close_code(payload)), (CLOSE, code))
        self.assertTrue(closed_by_peer(sock, 3))

    def test_unmasked_frame_is_a_protocol_error(self):
        self.protocol_error(ws_frame(TEXT, b"hi", mask=False), 1002)

    def test_reserved_bits_and_opcodes(self):
        self.protocol_error(ws_frame(TEXT, b"hi", rsv=0x40), 1002)
        self.protocol_error(ws_frame(0x3, b"hi"), 1002)
        self.protocol_error(ws_frame(PING, b"x" * 126), 1002)
        self.protocol_error(ws_frame(PING, b"x", fin=False), 1002)
        self.protocol_error(ws_frame(CONT, b"orphan"), 1002)
        self.protocol_error(ws_frame(TEXT, b"a", fin=False) + ws_frame(TEXT, b"b"), 1002)
        self.protocol_error(ws_frame(CLOSE, struct.pack("!H", 1005)), 1002)
        self.protocol_error(ws_frame(CLOSE, b"\x03"), 1002)

    def deflate_open(self, offer="permessage-deflate; client_max_window_bits"):
        sock, reader, headers = self.open(extra={"Sec-WebSocket-Extensions": offer})
        return sock, reader, headers.get("sec-websocket-extensions")

    def test_permessage_deflate_both_ways(self):
        sock, reader, agreed = self.deflate_open()
        self.assertEqual(agreed, "permessage-deflate; server_no_context_takeover")
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)  # the client keeps its context
        inflate = lambda data: zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
        for text in ("compress me " * 20, "compress me " * 21):
            compressed = deflater.compress(text.encode()) + deflater.flush(zlib.Z_SYNC_FLUSH)
            sock.sendall(ws_frame(TEXT, compressed[:-4], rsv=0x40))
            first, second = reader.exactly(2)
            self.assertEqual((first & 0x40, first & 0x0F), (0x40, TEXT))  # compressed echo
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", reader.exactly(2))
            self.assertEqual(inflate(reader.exactly(n)).decode(), text)
        sock.sendall(ws_frame(TEXT, b"tiny"))  # uncompressed in, and too small to compress out
        self.assertEqual(ws_read(reader), (TEXT, True, b"tiny"))

    def test_permessage_deflate_bomb_is_refused(self):
        sock, reader, _ = self.deflate_open()
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflater.compress(bytes(3 * 1024 * 1024)) + deflater.flush(zlib.Z_SYNC_FLUSH)
        self.assertLess(len(bomb), 8192)
        sock.sendall(ws_frame(BINARY, bomb[:-4], rsv=0x40))
        opcode, _, payload = ws_read(reader)
        self.assertEqual((opcode, close_code(payload)), (CLOSE, 1009))

    def test_permessage_deflate_offers_we_cannot_honour(self):
        for offer in ("permessage-deflate; server_max_window_bits=8", "permessage-deflate; unknown=1", "x-webkit-deflate-frame"):
            sock, reader, agreed = self.deflate_open(offer)
            self.assertIsNone(agreed, offer)
            sock.close()
        _, _, agreed = self.deflate_open("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10; client_no_context_takeover")
        self.assertEqual(agreed, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover")

    def test_invalid_utf8_text(self):
        self.protocol_error(ws_frame(TEXT, b"\xff\xfe"), 1007)

    def test_too_big(self):
        # A frame header announcing more than the limit is refused before its payload is read.
        self.protocol_error(struct.pack("!BBQ", 0x82, 0xFF, 3 * 1024 * 1024) + b"mask", 1009)
        # Fragments that add up to more than the limit.
        piece = b"x" * (1024 * 1024)
        self.protocol_error(ws_frame(BINARY, piece, fin=False) + ws_frame(CONT, piece, fin=False) + ws_frame(CONT, b"y"), 1009)

    def test_dropped_connection_reports_1006(self):
        sock, _, _ = self.open()
        sock.close()
        deadline = time.monotonic() + 5
        while "ws:1006" not in self.disconnects():
            self.assertLess(time.monotonic(), deadline, "no websocket.disconnect 1006")
            time.sleep(0.05)

    def test_bad_handshakes(self):
        sock, reader, status, headers = ws_connect(self.server, "/ws", {"Sec-WebSocket-Version": "8"})
        sock.close()
        self.assertEqual((status, dict(headers).get("sec-websocket-version")), (426, "13"))
        sock, reader, status, _ = ws_connect(self.server, "/ws", {"Sec-WebSocket-Key": "short"})
        sock.close()
        self.assertEqual(status, 400)

    def test_app_refusal_and_failure_before_accept(self):
        sock, _, status, _ = ws_connect(self.server, "/ws/deny")
        sock.close()
        self.assertEqual(status, 403)
        sock, reader, status, _ = ws_connect(self.server, "/ws/boom")
        body = reader.rest()
        sock.close()
        self.assertEqual(status, 500)
        self.assertNotIn(b"secret", body)

    def disconnects(self):
        with self.server.connect() as sock:
            sock.sendall(request("/disconnects"))
            return json.loads(Reader(sock).response().body)


class KeepalivePingTest(ServerTestCase):
    limits = ["ws_ping_interval=0.5", "ws_ping_timeout=1.5"]

    def test_silent_client_is_pinged_then_dropped(self):
        sock, reader, status, _ = ws_connect(self.server)
        self.addCleanup(sock.close)
        self.assertEqual(status, 101)
        opcode, _, _ = ws_read(reader)
        self.assertEqual(opcode, PING)
        opcode, _, payload = ws_read(reader)  # we never answer: the server gives up
        self.assertEqual((opcode, close_code(payload)), (CLOSE, 1011))

    def test_answered_pings_keep_the_connection(self):
        sock, reader, _, _ = ws_connect(self.server)
        self.addCleanup(sock.close)
        for _ in range(3):
            opcode, _, payload = ws_read(reader)
            self.assertEqual(opcode, PING)
            sock.sendall(ws_frame(PONG, payload))
        sock.sendall(ws_frame(TEXT, b"still here"))
        while True:
            opcode, _, payload = ws_read(reader)
            if opcode != PING:
                break
        self.assertEqual((opcode, payload), (TEXT, b"still here"))


class StopTest(ServerTestCase):
    def test_sigterm_closes_open_websockets_with_1012(self):
        server = ServerProcess("apps.basic:app")
        self.addCleanup(server.close)
        sock, reader, status, _ = ws_connect(server)
        self.addCleanup(sock.close)
        self.assertEqual(status, 101)
        server.process.send_signal(signal.SIGTERM)
        opcode, _, payload = ws_read(reader)
        self.assertEqual((opcode, close_code(payload)), (CLOSE, 1012))
        sock.sendall(ws_frame(CLOSE, payload[:2]))
        self.assertEqual(server.process.wait(20), 0)
