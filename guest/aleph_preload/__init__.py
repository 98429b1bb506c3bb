"""A Python that has imported the runtime's heavy modules, waiting in a warm-pool VM
for the program it will become (docs/warm-pool.md, "Preloaded Python").

Booting a Python ASGI program under emulation is mostly Python: the interpreter's
start and `import fastapi` take seconds that a warm VM's kernel boot does not save.
The guest init of a warm VM starts `python3 -m aleph_preload DIR MODULE...` on the pool's
runtime before any program is attached. Once a program is attached, the init writes
its entry, working folder and environment into DIR and the word `go` into DIR/go; this
process then either becomes that program (`python3 -m aleph_asgi ...`, same argv,
environment, folder and sys.path as a fresh interpreter would have) or refuses, and the
init starts the program as a boot would. It refuses whenever the program could see
anything different from a fresh start: another entry, a PYTHON* variable read only at
interpreter start, a user site folder, or any imported module that the program's own
sys.path would find elsewhere (its volumes or code shadowing the runtime's).

Standard library only.
"""
