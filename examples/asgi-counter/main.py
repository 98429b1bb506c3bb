"""asgi-counter: a small ASGI app on the standard library only (main:app).

  GET /                 one line of text, saying whether lifespan startup ran
  GET /state/increment  the next integer, kept in a file (survives restarts)
  GET /events           server-sent events: ?count=N (default 10) every ?interval=S (default 0.5)
  WS  /ws               echoes every message back

The counter file lives in $ASGI_COUNTER_DIR (default: a folder under the system temp dir).
"""

import asyncio
import json
import os
import tempfile
from urllib.parse import parse_qs

STATE_DIR = os.environ.get("ASGI_COUNTER_DIR") or os.path.join(tempfile.gettempdir(), "aleph-edge-asgi-counter")
COUNTER_FILE = os.path.join(STATE_DIR, "counter")

started = {"startup": False}
_lock = asyncio.Lock()


def _read_counter() -> int:
    try:
        with open(COUNTER_FILE) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def _write_counter(value: int) -> None:
    # Temp file + rename: a crash never leaves a half-written counter.
    fd, temp = tempfile.mkstemp(dir=STATE_DIR, prefix=".counter-")
    with os.fdopen(fd, "w") as f:
        f.write(f"{value}\n")
    os.replace(temp, COUNTER_FILE)


async def increment() -> int:
    async with _lock:
        value = _read_counter() + 1
        _write_counter(value)
        return value


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(receive, send)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            os.makedirs(STATE_DIR, exist_ok=True)
            started["startup"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("asgi-counter: lifespan shutdown", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def text(send, status, body, content_type=b"text/plain; charset=utf-8"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body.encode()})


async def http(scope, receive, send):
    path = scope["path"]
    if path == "/":
        await text(send, 200, f"asgi-counter example; lifespan startup ran: {str(started['startup']).lower()}\n")
    elif path == "/state/increment":
        await text(send, 200, f"{await increment()}\n")
    elif path == "/events":
        query = parse_qs(scope["query_string"].decode("latin-1"))
        count = min(int(query.get("count", ["10"])[0]), 1000)
        interval = min(float(query.get("interval", ["0.5"])[0]), 10.0)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for n in range(1, count + 1):
            event = json.dumps({"n": n})
            await send({"type": "http.response.body", "body": f"id: {n}\ndata: {event}\n\n".encode(), "more_body": True})
            if n < count:
                await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b""})
    else:
        await text(send, 404, "not found\n")


async def websocket(receive, send):
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
