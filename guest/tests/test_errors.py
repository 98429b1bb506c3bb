"""Hostile and broken input: malformed requests, limits, timeouts, failing apps."""

import socket
import time

from .support import Reader, ServerTestCase, closed_by_peer, request


class MalformedRequestTest(ServerTestCase):
    def answer(self, raw: bytes) -> tuple[int, bytes]:
        with self.server.connect() as sock:
            sock.sendall(raw)
            response = Reader(sock).response()
            self.assertEqual(response.header("connection"), "close")
            self.assertTrue(closed_by_peer(sock, 2))
            return response.status, response.body

    def test_malformed_heads_get_400(self):
        cases = {
            "request line": b"GARBAGE\r\nHost: x\r\n\r\n",
            "extra space": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "version": b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
            "target": b"GET scope HTTP/1.1\r\nHost: x\r\n\r\n",
            "raw utf-8 target": "GET /é HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            "no colon": b"GET / HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n",
            "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "folded header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n",
            "control byte": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            "missing host": b"GET / HTTP/1.1\r\n\r\n",
            "two hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "te and cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "bad cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\n",
            "negative cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "conflicting cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "bare lf in value": b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        }
        for name, raw in cases.items():
            with self.subTest(name):
                status, body = self.answer(raw)
                self.assertEqual(status, 400, body)

    def test_other_refusals(self):
        self.assertEqual(self.answer(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")[0], 505)
        self.assertEqual(self.answer(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")[0], 501)
        self.assertEqual(self.answer(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")[0], 414)
        self.assertEqual(self.answer(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n")[0], 431)
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
        self.assertEqual(self.answer(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")[0], 431)
        self.assertEqual(self.answer(request("/echo", "POST", headers={"Expect": "magic", "Content-Length": "1"}))[0], 417)

    def test_bad_chunked_body(self):
        for name, encoded in {
            "size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
            "missing crlf after data": b"3\r\nabcXY0\r\n\r\n",
            "size line too long": b"1" + b" " * 5000 + b"\r\n",
        }.items():
            with self.subTest(name):
                status, _ = self.answer(request("/echo", "POST", headers={"Transfer-Encoding": "chunked"}) + encoded)
                self.assertEqual(status, 400)

    def test_server_still_serves_after_garbage(self):
        self.answer(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n")
        with self.server.connect() as sock:
            sock.sendall(request("/scope"))
            self.assertEqual(Reader(sock).response().status, 200)


class AppFailureTest(ServerTestCase):
    def test_exception_becomes_500_without_details(self):
        with self.server.connect() as sock:
            sock.sendall(request("/boom"))
            response = Reader(sock).response()
        self.assertEqual(response.status, 500)
        self.assertEqual(response.body, b"Internal Server Error")
        self.assertNotIn(b"secret", response.body)
        self.assertNotIn(b"Traceback", response.body)
        deadline = time.monotonic() + 5
        while "secret detail that must not leak" not in self.server.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("Traceback", self.server.stderr)  # the details go to stderr

    def test_exception_mid_response_cuts_the_connection(self):
        with self.server.connect() as sock:
            sock.sendall(request("/boom-after-start"))
            reader = Reader(sock)
            reader.head()
            self.assertEqual(reader.chunk(), b"partial")
            with self.assertRaises((EOFError, ConnectionResetError)):
                reader.chunk()  # never the terminating chunk: the client can tell it is incomplete

    def test_no_response_becomes_500(self):
        with self.server.connect() as sock:
            sock.sendall(request("/no-response"))
            self.assertEqual(Reader(sock).response().status, 500)


class TimeoutTest(ServerTestCase):
    limits = ["head_timeout=0.5", "body_timeout=0.5"]

    def test_silent_connection_is_closed(self):
        with self.server.connect() as sock:
            self.assertTrue(closed_by_peer(sock, 3))

    def test_slow_head_gets_408(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            for _ in range(4):
                time.sleep(0.2)
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
            response = Reader(sock).response()
            self.assertEqual(response.status, 408)

    def test_stalled_body_gets_408(self):
        with self.server.connect() as sock:
            sock.sendall(request("/echo", "POST", headers={"Content-Length": "10"}) + b"abc")
            response = Reader(sock).response()
            self.assertEqual(response.status, 408)
            self.assertTrue(closed_by_peer(sock, 2))
