"""The aleph-edge diagnostic program: the routes /status/check/fastapi calls.

An ASGI app using only the Python standard library, served by our ASGI server
(guest/aleph_asgi). Probe targets come from the environment so that a node (or a
test) can point them at servers it controls:

  ALEPH_API_HOST            the guest API (messages, /cache/*), set by the node
  DIAGNOSTIC_STATE_DIR      persistent volume for /state/increment (default /var/lib/example)
  DIAGNOSTIC_INTERNET_URL   fetched by /internet (default https://aleph.im/)
  DIAGNOSTIC_IPV4_TARGET    host:port opened by /ip/4 (default 9.9.9.9:53)
  DIAGNOSTIC_IPV6_TARGET    host:port opened by /ip/6 (default [2620:fe::fe]:53)
  DIAGNOSTIC_DNS_HOSTNAME   resolved by /dns (default aleph.im)
  DIAGNOSTIC_MESSAGE_HASH   the message /messages and /get_a_message read
"""

import asyncio
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_MESSAGE = "f246f873c3e0f637a15c566e7a465d2ecbb83eaa024d54ccb8fb566b549a929e"
PROBE_TIMEOUT_S = 5.0
ENDPOINTS = [
    "/environ", "/messages", "/get_a_message", "/dns", "/ip/4", "/ip/6", "/internet",
    "/cache/get/{key}", "/cache/set/{key}/{value}", "/cache/remove/{key}", "/cache/keys",
    "/state/increment", "/raise", "/lifespan",
]


class DiagnosticError(Exception):
    """Raised on purpose by /raise: the server must answer 500 and keep serving."""


def env(name, default):
    return os.environ.get(name) or default


def split_host_port(target):
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


# --- blocking helpers, run in a thread so the event loop keeps serving -------------

def http_call(method, url, body=None):
    """(status, headers, body bytes); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers.items()), error.read()


def api_url(path):
    host = os.environ.get("ALEPH_API_HOST")
    if not host:
        raise RuntimeError("ALEPH_API_HOST is not set: no guest API")
    return host.rstrip("/") + path


def api_json(method, path, body=None):
    status, _, data = http_call(method, api_url(path), body)
    if status == 404 and method == "GET":
        return None
    if status >= 400:
        raise RuntimeError(f"guest API {method} {path}: HTTP {status}")
    return json.loads(data) if data else None


def tcp_reachable(target):
    host, port = split_host_port(target)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def resolve(hostname):
    try:
        infos = socket.getaddrinfo(hostname, 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        infos = []
    ipv4 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    ipv6 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET6})
    return {"ipv4": ipv4, "ipv6": ipv6}


# --- state ------------------------------------------------------------------------

class Counter:
    """A counter in a file on the persistent volume; written whole (temp + rename)."""

    def __init__(self):
        self.lock = asyncio.Lock()

    def path(self):
        return os.path.join(env("DIAGNOSTIC_STATE_DIR", "/var/lib/example"), "storage.json")

    def increment_sync(self):
        path = self.path()
        try:
            with open(path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = {"counter": 0}
        data["counter"] = int(data.get("counter", 0)) + 1
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = path + ".tmp"
        with open(temp, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        return data

    async def increment(self):
        async with self.lock:
            return await asyncio.to_thread(self.increment_sync)


class State:
    def __init__(self):
        self.lifespan_started = False
        self.counter = Counter()


state = State()


# --- routes -----------------------------------------------------------------------

async def route(method, path, query):
    """(status, JSON body) for one request; raises for /raise."""
    if method not in ("GET", "HEAD"):
        return 405, {"error": f"{method} not allowed"}
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    message = env("DIAGNOSTIC_MESSAGE_HASH", DEFAULT_MESSAGE)
    if not parts:
        return 200, {"Example": "example_fastapi", "program": "aleph-edge diagnostic", "endpoints": ENDPOINTS}
    if parts == ["environ"]:
        return 200, dict(os.environ)
    if parts == ["lifespan"]:
        return 200, {"Lifespan": state.lifespan_started}
    if parts == ["messages"]:
        query_string = urllib.parse.urlencode({"hashes": message})
        data = await asyncio.to_thread(api_json, "GET", f"/api/v0/messages.json?{query_string}")
        return 200, {"Messages": data}
    if parts == ["get_a_message"]:
        data = await asyncio.to_thread(api_json, "GET", f"/api/v0/messages/{message}")
        if isinstance(data, dict) and isinstance(data.get("message"), dict):
            data = data["message"]
        if data is None:
            return 404, {"error": "message not found"}
        return 200, data
    if parts == ["dns"]:
        return 200, await asyncio.to_thread(resolve, env("DIAGNOSTIC_DNS_HOSTNAME", "aleph.im"))
    if len(parts) == 2 and parts[0] == "ip" and parts[1] in ("4", "6"):
        default = "9.9.9.9:53" if parts[1] == "4" else "[2620:fe::fe]:53"
        target = env(f"DIAGNOSTIC_IPV{parts[1]}_TARGET", default)
        return 200, {"result": await asyncio.to_thread(tcp_reachable, target), "target": target, "headers": {}}
    if parts == ["internet"]:
        status, headers, _ = await asyncio.to_thread(http_call, "GET", env("DIAGNOSTIC_INTERNET_URL", "https://aleph.im/"))
        return 200, {"result": status, "headers": headers}
    if parts[0] == "cache":
        return await cache_route(parts[1:], query)
    if parts == ["state", "increment"]:
        return 200, await state.counter.increment()
    if parts == ["raise"]:
        raise DiagnosticError("raised on purpose by /raise")
    return 404, {"error": "no such route"}


async def cache_route(parts, query):
    """The guest API's per-program cache, as the reference VmCache calls it."""
    if len(parts) == 2 and parts[0] == "get":
        return 200, await asyncio.to_thread(cache_get, parts[1])
    if len(parts) == 3 and parts[0] == "set":
        await asyncio.to_thread(api_json, "PUT", f"/cache/{urllib.parse.quote(parts[1])}", parts[2].encode())
        return 200, True
    if len(parts) == 2 and parts[0] == "remove":
        status, _, _ = await asyncio.to_thread(http_call, "DELETE", api_url(f"/cache/{urllib.parse.quote(parts[1])}"))
        return 200, status < 300
    if parts == ["keys"]:
        pattern = query.get("pattern", ["*"])[0]
        return 200, await asyncio.to_thread(api_json, "GET", "/cache/?" + urllib.parse.urlencode({"pattern": pattern}))
    return 404, {"error": "no such cache route"}


def cache_get(key):
    status, _, data = http_call("GET", api_url(f"/cache/{urllib.parse.quote(key)}"))
    if status == 404:
        return None
    if status >= 400:
        raise RuntimeError(f"guest API cache get: HTTP {status}")
    return data.decode("utf-8", "replace")


# --- ASGI -------------------------------------------------------------------------

async def send_json(send, status, body, head):
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": b"" if head else payload})


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state.lifespan_started = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    # The request body is not used; drain it so the server can reuse the connection.
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    status, body = await route(scope["method"], scope["path"], query)
    await send_json(send, status, body, scope["method"] == "HEAD")
