"""Runs each part in a subprocess with a hard wall-clock cap, and rewrites the report after each one.

A subprocess, not a thread: a part stuck in compilation or a CUDA kernel is really stopped (its whole process
group is killed, data-loader and compile workers included), and every part starts with a fresh CUDA context,
allocator and dynamo cache, so one part's state never colours the next one's figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .registry import PARTS
from .report import Report

ENTRY = Path(__file__).resolve().parents[1] / "gpu_check.py"


def child_env() -> dict:
    """The environment, with the data and cache roots made absolute: a part runs in the work directory
    (its checkpoints and logs land there, not in the checkout)."""
    env = dict(os.environ)
    for key in ("DIFFUSION_LM_DATA", "DIFFUSION_LM_CACHE"):
        if env.get(key):
            env[key] = str(Path(env[key]).resolve())
    return env


def run_part(name: str, cap_s: int, child_args: list[str], work: Path) -> dict:
    """→ the part's entry of the report: status, cap, wall time, and its result or the reason it has none."""
    result, log = work / f"{name}.json", work / f"{name}.log"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(ENTRY), "--part", name, "--result", str(result), *child_args]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the timeout and the kill
                pass
            proc.wait()
            rc = None
    entry = {"cap_s": cap_s, "wall_s": round(time.perf_counter() - t0, 1)}
    partial = {"result": json.loads(result.read_text())} if result.is_file() else {}  # what the part emitted
    if rc == 0 and partial:
        return entry | {"status": "ok"} | partial
    tail = log.read_text(errors="replace").splitlines()[-15:]
    status = "timed out" if rc is None else f"failed (exit {rc})"
    return entry | {"status": status + (", partial result" if partial else ""), "error_tail": tail} | partial


def run_all(report: Report, scale, child_args: list[str], work: Path, only: list[str] | None) -> Report:
    work.mkdir(parents=True, exist_ok=True)
    report.write()  # every part "not run" until it has run: a run cut short keeps what it measured
    for part in PARTS:
        if only and part.name not in only:
            continue
        cap = scale.caps_s[part.name]
        print(f"[gpu-check] {part.title} (cap {cap} s) …", flush=True)
        entry = run_part(part.name, cap, child_args, work)
        report.set_part(part.name, entry)
        report.write()
        print(f"[gpu-check]   {entry['status']} in {entry['wall_s']} s", flush=True)
        if entry["status"] != "ok":
            print("\n".join(f"    | {line}" for line in entry["error_tail"]), flush=True)
    return report
