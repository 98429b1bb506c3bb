"""aleph_preload: a Python that imported modules first, then becomes the program or refuses."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from .support import GUEST, TIMEOUT

PROBE_APP = '''
import os, sys, json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"probe": os.environ.get("PROBE"), "cwd": os.getcwd(), "path0": sys.path[0],
                       "preloaded": "json" in sys.modules, "argv0": sys.argv[0]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def wait_for(path: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT * 3
    while not os.path.exists(path):
        if process.poll() is not None and not os.path.exists(path):
            raise AssertionError(f"exited ({process.returncode}) before {os.path.basename(path)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {os.path.basename(path)}")
        time.sleep(0.01)


class Preload(unittest.TestCase):
    def setUp(self) -> None:
        self.work = tempfile.mkdtemp()
        self.folder = os.path.join(self.work, "preload")
        self.code = os.path.join(self.work, "code")
        self.home = os.path.join(self.work, "home")
        for d in (self.folder, self.code, self.home):
            os.mkdir(d)
        os.mkfifo(os.path.join(self.folder, "go"))
        with open(os.path.join(self.code, "probe.py"), "w") as f:
            f.write(PROBE_APP)
        self.process: subprocess.Popen | None = None

    def tearDown(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.work)

    def preload(self, *modules: str) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aleph_preload", self.folder, *modules], cwd=self.work,
            env={"PATH": os.environ["PATH"], "HOME": self.home, "PYTHONPATH": GUEST},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(os.path.join(self.folder, "ready"), self.process)
        with open(os.path.join(self.folder, "ready")) as f:
            return f.read().strip()

    def go(self, entry: list[str], env: dict[str, str], cwd: str | None = None) -> str:
        with open(os.path.join(self.folder, "entry"), "w") as f:
            f.write("".join(f"{a}\n" for a in entry))
        with open(os.path.join(self.folder, "cwd"), "w") as f:
            f.write((cwd or self.code) + "\n")
        with open(os.path.join(self.folder, "env"), "w") as f:
            f.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()))
        with open(os.path.join(self.folder, "go"), "w") as f:
            f.write("go\n")
        assert self.process is not None
        wait_for(os.path.join(self.folder, "answer"), self.process)
        with open(os.path.join(self.folder, "answer")) as f:
            return f.read().strip()

    def entry(self) -> list[str]:
        return ["python3", "-m", "aleph_asgi", "--app", "probe:app", "--app-dir", self.code,
                "--host", "127.0.0.1", "--port", "0"]

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": self.home, "PYTHONPATH": GUEST, **extra}

    def test_becomes_the_program_with_its_environment_and_folder(self) -> None:
        self.assertEqual(self.preload("json", "no_such_module_here"), "json")
        self.assertEqual(self.go(self.entry(), self.env(PROBE="it's\nthere")), "taken")
        assert self.process is not None and self.process.stderr is not None
        port = None
        for raw in self.process.stderr:
            line = raw.decode()
            if "listening on http://" in line:
                port = int(line.rsplit(":", 1)[1].split()[0].strip("/"))
                break
        self.assertIsNotNone(port, "the program never listened")
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        answer = json.loads(data.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(answer["probe"], "it's\nthere")
        self.assertEqual(answer["cwd"], self.code)
        self.assertEqual(answer["path0"], self.code)
        self.assertTrue(answer["preloaded"])
        self.assertTrue(answer["argv0"].endswith(os.path.join("aleph_asgi", "__main__.py")))

    def refused(self, entry: list[str], env: dict[str, str], reason: str) -> None:
        self.assertEqual(self.go(entry, env), f"refused {reason}")
        assert self.process is not None
        self.assertEqual(self.process.wait(TIMEOUT), 0)

    def test_refuses_another_entry(self) -> None:
        self.preload("json")
        self.refused(["/app/start"], self.env(), "the entry is not python3 -m aleph_asgi")

    def test_refuses_variables_read_at_interpreter_start(self) -> None:
        self.preload("json")
        self.refused(self.entry(), self.env(PYTHONHASHSEED="0"), "PYTHONHASHSEED is read at interpreter start")

    def test_refuses_a_program_whose_path_shadows_a_preloaded_module(self) -> None:
        self.preload("json")
        with open(os.path.join(self.code, "json.py"), "w") as f:
            f.write("raise ImportError('the program would have loaded this one')\n")
        self.refused(self.entry(), self.env(), "the program's path finds another json")

    def test_refuses_a_program_with_packages_on_its_own_path(self) -> None:
        packages = os.path.join(self.work, "packages")
        os.makedirs(os.path.join(packages, "json"))
        with open(os.path.join(packages, "json", "__init__.py"), "w") as f:
            f.write("")
        self.preload("json")
        self.refused(self.entry(), self.env(PYTHONPATH=f"{packages}:{GUEST}"), "the program's path finds another json")

    def test_refuses_a_program_with_a_user_site_folder(self) -> None:
        self.preload("json")
        v = sys.version_info
        os.makedirs(os.path.join(self.home, ".local", "lib", f"python{v.major}.{v.minor}", "site-packages"))
        self.refused(self.entry(), self.env(), "the program has a user site folder")

    def test_refuses_a_program_whose_volume_changed_a_folder_modules_came_from(self) -> None:
        site = os.path.join(self.work, "site")
        os.makedirs(os.path.join(site, "preloaded_here"))
        with open(os.path.join(site, "preloaded_here", "__init__.py"), "w") as f:
            f.write("")
        assert self.process is None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aleph_preload", self.folder, "preloaded_here"], cwd=self.work,
            env={"PATH": os.environ["PATH"], "HOME": self.home, "PYTHONPATH": f"{GUEST}:{site}"},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(os.path.join(self.folder, "ready"), self.process)
        # As a volume mounted over it would: the folder changes, and so does its package.
        shutil.rmtree(os.path.join(site, "preloaded_here"))
        with open(os.path.join(site, "preloaded_here.py"), "w") as f:
            f.write("")
        self.refused(self.entry(), self.env(PYTHONPATH=f"{GUEST}:{site}"), "the program's path finds another preloaded_here")


if __name__ == "__main__":
    unittest.main()
