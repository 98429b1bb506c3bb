"""HTTP/1.x through real sockets: keep-alive, bodies in and out, streaming order, scope."""

import json
import socket
import time

from .support import Reader, ServerTestCase, closed_by_peer, request


class KeepAliveTest(ServerTestCase):
    limits = ["keep_alive_timeout=1"]

    def test_several_requests_on_one_connection(self):
        with self.server.connect() as sock:
            reader = Reader(sock)
            ports = set()
            for _ in range(3):
                sock.sendall(request("/scope"))
                response = reader.response()
                self.assertEqual(response.status, 200)
                self.assertIsNone(response.header("connection"))
                ports.add(json.loads(response.body)["client"][1])
            self.assertEqual(len(ports), 1)

    def test_work_after_the_response_does_not_hold_the_connection(self):
        with self.server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(request("/after-complete"))
            self.assertEqual(reader.response().body, b"accepted")
            # Same connection: answered while the first call still runs (it waits for this).
            sock.sendall(request("/after-complete/release"))
            self.assertEqual(json.loads(reader.response().body), {"was_running": True})

    def test_pipelined_requests_answered_in_order(self):
        with self.server.connect() as sock:
            sock.sendall(request("/echo", "POST", body=b"first") + request("/echo", "POST", body=b"second!"))
            reader = Reader(sock)
            self.assertEqual(json.loads(reader.response().body)["size"], 5)
            self.assertEqual(json.loads(reader.response().body)["size"], 7)

    def test_connection_close_is_honoured(self):
        with self.server.connect() as sock:
            sock.sendall(request("/scope", headers={"Connection": "close"}))
            response = Reader(sock).response()
            self.assertEqual(response.header("connection"), "close")
            self.assertTrue(closed_by_peer(sock, 2))

    def test_http10_closes_by_default_and_keeps_alive_when_asked(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /scope HTTP/1.0\r\n\r\n")
            reader = Reader(sock)
            response = reader.response()
            self.assertEqual(json.loads(response.body)["http_version"], "1.0")
            self.assertTrue(closed_by_peer(sock, 2))
        with self.server.connect() as sock:
            reader = Reader(sock)
            for _ in range(2):
                sock.sendall(b"GET /scope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                response = reader.response()
                self.assertEqual(response.status, 200)
                self.assertEqual(response.header("connection"), "keep-alive")

    def test_http10_streamed_response_is_close_delimited(self):
        with self.server.connect() as sock:
            sock.sendall(b"POST /stream-body HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
            response = Reader(sock).response()
            self.assertIsNone(response.header("transfer-encoding"))
            self.assertEqual(response.header("connection"), "close")
            self.assertEqual(response.body, b"got 3\nend\n")

    def test_idle_connection_is_closed_after_the_keep_alive_timeout(self):
        with self.server.connect() as sock:
            sock.sendall(request("/scope"))
            Reader(sock).response()
            started = time.monotonic()
            self.assertTrue(closed_by_peer(sock, 5))
            self.assertGreaterEqual(time.monotonic() - started, 0.9)

    def test_head_has_no_body(self):
        with self.server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(request("/length", "HEAD") + request("/scope"))
            head = reader.response("HEAD")
            self.assertEqual((head.status, head.header("content-length"), head.body), (200, "5", b""))
            self.assertEqual(reader.response().status, 200)  # the next response starts right after the head


class BodyTest(ServerTestCase):
    def test_content_length_body(self):
        with self.server.connect() as sock:
            body = bytes(range(256)) * 4096 + b"!"  # 1 MiB + 1: more than one 256 KiB http.request message
            sock.sendall(request("/echo", "POST", body=body))
            result = json.loads(Reader(sock).response().body)
            self.assertEqual(result["size"], len(body))
            self.assertGreater(result["messages"], 1)

    def test_chunked_request_body(self):
        with self.server.connect() as sock:
            chunks = [b"hello ", b"chunked ", b"world" * 3000]
            encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nTrailer: x\r\n\r\n"
            sock.sendall(request("/echo", "POST", headers={"Transfer-Encoding": "chunked"}) + encoded)
            reader = Reader(sock)
            result = json.loads(reader.response().body)
            self.assertEqual(result["size"], sum(map(len, chunks)))
            self.assertEqual(result["head"], "hello chunked worldworldworldwor")
            sock.sendall(request("/scope"))  # the connection is still usable
            self.assertEqual(reader.response().status, 200)

    def test_request_body_is_streamed_to_the_app(self):
        # The app answers each body piece with a response chunk; we only send the next piece
        # after reading that answer, so the app cannot have buffered the whole body.
        with self.server.connect() as sock:
            sock.sendall(request("/stream-body", "POST", headers={"Transfer-Encoding": "chunked"}))
            reader = Reader(sock)
            status, headers = reader.head()
            self.assertEqual(status, 200)
            self.assertIn(("transfer-encoding", "chunked"), headers)
            for size in (10, 20, 30):
                sock.sendall(b"%x\r\n%s\r\n" % (size, b"x" * size))
                self.assertEqual(reader.chunk(), b"got %d\n" % size)
            sock.sendall(b"0\r\n\r\n")
            rest = []
            while True:
                piece = reader.chunk()
                if not piece:
                    break
                rest.append(piece)
            self.assertEqual(b"".join(rest), b"got 0\nend\n")

    def test_unread_body_is_held_back_by_tcp(self):
        size = 64 * 1024 * 1024
        with self.server.connect() as sock, self.server.connect() as control:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            sock.sendall(request("/hold-body", "POST", headers={"Content-Length": str(size)}))
            sock.setblocking(False)
            block, accepted, stalled_since = b"x" * 65536, 0, None
            while accepted < size:
                try:
                    accepted += sock.send(block[: size - accepted])
                    stalled_since = None
                except BlockingIOError:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 1.0:
                        break  # nobody has been reading for a second
                    time.sleep(0.01)
            # Kernel buffers on both sides plus the server's 256 KiB: far from the whole body.
            self.assertLess(accepted, 16 * 1024 * 1024)
            control.sendall(request("/hold-body/release"))
            self.assertEqual(Reader(control).response().status, 200)
            sock.setblocking(True)
            sock.sendall(block * ((size - accepted) // len(block)) + block[: (size - accepted) % len(block)])
            self.assertEqual(Reader(sock).response().body, str(size).encode())

    def test_expect_100_continue(self):
        with self.server.connect() as sock:
            sock.sendall(request("/echo", "POST", headers={"Content-Length": "4", "Expect": "100-continue"}))
            reader = Reader(sock)
            self.assertEqual(reader.head()[0], 100)
            sock.sendall(b"data")
            self.assertEqual(json.loads(reader.response().body)["size"], 4)

    def test_unread_body_ends_the_connection(self):
        with self.server.connect() as sock:
            sock.sendall(request("/scope", "POST", body=b"x" * 100000)[:-50000])
            response = Reader(sock).response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.header("connection"), "close")
            self.assertTrue(closed_by_peer(sock, 2))


class StreamingResponseTest(ServerTestCase):
    def test_each_chunk_arrives_before_the_app_sends_the_next(self):
        with self.server.connect() as stream, self.server.connect() as control:
            stream.sendall(request("/chunks"))
            reader = Reader(stream)
            status, headers = reader.head()
            self.assertEqual(status, 200)
            self.assertIn(("transfer-encoding", "chunked"), headers)
            control_reader = Reader(control)
            for i in range(3):
                # The app is blocked on gate i: this chunk was flushed on its own.
                self.assertEqual(reader.chunk(), b"data: %d\n\n" % i)
                control.sendall(request(f"/chunks/go/{i}"))
                self.assertEqual(control_reader.response().status, 200)
            self.assertEqual(reader.chunk(), b"")

    def test_declared_length_is_sent_raw(self):
        with self.server.connect() as sock:
            sock.sendall(request("/length"))
            response = Reader(sock).response()
            self.assertEqual((response.header("content-length"), response.body), ("5", b"hello"))
            self.assertIsNone(response.header("transfer-encoding"))

    def test_client_disconnect_reaches_the_app(self):
        with self.server.connect() as sock:
            sock.sendall(request("/disconnect"))
            reader = Reader(sock)
            reader.head()
            self.assertEqual(reader.chunk(), b"hello\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.server.connect() as sock:
                sock.sendall(request("/disconnects"))
                if "http.disconnect" in json.loads(Reader(sock).response().body):
                    return
            time.sleep(0.05)
        self.fail("the app never received http.disconnect")


class ScopeTest(ServerTestCase):
    def scope(self, target: str, extra: bytes = b"") -> dict:
        with self.server.connect() as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: example\r\nX-Mixed-Case: Value\r\n".encode() + extra + b"\r\n")
            return json.loads(Reader(sock).response().body)

    def test_scope_fields(self):
        scope = self.scope("/sc%6Fpe?a=1&b=%20")
        self.assertEqual(scope["type"], "http")
        self.assertEqual(scope["asgi"]["version"], "3.0")
        self.assertEqual(scope["http_version"], "1.1")
        self.assertEqual(scope["method"], "GET")
        self.assertEqual(scope["scheme"], "http")
        self.assertEqual(scope["path"], "/scope")
        self.assertEqual(scope["raw_path"], "/sc%6Fpe")
        self.assertEqual(scope["query_string"], "a=1&b=%20")
        self.assertEqual(scope["root_path"], "")
        self.assertIn(["x-mixed-case", "Value"], scope["headers"])
        self.assertTrue(scope["header_types_ok"])
        self.assertEqual(scope["client"][0], "127.0.0.1")
        self.assertEqual(scope["server"], ["127.0.0.1", self.server.port])
        self.assertEqual(scope["state"], {"started": "yes"})

    def test_percent_encoded_utf8_path_is_decoded(self):
        scope = self.scope("/sc%6Fpe%2F%C3%A9")
        self.assertEqual((scope["path"], scope["raw_path"]), ("/scope/\u00e9", "/sc%6Fpe%2F%C3%A9"))

    def test_absolute_form_target(self):
        scope = self.scope("http://example/scope?x=1")
        self.assertEqual((scope["path"], scope["query_string"]), ("/scope", "x=1"))


FORWARDED = b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Prefix: /vm/abc/\r\n"


class ForwardedFromTheNodeTest(ServerTestCase):
    """The default trusts 127.0.0.1: the node under the process driver."""

    def test_forwarded_headers_of_the_node_are_believed(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /scope/x HTTP/1.1\r\nHost: example\r\n" + FORWARDED + b"\r\n")
            scope = json.loads(Reader(sock).response().body)
        self.assertEqual((scope["scheme"], scope["client"], scope["root_path"], scope["path"]),
                         ("https", ["203.0.113.7", 0], "/vm/abc", "/scope/x"))


class ForwardedFromElsewhereTest(ServerTestCase):
    args = ["--forwarded-allow-ips", "192.0.2.1"]

    def test_forwarded_headers_of_another_peer_are_ignored(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: example\r\n" + FORWARDED + b"\r\n")
            scope = json.loads(Reader(sock).response().body)
        self.assertEqual((scope["scheme"], scope["client"][0], scope["root_path"]), ("http", "127.0.0.1", ""))
        self.assertNotEqual(scope["client"][1], 0)
