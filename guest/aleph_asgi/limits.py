"""Every bound the server puts on a client, in one place."""

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    # Request head.
    max_request_line: int = 8 * KIB  # longer -> 414
    max_head: int = 64 * KIB  # request line + headers; longer -> 431
    max_headers: int = 100  # more -> 431
    head_timeout: float = 10.0  # whole head, from its first byte (and for a new connection's first byte) -> 408
    keep_alive_timeout: float = 5.0  # idle between requests; above the edge proxy's 4 s pool timeout
    # Request body.
    body_chunk: int = 256 * KIB  # largest `http.request` body handed to the app at once (as uvicorn)
    body_timeout: float = 30.0  # one read of body bytes while the app waits for them -> 408
    max_chunk_line: int = 4 * KIB  # chunk-size line incl. extensions; chunked trailers share max_head
    # Response.
    send_timeout: float = 60.0  # a client that reads nothing for this long is dropped
    # WebSocket.
    ws_max_message: int = 16 * MIB  # frame or reassembled message; bigger -> close 1009
    ws_queue: int = 16  # received messages waiting for the app before we stop reading
    ws_ping_interval: float = 20.0  # a ping after this much silence from the client
    ws_ping_timeout: float = 20.0  # no frame at all for this long after the ping -> close 1011
    ws_close_timeout: float = 5.0  # wait for the client's close frame after ours
    # Process.
    startup_timeout: float = 30.0  # lifespan startup (as the reference runtime)
    shutdown_timeout: float = 10.0  # lifespan shutdown
    graceful_timeout: float = 3.0  # in-flight requests on SIGTERM before they are cancelled
