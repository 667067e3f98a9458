"""`diffusion-lm distill`: the distilled split reads back through the DataModule with the same sources and the
teacher's targets, a diffusion checkpoint is refused in one line, an interrupted write leaves no file."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffusion_lm import distill as distill_module
from diffusion_lm.cli import main
from diffusion_lm.data.atomic import write_jsonl_atomic
from diffusion_lm.errors import ConfigError
from diffusion_lm.models.decoding import ARDecoder

from .conftest import REPO, cpu_trainer, tiny_recipe, toy_datamodule


def ar_config(tmp_path: Path, root: Path) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp_path)},
        "model": {"class_path": "diffusion_lm.recipes.Autoregressive",
                  "init_args": {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "embed_dim": 16, "max_len": 56},
                                "warmup_steps": 2, "val_generate_batches": 0}},
        "data": {"class_path": "diffusion_lm.data.Seq2SeqDataModule",
                 "init_args": {"dataset": "toy", "data_dir": str(root), "bpe_vocab_size": 300, "max_src_len": 24,
                               "max_tgt_len": 24, "max_tokens": 512, "num_workers": 0}},
    }
    path = tmp_path / "ar_toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def teacher(toy_root, tmp_path_factory) -> Path:
    """A tiny Autoregressive teacher trained for two steps through the CLI (which records the data module)."""
    tmp = tmp_path_factory.mktemp("teacher")
    main(["fit", "--config", str(ar_config(tmp, toy_root)), "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
          "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={tmp / 'ckpt'}",
          "--trainer.callbacks.save_last=true"])
    return tmp / "ckpt" / "last.ckpt"


def read_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_distilled_split_round_trips_through_the_datamodule(teacher, toy_root, tmp_path, capsys):
    out = tmp_path / "distilled"
    main(["distill", "--ckpt_path", str(teacher), "--output_dir", str(out), "--max_new_tokens", "12", "--no_progress"])
    printed = capsys.readouterr().out
    dest = out / "toy" / "train.jsonl.gz"
    for needle in ("distilled 400 rows", "tokens/s", "teacher decode time", str(dest), f"data_dir={out}"):
        assert needle in printed, (needle, printed)

    original = read_rows(toy_root / "toy" / "train.jsonl.gz")
    written = read_rows(dest)
    assert [r["src"] for r in written] == [r["src"] for r in original]  # original order, every row
    assert [r["tgt_orig"] for r in written] == [r["tgt"] for r in original]
    assert [r["id"] for r in written] == [r["id"] for r in original]  # the other fields come along
    for name in ("validation.jsonl.gz", "test.jsonl"):  # evaluation splits copied byte for byte
        assert (out / "toy" / name).read_bytes() == (toy_root / "toy" / name).read_bytes()
    meta = json.loads((out / "toy" / "train.distill.json").read_text())
    assert meta["rows"] == 400 and meta["decode_seconds"] > 0 and meta["generated_tokens"] > 0

    # the teacher's targets: each of a few sources decoded alone (no batching, no padding) gives the same text
    t = distill_module.load_teacher(teacher)
    tok = t.tokenizer
    for row in written[:6]:
        prompt = tok.encode([row["src"]])[0][:24] + [tok.sep_id]
        ids, _ = ARDecoder(max_new_tokens=12).decode(t.model, [prompt], tok.eos_id, tok.pad_id)
        assert row["tgt"] == tok.decode([i for i in ids[0] if i != tok.eos_id])

    # the DataModule reads it with a data_dir override only: same sources, the teacher's targets
    dm = toy_datamodule(out, tokenizer=str(teacher))
    train = dm.load_split("train")
    assert [ex["src"] for ex in train] == [r["src"] for r in original]
    assert [ex["tgt"] for ex in train] == [r["tgt"] for r in written]
    assert len(dm.load_split("validation")) == 40 and len(dm.load_split("test")) == 40
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 400


def test_existing_split_and_the_source_folder_are_not_overwritten(teacher, toy_root, tmp_path):
    out = tmp_path / "d"
    distill_module.distill(teacher, out, limit=5, max_new_tokens=4, progress=False)
    with pytest.raises(ConfigError, match="exists"):
        distill_module.distill(teacher, out, limit=5, max_new_tokens=4, progress=False)
    (out / "toy" / "train.jsonl").write_text("")  # another suffix of the split: would shadow the new file
    distill_module.distill(teacher, out, limit=3, max_new_tokens=4, progress=False, overwrite=True)
    assert not (out / "toy" / "train.jsonl").exists() and len(read_rows(out / "toy" / "train.jsonl.gz")) == 3
    with pytest.raises(ConfigError, match="teacher's data root"):
        distill_module.distill(teacher, toy_root, limit=2, progress=False, overwrite=True)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "diffusion_lm.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_a_diffusion_checkpoint_is_refused_in_one_line(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    trainer = cpu_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(tiny_recipe(dm.vocab_size), datamodule=dm)
    ckpt = tmp_path / "diffusion.ckpt"
    trainer.save_checkpoint(ckpt)
    r = run_cli("distill", "--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and r.stderr.strip().endswith(errors[0]) and "Traceback" not in r.stderr
    assert str(ckpt) in errors[0] and "not an autoregressive checkpoint" in errors[0]
    assert not (tmp_path / "out").exists()


def test_an_interrupted_write_leaves_no_file(teacher, tmp_path, monkeypatch):
    def failing(rows):
        for i, row in enumerate(rows):
            if i == 10:
                raise KeyboardInterrupt
            yield row

    real = distill_module.write_jsonl_atomic
    monkeypatch.setattr(distill_module, "write_jsonl_atomic", lambda path, rows: real(path, failing(rows)))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        distill_module.distill(teacher, out, limit=30, max_new_tokens=4, progress=False)
    assert not (out / "toy" / "train.jsonl.gz").exists()
    assert not [p.name for p in (out / "toy").iterdir() if p.name.startswith(".")]  # no temporary left behind
    # an existing file stays whole when its replacement is interrupted
    monkeypatch.undo()
    dest = tmp_path / "x.jsonl"
    write_jsonl_atomic(dest, [{"a": 1}])
    with pytest.raises(KeyboardInterrupt):
        write_jsonl_atomic(dest, failing({"a": i} for i in range(20)))
    assert dest.read_text() == '{"a": 1}\n'
