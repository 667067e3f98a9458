"""Atomic dataset files: written to a temporary file in the destination's folder, then renamed over it.

``os.replace`` within one file system is atomic, so a reader (or a DataModule started later) sees either
the previous file or the complete new one; a run that is interrupted or fails mid-way removes its
temporary file and leaves nothing at the destination.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file handle whose content appears at ``path`` only when the ``with`` block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private (0600); the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: no half file, no stray temporary
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> int:
    """One JSON object per line, gzip-compressed when ``path`` ends in ``.gz``; returns the rows written."""
    n = 0
    with atomic_output(path) as raw:
        # mtime=0: the same rows give the same bytes (reproducible dataset files)
        compressed = str(path).endswith(".gz")
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if compressed else contextlib.nullcontext(raw) as out:
            for row in rows:
                out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                n += 1
    return n


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    with open(src, "rb") as f, atomic_output(dst) as out:
        shutil.copyfileobj(f, out)
