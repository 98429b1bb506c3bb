"""The program's process when the process driver uses the fork server (server.py).

    python3 -I -S client.py <socket> <aleph_asgi argument> ...

The node starts this as it would start `python3 -m aleph_asgi ...`, with the program's
environment and working folder. It hands those, its arguments and its stdin, stdout
and stderr to the fork server, which forks the program from an interpreter that has
already imported everything heavy. Then it stands for the program: the pid of the
program goes to fd 3 (the node's guest link accepts only the program's own process
tree), SIGTERM/SIGINT/SIGHUP are passed to the program's process group, and this
process exits with the program's status (or dies of its signal). When the fork server
is not there, it execs `python3 -m aleph_asgi` itself: a slower start, never none.
"""

import array
import json
import os
import signal
import socket
import sys
import time

CONNECT_ATTEMPTS = 50  # 20 ms apart: the server may be starting with the node


def fall_back(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "aleph_asgi", *argv])


def connect(path: str) -> socket.socket | None:
    for _ in range(CONNECT_ATTEMPTS):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            time.sleep(0.02)
    return None


def main() -> int:
    path, argv = sys.argv[1], sys.argv[2:]
    conn = connect(path)
    if conn is None:
        print("aleph-forkserver: no fork server, starting the program directly", file=sys.stderr, flush=True)
        fall_back(argv)
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
    conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    reader = conn.makefile("rb")
    first = reader.readline().decode().split()
    if len(first) != 2 or first[0] != "pid":
        print(f"aleph-forkserver: refused: {' '.join(first)}", file=sys.stderr, flush=True)
        return 1
    pid = int(first[1])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: forward(pid, number))
    try:
        os.write(3, f"{pid}\n".encode())
        os.close(3)
    except OSError:
        pass  # started without fd 3 (by hand): nobody asks for the pid
    # Our stdio now belongs to the program: nothing more is printed here.
    os.close(0)
    line = reader.readline().decode().split()
    if len(line) != 2 or line[0] != "exit":
        forward(pid, signal.SIGKILL)  # the server went away: the program must not stay
        return 1
    status = int(line[1])
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def forward(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
