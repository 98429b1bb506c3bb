"""The app bench/asgi-vs-uvicorn.mjs serves with aleph_asgi and with uvicorn.

/            a 13-byte body (per-request overhead)
/download    ?mib=N: N MiB in 256 KiB pieces
/upload      reads the whole body, answers its size
"""

PIECE = bytes(256 * 1024)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/download":
        mib = int(scope["query_string"].decode().partition("=")[2] or 1)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream"),
                                                                               (b"content-length", str(mib << 20).encode())]})
        for _ in range(mib * 4):
            await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    size = 0
    if path == "/upload":
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    body = b"hello, world\n" if path == "/" else str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
