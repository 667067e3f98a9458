"""benchmarks/claims.py: verdicts, the report page and the CLI build of every arm (no training)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
claims = pytest.importorskip("claims")


def test_verdicts_need_three_seeds_the_floor_and_two_std():
    assert claims.verdict([15.0, 15.2], [17, 17.1, 17.2]).startswith("inconclusive (fewer than 3 seeds")
    assert claims.verdict([1.0, 1.2, 1.1], [3.0, 3.1, 3.2]).startswith("inconclusive (both below 5: noise")
    assert claims.verdict([1.4], [1.1]).startswith("inconclusive (both below 5: noise")  # noise whatever the seeds
    assert claims.verdict([15.0, 15.5, 16.0], [15.4, 15.9, 16.4]).startswith("inconclusive (difference +0.40")
    assert claims.verdict([15.0, 15.1, 15.2], [16.0, 16.1, 16.2]).startswith("confirmed (+1.00")
    assert claims.verdict([15.0, 15.1, 15.2], [14.0, 14.1, 14.2]).startswith("not confirmed (-1.00")


def test_parity_claims_are_confirmed_within_noise_and_cider_has_no_bleu_floor():
    assert claims.verdict([15.0, 15.5, 16.0], [15.4, 15.9, 16.4], parity=True).startswith("confirmed, within noise (difference +0.40")
    assert claims.verdict([15.0, 15.1, 15.2], [14.0, 14.1, 14.2], parity=True).startswith("not confirmed (-1.00")
    cider = claims.verdict([0.30, 0.31, 0.32], [0.40, 0.41, 0.42], floor=None, digits=3)
    assert cider.startswith("confirmed (+0.100"), cider


def write(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def run(arm, seed, bleu, **kw):
    return {"claim": "importance", "arm": arm, "seed": seed, "steps": 1800, "train_s": 200.0 + seed, "test_s": 20.0,
            "bleu": bleu, "decode_steps": 20.0, "command": f"cmd {arm} {seed}", "bin_loss": [1.0, 2.0, 3.0], **kw}


def test_report_writes_tables_plots_and_keeps_the_rest_of_the_page(tmp_path):
    out, docs = tmp_path / "runs", tmp_path / "docs"
    for s, (u, a) in enumerate([(15.0, 16.0), (15.1, 16.1), (15.2, 16.2)]):
        write(out / "importance" / "uniform" / f"seed{s}.json", run("uniform", s, u))
        write(out / "importance" / "alpha_1" / f"seed{s}.json", run("alpha_1", s, a))
        write(out / "adaptive" / "calibrated" / f"seed{s}.json",
              {"seed": s, "epsilon": 0.1, "bleu": u - 0.05, "decode_steps": 9.0, "test_s": 10.0,
               "fixed": [{"k": k, "bleu": u} for k in claims.FIXED_KS],
               "calibration": {"curve": [{"epsilon": 0.0, "metric": u, "mean_steps": 20.0}]}, "command": "c"})
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n\nhand-written intro\n\n" + claims.BEGIN + "\nold\n" + claims.END + "\n\n## Other\nkept\n")
    (tmp_path / "README.md").write_text("x\n" + claims.VERDICTS_BEGIN + "\nold\n" + claims.VERDICTS_END + "\ny\n")
    for s, (u, t) in enumerate([(0.50, 0.40), (0.51, 0.41), (0.52, 0.42)]):
        write(out / "importance_commongen" / "uniform" / f"seed{s}.json", run("uniform", s, 6.0, cider=u))
        write(out / "importance_commongen" / "alpha_1" / f"seed{s}.json", run("alpha_1", s, 6.0, cider=t))
        write(out / "task_adapt" / "task_adapt" / f"seed{s}.json",
              run("task_adapt", s, 15.1 + 0.1 * s, trained_params=250_000, params=1_000_000, steps=900))
    verdicts = claims.report(out, docs)
    assert verdicts["importance_commongen"].startswith("alpha_1 vs uniform: not confirmed (-0.100"), verdicts
    # task_only is the importance/uniform runs (15.0–15.2): within 2 std of TaskAdapt's, a claim of parity
    assert verdicts["task_adapt"].startswith("task_adapt vs task_only: confirmed, within noise"), verdicts
    assert verdicts["importance"].startswith("alpha_1 vs uniform: confirmed (+1.00")
    assert verdicts["adaptive"].startswith("confirmed: 55% fewer steps")
    assert verdicts["ar2diff"].startswith("ar2diff vs diffusion_scratch") is False  # its other arms never ran
    page = (docs / "results.md").read_text()
    assert "hand-written intro" in page and "## Other\nkept" in page and "\nold\n" not in page
    assert "| alpha_1 | 3 | 1800 |" in page and "not run on the CPU" in page
    assert "| task_adapt | 3 | 900 | 0.25 M / 1.00 M (25%) |" in page and "test CIDEr-D" in page
    for claim in ("importance", "adaptive", "ar2diff"):
        assert (docs / "results" / "claims" / f"{claim}.png").stat().st_size > 1000
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("x\n") and readme.endswith("\ny\n") and "\nold\n" not in readme
    assert "| `importance` — " in readme and "confirmed (+1.00" in readme
    assert json.loads((docs / "results" / "claims" / "importance.json").read_text())["alpha_1"][0]["bleu"] == 16.0


@pytest.mark.parametrize("claim", [c for c in claims.CLAIMS if c not in ("adaptive", "decode_length")])
def test_every_training_arm_parses_through_the_cli(claim, capsys, monkeypatch):
    import yaml

    from diffusion_lm.cli import main

    monkeypatch.chdir(claims.ROOT)
    for name, arm in claims.CLAIMS[claim].items():
        if arm.same_as:
            continue
        init = [f"{k}=runs/claims/{arm.init}/last.ckpt" for k in arm.init_keys] if arm.init else []
        args = [a for c in [claims.DEMO, *arm.overlays] for a in ("--config", c)] + claims.settings(False) + arm.overrides + init
        with pytest.raises(SystemExit) as e:
            main(["fit", *args, "--print_config"])
        assert e.value.code == 0, name
        model = yaml.safe_load(capsys.readouterr().out)["model"]
        sampler = model["init_args"].get("timestep_sampler") or {}
        if name.startswith("alpha_"):
            assert sampler["class_path"].endswith("ImportanceSampler")
            assert sampler["init_args"]["alpha"] == float(name.split("_")[1])
        else:
            assert not str(sampler.get("class_path", "")).endswith("ImportanceSampler"), name


@pytest.mark.parametrize("stage", list(claims.STAGES))
def test_every_shared_stage_parses_through_the_cli(stage, capsys, monkeypatch):
    from diffusion_lm.cli import main

    monkeypatch.chdir(claims.ROOT)
    st = claims.STAGES[stage]
    init = [f"{k}=runs/claims/{st.init}/last.ckpt" for k in st.init_keys] if st.init else []
    args = [a for c in [claims.DEMO, *st.overlays] for a in ("--config", c)] + claims.settings(False) + st.overrides + init
    with pytest.raises(SystemExit) as e:
        main(["fit", *args, "--print_config"])
    assert e.value.code == 0, stage
    capsys.readouterr()


def test_a_cider_claim_below_the_bleu_floor_draws_no_verdict(tmp_path):
    out = tmp_path / "runs"
    for s in range(3):
        write(out / "importance_commongen" / "uniform" / f"seed{s}.json", run("uniform", s, 1.8, cider=0.07 + 0.01 * s))
    _, v, _ = claims.report_training(out, "importance_commongen", tmp_path)
    assert v.startswith("not run on the CPU: its baseline `uniform` stays below the noise floor there (CIDEr-D 0.080"), v
    assert "--gpu --claims importance_commongen" in v
    for s in range(3):
        write(out / "importance_commongen" / "alpha_1" / f"seed{s}.json", run("alpha_1", s, 2.0, cider=0.5))
    _, v, _ = claims.report_training(out, "importance_commongen", tmp_path)
    assert v.startswith("alpha_1 vs uniform: inconclusive (SacreBLEU of both below 5"), v


def test_a_claim_not_run_quotes_its_baselines_learning_curve(tmp_path):
    docs = tmp_path / "docs"
    _, v, _ = claims.report_training(tmp_path / "runs", "fastdiss", docs)
    assert v == "not run on the CPU; GPU: `python benchmarks/claims.py --gpu --claims fastdiss`"
    (docs / "results").mkdir(parents=True)
    rows = [{"arm": arm, "step": step, "k": k, "bleu": bleu, "test_loss": 1.0, "wall_s": 1.0}
            for arm, step, k, bleu in [("continuous", 100, 1, 2.0), ("continuous", 200, 20, 7.25), ("fastdiss", 200, 5, 9.0)]]
    (docs / "results" / "learning_curve_cpu.json").write_text(json.dumps(rows))
    _, v, _ = claims.report_training(tmp_path / "runs", "fastdiss", docs)
    assert v.startswith("3 seeds not run on the CPU: its baseline (`continuous` from scratch) reaches at most 7.25 BLEU "
                        "there (K = 20, 200 steps; one seed"), v  # the fastdiss arm's 9.0 is not the baseline
    assert v.endswith("short of the 15 BLEU the claims need; GPU: `python benchmarks/claims.py --gpu --claims fastdiss`")
