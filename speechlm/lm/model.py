"""Decoder-only transformer over the multi-stream token layout (``layout.py``), free of Lightning.

Llama-style blocks: RMSNorm, rotary position embeddings, SwiGLU feed-forward, optional grouped-query
attention, and PyTorch's scaled_dot_product_attention so flash/memory-efficient kernels run on GPU.
Each stream has its own embedding (summed at the input) and its own output head, tied to it.
A preallocated KV cache makes each generated step cost one position, not the whole prefix.

Decoding one step at batch 1 reads every weight once and does little arithmetic, so its speed is
memory bandwidth plus per-operation overhead: the attention mask is built once per forward (none at
all for an unpadded single step), grouped-query attention reads the cached heads without copying
them, and :meth:`SpeechLM.optimize_for_decoding` lays the weights out for the faster GEMV
(``eval/bench_lm.py`` measures all of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LMConfig:
    stream_vocab: list[int] = field(default_factory=lambda: [256])  # per-stream vocabulary (TokenLayout)
    dim: int = 384
    n_layers: int = 8
    n_heads: int = 6
    n_kv_heads: int | None = None  # < n_heads: grouped-query attention (smaller KV cache)
    ffn_mult: float = 8 / 3  # SwiGLU hidden = ffn_mult * dim, rounded up to a multiple of 64
    max_seq_len: int = 2048
    rope_theta: float = 10_000.0
    dropout: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        return 64 * math.ceil(self.ffn_mult * self.dim / 64)


SIZES = {  # name -> (dim, layers, heads, kv heads)
    "tiny": (64, 2, 4, 2),  # tests
    "mini": (256, 6, 4, None),  # the bundled default: ~6M parameters, trained on 2 CPU cores in about an hour
    "small": (384, 8, 6, None),  # ~16M: the next step up on CPU, or a first GPU run
    "base": (768, 16, 12, 4),  # ~100M parameters
    "large": (1280, 24, 20, 4),  # ~500M parameters
}


def lm_config(size: str, stream_vocab: list[int], **overrides) -> LMConfig:
    """Named sizes from one builder: ``lm_config("base", layout.stream_vocab)``."""
    if size not in SIZES:
        raise ValueError(f"unknown LM size {size!r}; known: {', '.join(SIZES)}")
    dim, layers, heads, kv = SIZES[size]
    return LMConfig(**{"stream_vocab": list(stream_vocab), "dim": dim, "n_layers": layers, "n_heads": heads,
                       "n_kv_heads": kv, **overrides})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalized in fp32 whatever the activation dtype (bf16 training), then scaled
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``[max_len, head_dim]``, for :func:`apply_rope`.

    Dimensions ``(2i, 2i + 1)`` form a pair rotated by angle ``pos * theta^(-2i / head_dim)``; the
    tables repeat each pair's cosine and carry its sine as ``(-sin, +sin)``, so a rotation is two
    multiplications and one addition over the whole head.
    """
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    ang = torch.outer(torch.arange(max_len).float(), inv)  # [S, hd/2]
    cos = ang.cos().repeat_interleave(2, dim=-1)
    sin = torch.stack([-ang.sin(), ang.sin()], dim=-1).flatten(-2)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, S, hd]``; cos/sin ``[S, hd]`` (:func:`rope_tables`) for the positions of x.

    Pair ``(a, b)`` becomes ``(a cos - b sin, b cos + a sin)``.
    """
    x32 = x.float()
    swapped = x32.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (a, b) -> (b, a)
    return (x32 * cos + swapped * sin).type_as(x)


class KVCache:
    """Keys/values of every layer for positions ``[0, length)``, preallocated to ``max_len``."""

    def __init__(self, cfg: LMConfig, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.length = 0
        self.max_len = max_len


def attention_mask(s: int, start: int, key_mask: torch.Tensor | None, device=None) -> torch.Tensor | None:
    """Boolean mask ``[B or 1, 1, s, start + s]`` for ``s`` new positions after ``start`` cached ones.

    None where SDPA needs none: no padding and either one new position (it sees the whole cache) or
    no cache (``is_causal`` covers it).
    """
    if key_mask is None:
        if s == 1 or start == 0:
            return None
        return torch.ones(s, start + s, dtype=torch.bool, device=device).tril(diagonal=start)
    causal = torch.ones(s, start + s, dtype=torch.bool, device=device).tril(diagonal=start)
    # a padding query sees only padding; letting it see itself keeps its softmax defined
    own = torch.zeros_like(causal)
    own[torch.arange(s), start + torch.arange(s)] = True
    return (causal & key_mask[:, None, None, : start + s]) | own


class Attention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.q = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.kv_heads * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None, probs_heads: int = 0):
        """``mask`` from :func:`attention_mask`; None means causal (no cache) or see-everything (cache).

        ``probs_heads > 0`` also returns the attention probabilities ``[B, h, S, cached + S]`` of the first
        ``h`` heads, computed outside SDPA from the same queries and keys, so that a loss on them
        (``align.py``) trains those heads and generation can follow them; returns ``(output, probs)`` then.
        """
        b, s, _ = x.shape
        cfg = self.cfg
        q = self.q(x).view(b, s, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(b, s, 2, cfg.kv_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start: start + s] = k
            cache.v[layer][:, :, start: start + s] = v
            k, v = cache.k[layer][:, :, : start + s], cache.v[layer][:, :, : start + s]
        # GQA: each KV head serves n_heads / kv_heads query heads, read in place (no repeated copy)
        causal = False
        if mask is None and start == 0 and s > 1:  # a branch, not a bool expression: torch.compile-friendly
            causal = True
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=cfg.dropout if self.training else 0.0,
                                           enable_gqa=cfg.kv_heads != cfg.n_heads)
        y = self.out(y.transpose(1, 2).reshape(b, s, -1))
        if not probs_heads:
            return y
        group = cfg.n_heads // cfg.kv_heads
        kh = k[:, torch.arange(probs_heads, device=x.device) // group]  # the KV head serving each query head
        scores = (q[:, :probs_heads].float() @ kh.float().transpose(-1, -2)) / math.sqrt(cfg.head_dim)
        if mask is None and causal:
            mask = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        if mask is not None:  # else: one new position that sees the whole cache
            scores = scores.masked_fill(~mask, float("-inf"))
        return y, scores.softmax(-1)


class FeedForward(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(cfg.dim), Attention(cfg)
        self.ffn_norm, self.ffn = RMSNorm(cfg.dim), FeedForward(cfg)
        self.dropout = cfg.dropout

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None, probs_heads: int = 0):
        y = self.attn(self.attn_norm(x), cos, sin, cache, layer, mask, probs_heads)
        probs = None
        if probs_heads:
            y, probs = y
        x = x + self._drop(y)
        x = x + self._drop(self.ffn(self.ffn_norm(x)))
        return (x, probs) if probs_heads else x


@dataclass
class LMOutput:
    logits: list[torch.Tensor]  # per stream, [B, S, V_k]
    loss: torch.Tensor | None = None  # mean cross-entropy over counted positions
    row_loss: torch.Tensor | None = None  # [B] summed cross-entropy per sequence (per-task logging)
    row_tokens: torch.Tensor | None = None  # [B] counted positions per sequence
    attn: list[torch.Tensor] = field(default_factory=list)  # [B, h, S, S] per layer asked for (attn_probs)


def _contiguous_state(module: nn.Module, state: dict, prefix: str, local_metadata) -> None:
    """State-dict hook: checkpoints hold plain row-major tensors whatever the in-memory layout
    (:meth:`SpeechLM.optimize_for_decoding`); tied weights stay one shared tensor."""
    made: dict[tuple, torch.Tensor] = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and not t.is_contiguous():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
            if key not in made:
                made[key] = t.contiguous()
            state[name] = made[key]


class SpeechLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.ModuleList(nn.Embedding(v, cfg.dim) for v in cfg.stream_vocab)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim)
        self.heads = nn.ModuleList(nn.Linear(cfg.dim, v, bias=False) for v in cfg.stream_vocab)
        for emb, head in zip(self.embed, self.heads):
            head.weight = emb.weight  # weight tying: fewer parameters, better-conditioned embeddings
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_state_dict_post_hook(_contiguous_state)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith(("attn.out.weight", "ffn.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, steps: torch.Tensor, targets: torch.Tensor | None = None,
                loss_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                key_mask: torch.Tensor | None = None, last_only: bool = False,
                attn_probs: dict[int, int] | None = None) -> LMOutput:
        """``steps [B, K, S]`` -> per-stream logits; with ``targets [B, K, S]`` also the mean CE loss.

        ``loss_mask [B, K, S]`` (bool) selects the positions that count (target spans only).
        ``key_mask [B, cached + S]`` (bool, True = real token) masks left padding in batched prompts.
        ``last_only``: logits for the last position only, ``[B, 1, V_k]`` (a prompt's prefill needs no
        more, and the heads over every prompt position cost as much as a decoding step).
        ``attn_probs {layer: h}``: also return the first ``h`` heads' attention probabilities of those
        layers in ``LMOutput.attn`` (guided attention, ``align.py``).
        """
        b, k, s = steps.shape
        start = cache.length if cache is not None else 0
        if start + s > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {start + s} steps exceeds max_seq_len {self.cfg.max_seq_len}")
        x = self.embed[0](steps[:, 0])
        for i in range(1, k):
            x = x + self.embed[i](steps[:, i])
        cos, sin = self.rope_cos[start: start + s], self.rope_sin[start: start + s]
        mask = attention_mask(s, start, key_mask, x.device)
        attn = []
        for i, block in enumerate(self.blocks):
            heads = (attn_probs or {}).get(i, 0)
            x = block(x, cos, sin, cache, i, mask, heads)
            if heads:
                x, probs = x
                attn.append(probs)
        if cache is not None:
            cache.length += s
        if last_only:
            if targets is not None:
                raise ValueError("last_only computes no loss: it drops the positions targets refer to")
            x = x[:, -1:]
        x = self.norm(x)
        logits = [head(x) for head in self.heads]
        if targets is None:
            return LMOutput(logits, attn=attn)
        row_loss = torch.zeros(b, device=x.device)
        row_tokens = torch.zeros(b, device=x.device)
        for i, lg in enumerate(logits):
            ce = F.cross_entropy(lg.float().transpose(1, 2), targets[:, i], reduction="none")
            m = loss_mask[:, i].float() if loss_mask is not None else torch.ones_like(ce)
            row_loss = row_loss + (ce * m).sum(-1)
            row_tokens = row_tokens + m.sum(-1)
        return LMOutput(logits, row_loss.sum() / row_tokens.sum().clamp(min=1), row_loss, row_tokens, attn)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.cfg, batch, max_len or self.cfg.max_seq_len, p.device, p.dtype)

    @torch.no_grad()
    def optimize_for_decoding(self, compile: bool = False) -> SpeechLM:
        """Prepares the model for fast generation; returns it. Same parameters, names and shapes.

        Stores each weight matrix column-major: ``F.linear`` multiplies by ``weight.t()``, which is then
        a contiguous ``[in, out]`` matrix, and for one token at a time (GEMV) MKL streams that layout
        15-20% faster on the CPUs measured (``eval/bench_lm.py``); the tied heads gain the same,
        embedding lookups do not care. ``state_dict()`` still returns ordinary row-major tensors, and
        loading a state dict keeps the layout.

        ``compile=True`` also compiles ``forward`` (``torch.compile``, dynamic shapes: one graph serves
        every cache length). That removes most per-operation overhead, which matters for small models
        at batch 1, but costs tens of seconds on the first calls and needs a C++ compiler on CPU, so
        it is opt-in. Logits then match eager ones to float rounding, not bit for bit.
        Meant for inference; training works on such a model but was not tuned for it.
        """
        for p in self.parameters():
            if p.dim() == 2 and p.is_contiguous():
                p.data = p.data.t().contiguous().t()
        if compile:
            self.compile(dynamic=True)
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
