"""The command line: every shipped YAML parses, a fit runs, bad input ends in one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffusion_lm.cli import main

from .conftest import REPO

CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").rglob("*.yaml"))


def toy_config(tmp_path: Path, root: Path, **extra_model) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path)},
        "model": {"class_path": "diffusion_lm.recipes.FromScratch",
                  "init_args": {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "embed_dim": 16, "max_len": 56},
                                "warmup_steps": 2, "val_generate_batches": 1,
                                "generator": {"class_path": "diffusion_lm.diffusion.DDIMSampler", "init_args": {"steps": 2}},
                                **extra_model}},
        "data": {"class_path": "diffusion_lm.data.Seq2SeqDataModule",
                 "init_args": {"dataset": "toy", "data_dir": str(root), "bpe_vocab_size": 300, "max_src_len": 24,
                               "max_tgt_len": 24, "max_tokens": 512, "num_workers": 0}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_yaml_parses(config, capsys):
    os.chdir(REPO)
    # an overlay with no model section of its own (e.g. demo_pretrain.yaml) extends the demo config
    model = (yaml.safe_load((REPO / config).read_text()) or {}).get("model") or {}
    base = [] if "class_path" in model else ["--config", "experiments/demo.yaml"]
    with pytest.raises(SystemExit) as e:
        main(["fit", *base, "--config", config, "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("diffusion_lm.")
    assert printed["trainer"].get("plugins") is None  # nothing unserialisable in the saved config.yaml


def test_cli_fast_dev_run(toy_root, tmp_path, monkeypatch):
    from diffusion_lm.checkpoint import SafeCheckpointIO
    from diffusion_lm.cli import DiffusionLMCLI

    seen = {}
    instantiate = DiffusionLMCLI.instantiate_trainer

    def spy(self, **kwargs):
        seen["trainer"] = instantiate(self, **kwargs)
        return seen["trainer"]

    monkeypatch.setattr(DiffusionLMCLI, "instantiate_trainer", spy)
    main(["fit", "--config", str(toy_config(tmp_path, toy_root)), "--trainer.fast_dev_run=2"])
    assert isinstance(seen["trainer"].strategy.checkpoint_io, SafeCheckpointIO)  # weights-only loading


def test_config_yaml_goes_to_the_log_dir_and_nowhere_without_a_logger(toy_root, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cfg = str(toy_config(tmp_path, toy_root))
    main(["fit", "--config", cfg, "--trainer.max_steps=1", "--trainer.limit_val_batches=0", "--trainer.default_root_dir=null"])
    assert not list(cwd.rglob("config.yaml"))  # the working directory is not a run directory
    main(["fit", "--config", cfg, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
          "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger", f"--trainer.logger.save_dir={tmp_path / 'tb'}"])
    main(["fit", "--config", cfg, "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
          f"--trainer.default_root_dir={tmp_path / 'root'}"])  # no logger, a run directory of its own
    assert not list(cwd.rglob("config.yaml"))
    for where, steps in (("tb", 1), ("root", 2)):
        (saved,) = (tmp_path / where).rglob("config.yaml")
        assert yaml.safe_load(saved.read_text())["trainer"]["max_steps"] == steps


def test_omegaconf_interpolation(toy_root, tmp_path, capsys):
    cfg = toy_config(tmp_path, toy_root, lr=0.002, warmup_steps="${model.init_args.denoiser.n_layers}")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["warmup_steps"] == 1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "diffusion_lm.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_unknown_key_is_named(toy_root, tmp_path):
    r = run_cli("fit", "--config", str(toy_config(tmp_path, toy_root)), "--model.init_args.lrr=1")
    assert r.returncode != 0
    assert "lrr" in r.stderr and "Traceback" not in r.stderr


def test_typo_inside_yaml_is_named(toy_root, tmp_path):
    path = toy_config(tmp_path, toy_root)
    path.write_text(path.read_text().replace("warmup_steps:", "warmup_stepz:"))
    r = run_cli("fit", "--config", str(path))
    assert r.returncode != 0 and "warmup_stepz" in r.stderr and "Traceback" not in r.stderr


def test_missing_data_is_one_clear_line(tmp_path):
    path = toy_config(tmp_path, tmp_path / "nowhere")
    r = run_cli("fit", "--config", str(path), "--trainer.fast_dev_run=1")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: no train split" in r.stderr and "Traceback" not in r.stderr


def test_malformed_line_is_one_clear_line(tmp_path):
    (tmp_path / "d" / "toy").mkdir(parents=True)
    (tmp_path / "d" / "toy" / "train.jsonl").write_text('{"src": "a", "tgt": "b"}\nnot json\n')
    r = run_cli("fit", "--config", str(toy_config(tmp_path, tmp_path / "d")), "--trainer.fast_dev_run=1")
    assert r.returncode == 2 and "train.jsonl:2: malformed JSON" in r.stderr and "Traceback" not in r.stderr


def _trained_checkpoint(toy_root, tmp_path) -> Path:
    ckpt = tmp_path / "ck"
    main(["fit", "--config", str(toy_config(tmp_path, toy_root)), "--trainer.max_steps=2",
          "--trainer.limit_val_batches=0", "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
          f"--trainer.callbacks.dirpath={ckpt}", "--trainer.callbacks.save_last=true"])
    return ckpt / "last.ckpt"


def test_test_from_checkpoint_alone_and_overrides_win(toy_root, tmp_path, monkeypatch, capsys):
    """`test --ckpt_path` rebuilds model and data from the checkpoint (tokenizer included), while
    explicit overrides still apply (Lightning's own behaviour would silently drop them)."""
    path = _trained_checkpoint(toy_root, tmp_path)
    from diffusion_lm.recipes import diffusion as recipe_module

    seen = []
    original = recipe_module.DiffusionRecipe.target_lengths
    monkeypatch.setattr(recipe_module.DiffusionRecipe, "target_lengths",
                        lambda self, b, m: seen.append(self.length_source) or original(self, b, m))
    main(["test", "--ckpt_path", str(path), "--trainer.logger=false", "--trainer.limit_test_batches=1",
          f"--trainer.default_root_dir={tmp_path}",
          "--model.init_args.length_source=oracle", "--model.init_args.generator.init_args.steps=4"])
    assert seen and set(seen) == {"oracle"}
    assert "test/decode_steps" in capsys.readouterr().out


def test_bad_checkpoint_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("test", "--ckpt_path", str(bad))
    assert r.returncode == 2 and "bad.ckpt: not a readable diffusion_lm checkpoint" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("test", "--ckpt_path", str(tmp_path / "missing.ckpt"))
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
