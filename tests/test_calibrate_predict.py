"""ε calibration (selection rule and the `calibrate` command), `predict` to JSONL, and command-line
overrides winning over the checkpoint's hyperparameters."""

import gzip
import json
import logging

import pytest
import torch
import yaml

from diffusion_lm.cli import main
from diffusion_lm.cli.calibrate import calibrate
from diffusion_lm.diffusion.calibration import CalibrationPoint, at_grid_edge, select_epsilon, warn_if_at_grid_edge

from .test_cli import toy_config

P = CalibrationPoint


def curve():
    return [P(0.0, 30.0, 20.0, 10.0), P(0.01, 29.9, 15.0, 7.5), P(0.05, 29.6, 10.0, 5.0), P(0.1, 28.0, 5.0, 2.5),
            P(0.2, 29.7, 12.0, 6.0)]


@pytest.mark.parametrize(("tolerance", "expected"), [(0.0, 0.0), (0.2, 0.01), (0.5, 0.05), (1.9, 0.05), (2.0, 0.1)])
def test_selection_takes_the_fewest_steps_within_tolerance(tolerance, expected):
    assert select_epsilon(curve(), tolerance).epsilon == expected


def test_selection_for_lower_is_better_metrics_and_ties():
    pts = [P(0.0, 2.0, 10, 1), P(0.1, 2.05, 6, 1), P(0.3, 2.05, 6, 1), P(0.5, 3.0, 2, 1)]
    assert select_epsilon(pts, 0.1, higher_is_better=False).epsilon == 0.1  # tie on steps: the smaller ε
    with pytest.raises(ValueError, match="epsilon = 0"):
        select_epsilon(pts[1:], 0.1)


def test_default_tolerance_is_at_most_the_papers_bleu_drop():
    import inspect

    from diffusion_lm.cli.trainer import DiffusionLMTrainer

    for fn in (calibrate, DiffusionLMTrainer.calibrate):
        assert inspect.signature(fn).parameters["tolerance"].default <= 0.2
    assert select_epsilon(curve(), inspect.signature(calibrate).parameters["tolerance"].default).epsilon == 0.01


def test_a_choice_at_the_largest_epsilon_of_the_sweep_is_flagged(caplog):
    pts = curve()
    with caplog.at_level(logging.WARNING, logger="diffusion_lm.diffusion.calibration"):
        assert not warn_if_at_grid_edge(pts, select_epsilon(pts, 0.5))  # ε = 0.05 < 0.2, the largest tried
        assert not caplog.records
        edge = [*pts, P(0.5, 29.95, 4.0, 2.0)]
        assert warn_if_at_grid_edge(edge, select_epsilon(edge, 0.1))
    assert len(caplog.records) == 1 and "ε=0.5 is the largest" in caplog.records[0].getMessage()
    assert "--epsilons" in caplog.records[0].getMessage()
    assert not at_grid_edge([P(0.0, 30.0, 20.0, 1.0)], P(0.0, 30.0, 20.0, 1.0))  # nothing but ε = 0 was tried


def output_value(text: str, key: str) -> float:
    line = next(line for line in text.splitlines() if key in line)
    return float(line.split("│")[2])


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory):
    """A toy model fitted for a few steps (its config decodes with 2 DDIM steps) and its checkpoint."""
    tmp = tmp_path_factory.mktemp("cal")
    cfg_path = toy_config(tmp, toy_root)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                    "init_args": {"dirpath": str(tmp / "ckpt"), "save_last": True, "every_n_train_steps": 5}}]
    cfg_path.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(cfg_path), "--trainer.max_steps=5", "--trainer.limit_val_batches=0"])
    return cfg_path, tmp / "ckpt" / "last.ckpt", tmp


ADAPTIVE = ["--model.init_args.generator=diffusion_lm.diffusion.AdaptiveDDIMSampler",
            "--model.init_args.generator.init_args.steps=6", "--model.init_args.generator.init_args.min_steps=2"]


def test_command_line_overrides_the_checkpoint_hyperparameters(trained, capsys):
    cfg, ckpt, _ = trained
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--model.init_args.generator.init_args.steps=3"])
    assert output_value(capsys.readouterr().out, "test/decode_steps") == 3.0


def test_calibrate_stores_epsilon_where_test_and_predict_pick_it_up(trained, capsys, tmp_path, caplog):
    cfg, ckpt, _ = trained
    ckpt_copy = tmp_path / "model.ckpt"
    ckpt_copy.write_bytes(ckpt.read_bytes())
    out = tmp_path / "out"
    main(["calibrate", "--config", str(cfg), "--ckpt_path", str(ckpt_copy), *ADAPTIVE,
          "--epsilons=[1.0e9]", "--tolerance=1000", f"--output_dir={out}"])
    text = capsys.readouterr().out
    assert "chosen ε = 1e+09" in text
    record = json.loads((out / "calibration" / "calibration.json").read_text())
    assert [p["epsilon"] for p in record["curve"]] == [0.0, 1e9]
    assert record["at_grid_edge"] and any("largest of the sweep" in r.getMessage() for r in caplog.records)
    assert [p["mean_steps"] for p in record["curve"]] == [6.0, 2.0]  # fixed K = 6; everything stops at min_steps
    assert all(p["wall_time"] > 0 for p in record["curve"])
    assert (out / "calibration" / "calibration.png").stat().st_size > 1000
    stored = torch.load(ckpt_copy, weights_only=False, map_location="cpu")
    assert stored["generator"]["calibrated_epsilon"] == 1e9 and stored["calibration"]["chosen"]["epsilon"] == 1e9
    # test with the adaptive sampler (epsilon: null) uses the stored ε; the fixed-step sampler ignores it
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt_copy), *ADAPTIVE])
    assert output_value(capsys.readouterr().out, "test/decode_steps") == 2.0
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt_copy), "--model.init_args.generator.init_args.steps=6"])
    assert output_value(capsys.readouterr().out, "test/decode_steps") == 6.0
    # predict too
    main(["predict", "--config", str(cfg), "--ckpt_path", str(ckpt_copy), *ADAPTIVE, f"--output={tmp_path / 'p.jsonl'}"])
    assert {json.loads(line)["steps"] for line in (tmp_path / "p.jsonl").read_text().splitlines()} == {2}


def test_predict_writes_valid_jsonl_for_a_split(trained, toy_root, tmp_path):
    cfg, ckpt, _ = trained
    out = tmp_path / "gen" / "validation.jsonl"
    main(["predict", "--config", str(cfg), "--ckpt_path", str(ckpt), "--data.init_args.predict_split=validation",
          f"--output={out}"])
    lines = out.read_text(encoding="utf-8").splitlines()
    with gzip.open(toy_root / "toy" / "validation.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    assert len(lines) == len(rows) == 40
    recs = [json.loads(line) for line in lines]
    assert [r["index"] for r in recs] == list(range(40))  # input order, each example once
    assert [r["source"] for r in recs] == [r["src"] for r in rows]
    assert [r["references"] for r in recs] == [[r["tgt"]] for r in rows]
    assert all(isinstance(r["prediction"], str) and r["steps"] == 2 for r in recs)
    assert not list(out.parent.glob("*.partial"))


def test_predict_for_a_file(trained, tmp_path):
    cfg, ckpt, _ = trained
    src = tmp_path / "inputs.jsonl"
    src.write_text('{"src": "red cat runs"}\n{"src": "the big dog", "tgt": "EHT GIB GOD"}\n')
    out = tmp_path / "out.jsonl"
    main(["predict", "--config", str(cfg), "--ckpt_path", str(ckpt), f"--data.init_args.predict_file={src}",
          f"--output={out}"])
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in recs] == ["red cat runs", "the big dog"]
    assert recs[1]["references"] == ["EHT GIB GOD"]
