"""The MBPP execution sandbox: each accident generated code can cause is contained.

Every dangerous program here is bounded so that it could not harm this machine even if the sandbox
had a bug: the fork bomb forks at most 2⁶ sleeping processes (killed with the process group), the
allocation stops at 3 GiB, ``rm -rf ~`` runs with HOME pointing at a temporary canary directory
(set in the test process too), and the network test only connects to a listener of its own on 127.0.0.1.
"""

import os
import platform
import re
import socket
import threading
from pathlib import Path

import pytest

from diffusion_lm.metrics.sandbox import SandboxLimits, run_program, seccomp

FAST = SandboxLimits(timeout_s=5.0)


@pytest.fixture(scope="module", autouse=True)
def _sandbox_available():
    r = run_program("print('ok')", FAST)
    if r.status == "sandbox_error":
        pytest.skip(f"seccomp/Landlock unavailable here: {r.stderr.strip()}")
    assert r.passed and r.stdout.strip() == "ok", r


@pytest.fixture
def canary_home(tmp_path, monkeypatch):
    """HOME of the test process is a temporary directory with a file that must survive."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious.txt").write_text("keep me")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_passing_and_failing_programs():
    assert run_program("def f(x):\n    return x + 1\nassert f(1) == 2\n", FAST).status == "passed"
    r = run_program("assert 1 == 2\n", FAST)
    assert r.status == "failed" and "AssertionError" in r.stderr
    r = run_program("def f(:\n", FAST)
    assert r.status == "failed" and "SyntaxError" in r.stderr


def test_standard_library_and_threads_work():
    src = ("import math, re, heapq, collections, itertools, functools, bisect, json\n"
           "import threading\nout = []\nt = threading.Thread(target=lambda: out.append(math.factorial(5)))\n"
           "t.start(); t.join()\nassert out == [120]\n")
    r = run_program(src, FAST)
    # threads count against RLIMIT_NPROC=0 for a non-root user; under root they run (seccomp allows CLONE_THREAD)
    assert r.passed or (os.geteuid() != 0 and "can't start new thread" in r.stderr), r


def test_infinite_loop_is_killed_within_the_timeout():
    r = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=2.0))
    assert r.status == "timeout" and r.duration_s < 10


def test_sleeping_program_is_killed_by_the_wall_clock():
    r = run_program("import time\ntime.sleep(600)\n", SandboxLimits(timeout_s=1.5))
    assert r.status == "timeout" and r.duration_s < 10


def test_fork_bomb_is_refused():
    src = ("import os, time\nfor _ in range(6):\n    os.fork()\ntime.sleep(30)\n")  # at most 2**6 processes
    r = run_program(src, SandboxLimits(timeout_s=5.0))
    assert r.status == "failed" and "PermissionError" in r.stderr, r
    assert r.duration_s < 5


def test_fork_through_libc_and_subprocess_are_refused():
    src = ("import ctypes, os, subprocess\nlibc = ctypes.CDLL(None)\npid = libc.fork()\n"
           "if pid == 0:\n    os._exit(0)\nprint('fork', pid)\n"
           "try:\n    subprocess.run(['true'])\nexcept PermissionError:\n    print('subprocess refused')\n")
    r = run_program(src, FAST)
    assert r.passed, r
    assert "fork -1" in r.stdout and "subprocess refused" in r.stdout


def test_huge_allocation_hits_the_memory_limit():
    src = "chunks = []\nfor _ in range(48):\n    chunks.append(bytearray(64 * 1024 * 1024))\nprint('allocated 3 GiB')\n"
    r = run_program(src, SandboxLimits(timeout_s=20.0, memory_mb=256))
    assert r.status == "failed" and "MemoryError" in r.stderr, r
    assert "allocated" not in r.stdout


def test_rm_rf_home_harms_nothing(canary_home):
    src = (f"import os, shutil\nprint('system', os.system('rm -rf ~ {canary_home}'))\n"
           "for target in (os.path.expanduser('~'), " + repr(str(canary_home)) + "):\n"
           "    try:\n        shutil.rmtree(target)\n    except OSError as e:\n        print('refused', type(e).__name__)\n")
    r = run_program(src, FAST)
    assert (canary_home / "precious.txt").read_text() == "keep me"
    assert r.stdout.count("refused") == 2, r


def test_files_outside_the_working_directory_cannot_be_read_or_written(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    src = (f"import os\nfor p in ({str(secret)!r}, '/etc/passwd', {str(Path.home())!r}):\n"
           "    try:\n        print(open(p).read()[:20] if os.path.isfile(p) else os.listdir(p))\n"
           "    except OSError as e:\n        print('refused', type(e).__name__)\n"
           f"try:\n    open({str(tmp_path / 'planted.txt')!r}, 'w').write('x')\nexcept OSError as e:\n"
           "    print('refused', type(e).__name__)\n"
           "open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())\n")
    r = run_program(src, FAST)
    assert r.passed, r
    assert "TOPSECRET" not in r.stdout and "root:" not in r.stdout
    assert r.stdout.count("refused") == 4 and r.stdout.strip().endswith("fine")
    assert not (tmp_path / "planted.txt").exists()


def test_no_network_even_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(6)
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(_accept(server)))
    t.start()
    port = server.getsockname()[1]
    src = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\n"
           "except OSError as e:\n    print('refused', type(e).__name__)\n")
    r = run_program(src, FAST)
    t.join()
    server.close()
    assert r.passed and "refused" in r.stdout, r
    assert accepted == [False]


def _accept(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
        conn.close()
        return True
    except OSError:
        return False


def test_environment_is_empty_and_workdir_is_temporary(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_canary_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_canary_secret")
    r = run_program("import os\nprint(sorted(os.environ.items()))\nprint('cwd', os.getcwd())\n", FAST)
    assert r.passed and "canary_secret" not in r.stdout
    cwd = re.search(r"cwd (\S+)", r.stdout).group(1)
    assert f"('HOME', '{cwd}')" in r.stdout
    assert cwd != os.getcwd() and not Path(cwd).exists()  # removed afterwards


def test_signals_to_other_processes_are_refused():
    r = run_program(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\n", FAST)
    assert r.status == "failed" and "PermissionError" in r.stderr  # this test process is still alive


def test_raising_the_limits_is_refused():
    src = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n"
    r = run_program(src, FAST)
    assert r.status == "failed" and ("PermissionError" in r.stderr or "ValueError" in r.stderr), r


def test_output_flood_is_bounded():
    r = run_program("while True:\n    print('x' * 1000)\n", SandboxLimits(timeout_s=3.0, file_size_mb=1))
    assert r.status in ("failed", "timeout") and len(r.stdout) <= 8192


@pytest.mark.skipif(not Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").exists() or platform.machine() != "x86_64",
                    reason="needs the x86_64 kernel headers")
def test_syscall_numbers_match_the_kernel_headers():
    text = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text()
    header = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    table = seccomp.SYSCALLS["x86_64"]
    checked = [name for name in table if name in header]
    assert len(checked) >= len(table) - 1  # fchmodat2 (Linux 6.6) may be newer than the headers
    assert all(table[name] == header[name] for name in checked)
