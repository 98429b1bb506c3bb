"""python3 -m aleph_preload DIR [MODULE ...]: preload, wait for `go`, become the program.

DIR holds the exchange with the guest init (all written by the init except `ready`
and `answer`):
  ready   written here once the modules are imported: the names that loaded
  go      a FIFO; the init writes one line once the program is attached
  entry   the program's argv, one argument per line
  cwd     its working folder
  env     its environment as `export NAME='value'` lines (ash `export -p`)
  answer  written here: `taken`, or `refused <reason>` (then this process exits 0)
"""

import importlib
import importlib.machinery
import os
import shlex
import sys

from .imports import preimport

ENTRY = ["python3", "-m", "aleph_asgi"]
# Read by the interpreter at start only; a program that sets one must get a fresh one.
# These three are applied here as a fresh start would.
APPLIED_AT_GO = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def write_atomically(path: str, text: str) -> None:
    partial = path + ".partial"
    with open(partial, "w") as out:
        out.write(text)
    os.rename(partial, path)


def parse_env(text: str) -> dict[str, str]:
    """`export NAME='value'` lines as ash's `export -p` prints them (values may span lines)."""
    env = {}
    for token in shlex.split(text):
        name, equals, value = token.partition("=")
        if equals and name != "export":
            env[name] = value
    return env


def program_path(cwd: str, env: dict[str, str], base: list[str]) -> list[str]:
    """sys.path as `python3 -m aleph_asgi` started in `cwd` with `env` would have it."""
    extra = [entry for entry in env.get("PYTHONPATH", "").split(":") if entry]
    return [cwd, *extra, *base]


def user_site(env: dict[str, str]) -> str:
    home = env.get("HOME", "/root")
    return os.path.join(home, ".local", "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")


def loaded_from_files() -> dict[str, str]:
    """Imported top-level modules that came from a file: name -> that file."""
    found = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if "." not in name and name != "__main__" and origin and os.path.isabs(origin):
            found[name] = origin
    return found


def snapshot(path: list[str]) -> dict[str, tuple]:
    """What each folder on the path is now (a volume mounted on one changes it)."""
    state = {}
    for entry in path:
        try:
            st = os.stat(entry)
            state[entry] = (st.st_dev, st.st_ino, st.st_mtime_ns)
        except OSError:
            state[entry] = None
    return state


def shadowed_slowly(path: list[str]) -> str | None:
    """The first imported top-level module that `path` finds in another file, if any."""
    importlib.invalidate_caches()  # volumes were mounted after the imports
    for name, origin in sorted(loaded_from_files().items()):
        found = importlib.machinery.PathFinder.find_spec(name, path)
        if found is None or found.origin != origin:
            return name
    return None


def shadowed(before: list[str], state: dict[str, tuple], path: list[str]) -> str | None:
    """As shadowed_slowly, without a lookup per module in the common case (under
    emulation that costs seconds with FastAPI's hundreds of modules): when the folders
    the modules were imported from are unchanged and keep their order, only the
    program's own folders (its code, PYTHONPATH) can hold another file for one."""
    common = [entry for entry in path if entry in before]
    if common != [entry for entry in before if entry in path] or snapshot(common) != {e: state[e] for e in common}:
        return shadowed_slowly(path)
    names = loaded_from_files()
    suffixes = importlib.machinery.all_suffixes()
    candidates = {}
    for name in names:
        for file_name in [name, *(name + suffix for suffix in suffixes)]:
            candidates[file_name] = name
    for entry in path:
        if entry in before:
            continue
        if not os.path.isdir(entry):
            if os.path.exists(entry):
                return shadowed_slowly(path)  # a zip archive: let the import system look
            continue
        for file_name in sorted(candidates.keys() & set(os.listdir(entry))):
            return candidates[file_name]
    return None


def unfit(entry: list[str], env: dict[str, str], before: list[str], state: dict[str, tuple], path: list[str]) -> str | None:
    """Why this process cannot be the program exactly as a fresh start, or None."""
    if entry[:3] != ENTRY:
        return "the entry is not python3 -m aleph_asgi"
    for name in sorted(env):
        if name.startswith("PYTHON") and name not in APPLIED_AT_GO:
            return f"{name} is read at interpreter start"
    if os.path.isdir(user_site(env)):
        return "the program has a user site folder"
    module = shadowed(before, state, path)
    if module is not None:
        return f"the program's path finds another {module}"
    return None


def become(entry: list[str], cwd: str, env: dict[str, str], path: list[str]) -> int:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = path
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    if env.get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    import aleph_asgi.__main__ as server

    sys.argv = [server.__file__, *entry[3:]]
    code = server.main(entry[3:])
    return code if isinstance(code, int) else 0


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python3 -m aleph_preload DIR [MODULE ...]", file=sys.stderr)
        return 2
    folder, modules = argv[0], argv[1:]
    # What sys.path holds whatever the program: the interpreter's own folders.
    started = [entry for entry in os.environ.get("PYTHONPATH", "").split(":") if entry]
    base = [entry for entry in sys.path[1:] if entry not in started]
    import aleph_asgi.__main__  # noqa: F401 - the server itself, preloaded

    loaded = preimport(modules)
    before = list(sys.path)
    state = snapshot(before)
    # Opened read-write before saying ready: the init's `go` can never find no reader.
    go = os.open(os.path.join(folder, "go"), os.O_RDWR)
    try:
        write_atomically(os.path.join(folder, "ready"), " ".join(loaded) + "\n")
        while b"\n" not in os.read(go, 64):
            pass
    finally:
        os.close(go)
    with open(os.path.join(folder, "entry")) as f:
        entry = f.read().splitlines()
    with open(os.path.join(folder, "cwd")) as f:
        cwd = f.read().strip() or "/"
    with open(os.path.join(folder, "env")) as f:
        env = parse_env(f.read())
    path = program_path(cwd, env, base)
    reason = unfit(entry, env, before, state, path)
    if reason is not None:
        write_atomically(os.path.join(folder, "answer"), f"refused {reason}\n")
        return 0
    write_atomically(os.path.join(folder, "answer"), "taken\n")
    return become(entry, cwd, env, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
