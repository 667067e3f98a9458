"""benchmarks/learning_curve.py: the fit it runs is the CLI's, with a checkpoint every ``--every`` steps (no training)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
curve = pytest.importorskip("learning_curve")


@pytest.mark.parametrize("arm", ["continuous", "fastdiss"])
def test_fit_command_parses_and_checkpoints_every_n_steps(arm, tmp_path, capsys, monkeypatch):
    from diffusion_lm.cli import main

    monkeypatch.chdir(curve.ROOT)
    args = SimpleNamespace(out=str(tmp_path), seed=3, steps=600, every=200, gpu=False)
    cmd = curve.fit_command(arm, args)
    assert cmd[1:4] == ["-m", "diffusion_lm.cli", "fit"]
    with pytest.raises(SystemExit) as e:
        main([*cmd[3:], "--print_config"])
    assert e.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    (ckpt,) = cfg["trainer"]["callbacks"]
    assert ckpt["init_args"]["every_n_train_steps"] == 200 and ckpt["init_args"]["save_top_k"] == -1
    assert ckpt["init_args"]["dirpath"] == str(tmp_path / arm / "ckpt")
    assert cfg["trainer"]["max_steps"] == 600 and cfg["trainer"]["max_time"] is None and cfg["seed_everything"] == 3
    assert [s for s, _ in curve.checkpoints(arm, args)] == [200, 400, 600]
    assert not any(a.startswith("--ckpt_path") for a in cmd)
    (tmp_path / arm / "ckpt").mkdir(parents=True)
    (tmp_path / arm / "ckpt" / "last.ckpt").touch()  # a fit killed after its first checkpoint
    assert curve.fit_command(arm, args)[-1] == f"--ckpt_path={tmp_path / arm / 'ckpt' / 'last.ckpt'}"


def test_unknown_arm_names_the_known_ones():
    with pytest.raises(SystemExit, match=r"no arm 'continous'.*known: .*continuous"):
        curve.overlay("continous")


def test_plot_draws_both_panels(tmp_path):
    rows = [{"arm": arm, "step": step, "k": k, "bleu": step / 1000 + k / 10 + i, "test_loss": 1.0, "wall_s": step / 10}
            for i, arm in enumerate(["continuous", "fastdiss"]) for step in (100, 200) for k in (1, 5, 20)]
    rows += [dict(rows[-1], k=50, bleu=3.0)]  # a --final-ks value: at the last checkpoint only
    curve.plot(rows, [1, 5, 20], tmp_path / "curve.png", 15.0)
    assert (tmp_path / "curve.png").stat().st_size > 10_000 and not list(tmp_path.glob("*.tmp*"))
