"""The report: ``gpu_check.json`` (every figure) and ``gpu_check.md`` (the same, readable), both rewritten
atomically (a temporary file renamed over the old one) after every part, so a reader or a killed run never
sees half a file. Only what this run measured goes in; a part that did not finish says why."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .registry import PARTS

# key suffix → unit and format of a scalar figure (the first suffix that matches wins)
UNITS = [
    ("tokens_per_s", "tokens/s", "{:,.0f}"),
    ("_mfu", "% of peak", "{:.1%}"),
    ("_gap", "relative", "{:.2%}"),
    ("ratio", "×", "{:.3f}"),
    ("_vs_ar", "× AR", "{:.2f}"),
    ("tflops", "TFLOP/s", "{:.1f}"),
    ("_gib", "GiB", "{:.2f}"),
    ("bleu", "BLEU", "{:.2f}"),
    ("_s", "s", "{:.3f}"),
]


def unit_of(key: str) -> tuple[str, str]:
    return next(((u, f) for suffix, u, f in UNITS if key.endswith(suffix)), ("", "{}"))


def fmt(key: str, value) -> str:
    if value is None:
        return "—"
    unit, spec = unit_of(key)
    text = spec.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return f"{text} {unit}".rstrip() if unit and unit != "% of peak" else text


# ---------------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    name: str
    part: str
    threshold: float
    measure: Callable[[dict], Optional[float]]  # the part's result → the measured value
    key: str  # names the unit

    def evaluate(self, parts: dict) -> dict:
        entry = parts.get(self.part, {})
        value = self.measure(entry["result"]) if "result" in entry else None  # a partial result counts too
        verdict = "not run" if value is None else ("pass" if value >= self.threshold else "miss")
        return {"target": self.name, "threshold": self.threshold, "measured": value, "unit": unit_of(self.key)[0],
                "verdict": verdict, "text": {"threshold": fmt(self.key, self.threshold), "measured": fmt(self.key, value)}}


def _decode_ratio(kind: str) -> Callable[[dict], Optional[float]]:
    def measure(result: dict) -> Optional[float]:
        longest = max(r["length"] for r in result["rows"])
        row = next((r for r in result["rows"] if r["batch"] == 1 and r["length"] == longest), None)  # the smallest batch
        return row and row[f"{kind}_vs_ar"]
    return measure


TARGETS = [
    Target("Lightning ÷ bare loop tokens/s, L = 256 (aim 1.0)", "training", 0.95, lambda r: r["ratio"], "ratio"),
    Target("MFU of the Lightning recipe, L = 256", "training", 0.40, lambda r: r["lightning_mfu"], "lightning_mfu"),
    Target("continuous diffusion K = 10 ÷ AR tokens/s, batch 1, 256 tokens", "decoding", 10.0,
           _decode_ratio("continuous"), "continuous_vs_ar"),
    Target("masked diffusion K = 10 ÷ AR tokens/s, batch 1, 256 tokens", "decoding", 10.0,
           _decode_ratio("masked"), "masked_vs_ar"),
    Target("Multi30k diffusion test BLEU after 2.5 min", "quality_diffusion", 25.0,
           lambda r: r["test_bleu"], "test_bleu"),
]


# ---------------------------------------------------------------------------------------------- report
class Report:
    def __init__(self, out_dir: Path, header: dict) -> None:
        self.out_dir = Path(out_dir)
        self.data = dict(header, parts={p.name: {"status": "not run"} for p in PARTS}, targets=[])

    def set_part(self, name: str, entry: dict) -> None:
        self.data["parts"][name] = entry
        if name == "environment" and entry["status"] == "ok":
            self.data["device"] = entry["result"]["device"]

    def write(self) -> None:
        self.data["targets"] = [t.evaluate(self.data["parts"]) for t in TARGETS]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out_dir / "gpu_check.json", json.dumps(self.data, indent=2) + "\n")
        atomic_write(self.out_dir / "gpu_check.md", render(self.data))


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


SMOKE_NOTE = ("**Smoke scale**: every part at toy size on the CPU, to keep the script working; the figures say "
              "nothing about a GPU and the targets' conditions (L = 256, K = 10, 2.5 min) do not hold.")


def render(data: dict) -> str:
    lines = [f"# GPU check ({data['scale']} scale)", "",
             f"- device: {data.get('device', '—')}", f"- date: {data['date']}", f"- commit: {data['commit']}",
             f"- command: `{data['command']}`", "",
             "Every figure below was measured in this run (`benchmarks/gpu_check.py`); the full record, loss "
             "curves included, is `gpu_check.json` next to this file.", ""]
    lines += [SMOKE_NOTE, ""] if data["scale"] == "smoke" else []
    lines += ["## Targets", "", "| target | threshold | measured | verdict |", "|---|---:|---:|---|"]
    lines += [f"| {t['target']} | ≥ {t['text']['threshold']} | {t['text']['measured']} | {t['verdict']} |"
              for t in data["targets"]]
    for part in PARTS:
        entry = data["parts"][part.name]
        lines += ["", f"## {part.title}", "", f"status: **{entry['status']}**"
                  + (f" ({entry['wall_s']} s of a {entry['cap_s']} s cap)" if "wall_s" in entry else ""), ""]
        if "result" in entry:
            lines += _render_result(entry["result"])
        if "error_tail" in entry:
            lines += ["", "```", *entry["error_tail"], "```"]
    return "\n".join(lines) + "\n"


def _is_table(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def _scalar_text(k: str, v) -> str:
    if isinstance(v, list):  # curves and argument lists: in the JSON only, where they stay readable
        return f"{len(v)} values (in the JSON)" if len(v) > 6 or any(isinstance(x, float) for x in v) else ", ".join(map(str, v)) or "none"
    return fmt(k, v)


def _render_result(result: dict, prefix: str = "") -> list[str]:
    scalars = [(k, v) for k, v in result.items() if not isinstance(v, dict) and not _is_table(v)]
    lines = ["| figure | value |", "|---|---:|", *(f"| {prefix}{k} | {_scalar_text(k, v)} |" for k, v in scalars)]
    for k, v in result.items():
        if isinstance(v, dict):
            lines += [""] + _render_result(v, prefix=f"{prefix}{k}.")
        elif _is_table(v):
            keys = list(v[0])
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
            lines += ["| " + " | ".join(fmt(c, r.get(c)) for c in keys) + " |" for r in v]
    return lines
