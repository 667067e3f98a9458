"""The shipped AR2Diff configs run end to end through the CLI at toy scale (what `make ar2diff-demo` does),
chained through the real runs/ar2diff/stage*/last.ckpt files."""

from diffusion_lm.cli import main

from .conftest import REPO, write_jsonl
from .test_corpus import corpus_rows

E = REPO / "experiments" / "ar2diff"
TINY = ["--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false"]


def test_shipped_pipeline_configs_chain_through_checkpoints(toy_root, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "data" / "mini" / "train.jsonl.gz", corpus_rows(300, 0))
    write_jsonl(tmp_path / "data" / "mini" / "validation.jsonl.gz", corpus_rows(40, 1))
    monkeypatch.chdir(tmp_path)  # the configs write and read runs/ar2diff/… relative to the working directory
    corpus = ["--data.init_args.dataset=mini", f"--data.init_args.data_dir={tmp_path / 'data'}",
              "--data.init_args.block_size=32", "--data.init_args.max_tokens=256", "--data.init_args.eval_max_tokens=256"]
    task = ["--data.init_args.dataset=toy", f"--data.init_args.data_dir={toy_root}", "--data.init_args.max_src_len=24",
            "--data.init_args.max_tgt_len=24", "--data.init_args.max_tokens=512", "--data.init_args.eval_max_tokens=512"]
    main(["fit", "--config", str(E / "stage1_ar_pretrain.yaml"), *TINY, *corpus, "--data.init_args.bpe_vocab_size=300",
          "--model.init_args.denoiser.d_model=32", "--model.init_args.denoiser.n_layers=1",
          "--model.init_args.denoiser.n_heads=2", "--model.init_args.denoiser.max_len=64"])
    assert (tmp_path / "runs/ar2diff/stage1/last.ckpt").is_file()
    main(["fit", "--config", str(E / "stage2_diffusion_pretrain.yaml"), *TINY, *corpus,
          "--data.init_args.min_prefix=4", "--data.init_args.min_target=4"])
    main(["fit", "--config", str(E / "stage3_finetune_multi30k.yaml"), *TINY, *task,
          "--model.init_args.generator.init_args.num_samples=2"])
    main(["test", "--config", str(E / "stage3_finetune_multi30k.yaml"), "--ckpt_path", "runs/ar2diff/stage3/last.ckpt",
          *task, "--trainer.limit_test_batches=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false"])
    main(["fit", "--config", str(E / "ar_finetune_multi30k.yaml"), *TINY, *task])
    main(["fit", "--config", str(E / "diffusion_from_scratch_multi30k.yaml"), *TINY, *task,
          "--model.init_args.denoiser.d_model=32", "--model.init_args.denoiser.n_layers=1",
          "--model.init_args.denoiser.n_heads=2", "--model.init_args.denoiser.max_len=64"])
    for run in ("stage2", "stage3", "ar_finetune", "from_scratch"):
        assert (tmp_path / "runs" / "ar2diff" / run / "last.ckpt").is_file(), run
