"""Throughput/MFU logging, the FLOP model it rests on, and the absence of host-device synchronisations
in the training step."""

import csv
import traceback

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary
from typing_extensions import override

from diffusion_lm.callbacks import ThroughputMonitor
from diffusion_lm.flops import StepFlops, body_params, head_params
from diffusion_lm.models import Denoiser, DenoiserConfig

from .conftest import cpu_trainer, tiny_recipe, toy_datamodule

CONFIGS = [
    dict(d_model=64, n_layers=2, n_heads=4, embed_dim=16),
    dict(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, mlp="swiglu", norm="rmsnorm", position="rope", bias=False,
         self_condition=False, timestep_embedding=False),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_parameter_count_matches_the_module(kw):
    cfg = DenoiserConfig(vocab_size=100, max_len=40, **kw)
    model = Denoiser(cfg)
    linear = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                 and not n.startswith("length_head"))
    assert body_params(cfg) + (0 if cfg.tie_embeddings else head_params(cfg)) == linear


@pytest.mark.parametrize("kw", CONFIGS)
def test_forward_flops_match_pytorchs_flop_counter(kw):
    cfg = DenoiserConfig(vocab_size=100, max_len=40, dropout=0.0, **kw)
    model = Denoiser(cfg)
    B, L = 3, 24
    ids = torch.randint(0, 100, (B, L))
    # the math kernel runs attention as matmuls, which the counter sees (it has no entry for the fused CPU kernel)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(ids, timesteps=torch.rand(B, L), self_cond=torch.zeros(B, L, cfg.latent_dim) if cfg.self_condition else None,
                    valid=torch.ones(B, L, dtype=torch.bool), prefix_len=torch.full((B,), 5))
        model.logits(out.latent)
    counted = counter.get_total_flops()
    predicted = StepFlops(cfg).forward_per_token(L) * B * L + 2 * head_params(cfg) * B * L
    assert predicted == pytest.approx(counted, rel=1e-6)
    # a training step: forward + backward = 3 forwards (the counter agrees up to the input-gradient of the first layer)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.logits(model(ids, timesteps=torch.rand(B, L)).latent).sum().backward()
    assert StepFlops(cfg)(B * L, L) == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_throughput_is_logged_and_shown_in_the_progress_bar(toy_root, tmp_path):
    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size)
    trainer = cpu_trainer(tmp_path, max_steps=8, limit_val_batches=0, log_every_n_steps=4, logger=CSVLogger(tmp_path),
                          callbacks=[ThroughputMonitor(peak_tflops=0.05)], enable_progress_bar=True)
    trainer.fit(model, dm)
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("throughput/tokens_per_sec")]
    assert [int(r["step"]) for r in rows] == [4, 8]
    for r in rows:
        assert float(r["throughput/tokens_per_sec"]) > 100
        assert 0 < float(r["throughput/mfu"]) < 1 and float(r["throughput/tflops_per_device"]) > 0
        assert 0 <= float(r["throughput/padding"]) < 0.5 and 0 <= float(r["throughput/data_wait"]) < 1
    assert "throughput/tokens_per_sec" in trainer.progress_bar_metrics
    assert "loss" in trainer.progress_bar_metrics


class SyncDetector(TorchDispatchMode):
    """Records what would make the host wait for a GPU: reading a value of a device tensor (``.item()``,
    ``bool()``, ``.tolist()``, a copy to the host) and data-dependent shapes (``nonzero``, boolean-mask
    indexing). On a CPU everything is a CPU tensor, so "device tensors" are tracked: the model's parameters,
    buffers and metric states, the optimizer state, the batches and the callbacks' tensors, and every result
    of an op on one of them. Tensors built on the host (collation, a CPU copy made for the progress bar, the
    self-conditioning coin flip) stay untracked, as they are host tensors on a GPU machine too."""

    def __init__(self) -> None:
        super().__init__()
        self.device = WeakIdKeyDictionary()
        self.hits: list[str] = []

    def track(self, *objs) -> None:
        for t in pytree.tree_leaves(objs):
            if isinstance(t, torch.Tensor):
                self.device[t] = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and t in self.device for t in pytree.tree_leaves((args, kwargs))):
            name = func._schema.name
            indices = args[1] if name in ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_") else []
            bool_index = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
            to_host = name == "aten::_to_copy" and kwargs.get("device") == torch.device("cpu")
            if name in ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select") or bool_index or to_host:
                self.hits.append(name + "\n" + "".join(traceback.format_stack()[-12:]))
            self.track(out)
        return out


def _device_state(trainer, pl_module):
    import torchmetrics

    yield list(pl_module.parameters()), list(pl_module.buffers()), [p.grad for p in pl_module.parameters()]
    yield [list(s.values()) for s in trainer.optimizers[0].state.values()]
    for m in pl_module.modules():
        if isinstance(m, torchmetrics.Metric):
            yield [getattr(m, k) for k in m._defaults]
    for cb in trainer.callbacks:
        yield [v for v in vars(cb).values() if isinstance(v, torch.Tensor)]


def test_training_steps_between_logging_read_nothing_from_the_device(toy_root, tmp_path):
    """Steps that are not logged must not wait for the device (on a GPU, such reads stall the pipeline)."""
    import lightning as L

    detector = SyncDetector()

    class Watch(L.Callback):  # from the start of step 5 to the start of step 7: all hooks, logging, data
        @override
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 5:  # steps 5 and 6 are neither logged nor checked (every 4 steps)
                detector.__enter__()
                for group in _device_state(trainer, pl_module):
                    detector.track(group)
            if detector.device:
                detector.track(batch)  # moved to the device by Lightning
            if trainer.global_step == 7:
                detector.__exit__(None, None, None)

    dm = toy_datamodule(toy_root)
    model = tiny_recipe(dm.vocab_size, fused_adamw=True)  # as on a GPU: the non-finite guard needs no host read
    trainer = cpu_trainer(tmp_path, max_steps=10, limit_val_batches=0, log_every_n_steps=4, enable_progress_bar=True,
                          callbacks=[Watch()], logger=CSVLogger(tmp_path))
    trainer.fit(model, dm)
    assert len(detector.device) > 100
    assert not detector.hits, detector.hits[0]


def test_the_sync_detector_can_fail():
    detector = SyncDetector()
    x = torch.randn(5)
    detector.track(x)
    with detector:
        x[x > 0].sum()
        float(x.sum())
        torch.randn(3).tolist()  # a host tensor: fine
    assert [h.split("\n")[0] for h in detector.hits] == ["aten::index", "aten::_local_scalar_dense"]


def test_recipes_count_every_forward_pass_of_their_process():
    from diffusion_lm.diffusion import FastDiSSDiffusion, UniformDiffusion
    from diffusion_lm.models import DenoiserConfig

    from .conftest import TINY_DENOISER, tiny_recipe

    sundae = tiny_recipe(40, process=UniformDiffusion(unroll=True)).step_flops()
    assert (sundae.trained_passes, sundae.grad_free_passes) == (2.0, 0.0)  # the unrolled pass is trained
    single = tiny_recipe(40, process=UniformDiffusion(unroll=False)).step_flops()
    assert (single.trained_passes, single.grad_free_passes) == (1.0, 0.0)
    assert sundae(1000, 20) == pytest.approx(2 * single(1000, 20))
    fastdiss = tiny_recipe(40, process=FastDiSSDiffusion(self_condition_prob=0.5)).step_flops()
    assert (fastdiss.trained_passes, fastdiss.grad_free_passes) == (1.0, 1.5)  # confidence pass + p · estimate
    cfg = DenoiserConfig(**{**TINY_DENOISER, "vocab_size": 40})
    assert StepFlops(cfg, grad_free_passes=1.5)(1000, 20) == pytest.approx(
        StepFlops(cfg)(1000, 20) + 1.5 * 1000 * StepFlops(cfg).forward_per_token(20))
