"""Lifespan: startup before listening, shutdown on SIGTERM, failures exit non-zero."""

import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from .support import Reader, ServerProcess, request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LifespanOrderTest(unittest.TestCase):
    def test_startup_before_first_request_and_shutdown_on_sigterm(self):
        with tempfile.TemporaryDirectory() as tmp:
            marker = os.path.join(tmp, "events")
            server = ServerProcess("apps.basic:app", env={"ASGI_TEST_MARKER": marker})
            try:
                with open(marker) as f:
                    self.assertEqual(f.read(), "startup\n")  # written before the port was bound
                with server.connect() as sock:
                    sock.sendall(request("/scope"))
                    self.assertEqual(Reader(sock).response().status, 200)
                self.assertEqual(server.terminate(), 0)
                with open(marker) as f:
                    self.assertEqual(f.read(), "startup\nshutdown\n")
            finally:
                server.close()

    def test_port_is_not_bound_until_startup_completed(self):
        port = free_port()
        server = ServerProcess("apps.lifespans:slow_start", env={"ASGI_TEST_DELAY": "1.5"}, port=port, wait=False)
        try:
            time.sleep(0.7)  # the interpreter is up and in startup, which takes 1.5 s
            self.assertIsNone(server.process.poll())
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            server.wait_listening()
            with server.connect() as sock:
                sock.sendall(request("/"))
                self.assertEqual(Reader(sock).response().body, b"ok")
        finally:
            server.close()

    def test_in_flight_request_finishes_on_sigterm(self):
        server = ServerProcess("apps.basic:app")
        try:
            with server.connect() as sock:
                sock.sendall(request("/slow?1"))
                time.sleep(0.3)
                server.process.send_signal(signal.SIGTERM)
                response = Reader(sock).response()
                self.assertEqual(response.body, b"slow done")
                self.assertEqual(response.header("connection"), "close")
            self.assertEqual(server.process.wait(20), 0)
        finally:
            server.close()

    def test_idle_keep_alive_connection_does_not_delay_stop(self):
        server = ServerProcess("apps.basic:app", limits=["keep_alive_timeout=60"])
        try:
            with server.connect() as sock:
                sock.sendall(request("/scope"))
                Reader(sock).response()
                started = time.monotonic()
                self.assertEqual(server.terminate(), 0)
                self.assertLess(time.monotonic() - started, 5)
        finally:
            server.close()


class LifespanFailureTest(unittest.TestCase):
    def run_to_exit(self, app: str, limits=()) -> ServerProcess:
        server = ServerProcess(app, limits=list(limits), wait=False)
        try:
            server.process.wait(20)
        finally:
            server.close()
        return server

    def test_startup_failed_exits_non_zero_with_the_message(self):
        server = self.run_to_exit("apps.lifespans:failing")
        self.assertEqual(server.process.returncode, 3)
        self.assertIn("database unreachable", server.stderr)
        self.assertNotIn("listening", server.stderr)

    def test_startup_exception_exits_non_zero(self):
        server = self.run_to_exit("apps.lifespans:raising_start")
        self.assertEqual(server.process.returncode, 3)
        self.assertIn("startup exploded", server.stderr)

    def test_startup_timeout(self):
        server = self.run_to_exit("apps.lifespans:hanging_start", ["startup_timeout=0.5"])
        self.assertEqual(server.process.returncode, 3)
        self.assertIn("did not complete within 0.5 s", server.stderr)

    def test_app_without_lifespan_is_served(self):
        server = ServerProcess("apps.lifespans:unsupported")
        try:
            with server.connect() as sock:
                sock.sendall(request("/"))
                self.assertEqual(Reader(sock).response().body, b"ok")
            self.assertIn("does not support lifespan", server.stderr)
            self.assertEqual(server.terminate(), 0)
        finally:
            server.close()

    def test_bad_app_values(self):
        for app in ("apps.lifespans", "apps.missing:app", "apps.lifespans:nothing", "apps.lifespans:not_callable", "x:1a"):
            with self.subTest(app):
                server = self.run_to_exit(app)
                self.assertEqual(server.process.returncode, 2, server.stderr)
                self.assertNotIn("Traceback", server.stderr)
