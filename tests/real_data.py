"""Where the real benchmark files are, if anywhere: ``$DIFFUSION_LM_DATA``, else a ``../shared/data``
checkout next to the repository. Tests that use them skip cleanly when neither exists."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    """A root holding dataset folders with JSONL files (the repository's own ``data/``, which holds only
    a README unless the user put data there, does not count)."""
    for candidate in (os.environ.get("DIFFUSION_LM_DATA"), REPO.parent / "shared" / "data"):
        if candidate and any(Path(candidate).glob("*/*.jsonl*")):
            return Path(candidate)
    return None
