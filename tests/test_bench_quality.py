"""benchmarks/quality.py: the pieces that do not train (generator rebuild, durations, the report)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
quality = pytest.importorskip("quality")


def test_generator_is_rebuilt_with_k_in_the_innermost_sampler():
    from diffusion_lm.diffusion import LengthBeam, MaskPredictSampler

    cfg = {"class_path": "diffusion_lm.diffusion.LengthBeam",
           "init_args": {"width": 3, "generator": {"class_path": "diffusion_lm.diffusion.MaskPredictSampler",
                                                   "init_args": {"steps": 10, "remask": False}}}}
    gen = quality.generator_with_steps(cfg, 4)
    assert isinstance(gen, LengthBeam) and gen.width == 3
    assert isinstance(gen.generator, MaskPredictSampler) and gen.generator.steps == 4 and not gen.generator.remask
    assert cfg["init_args"]["generator"]["init_args"]["steps"] == 10  # the config itself is not changed
    assert quality.innermost_steps(cfg) == 10
    plain = quality.generator_with_steps({"class_path": "diffusion_lm.diffusion.DDIMSampler"}, 7)
    assert plain.steps == 7


def test_durations_are_lightning_strings():
    assert quality.hms(300) == "00:00:05:00" and quality.hms(3725.4) == "00:01:02:05"


def test_report_table_json_and_plot(tmp_path):
    rows = tmp_path / "rows"
    rows.mkdir()
    base = dict(seed=0, steps=100, tokens_seen=12345, train_s=300.0, teacher_s=0.0)
    (rows / "autoregressive.json").write_text(json.dumps(dict(base, recipe="autoregressive", default_k=None, by_k=[
        {"k": None, "bleu": 20.0, "decode_steps": 12.0, "test_loss": 3.0, "test_s": 5.0}])))
    (rows / "masked.json").write_text(json.dumps(dict(base, recipe="masked", default_k=10, by_k=[
        {"k": k, "bleu": b, "decode_steps": float(k), "test_loss": 5.0, "test_s": 5.0} for k, b in ((5, 8.0), (10, 10.0))])))
    got = quality.aggregate(tmp_path, ["autoregressive", "masked", "sundae"])  # a missing row is left out
    assert [r["recipe"] for r in got] == ["autoregressive", "masked"]
    table = (tmp_path / "results.md").read_text()
    assert "| masked | 0 | 100 | 12,345 | 300 | 0 | 10 (default) | 10.0 | 10.00 | 0.50 |" in table
    assert json.loads((tmp_path / "results.json").read_text())["ar_bleu"] == 20.0
    assert (tmp_path / "results.png").stat().st_size > 1000
