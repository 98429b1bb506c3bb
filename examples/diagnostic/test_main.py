"""Unit tests of the diagnostic app, called as an ASGI server calls it.

Run: cd examples/diagnostic && /usr/bin/python3 -m unittest
"""

import asyncio
import http.server
import json
import os
import socket
import tempfile
import threading
import unittest

import main


class GuestApiStandIn(http.server.BaseHTTPRequestHandler):
    """Answers the guest API calls the app makes (messages, cache), recording them."""

    cache = {}
    calls = []

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("server", "stand-in")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.calls.append(("GET", self.path))
        if self.path.startswith("/api/v0/messages.json"):
            return self.reply(200, {"messages": [{"item_hash": "abc"}]})
        if self.path.startswith("/api/v0/messages/"):
            return self.reply(200, {"status": "processed", "item_hash": "abc", "message": {"item_hash": "abc"}})
        if self.path.startswith("/cache/?"):
            return self.reply(200, sorted(self.cache))
        if self.path.startswith("/cache/"):
            key = self.path[len("/cache/"):]
            if key not in self.cache:
                return self.reply(404, {"error": "no such key"})
            data = self.cache[key]
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        return self.reply(200, {"ok": True})

    def do_PUT(self):
        key = self.path[len("/cache/"):]
        self.cache[key] = self.rfile.read(int(self.headers["content-length"]))
        self.reply(200, "success")


def call(path, method="GET"):
    """One HTTP request through the ASGI interface: (status, JSON body)."""
    sent = []
    path, _, query = path.partition("?")

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": []}
    asyncio.run(main.app(scope, receive, send))
    status = sent[0]["status"]
    return status, json.loads(sent[1]["body"])


class DiagnosticTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GuestApiStandIn)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.env = dict(os.environ)
        os.environ.update({
            "ALEPH_API_HOST": self.url,
            "DIAGNOSTIC_STATE_DIR": os.path.join(self.dir.name, "volume"),
            "DIAGNOSTIC_INTERNET_URL": self.url + "/",
            "DIAGNOSTIC_DNS_HOSTNAME": "localhost",
        })

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.env)
        self.dir.cleanup()

    def test_lifespan_startup_is_reported(self):
        main.state.lifespan_started = False
        self.assertEqual(call("/lifespan"), (200, {"Lifespan": False}))
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message["type"])

        asyncio.run(main.app({"type": "lifespan"}, receive, send))
        self.assertEqual(sent, ["lifespan.startup.complete", "lifespan.shutdown.complete"])
        self.assertEqual(call("/lifespan"), (200, {"Lifespan": True}))

    def test_index_and_environ(self):
        status, body = call("/")
        self.assertEqual((status, body["Example"]), (200, "example_fastapi"))
        self.assertEqual(call("/environ")[1]["ALEPH_API_HOST"], self.url)

    def test_persistent_counter_counts_from_one_and_survives_in_the_file(self):
        self.assertEqual(call("/state/increment"), (200, {"counter": 1}))
        self.assertEqual(call("/state/increment"), (200, {"counter": 2}))
        with open(os.path.join(self.dir.name, "volume", "storage.json")) as handle:
            self.assertEqual(json.load(handle), {"counter": 2})

    def test_raise_raises_for_the_server_to_answer_500(self):
        with self.assertRaises(main.DiagnosticError):
            call("/raise")

    def test_probes_use_the_configured_targets(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        try:
            os.environ["DIAGNOSTIC_IPV4_TARGET"] = f"127.0.0.1:{listener.getsockname()[1]}"
            self.assertEqual(call("/ip/4")[1]["result"], True)
            os.environ["DIAGNOSTIC_IPV4_TARGET"] = f"127.0.0.1:{closed_port}"
            self.assertEqual(call("/ip/4")[1]["result"], False)
        finally:
            listener.close()
        status, body = call("/internet")
        self.assertEqual((status, body["result"], body["headers"]["server"]), (200, 200, "stand-in"))
        self.assertIn("127.0.0.1", call("/dns")[1]["ipv4"])

    def test_messages_and_cache_go_through_the_guest_api(self):
        self.assertEqual(call("/messages")[1]["Messages"]["messages"][0]["item_hash"], "abc")
        self.assertEqual(call("/get_a_message")[1]["item_hash"], "abc")
        self.assertEqual(call("/cache/get/a"), (200, None))
        self.assertEqual(call("/cache/set/a/42"), (200, True))
        self.assertEqual(call("/cache/get/a"), (200, "42"))
        self.assertIn("a", call("/cache/keys")[1])
        self.assertIn(("GET", "/cache/?pattern=%2A"), GuestApiStandIn.calls)

    def test_without_guest_api_the_api_routes_fail(self):
        del os.environ["ALEPH_API_HOST"]
        with self.assertRaises(RuntimeError):
            call("/messages")

    def test_unknown_route_is_404(self):
        self.assertEqual(call("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
