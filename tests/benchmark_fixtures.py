"""Tiny copies of every benchmark in the local JSONL layout of the data README, written by the tests:
the same folders, split files and fields as the real data (WMT14/IWSLT14/XSum without a training split)."""

from __future__ import annotations

import random
from pathlib import Path

from .conftest import make_pairs, write_jsonl

WORDS = "red green blue small big cat dog bird runs sits jumps over under house tree car".split()


def _sentence(rng: random.Random, lo: int = 3, hi: int = 9) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_translation(root: Path, folder: str, src_lang: str, tgt_lang: str, splits=("validation", "test"), n=40):
    for i, split in enumerate(splits):
        rows = [dict(r, src_lang=src_lang, tgt_lang=tgt_lang) for r in make_pairs(n, seed=10 + i)]
        write_jsonl(root / folder / f"{split}.jsonl.gz", rows)


def write_xsum(root: Path, n: int = 30) -> None:
    rng = random.Random(3)
    rows = [{"src": "\n".join(_sentence(rng, 8, 14) + "." for _ in range(rng.randint(4, 12))),
             "tgt": _sentence(rng) + ".", "id": str(i), "official_split": "test"} for i in range(n)]
    write_jsonl(root / "xsum" / "test.jsonl.gz", rows)


def write_commongen(root: Path) -> None:
    rng = random.Random(4)
    train = []
    for i in range(120):
        concepts = sorted(rng.sample(WORDS, 3))
        train.append({"src": " ".join(concepts), "tgt": f"the {concepts[0]} and the {concepts[1]} {concepts[2]} .",
                      "concepts": concepts, "concept_set_idx": i // 2})
    write_jsonl(root / "commongen" / "train.jsonl.gz", train)
    for split in ("validation", "test"):
        rows = []
        for i in range(20):
            concepts = sorted(rng.sample(WORDS, 3))
            refs = [f"the {concepts[0]} {concepts[1]} near the {concepts[2]} ." for _ in range(rng.randint(2, 4))]
            refs = [r.replace("near", w) for r, w in zip(refs, ("near", "over", "under", "by"))]
            rows.append({"src": " ".join(concepts), "tgt": refs[0], "concepts": concepts, "concept_set_idx": i,
                         "references": refs})
        write_jsonl(root / "commongen" / f"{split}.jsonl.gz", rows)


def write_squad(root: Path) -> None:
    rng = random.Random(5)
    for split, n in (("train", 80), ("validation", 20)):
        rows = []
        for i in range(n):
            answer = rng.choice(WORDS)
            context = f"{_sentence(rng, 10, 30)} the answer is {answer} . {_sentence(rng, 10, 30)}"
            rows.append({"id": f"{split}{i}", "title": "t", "context": context, "question": "what is the answer ?",
                         "answers": {"text": [answer, f"the {answer}", answer], "answer_start": [0, 0, 0]},
                         "src": context, "tgt": "what is the answer ?"})
        write_jsonl(root / "squad_v1.1" / f"{split}.jsonl.gz", rows)


def write_mbpp(root: Path) -> None:
    for split, ids in (("train", range(601, 641)), ("validation", range(511, 521)), ("test", range(11, 21))):
        rows = []
        for task in ids:
            k = task
            rows.append({"text": f"Write a function to add {k} to a number.", "task_id": task,
                         "code": f"def add_{k}(x):\r\n    return x + {k}", "test_setup_code": "",
                         "test_list": [f"assert add_{k}(1) == {1 + k}", f"assert add_{k}(-{k}) == 0"],
                         "challenge_test_list": []})
        for row in rows:
            row.update(src=row["text"], tgt=row["code"])
        write_jsonl(root / "mbpp" / f"{split}.jsonl.gz", rows)
        sanitized = [{"prompt": r["text"], "code": r["code"].replace("\r\n", "\n"), "task_id": r["task_id"],
                      "test_imports": ["import math"], "test_list": r["test_list"], "source_file": "x"}
                     for r in rows[: len(rows) // 2]]
        write_jsonl(root / "mbpp" / f"sanitized_{split}.jsonl.gz", sanitized)


def write_all_benchmarks(root: Path) -> Path:
    write_translation(root, "wmt14_en_de", "en", "de")
    write_translation(root, "wmt14_en_fr", "en", "fr")
    write_translation(root, "iwslt14_de_en", "de", "en")
    write_xsum(root)
    write_commongen(root)
    write_squad(root)
    write_mbpp(root)
    return root
