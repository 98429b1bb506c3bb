"""Test helpers: the server as a real child process, and small raw-socket clients."""

import base64
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

GUEST = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(GUEST, "tests")
TIMEOUT = 10


class ServerProcess:
    """`python3 -m aleph_asgi` on an ephemeral port; stderr collected in the background."""

    def __init__(self, app: str, limits: list[str] = (), env: dict | None = None, port: int = 0, wait: bool = True,
                 args: list[str] = ()):
        command = [sys.executable, "-m", "aleph_asgi", "--app", app, "--app-dir", APPS,
                   "--host", "127.0.0.1", "--port", str(port), *args]
        for limit in limits:
            command += ["--limit", limit]
        full_env = {**os.environ, "PYTHONPATH": GUEST, **(env or {})}
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=full_env)
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.port = port
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        if wait:
            self.wait_listening()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()

    def wait_listening(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening.is_set():
            if self.process.poll() is not None:
                self._thread.join(1)
                raise AssertionError(f"server exited {self.process.returncode}:\n" + self.stderr)
            if time.monotonic() > deadline:
                raise AssertionError("server did not listen in time:\n" + self.stderr)
            self._listening.wait(0.05)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(TIMEOUT * 2)
        self._thread.join(2)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._thread.join(2)
        if self.process.stderr:
            self.process.stderr.close()


class ServerTestCase(unittest.TestCase):
    """One server for the whole class."""

    app = "apps.basic:app"
    limits: list[str] = []
    args: list[str] = []

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess(cls.app, cls.limits, args=cls.args)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, chunks: list[bytes]):
        self.status = status
        self.headers = headers
        self.body = body
        self.chunks = chunks

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Reader:
    """Reads HTTP/1.1 responses (and WebSocket frames) from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def until(self, separator: bytes) -> bytes:
        while separator not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed before {separator!r}; had {self.buffer[:200]!r}")
        index = self.buffer.index(separator) + len(separator)
        data, self.buffer = self.buffer[:index], self.buffer[index:]
        return data

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def head(self) -> tuple[int, list[tuple[str, str]]]:
        head = self.until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        return status, headers

    def chunk(self) -> bytes:
        """One chunk of a chunked body (b'' for the last one, trailers skipped)."""
        size = int(self.until(b"\r\n")[:-2].split(b";")[0], 16)
        if size == 0:
            self.until(b"\r\n")
            return b""
        data = self.exactly(size)
        assert self.exactly(2) == b"\r\n"
        return data

    def response(self, method: str = "GET") -> Response:
        status, headers = self.head()
        values = dict(headers)
        chunks: list[bytes] = []
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif values.get("transfer-encoding") == "chunked":
            while True:
                piece = self.chunk()
                if not piece:
                    break
                chunks.append(piece)
            body = b"".join(chunks)
        elif "content-length" in values:
            body = self.exactly(int(values["content-length"]))
        else:
            body = self.rest()
        return Response(status, headers, body, chunks)


def request(path: str, method: str = "GET", headers: dict | None = None, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test"]
    merged = dict(headers or {})
    if body and "Transfer-Encoding" not in merged:
        merged.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def closed_by_peer(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """True when the server closed the connection (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# --- WebSocket client ---------------------------------------------------------------------

def ws_connect(server: ServerProcess, path: str = "/ws", extra: dict | None = None) -> tuple[socket.socket, Reader, int, list]:
    sock = server.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    headers.update(extra or {})
    sock.sendall(request(path, headers=headers))
    reader = Reader(sock)
    status, response_headers = reader.head()
    return sock, reader, status, response_headers


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _fast_mask(payload, key)
    return head + key + masked


def _fast_mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    full = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(full, "little")).to_bytes(n, "little")


def ws_read(reader: Reader) -> tuple[int, bool, bytes]:
    first, second = reader.exactly(2)
    assert not second & 0x80, "server frames must not be masked"
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", reader.exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", reader.exactly(8))
    return first & 0x0F, bool(first & 0x80), reader.exactly(n)


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
