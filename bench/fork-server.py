"""Process driver, FastAPI cold start: today (a fresh `python3 -m aleph_asgi`) against a
pre-imported interpreter that forks per program (issue 23 item 5, docs/snapshots.md).

Both are timed from the moment the node would start the program to its first HTTP
answer. The fork server here is a measuring prototype, standard library only: it
imports aleph_asgi and the runtime's heavy modules (fastapi, pydantic, starlette) once,
then on each request forks a child that loads the app and serves it.

    /usr/bin/python3 bench/fork-server.py [rounds]     (needs python3-fastapi)
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST = os.path.join(ROOT, "guest")
APP = "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get('/')\ndef root():\n    return {'ok': True}\n"
HEAVY = ["fastapi", "fastapi.responses", "pydantic", "starlette.applications", "starlette.routing", "anyio"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_answer(port: int, t0: float, limit_s: float = 30) -> float:
    """Seconds from t0 until GET / answers 200 (polling every 1 ms)."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.perf_counter() - t0 < limit_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.001)
    raise RuntimeError("no answer")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process used so far: unlike wall time, barely
    changed by other work on the machine (2 shared cores here)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold(app_dir: str) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": GUEST, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "aleph_asgi", "--app", "main:app", "--app-dir", app_dir,
                              "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"], env=env)
    try:
        took = first_answer(port, t0)
        return took, cpu_s(child.pid)
    finally:
        child.terminate()
        child.wait()


def fork_server() -> tuple[socket.socket, int]:
    """The prototype: a child that pre-imports, then forks one program per line it reads."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        sys.path.insert(0, GUEST)
        import asyncio  # noqa: F401
        import importlib
        for name in HEAVY:
            importlib.import_module(name)
        from aleph_asgi.loader import load_app
        from aleph_asgi.server import serve
        child.sendall(b"ready\n")
        stream = child.makefile("r")
        for line in stream:
            app_dir, port = line.split()
            if os.fork() == 0:
                child.close()
                os.setsid()
                app = load_app("main:app", app_dir)
                os._exit(asyncio.run(serve(app, "127.0.0.1", int(port))))
        os._exit(0)
    child.close()
    assert parent.recv(16) == b"ready\n"
    return parent, pid


def forked(control: socket.socket, app_dir: str) -> tuple[float, float]:
    port = free_port()
    t0 = time.perf_counter()
    control.sendall(f"{app_dir} {port}\n".encode())
    took = first_answer(port, t0)
    # The forked program: the one listening on the port.
    out = subprocess.run(["ss", "-Htlpn", f"sport = :{port}"], capture_output=True, text=True).stdout
    pids = {int(part.split(",")[0]) for part in out.split("pid=")[1:]}
    cpu = sum(cpu_s(pid) for pid in pids)
    for pid in pids:
        os.kill(pid, 15)
    return took, cpu


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        apps = []
        for i in range(rounds):
            # One folder per program: a fresh import each time, as for distinct programs.
            d = os.path.join(tmp, f"app{i}")
            os.mkdir(d)
            with open(os.path.join(d, "main.py"), "w") as f:
                f.write(APP)
            apps.append(d)
        cold_s = [cold(d) for d in apps]
        t0 = time.perf_counter()
        control, server = fork_server()
        warm_up = time.perf_counter() - t0
        fork_s = [forked(control, d) for d in apps]
        control.close()
        os.kill(server, 15)
    ms = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)  # noqa: E731
    med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"load average {os.getloadavg()[0]:.1f}, {rounds} rounds, python {sys.version.split()[0]}")
    for name, runs in (("cold start today (python3 -m aleph_asgi)", cold_s),
                       (f"fork server (pre-imported once, in {warm_up * 1000:.0f} ms)", fork_s)):
        wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{name}: to the first answer median {med(wall):.0f} ms [{ms(wall)}]; "
              f"CPU used by then median {med(cpu):.0f} ms [{ms(cpu)}]")


if __name__ == "__main__":
    main()
