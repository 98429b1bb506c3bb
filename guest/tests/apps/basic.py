"""Test apps for the aleph_asgi tests; each behaviour is reachable by path."""

import asyncio
import json
import os

EVENTS: list[str] = []
BACKGROUND = {"running": False, "release": None}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


async def lifespan(scope, receive, send):
    message = await receive()
    assert message["type"] == "lifespan.startup"
    scope["state"]["started"] = "yes"
    marker = os.environ.get("ASGI_TEST_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write("startup\n")
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    if marker:
        with open(marker, "a") as f:
            f.write("shutdown\n")
    await send({"type": "lifespan.shutdown.complete"})


async def text(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    path = scope["path"]
    if path == "/scope" or path.startswith("/scope/"):
        info = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state", "extensions")}
        info["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        info["raw_path"] = scope["raw_path"].decode("latin-1")
        info["query_string"] = scope["query_string"].decode("latin-1")
        info["state"] = scope.get("state")
        info["header_types_ok"] = all(isinstance(n, bytes) and isinstance(v, bytes) and n == n.lower()
                                      for n, v in scope["headers"])
        await text(send, 200, json.dumps(info).encode())
    elif path == "/after-complete":
        # Work after the last body message, until released (or 10 s).
        BACKGROUND["release"] = asyncio.Event()
        await text(send, 200, b"accepted")
        BACKGROUND["running"] = True
        try:
            await asyncio.wait_for(BACKGROUND["release"].wait(), 10)
        except asyncio.TimeoutError:
            pass
        BACKGROUND["running"] = False
    elif path == "/after-complete/release":
        running = BACKGROUND["running"]
        if BACKGROUND["release"]:
            BACKGROUND["release"].set()
        await text(send, 200, json.dumps({"was_running": running}).encode())
    elif path == "/echo":
        # Reads the whole body, answers with its size, how many messages it came in.
        total, messages = bytearray(), 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            total += message["body"]
            messages += 1
            if not message["more_body"]:
                break
        await text(send, 200, json.dumps({"size": len(total), "messages": messages,
                                          "head": total[:32].decode("latin-1")}).encode())
    elif path == "/stream-body":
        # Answers each request body message with one response chunk (chunked out), so a test
        # can see the app got piece N before the client sent piece N+1.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            await send({"type": "http.response.body", "body": b"got %d\n" % len(message["body"]), "more_body": True})
            if not message["more_body"]:
                break
        await send({"type": "http.response.body", "body": b"end\n"})
    elif path == "/chunks":
        # N chunks, each only after the client told us (via /chunks/go) — proves per-chunk flush.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await GATES.wait(i)
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/chunks/go/"):
        GATES.open(int(path.rsplit("/", 1)[1]))
        await text(send, 200, b"ok")
    elif path == "/hold-body":
        # Reads one body message, then nothing until /hold-body/release: the rest of the
        # body must wait in the client (TCP backpressure), not in the server's memory.
        first = await receive()
        await GATES.wait(100)
        total = len(first["body"])
        more = first["more_body"]
        while more:
            message = await receive()
            total += len(message["body"])
            more = message["more_body"]
        await text(send, 200, b"%d" % total)
    elif path == "/hold-body/release":
        GATES.open(100)
        await text(send, 200, b"ok")
    elif path == "/boom":
        raise RuntimeError("secret detail that must not leak")
    elif path == "/boom-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("midway")
    elif path == "/no-response":
        return
    elif path == "/length":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        await send({"type": "http.response.body", "body": b"llo"})
    elif path == "/disconnect":
        # Streams until the client goes away, then records that it saw http.disconnect.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello\n", "more_body": True})
        while (message := await receive())["type"] == "http.request":
            pass  # the (empty) body, then the next event is the client leaving
        DISCONNECTS.append(message["type"])
    elif path == "/disconnects":
        await text(send, 200, json.dumps(DISCONNECTS).encode())
    elif path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await text(send, 200, b"slow done")
    else:
        await text(send, 404, b"not found")


async def websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.close"})
        return
    if scope["path"] == "/ws/boom":
        raise RuntimeError("ws secret")
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            DISCONNECTS.append(f"ws:{message['code']}")
            return
        if message.get("text") == "close-me":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            continue
        if "text" in message and message["text"] is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


class _Gates:
    def __init__(self):
        self._events: dict[int, asyncio.Event] = {}

    def _get(self, i):
        return self._events.setdefault(i, asyncio.Event())

    async def wait(self, i):
        await self._get(i).wait()

    def open(self, i):
        self._get(i).set()


GATES = _Gates()
DISCONNECTS: list[str] = []
