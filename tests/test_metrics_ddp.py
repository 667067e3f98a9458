"""DDP correctness: two CPU processes (gloo) each score half of the corpus; after the all-reduce /
all-gather in ``compute()`` every metric equals the single-process value on the whole corpus. This
matters most for CIDEr-D, whose IDF is computed over all references of all ranks."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PREDS = ["the cat sat on the mat", "a dog runs in the park", "Denver Broncos", "", "two men play chess .",
         "def f(x):\n    return x + 1", "it &apos;s a red house", "birds fly over the sea", "a", "the the the"]
REFS = [["the cat sat on a mat", "a cat is sitting on the mat"], ["a dog is running in a park"],
        ["Denver Broncos", "the Broncos"], ["something"], ["two men are playing chess ."],
        ["assert f(1) == 2"], ["it &apos;s a red house ."], ["birds are flying above the sea", "a bird flies"],
        ["a b"], ["the end"]]


def build_metrics():
    from diffusion_lm.metrics import ROUGE, CIDErD, PassAtK, SacreBLEU, SQuADScore, TokenizedBLEU

    return {"bleu": SacreBLEU(), "bleu_tok": TokenizedBLEU("moses"), "rouge": ROUGE(), "squad": SQuADScore(),
            "cider": CIDErD(), "pass": PassAtK(timeout_s=5, workers=2)}  # only PREDS[5] passes its "tests"


def flatten(values: dict) -> dict[str, float]:
    out = {}
    for name, v in values.items():
        for k, x in (v.items() if isinstance(v, dict) else [(name, v)]):
            out[k] = float(x)
    return out


def _worker(rank: int, world: int, port: int, path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    metrics = build_metrics()
    share = slice(rank, None, world)  # interleaved and unequal-length strings across ranks
    for m in metrics.values():
        m.update(PREDS[share], REFS[share])
    values = flatten({name: m.compute() for name, m in metrics.items()})
    torch.save(values, f"{path}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_all_reduce_across_two_processes(tmp_path):
    single = build_metrics()
    for m in single.values():
        m.update(PREDS, REFS)
    expected = flatten({name: m.compute() for name, m in single.items()})
    path = str(tmp_path / "values")
    mp.spawn(_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{path}.{rank}")
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert expected["cider"] > 0 and expected["rouge1"] > 0 and expected["pass@1"] == pytest.approx(10.0)
