"""Scale-out: DDP over 2 CPU processes and gradient accumulation give the gradient of one process on the
full batch; activation checkpointing changes no gradient."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler
from typing_extensions import override

from diffusion_lm.data.layout import build_batch
from diffusion_lm.diffusion import GaussianDiffusion
from diffusion_lm.models import Denoiser, DenoiserConfig
from diffusion_lm.recipes import FromScratch

from .conftest import TINY_DENOISER, cpu_trainer

VOCAB = 40


class FixedLengthPairs(L.LightningDataModule):
    """Examples of equal source and target length, so a per-rank token mean is the full-batch token mean."""

    def __init__(self, n: int = 16, batch_size: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.rows = [(torch.randint(5, VOCAB, (5,), generator=g).tolist(), torch.randint(5, VOCAB, (5,), generator=g).tolist())
                     for _ in range(n)]
        self.batch_size = batch_size

    @staticmethod
    def collate(items):
        batch = build_batch([s for _, (s, _) in items], [t for _, (_, t) in items], sep_id=1, eos_id=2, pad_id=0)
        batch["index"] = torch.tensor([i for i, _ in items])
        return batch

    def train_dataloader(self):
        data = list(enumerate(self.rows))
        world = self.trainer.world_size
        # rank r takes examples r, r + world, …: together the ranks' first batches are the full first batch
        sampler = DistributedSampler(data, world, self.trainer.global_rank, shuffle=False) if world > 1 else None
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate)


class IndexedNoise(GaussianDiffusion):
    """The noise of an example depends only on its index, not on the process or the batch it lands in."""

    def training_loss(self, model, batch, t, weights):
        self._index = batch["index"].tolist()
        return super().training_loss(model, batch, t, weights)

    def noisy_inputs(self, x0, t_tok, target_mask):
        noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(i)) for i in self._index])
        return torch.where(target_mask[..., None], self.q_sample(x0, t_tok, noise), x0)


class IndexedRecipe(FromScratch):
    def compute_loss(self, batch, model):
        t = (batch["index"].float() * 0.618 + 0.1) % 1.0  # per-example t, a function of the example only
        return self.process.training_loss(model, batch, t, torch.ones_like(t))


class SaveGradients(L.Callback):
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0 and trainer.is_global_zero:  # after DDP's all-reduce / the last accumulated batch
            torch.save({n: p.grad.clone() for n, p in pl_module.denoiser.named_parameters() if p.grad is not None}, self.path)


def _grads(tmp_path: Path, name: str, batch_size: int, **trainer_kw) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = IndexedRecipe(denoiser=DenoiserConfig(**TINY_DENOISER), vocab_size=VOCAB, ema_decay=0.0,
                          process=IndexedNoise(self_condition_prob=1.0))  # the self-conditioning pass too
    path = tmp_path / f"{name}.pt"
    trainer = cpu_trainer(tmp_path / name, max_steps=1, callbacks=[SaveGradients(path)], **trainer_kw)
    trainer.fit(model, FixedLengthPairs(batch_size=batch_size))
    return torch.load(path)


@pytest.mark.timeout(300)
def test_ddp_and_accumulation_give_the_full_batch_gradient(tmp_path):
    full = _grads(tmp_path, "full", 8)
    accumulated = _grads(tmp_path, "accum", 4, accumulate_grad_batches=2)
    ddp = _grads(tmp_path, "ddp", 4, strategy="ddp_spawn", devices=2)
    assert set(full) == set(ddp) == set(accumulated) and len(full) > 10
    assert sum(g.abs().sum() for g in full.values()) > 0
    for k in full:
        torch.testing.assert_close(accumulated[k], full[k], rtol=1e-4, atol=1e-6, msg=f"accumulation: {k}")
        torch.testing.assert_close(ddp[k], full[k], rtol=1e-4, atol=1e-6, msg=f"DDP: {k}")


def test_half_batch_gradient_differs(tmp_path):
    """The comparison above can fail: one process on half the batch gives another gradient."""
    full, half = _grads(tmp_path, "full", 8), _grads(tmp_path, "half", 4)
    assert any(not torch.allclose(full[k], half[k], rtol=1e-3, atol=1e-5) for k in full)


def test_activation_checkpointing_gives_the_same_gradients():
    batch = FixedLengthPairs.collate(list(enumerate(FixedLengthPairs().rows[:4])))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = Denoiser(DenoiserConfig(**{**TINY_DENOISER, "dropout": 0.1}, vocab_size=VOCAB, activation_checkpointing=ckpt))
        torch.manual_seed(1)  # dropout masks: recomputation must replay the same ones
        out = model(batch["input_ids"], timesteps=torch.rand(batch["input_ids"].shape), valid=batch["valid"],
                    prefix_len=batch["prefix_len"])
        out.latent.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], msg=k)


def test_weight_decay_groups_survive_wrapped_blocks():
    """Weight decay is decided by name (FSDP flattens parameters): matrices decay, biases, gains and the table the
    process layer-normalises do not, also when the blocks are wrapped (here by the activation-checkpoint wrapper
    that FSDP's policy applies)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    from diffusion_lm.models.layers import Block

    model = IndexedRecipe(denoiser=DenoiserConfig(**TINY_DENOISER), vocab_size=VOCAB, ema_decay=0.0)
    decayed = {n for n, p in model.denoiser.named_parameters() if p.dim() >= 2} - model.no_weight_decay()
    assert "wte.weight" not in decayed  # GaussianDiffusion layer-normalises it
    expected = [sorted(id(p) for n, p in model.denoiser.named_parameters() if (n in decayed) == d) for d in (True, False)]
    apply_activation_checkpointing(model.denoiser, check_fn=lambda m: isinstance(m, Block))
    assert any("_checkpoint_wrapped_module" in n for n, _ in model.denoiser.named_parameters())
    groups = model.configure_optimizers()["optimizer"].param_groups
    assert [sorted(id(p) for p in g["params"]) for g in groups] == expected
    assert groups[0]["weight_decay"] > 0 == groups[1]["weight_decay"]


@pytest.mark.gpu
def test_block_fsdp_strategy_trains_with_ema(tmp_path):
    """FSDP (one GPU or more) with the EMA copy: a few bf16 steps, finite loss, the EMA moves."""
    from diffusion_lm.strategies import BlockFSDPStrategy

    torch.manual_seed(0)
    model = IndexedRecipe(denoiser=DenoiserConfig(**TINY_DENOISER), vocab_size=VOCAB, ema_decay=0.9,
                          process=IndexedNoise())
    trainer = cpu_trainer(tmp_path, accelerator="gpu", devices=torch.cuda.device_count(), precision="bf16-mixed",
                          strategy=BlockFSDPStrategy(activation_checkpointing=True), max_steps=3)
    trainer.fit(model, FixedLengthPairs(batch_size=4))
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and int(model.ema.updates) == 3
