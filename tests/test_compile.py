"""torch.compile of the denoiser: no graph breaks, unchanged state-dict keys, same numbers as eager;
bf16 + compile on a GPU without host synchronisations in the step."""

import pytest
import torch
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.models import Denoiser, DenoiserConfig

from .conftest import TINY_DENOISER, cpu_trainer, tiny_recipe, toy_datamodule

VARIANTS = [
    {},
    {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "n_kv_heads": 1},
    {"activation_checkpointing": True},
]


def _inputs(cfg: DenoiserConfig, n: int = 6):
    g = torch.Generator().manual_seed(0)
    srcs = [torch.randint(5, cfg.vocab_size, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]
    b = build_batch(srcs, srcs, sep_id=1, eos_id=2, pad_id=0)
    B, L = b["input_ids"].shape
    E = cfg.latent_dim
    return dict(inputs_embeds=torch.randn(B, L, E, generator=g), timesteps=torch.rand(B, L, generator=g),
                self_cond=torch.randn(B, L, E, generator=g), valid=b["valid"], prefix_len=b["prefix_len"])


@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("attention", ["prefix", "bidirectional", "causal"])
def test_training_forward_has_no_graph_breaks(kw, attention):
    cfg = DenoiserConfig(**{**TINY_DENOISER, "vocab_size": 50, "length_classes": 57, **kw})
    model = Denoiser(cfg).train()
    explanation = torch._dynamo.explain(model)(**_inputs(cfg), attention=attention)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compile_keeps_state_dict_keys(toy_root):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, compile=True)
    keys = list(model.state_dict())
    model.configure_model()  # what the Trainer calls
    assert list(model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    model.load_state_dict(tiny_recipe(dm.vocab_size).state_dict())  # an eager checkpoint loads into it


@pytest.mark.slow  # inductor compiles C++ kernels: about a minute on 2 cores
def test_compiled_denoiser_matches_eager():
    cfg = DenoiserConfig(**{**TINY_DENOISER, "vocab_size": 50, "length_classes": 57})
    torch.manual_seed(0)
    eager = Denoiser(cfg)
    compiled = Denoiser(cfg)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    inputs = _inputs(cfg)
    for model in (eager, compiled):
        model.latent = model(**inputs).latent
        model.latent.square().mean().backward()
    torch.testing.assert_close(compiled.latent, eager.latent, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_fit_with_compile(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    torch.manual_seed(0)
    model = tiny_recipe(dm.vocab_size, compile=True)
    trainer = cpu_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(model, dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.gpu
def test_bf16_compile_on_gpu_without_host_syncs(toy_root, tmp_path):
    """bf16-mixed + compile + fused AdamW through Lightning on a GPU: the loss matches fp32 eager at the first
    step, the steps between logging make no host-device synchronisation, and throughput/MFU are measured."""
    import lightning as L

    class Watch(L.Callback):
        def __init__(self):
            self.losses = []

        @override
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 9:  # steps 9 and 10 are not logged (every 8 steps)
                torch.cuda.set_sync_debug_mode("error")
            elif trainer.global_step == 11:
                torch.cuda.set_sync_debug_mode("default")

        @override
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                self.losses.append(float(outputs["loss"]))

    dm = toy_datamodule(toy_root)
    losses = []
    for precision, compile in (("32-true", False), ("bf16-mixed", True)):
        torch.manual_seed(0)
        watch = Watch()
        model = tiny_recipe(dm.vocab_size, compile=compile)
        trainer = cpu_trainer(tmp_path, accelerator="gpu", devices=1, precision=precision, max_steps=16,
                              limit_val_batches=0, log_every_n_steps=8, callbacks=[watch])
        torch.manual_seed(0)
        trainer.fit(model, dm)
        losses.append(watch.losses[0])
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    monitor = next(c for c in trainer.callbacks if type(c).__name__ == "ThroughputMonitor")
    assert monitor.last_metrics["throughput/tokens_per_sec"] > 0 and monitor.last_metrics["throughput/gpu_mem_peak_gib"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["prefix", "bidirectional", "causal"])
def test_attention_masks_run_on_fused_kernels(attention):
    """The mask form of each attention mode is accepted by a fused SDPA kernel (flash, memory-efficient or cuDNN)
    in bf16: with the math fallback disabled, SDPA raises if none of them takes it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = DenoiserConfig(vocab_size=100, d_model=128, n_layers=2, n_heads=2, max_len=64, dropout=0.1)
    model = Denoiser(cfg).cuda().train()
    inputs = {k: v.cuda() for k, v in _inputs(cfg).items()}
    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(fused), torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(**inputs, attention=attention).latent
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
