"""Reading local JSONL(.gz) files with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError

SPLIT_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def iter_jsonl(path: str | Path, required: Sequence[str] = ()) -> Iterator[dict]:
    """Yields one dict per non-empty line. A malformed line or a missing field raises
    :class:`DataError` with ``path:line``."""
    path = Path(path)
    try:
        fh = open_text(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                for key in required:
                    if key not in row:
                        raise DataError(f"{path}:{lineno}: missing field {key!r} (fields present: {sorted(row)})")
                yield row
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot be read ({e})") from None


def find_split_file(folder: Path, split: str) -> Path | None:
    """``folder/split.jsonl.gz`` or ``.jsonl`` (or ``.json``), whichever exists."""
    for suffix in SPLIT_SUFFIXES:
        p = folder / f"{split}{suffix}"
        if p.is_file():
            return p
    return None
