"""Sandbox bootstrap: runs in the child interpreter (``python -I -S -B child.py CONFIG_JSON``).

It confines itself — resource limits, Landlock, seccomp — and only then executes ``program.py`` from
its working directory. Standard library only: the package is not importable in the child.
Exit code :data:`SANDBOX_UNAVAILABLE` means a required layer could not be installed and the program
did not run.
"""

import json
import os
import resource
import sys

SANDBOX_UNAVAILABLE = 97


def set_limits(cfg: dict) -> None:
    mb = 1024 * 1024
    cpu = int(cfg["cpu_s"])
    for limit, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),          # SIGXCPU, then SIGKILL one second later
        (resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2),
        (resource.RLIMIT_FSIZE, (cfg["file_size_mb"] * mb,) * 2),
        (resource.RLIMIT_NOFILE, (cfg["open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NPROC, (0, 0)),                # no new processes (ignored for root: seccomp covers it)
    ):
        resource.setrlimit(limit, value)


def confine(cfg: dict) -> list[str]:
    """Installs the kernel layers; returns the names of those that could not be installed."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import landlock  # noqa: E402 — siblings of this file
    import seccomp  # noqa: E402 — sibling of this file, like landlock

    missing = []
    try:
        landlock.restrict(cfg["read_only"], [os.getcwd()])
    except OSError as e:
        missing.append(f"landlock ({e})")
    try:
        seccomp.install()
    except OSError as e:
        missing.append(f"seccomp ({e})")
    del sys.path[0]
    return missing


def main() -> None:
    cfg = json.loads(sys.argv[1])
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "program.py", "exec")  # a syntax error is reported before anything is confined
    set_limits(cfg)
    missing = confine(cfg)
    if missing and cfg["strict"]:
        sys.stderr.write("sandbox: required layers unavailable: " + "; ".join(missing) + "\n")
        sys.exit(SANDBOX_UNAVAILABLE)
    sys.argv = ["program.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
