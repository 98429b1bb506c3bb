"""Apps with particular lifespan behaviour, for the lifespan tests."""

import asyncio
import os


async def _ok(send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def failing(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _ok(send)


async def unsupported(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("only http here")
    await _ok(send)


async def slow_start(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(float(os.environ.get("ASGI_TEST_DELAY", "1")))
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await _ok(send)


async def hanging_start(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(3600)
    await _ok(send)


async def raising_start(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup exploded")
    await _ok(send)


not_callable = 42
