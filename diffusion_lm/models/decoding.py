"""Autoregressive decoding of the shared denoiser: greedy and beam search, with a KV cache.

Prompts of different lengths are **left-padded** so that every row's next token sits in the last
column; padded keys are masked out, and each row's positions start at 0 at its first real token, so a
padded row computes exactly what it would compute alone. Finished rows (and finished beam groups)
leave the batch, so their compute is really saved. ``use_cache=False`` recomputes the whole sequence
at every step (the reference the cached path is tested against).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .denoiser import Denoiser
from .layers import KVCache


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """→ ids (B, P) with the prompts flush right, valid (B, P) bool."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(prompts), P), dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.as_tensor(p, dtype=torch.long, device=device)
        valid[i, P - len(p):] = True
    return ids, valid


def decoding_mask(valid: torch.Tensor, n_prompt: int, attention: str) -> torch.Tensor:
    """(B, S) key validity → (B, 1, S, S) bool mask: causal, except that with a prefix-LM model
    (``attention != "causal"``) the prompt attends bidirectionally within itself. Padded queries see
    themselves, so no row of the softmax is empty (an empty row would turn into NaN values)."""
    S = valid.shape[1]
    pos = torch.arange(S, device=valid.device)
    allowed = pos[None, :] <= pos[:, None]  # (S, S) key ≤ query
    if attention != "causal":
        in_prompt = pos < n_prompt
        allowed = allowed | (in_prompt[:, None] & in_prompt[None, :])
    mask = allowed[None, None] & valid[:, None, None, :]  # (B, 1, S, S)
    return mask | torch.eye(S, dtype=torch.bool, device=valid.device)[None, None]


class StaticKVCache(KVCache):
    """A KV cache written in place into buffers of a fixed capacity (prompt + new tokens): a decoding step
    appends one position without copying the whole cache, as ``torch.cat`` in :class:`KVCache` does."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.sizes: list[int] = []

    @property
    def length(self) -> int:
        return self.sizes[0] if self.sizes else 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer == len(self.keys):
            B, H, _, hd = k.shape
            self.keys.append(k.new_empty((B, H, self.capacity, hd)))
            self.values.append(v.new_empty((B, H, self.capacity, hd)))
            self.sizes.append(0)
        n, L = self.sizes[layer], k.shape[2]
        if n + L > self.capacity:
            raise RuntimeError(f"KV cache capacity {self.capacity} exceeded")
        self.keys[layer][:, :, n : n + L] = k
        self.values[layer][:, :, n : n + L] = v
        self.sizes[layer] = n + L
        return self.keys[layer][:, :, : n + L], self.values[layer][:, :, : n + L]


class Runner:
    """Feeds left-padded prompts, then one token per row per call; tracks rows, positions and the cache."""

    def __init__(self, model: Denoiser, prompts: list[list[int]], pad_id: int, use_cache: bool = True,
                 max_new_tokens: int | None = None) -> None:
        device = model.wte.weight.device
        self.model = model
        self.attention = model.config.attention
        self.ids, self.valid = left_pad(prompts, pad_id, device)  # (B, P)
        self.n_prompt = self.ids.shape[1]
        self.lengths = self.valid.sum(1)  # (B,) real prompt tokens
        self.generated = self.ids.new_zeros((len(prompts), 0))  # (B, t) tokens fed after the prompt
        if not use_cache:
            self.cache: KVCache | None = None
        elif max_new_tokens is None:
            self.cache = KVCache()
        else:
            self.cache = StaticKVCache(self.n_prompt + max_new_tokens)

    def _positions(self) -> torch.Tensor:
        S = self.valid.shape[1]
        offset = self.n_prompt - self.lengths  # (B,) left padding
        return (torch.arange(S, device=self.ids.device)[None, :] - offset[:, None]).clamp_min(0)  # (B, S)

    def _logits(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.logits(latent[:, -1]).float()  # (B, V)

    def start(self) -> torch.Tensor:
        """Prefill: next-token logits (B, V) after each prompt."""
        mask = decoding_mask(self.valid, self.n_prompt, self.attention)
        out = self.model(self.ids, positions=self._positions(), attn_mask=mask, cache=self.cache)
        return self._logits(out.latent)

    def feed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) → next-token logits (B, V)."""
        self.generated = torch.cat([self.generated, tokens[:, None]], dim=1)
        self.valid = torch.cat([self.valid, self.valid.new_ones((self.valid.shape[0], 1))], dim=1)
        positions = self._positions()
        if self.cache is not None:  # the new query sees every valid key; all of them lie in its past
            out = self.model(tokens[:, None], positions=positions[:, -1:], attn_mask=self.valid[:, None, None, :],
                             cache=self.cache)
        else:
            full = torch.cat([self.ids, self.generated], dim=1)
            out = self.model(full, positions=positions, attn_mask=decoding_mask(self.valid, self.n_prompt, self.attention))
        return self._logits(out.latent)

    def select(self, index: torch.Tensor) -> None:
        """Keep / reorder / repeat rows (finished sequences leave, beams are reordered)."""
        self.ids, self.valid, self.lengths = self.ids[index], self.valid[index], self.lengths[index]
        self.generated = self.generated[index]
        if self.cache is not None:
            self.cache.select(index)


@dataclass
class ARDecoder:
    """Greedy (``beam_size=1``) or beam search.

    Args:
        beam_size: Beams per sequence; 1 = greedy.
        max_new_tokens: Upper bound on generated tokens (EOS included); also capped by the model's ``max_len``.
        length_penalty: Beam hypotheses are ranked by log p / length^α (α = this value).
        use_cache: KV cache (the normal path); ``False`` recomputes the sequence at every step.
        min_new_tokens: EOS is forbidden before this many tokens (fixed-length decoding for benchmarks).
    """

    beam_size: int = 1
    max_new_tokens: int = 128
    length_penalty: float = 1.0
    use_cache: bool = True
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.max_new_tokens < 1:
            raise ValueError("beam_size and max_new_tokens must be ≥ 1")

    @torch.no_grad()
    def decode(self, model: Denoiser, prompts: list[list[int]], eos_id: int, pad_id: int,
               max_new_tokens: int | None = None) -> tuple[list[list[int]], torch.Tensor]:
        """prompts: token lists (source + SEP) → generated tokens per prompt (EOS included when produced)
        and the number of denoiser evaluations per prompt (B,)."""
        longest = max(len(p) for p in prompts)
        budget = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens, model.config.max_len - longest)
        if budget < 1:
            raise ValueError(f"a prompt of {longest} tokens leaves no room in max_len={model.config.max_len}")
        runner = Runner(model, prompts, pad_id, self.use_cache, budget)
        if self.beam_size == 1:
            return self._greedy(runner, eos_id, budget)
        return self._beam(runner, eos_id, budget)

    def _forbid_eos(self, logits: torch.Tensor, step: int, eos_id: int) -> torch.Tensor:
        if step < self.min_new_tokens:
            logits[:, eos_id] = float("-inf")
        return logits

    def _greedy(self, runner: Runner, eos_id: int, budget: int) -> tuple[list[list[int]], torch.Tensor]:
        B = runner.ids.shape[0]
        out: list[list[int]] = [[] for _ in range(B)]
        steps = torch.zeros(B, dtype=torch.long)
        rows = torch.arange(B)  # original index of each live row
        logits = runner.start()
        for step in range(budget):
            nxt = self._forbid_eos(logits, step, eos_id).argmax(-1)  # (B_live,)
            for r, tok in zip(rows.tolist(), nxt.tolist()):
                out[r].append(tok)
            steps[rows] += 1
            live = nxt != eos_id
            if step == budget - 1 or not live.any():
                break
            if not live.all():  # finished rows leave the batch
                keep = live.nonzero().squeeze(1)
                runner.select(keep)
                rows, nxt = rows[keep.cpu()], nxt[keep]
            logits = runner.feed(nxt)
        return out, steps

    def _beam(self, runner: Runner, eos_id: int, budget: int) -> tuple[list[list[int]], torch.Tensor]:
        K, B = self.beam_size, runner.ids.shape[0]
        device = runner.ids.device
        logp = F.log_softmax(self._forbid_eos(runner.start(), 0, eos_id), -1)  # (B, V)
        runner.select(torch.arange(B, device=device).repeat_interleave(K))  # K copies of every row
        logp = logp.repeat_interleave(K, 0)  # (B·K, V)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # only the first copy is live at the start
        hist = torch.zeros((B, K, 0), dtype=torch.long, device=device)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        steps = torch.zeros(B, dtype=torch.long)
        rows = torch.arange(B)
        for step in range(budget):
            n, V = scores.shape[0], logp.shape[-1]
            cand = (scores[:, :, None] + logp.view(n, K, V)).view(n, K * V)
            top_s, top_i = cand.topk(2 * K, dim=-1)  # (n, 2K): enough for K non-EOS continuations
            beam, tok = top_i // V, top_i % V
            is_eos = tok == eos_id
            norm = float(step + 1) ** self.length_penalty
            for j, r in enumerate(rows.tolist()):  # EOS among the K best candidates ends a hypothesis
                for rank in range(K):
                    if is_eos[j, rank] and top_s[j, rank] > float("-inf"):
                        seq = hist[j, beam[j, rank]].tolist() + [eos_id]
                        finished[r].append((top_s[j, rank].item() / norm, seq))
            steps[rows] += 1
            order = torch.sort(is_eos.int(), dim=1, stable=True).indices[:, :K]  # K best non-EOS candidates
            scores, beam, tok = top_s.gather(1, order), beam.gather(1, order), tok.gather(1, order)
            hist = torch.cat([hist.gather(1, beam[:, :, None].expand(-1, -1, hist.shape[2])), tok[:, :, None]], 2)
            if step == budget - 1:  # out of room: the live beams become hypotheses too
                for j, r in enumerate(rows.tolist()):
                    finished[r].extend((scores[j, k].item() / norm, hist[j, k].tolist()) for k in range(K))
                break
            done = torch.tensor([len(finished[r]) >= K for r in rows.tolist()], device=device)
            if done.all():
                break
            keep = (~done).nonzero().squeeze(1)
            flat = (keep[:, None] * K + beam[keep]).reshape(-1)  # cache rows of the chosen parent beams
            runner.select(flat)
            rows, scores, hist, tok = rows[keep.cpu()], scores[keep], hist[keep], tok[keep]
            logp = F.log_softmax(self._forbid_eos(runner.feed(tok.reshape(-1)), step + 1, eos_id), -1)
        best = [max(f, key=lambda h: h[0])[1] for f in finished]
        return best, steps
