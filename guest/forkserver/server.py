"""Fork server for ASGI programs under the process driver ([drivers.process] fork_server,
docs/drivers.md). Standard library only; run as `python3 server.py <socket> [module ...]`.

It imports our ASGI server and the heavy modules the programs use (FastAPI, pydantic,
starlette: whichever are installed) once, then serves requests on a unix socket. Each
request comes from client.py, which the node started as the program's process: its
argv, environment and working directory as JSON, and its stdin, stdout and stderr as
file descriptors. The server forks; the child takes those descriptors, that
environment and folder, and runs `aleph_asgi` as `python3 -m aleph_asgi` would, but
without importing anything again. Every child is forked from this pristine process,
never from another program, so nothing of one program is in the next.

Per connection, the server answers `pid <n>` once forked, then `exit <status>` when
the child ends (status as os.waitstatus_to_exitcode: negative for a signal). When the
client's connection closes first (the client was killed), the child's process group
is killed: a program never outlives the process the node watches. The server exits
when its stdin closes (the node went away).
"""

import array
import json
import os
import selectors
import signal
import socket
import sys

MAX_REQUEST = 1 << 20


def receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: a JSON line and three descriptors (SCM_RIGHTS)."""
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        chunk, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        if not chunk:
            raise ConnectionError("closed before a whole request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    if len(fds) != 3:
        raise ValueError(f"expected 3 descriptors, got {len(fds)}")
    return json.loads(data), list(fds)


def run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the program, then never return."""
    try:
        os.setsid()  # its own process group: the server kills it whole
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # What the interpreter would have read from the environment at start.
        sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
        for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(":") if p]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        sys.argv = ["aleph_asgi", *request["argv"]]
        from aleph_asgi.__main__ import main
        code = main(request["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0)
    except SystemExit as stop:
        os._exit(stop.code if isinstance(stop.code, int) else 1)
    except BaseException as error:  # noqa: BLE001 - the child must never return into the server
        try:
            os.write(2, f"aleph-forkserver: {type(error).__name__}: {error}\n".encode())
        finally:
            os._exit(1)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: server.py <socket> [module ...]", file=sys.stderr)
        return 2
    path, modules = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # Listening first: a client that comes while the modules load waits in the backlog.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.setblocking(False)
    import aleph_asgi.__main__  # noqa: F401 - the server itself, pre-imported
    from aleph_preload.imports import preimport

    loaded = preimport(modules)
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print(f"ready {' '.join(loaded)}".rstrip(), flush=True)

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    sel.unregister(conn)
                except (KeyError, ValueError):
                    pass  # its client already went
                try:
                    conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                conn.close()

    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    for pid in children:
                        kill_group(pid, signal.SIGKILL)
                    return 0
            elif key.data == "signal":
                os.read(wake_r, 512)
                reap()
            elif key.data == "accept":
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                try:
                    request, fds = receive(conn)
                except (OSError, ValueError) as error:
                    conn.sendall(f"error {error}\n".encode())
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    run_child(request, fds)
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                conn.sendall(f"pid {pid}\n".encode())
                sel.register(conn, selectors.EVENT_READ, pid)
            else:
                # The client's side closed (or wrote, which it never does): it is gone.
                pid = key.data
                sel.unregister(key.fileobj)
                if pid in children:
                    kill_group(pid, signal.SIGKILL)


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
