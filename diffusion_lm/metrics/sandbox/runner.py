"""Runs one untrusted Python program in a confined child process.

Layers, from the outside in:

1. a separate process in its own session (process group), killed as a group after a wall-clock timeout;
2. an empty environment (no inherited secrets, tokens or proxies): ``HOME`` and ``TMPDIR`` point at a
   fresh temporary working directory, which is removed afterwards;
3. ``resource.setrlimit``: CPU time, address space (memory), file size, open files, no core dumps,
   no new processes (``RLIMIT_NPROC``; root is exempt from it, hence 4);
4. seccomp-BPF (:mod:`.seccomp`): no fork/exec, no signals to other processes, no sockets, no
   deleting/renaming/re-owning files, no credential or limit changes, no mounts or namespaces;
5. Landlock (:mod:`.landlock`): files are readable only under the Python installation and system
   library folders, writable only in the working directory; TCP is refused (Landlock ABI ≥ 4).

With ``strict=True`` (default) a program is not run at all when layer 4 or 5 cannot be installed
(old kernel, other OS): the result has ``status="sandbox_error"``.
This guards against the accidents of generated code (loops, fork bombs, huge allocations, deleting
files, reading secrets, network); it is not a substitute for a VM against deliberately hostile code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .child import SANDBOX_UNAVAILABLE

CHILD = Path(__file__).with_name("child.py")
SYSTEM_LIBS = ("/usr", "/lib", "/lib64", "/lib32")


@dataclass
class SandboxLimits:
    """Args:
        timeout_s: Wall-clock limit per program.
        cpu_s: CPU-time limit (default: ``timeout_s`` rounded up).
        memory_mb: Address-space limit (the interpreter itself needs ~30 MB).
        file_size_mb: Largest file the program may write (also bounds its captured output).
        open_files: Open file descriptors.
        strict: Refuse to run when seccomp or Landlock is unavailable.
    """

    timeout_s: float = 10.0
    cpu_s: int | None = None
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    strict: bool = True


@dataclass
class SandboxResult:
    status: Literal["passed", "failed", "timeout", "sandbox_error"]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _read_only_paths() -> list[str]:
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], *SYSTEM_LIBS]
    return [os.path.realpath(p) for p in dict.fromkeys(paths)]


def _tail(f, limit: int = 8192) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - limit))
    return f.read().decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Runs ``source`` as ``program.py`` in a fresh temporary directory under every layer above."""
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="diffusion_lm_sandbox_")
    cfg = {"cpu_s": limits.cpu_s or int(limits.timeout_s + 0.999), "memory_mb": limits.memory_mb,
           "file_size_mb": limits.file_size_mb, "open_files": limits.open_files, "strict": limits.strict,
           "read_only": _read_only_paths()}
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
    start = time.monotonic()
    try:
        Path(workdir, "program.py").write_text(source, encoding="utf-8")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(CHILD), json.dumps(cfg)], cwd=workdir,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, close_fds=True,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc.pid)  # whatever is left of the group (nothing, unless a layer failed)
            proc.wait()
            duration = time.monotonic() - start
            stdout, stderr = _tail(out), _tail(err)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rc = proc.returncode
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL) and duration >= limits.timeout_s * 0.9:
        status = "timeout"
    elif rc == SANDBOX_UNAVAILABLE and stderr.startswith("sandbox:"):
        status = "sandbox_error"
    else:
        status = "passed" if rc == 0 else "failed"
    return SandboxResult(status, rc, stdout, stderr, duration)
