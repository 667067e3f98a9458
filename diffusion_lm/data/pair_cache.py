"""Tokenised (source, target) pairs on disk: built once, memory-mapped by every process.

Layout of one cache (a folder; fairseq's ``.bin``/``.idx`` binarisation in spirit; see :class:`PairCache` for
how rows are read)::

    src.bin  tgt.bin            token ids of all rows back to back (uint16 when the vocabulary fits, else int32)
    src_off.npy  tgt_off.npy    (N + 1,) int64 row offsets into the token files
    examples.bin  examples_off.npy   each row's example (``{"src", "tgt", "refs", …}``) as one UTF-8 JSON
                                     object, read back only when that row is fetched (references for metrics)
    meta.json                   row count, dtype, truncation count, and the key it was built for

A build writes into a temporary sibling folder and renames it into place (``os.rename`` of a folder is
atomic on one file system), so a reader finds either no cache or a complete one; an interrupted build
leaves only a ``.tmp-*`` folder that no reader opens and the next build removes. A file lock makes
concurrent processes (DDP ranks, several nodes on a shared disk) wait for the first builder.

Tokenisation runs in ``workers`` forked processes over chunks of rows; the results are written in
chunk order, so the cache is byte-identical for any number of workers.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import current_umask

CACHE_VERSION = 1
META = "meta.json"


@dataclass
class EncodedChunk:
    """One chunk of rows after tokenisation (what a worker returns)."""

    src: np.ndarray  # (S,) int32 source ids, rows back to back
    src_len: np.ndarray  # (n,) int64
    tgt: np.ndarray  # (T,) int32
    tgt_len: np.ndarray  # (n,) int64
    examples: bytes  # n UTF-8 JSON objects back to back
    example_len: np.ndarray  # (n,) int64 bytes per example
    truncated: int  # rows cut to the length limits


def encode_pairs(examples: list[dict], encode: Callable[[list[str]], list[list[int]]], max_src_len: int,
                 max_tgt_len: int) -> tuple[list[list[int]], list[list[int]], int]:
    """Source and target ids of each example, cut to the length limits, and how many were cut."""
    src = encode([ex["src"] for ex in examples])
    tgt = encode([ex["tgt"] for ex in examples])
    truncated = sum(len(s) > max_src_len or len(t) > max_tgt_len for s, t in zip(src, tgt))
    return [s[:max_src_len] for s in src], [t[:max_tgt_len] for t in tgt], int(truncated)


def encode_examples(examples: list[dict], encode: Callable[[list[str]], list[list[int]]], max_src_len: int,
                    max_tgt_len: int) -> EncodedChunk:
    """One chunk of examples tokenised (:func:`encode_pairs`) into flat arrays, plus the examples as JSON."""
    src, tgt, truncated = encode_pairs(examples, encode, max_src_len, max_tgt_len)
    blobs = [json.dumps(ex, ensure_ascii=False).encode("utf-8") for ex in examples]
    return EncodedChunk(
        src=np.fromiter((i for s in src for i in s), dtype=np.int32, count=sum(map(len, src))),
        src_len=np.fromiter(map(len, src), dtype=np.int64, count=len(src)),
        tgt=np.fromiter((i for t in tgt for i in t), dtype=np.int32, count=sum(map(len, tgt))),
        tgt_len=np.fromiter(map(len, tgt), dtype=np.int64, count=len(tgt)),
        examples=b"".join(blobs),
        example_len=np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)),
        truncated=truncated,
    )


# ---------------------------------------------------------------------------------------------- parallel map
_JOB: Callable[[Any], Any] | None = None  # the chunk function, inherited by forked workers


def _run_job(chunk: Any) -> Any:
    return _JOB(chunk)


def ordered_map(fn: Callable[[Any], Any], chunks: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(fn, chunks)`` over ``workers`` forked processes, in input order, with at most 2 chunks per
    worker in flight (``Pool.imap`` would read the whole input ahead into memory). ``fn`` reaches the
    workers through fork, so it may be a closure over a DataModule and its tokenizer."""
    global _JOB
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        yield from map(fn, chunks)
        return
    _JOB = fn
    pending: collections.deque = collections.deque()
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            for chunk in chunks:
                pending.append(pool.apply_async(_run_job, (chunk,)))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
    finally:
        _JOB = None


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------- building
def cache_digest(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True).encode()).hexdigest()[:16]


def _remove_stale_builds(path: Path) -> None:
    """Temporary folders of builds that were killed (only called while holding the build lock)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def write_pair_cache(path: Path, chunks: Iterable[EncodedChunk], vocab_size: int, key: dict[str, Any]) -> dict:
    """Writes ``chunks`` into a temporary folder and renames it to ``path``; returns the metadata."""
    dtype = np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; other users' runs read it too
        lens: dict[str, list[np.ndarray]] = {"src": [], "tgt": [], "examples": []}
        truncated = 0
        with open(tmp / "src.bin", "wb") as fs, open(tmp / "tgt.bin", "wb") as ft, open(tmp / "examples.bin", "wb") as fe:
            for c in chunks:
                fs.write(c.src.astype(dtype, copy=False).tobytes())
                ft.write(c.tgt.astype(dtype, copy=False).tobytes())
                fe.write(c.examples)
                lens["src"].append(c.src_len)
                lens["tgt"].append(c.tgt_len)
                lens["examples"].append(c.example_len)
                truncated += c.truncated
        for name, parts in lens.items():
            np.save(tmp / f"{name}_off.npy", np.concatenate([np.zeros(1, np.int64), *parts]).cumsum())
        n = int(sum(len(p) for p in lens["src"]))
        meta = {"rows": n, "dtype": dtype.name, "truncated": truncated, "key": key, "version": CACHE_VERSION}
        (tmp / META).write_text(json.dumps(meta, indent=1))
        os.rename(tmp, path)
    except BaseException:  # KeyboardInterrupt included: nothing half-written at ``path``
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def build_or_open(path: Path, build: Callable[[], dict]) -> Path:
    """Builds the cache at ``path`` unless it exists, under a file lock shared by every process."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    if (path / META).is_file():
        return path
    with FileLock(str(path) + ".lock"):
        if not (path / META).is_file():
            _remove_stale_builds(path)
            build()
    return path


def cache_size(path: Path) -> int:
    """Bytes on disk."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


# ---------------------------------------------------------------------------------------------- reading
class PairCache:
    """One built cache. The row offsets are memory-mapped (8 bytes a row and side); a row's tokens and
    example are read with ``os.pread`` when it is fetched. Mapping the token and example files too would
    make every page a rank ever touched count in its resident memory (under random access that is the
    whole cache after one epoch, once per rank in ``ru_maxrss``); read calls go through the page cache,
    which all ranks share, and cost a few microseconds a row."""

    FILES = ("src.bin", "tgt.bin", "examples.bin")
    _fds: list[int] = []  # until __init__ has opened them

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = json.loads((self.path / META).read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        # plain ndarray views of the maps: np.memmap indexing goes through Python-level overrides
        self.src_off, self.tgt_off, self.examples_off = (
            np.load(self.path / f"{name}_off.npy", mmap_mode="r").view(np.ndarray) for name in ("src", "tgt", "examples"))
        # pread takes the offset, so forked DataLoader workers may share these descriptors
        self._fds = [os.open(self.path / name, os.O_RDONLY) for name in self.FILES]

    def __del__(self) -> None:
        for fd in self._fds:
            os.close(fd)

    def __len__(self) -> int:
        return int(self.meta["rows"])

    @property
    def truncated(self) -> int:
        return int(self.meta["truncated"])

    def _read(self, fd: int, off: np.ndarray, rows: list[int], itemsize: int) -> tuple[bytes, np.ndarray]:
        """The bytes of ``rows`` back to back, and each row's length in items."""
        starts, stops = off[rows], off[np.add(rows, 1)]
        data = b"".join(os.pread(fd, (b - a) * itemsize, a * itemsize) for a, b in zip(starts.tolist(), stops.tolist()))
        return data, stops - starts

    def _token_rows(self, fd: int, off: np.ndarray, rows: list[int]) -> list[np.ndarray]:
        data, lens = self._read(fd, off, rows, self.dtype.itemsize)
        flat = np.frombuffer(data, dtype=self.dtype).astype(np.int32)  # (sum of lens,)
        ends = np.cumsum(lens).tolist()
        return [flat[b - n : b] for b, n in zip(ends, lens.tolist())]

    def src_rows(self, rows: list[int]) -> list[np.ndarray]:
        """Source ids of ``rows`` (int32), one read call a row."""
        return self._token_rows(self._fds[0], self.src_off, rows)

    def tgt_rows(self, rows: list[int]) -> list[np.ndarray]:
        return self._token_rows(self._fds[1], self.tgt_off, rows)

    def examples_of(self, rows: list[int]) -> list[dict]:
        """The examples of ``rows``, parsed as one JSON array."""
        starts, stops = self.examples_off[rows], self.examples_off[np.add(rows, 1)]
        blobs = (os.pread(self._fds[2], b - a, a) for a, b in zip(starts.tolist(), stops.tolist()))
        return json.loads(b"[" + b",".join(blobs) + b"]")
