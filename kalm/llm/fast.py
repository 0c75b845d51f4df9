"""A lean decoder for inference: the grounded LM's forward pass without the framework around it.

Generation in KALM feeds the LM one or two new positions at a time (an action, then a state),
so on a CPU its cost is the number of Python round trips and weight reads per position, not
arithmetic. ``FastDecoder`` runs a Llama-family decoder (SmolLM2, Llama, and models of the same
layout) directly on its weights:

- **merged, fused weights**: LoRA deltas are merged into copies of the projections (the live
  model is untouched), q/k/v are one matrix and gate/up another, so a layer is four matrix
  products;
- **a preallocated KV cache** of ``(rows, kv_heads, capacity, head_dim)`` per layer, written in
  place; rows can be selected (drop finished rollouts, or fan a shared prompt out to many rows)
  without recomputing anything;
- **int8 weights** (``precision="int8"``, the default on x86 CPUs) for the one or two positions
  each row adds per step: per-output-channel int8 weights with dynamically quantized
  activations (fbgemm, VNNI), 4x fewer bytes per weight read and several times the fp32
  throughput on this CPU (``bench/decode_bench.py``). Prompts (many positions at once) go
  through the fp32 weights, where one scale for all positions would cost precision.
  ``precision="fp32"`` computes what the framework computes, up to float rounding.

Left padding is handled as the reference path does: each row has its own position ids
(``cumsum(mask) - 1``) and padded keys are never attended to. ``FastDecoder.supports(lm)`` tells
whether a model has the layout; others use the framework path (``kalm.llm.generate``).
``FastLM`` holds the prepared weights (shared, read-only); ``FastDecoder`` is one session.
"""

from __future__ import annotations

import os
import warnings
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["FastLM", "FastDecoder", "PRECISIONS", "default_precision", "linear_weight", "fingerprint"]

PRECISIONS = ("fp32", "int8")
_SUPPORTED_TYPES = ("llama",)
_ROPE_POSITIONS = 2048
_SMOOTH_ALPHA = float(os.environ.get("KALM_SMOOTH_ALPHA", 0.5))  # SmoothQuant's migration strength
_SMALL_QUERY = 4
_USE_SCRIPT = os.environ.get("KALM_LM_SCRIPT", "1") != "0"  # TorchScript for int8 decode steps  # new positions up to which attention is computed by hand


def default_precision() -> str:
    """``$KALM_LM_PRECISION`` if set, else int8 where the quantized kernels exist, else fp32."""
    env = os.environ.get("KALM_LM_PRECISION", "").strip().lower()
    if env:
        if env not in PRECISIONS:
            raise ValueError(f"KALM_LM_PRECISION must be one of {PRECISIONS}; got {env!r}")
        return env
    return "int8" if _int8_available() else "fp32"


_INT8_OK: bool | None = None


def _int8_available() -> bool:
    global _INT8_OK
    if _INT8_OK is None:
        try:
            lin = _Int8Linear(_Linear(torch.randn(8, 16), None))
            lin(torch.randn(2, 16))
            _INT8_OK = True
        except Exception:  # no fbgemm / quantized engine on this build or CPU
            _INT8_OK = False
    return _INT8_OK


def linear_weight(mod: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The effective (weight, bias) of a Linear, with any active LoRA adapters merged in."""
    base = getattr(mod, "base_layer", None)
    if base is None:
        return mod.weight.detach(), None if mod.bias is None else mod.bias.detach()
    w = base.weight.detach().clone()
    if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
        for name in mod.active_adapters:
            if name in getattr(mod, "lora_A", {}):
                w += mod.get_delta_weight(name).detach().to(w.dtype)
    return w, None if base.bias is None else base.bias.detach()


class _Linear:
    """y = x W^T + b in fp32 (MKL). ``observe()`` records each input channel's largest |x|."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None) -> None:
        self.w = w.float().contiguous()
        self.b = None if b is None else b.float().contiguous()
        self.absmax: torch.Tensor | None = None

    def observe(self) -> None:
        self.absmax = torch.zeros(self.w.shape[1])

    def __call__(self, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
        if self.absmax is not None:
            self.absmax = torch.maximum(self.absmax, x.detach().abs().reshape(-1, x.shape[-1]).amax(0))
        return F.linear(x, self.w, self.b)


class _Int8Linear:
    """y = x W^T + b with W in int8 (one scale per output channel), x quantized on the fly.

    fbgemm quantizes the whole input with one scale, so a block of many positions (a prompt,
    where one outlier position would cost the others their precision) goes through the fp32
    weights instead (``exact=True``); the one or two positions a row adds per step use int8.
    ``absmax`` (each input channel's largest |x| on calibration inputs) turns on SmoothQuant's
    migration (alpha 0.5): channel j of x is divided by s_j and column j of W multiplied by it,
    so a few outlier channels no longer take the activation scale from all the others.
    """

    def __init__(self, exact: _Linear, absmax: torch.Tensor | None = None) -> None:
        w, b = exact.w, exact.b
        self.exact, self.out, self.inv_s = exact, w.shape[0], None
        if absmax is not None:
            wmax = w.abs().amax(dim=0)
            a = _SMOOTH_ALPHA
            smooth = absmax.clamp_min(1e-5) ** a / wmax.clamp_min(1e-5) ** (1 - a)
            smooth = torch.where((absmax > 0) & (wmax > 0), smooth, torch.ones_like(smooth))
            w = w * smooth[None]
            self.inv_s = (1.0 / smooth).contiguous()
        scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks quantized tensors as deprecated
            qw = torch.quantize_per_channel(w.contiguous(), scale,
                                            torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qw, b)

    def __call__(self, x: torch.Tensor, exact: bool = False) -> torch.Tensor:
        if exact:
            return self.exact(x)
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        x = (x * self.inv_s) if self.inv_s is not None else x.contiguous()
        y = torch.ops.quantized.linear_dynamic(x, self.packed, False)
        return y.reshape(*shape[:-1], self.out)


def _make_linear(w, b, precision: str = "fp32"):
    return _Linear(w, b)


def _rotate_rows(w: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    """Rows of a projection whose output is rotate_half of the original output, per head."""
    h = dim // 2
    w = w.reshape(heads, dim, *w.shape[1:])
    return torch.cat([-w[:, h:], w[:, :h]], dim=1).reshape(heads * dim, *w.shape[2:])


class _Layer:
    """One decoder layer's weights, rearranged so that a forward pass needs few operations:

    - the RMSNorm weights are folded into the columns of the projections that follow them;
    - q, k, v and the rotate_half images of q and k are rows of one matrix, so RoPE is
      ``y * cos + y_rot * sin`` with no shuffling; the attention scale is folded into q;
    - gate and up are one matrix.
    """

    def __init__(self, layer, precision: str, heads: int, kv_heads: int, dim: int) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        ln1 = layer.input_layernorm.weight.detach().float()
        ln2 = layer.post_attention_layernorm.weight.detach().float()
        self.eps1 = float(layer.input_layernorm.variance_epsilon)
        self.eps2 = float(layer.post_attention_layernorm.variance_epsilon)
        scale = dim ** -0.5
        (wq, bq), (wk, bk), (wv, bv) = (linear_weight(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
        has_bias = any(b is not None for b in (bq, bk, bv))
        wq, wk, wv = wq.float() * scale, wk.float(), wv.float()
        bq = bq.float() * scale if bq is not None else torch.zeros(wq.shape[0])
        bk = bk.float() if bk is not None else torch.zeros(wk.shape[0])
        bv = bv.float() if bv is not None else torch.zeros(wv.shape[0])
        rows = [wq, wk, wv, _rotate_rows(wq, heads, dim), _rotate_rows(wk, kv_heads, dim)]
        biases = [bq, bk, bv, _rotate_rows(bq, heads, dim), _rotate_rows(bk, kv_heads, dim)]
        self.qkv = _make_linear(torch.cat(rows) * ln1[None], torch.cat(biases) if has_bias else None,
                                precision)
        self.o = _make_linear(*linear_weight(attn.o_proj), precision)
        (g, gb), (u, ub) = linear_weight(mlp.gate_proj), linear_weight(mlp.up_proj)
        self.inter = g.shape[0]
        gu_b = None if gb is None and ub is None else torch.cat([
            gb if gb is not None else torch.zeros(g.shape[0]),
            ub if ub is not None else torch.zeros(u.shape[0])])
        self.gate_up = _make_linear(torch.cat([g, u]).float() * ln2[None], gu_b, precision)
        self.down = _make_linear(*linear_weight(mlp.down_proj), precision)

    LINEARS = ("qkv", "o", "gate_up", "down")


def _decode_int8_impl(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      mask: Optional[torch.Tensor], packs: List[List[torch.classes.quantized.LinearPackedParamsBase]],
                      inv_s: List[List[torch.Tensor]], eps: List[List[float]], kc: List[torch.Tensor],
                      vc: List[torch.Tensor], s: int, e: int, Hq: int, Hk: int, D: int,
                      inter: int) -> torch.Tensor:
    """The int8 layers for a few new positions, as ``FastDecoder._forward`` computes them, for
    TorchScript: one interpreted call instead of ~60 Python-dispatched operations per layer."""
    B, n, H = x.shape
    G = Hq // Hk
    QK, V = (Hq + Hk) * D, Hk * D
    for i in range(len(packs)):
        pk, sc = packs[i], inv_s[i]
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps[i][0])
        qkv = torch.ops.quantized.linear_dynamic((h * sc[0]).reshape(B * n, H), pk[0], False)
        qkv = qkv.view(B, n, -1)
        qk = torch.addcmul(qkv[:, :, :QK].reshape(B, n, Hq + Hk, D) * cos,
                           qkv[:, :, QK + V:].reshape(B, n, Hq + Hk, D), sin)
        q = qk[:, :, :Hq].transpose(1, 2)
        kc[i][:, :, s:e] = qk[:, :, Hq:].transpose(1, 2)
        vc[i][:, :, s:e] = qkv[:, :, QK: QK + V].reshape(B, n, Hk, D).transpose(1, 2)
        att = torch.matmul(q.reshape(B, Hk, G * n, D), kc[i][:, :, :e].transpose(-1, -2))
        if mask is not None:
            att = (att.view(B, Hk, G, n, e) + mask.unsqueeze(2)).view(B, Hk, G * n, e)
        a = torch.matmul(att.softmax(-1), vc[i][:, :, :e]).view(B, Hq, n, D)
        a = a.transpose(1, 2).reshape(B * n, Hq * D)
        x = x + torch.ops.quantized.linear_dynamic(a * sc[1], pk[1], False).view(B, n, H)
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps[i][1])
        gu = torch.ops.quantized.linear_dynamic((h * sc[2]).reshape(B * n, H), pk[2], False)
        m = torch.nn.functional.silu(gu[:, :inter]) * gu[:, inter:]
        x = x + torch.ops.quantized.linear_dynamic(m * sc[3], pk[3], False).view(B, n, H)
    return x


_SCRIPTED = None


def _decode_int8():
    """The TorchScript form of ``_decode_int8_impl`` (compiled once per process), or None."""
    global _SCRIPTED
    if _SCRIPTED is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _SCRIPTED = torch.jit.script(_decode_int8_impl)
        except Exception:  # no TorchScript on this build: the Python loop does the same
            _SCRIPTED = False
    return _SCRIPTED or None


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))


class FastLM:
    """The weights of a Llama-family causal LM, prepared for inference (merged, fused, int8).

    Immutable once built, so threads may share it; each generation opens its own
    ``decoder()``, which holds the KV cache.
    """

    def __init__(self, lm: torch.nn.Module, precision: str | None = None,
                 calibration: Sequence[torch.Tensor] = ()) -> None:
        """``calibration``: (1, T, H) input-embedding sequences typical of the use, whose
        activations set int8's per-channel smoothing (none: plain per-channel int8)."""
        precision = precision or default_precision()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        if precision == "int8" and not _int8_available():
            raise ValueError("int8 needs PyTorch's quantized CPU kernels (fbgemm); use fp32")
        base = _causal_lm(lm)
        if not self.supports(base):
            raise ValueError(f"FastLM does not support {type(base).__name__}")
        cfg = base.config
        inner = base.model
        self.precision = precision
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or self.hidden // self.heads)
        self.layers = [_Layer(layer, precision, self.heads, self.kv_heads, self.head_dim)
                       for layer in inner.layers]
        self.norm = inner.norm.weight.detach().float()
        self.norm_eps = float(inner.norm.variance_epsilon)
        rot = inner.rotary_emb
        self._inv_freq = rot.inv_freq.detach().float().clone()
        self._rope_scale = float(getattr(rot, "attention_scaling", 1.0))
        self._cos, self._sin = self._rope_table(_ROPE_POSITIONS)
        head = base.get_output_embeddings()
        hw, hb = linear_weight(head)
        self.head = _make_linear(hw, hb, precision)
        self.vocab = hw.shape[0]
        if precision == "int8":
            self._quantize(list(calibration))

    def _linears(self):
        for L in self.layers:
            for name in _Layer.LINEARS:
                yield L, name
        yield self, "head"

    @torch.no_grad()
    def _quantize(self, calibration: list[torch.Tensor]) -> None:
        """Replace every projection by its int8 form, smoothed by the calibration's activations."""
        if calibration:
            for owner, name in self._linears():
                getattr(owner, name).observe()
            for embeds in calibration:  # one at a time: no padding in the statistics
                dec = self.decoder()
                h = dec.forward_all(embeds.float(), torch.ones(embeds.shape[:2], dtype=torch.long))
                self.head(h)
        for owner, name in self._linears():
            lin = getattr(owner, name)
            absmax, lin.absmax = lin.absmax, None
            setattr(owner, name, _Int8Linear(lin, absmax))
        # What the scripted decode step takes: packed weights, smoothing, epsilons per layer.
        lins = [[getattr(L, n) for n in _Layer.LINEARS] for L in self.layers]
        self.packs = [[q.packed for q in row] for row in lins]
        self.inv_s = [[q.inv_s if q.inv_s is not None else torch.ones(q.exact.w.shape[1])
                       for q in row] for row in lins]
        self.eps = [[L.eps1, L.eps2] for L in self.layers]
        self.inter = self.layers[0].inter

    def _rope_table(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # As the framework computes it: position * inverse frequency, duplicated, cos / sin.
        freqs = torch.arange(n, dtype=torch.float32)[:, None] * self._inv_freq[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self._rope_scale, emb.sin() * self._rope_scale

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self._cos, self._sin
        need = int(positions.max()) + 1 if positions.numel() else 1
        if need > cos.shape[0]:
            cos, sin = self._rope_table(max(need, 2 * cos.shape[0]))
            self._cos, self._sin = cos, sin
        return cos[positions], sin[positions]

    def decoder(self) -> "FastDecoder":
        """A fresh decoding session (its own KV cache) over these weights."""
        return FastDecoder(self)

    @torch.no_grad()
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The LM head on final hidden states (..., H) -> (..., vocab)."""
        return self.head(h.float())

    # ------------------------------------------------------------------ support
    @staticmethod
    def supports(lm: torch.nn.Module) -> bool:
        """Whether ``lm`` (or the causal LM inside a peft wrapper) has the Llama layout."""
        try:
            base = _causal_lm(lm)
            cfg = base.config
            if getattr(cfg, "model_type", None) not in _SUPPORTED_TYPES:
                return False
            if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "pretraining_tp", 1) != 1:
                return False
            layer = base.model.layers[0]
            return all(hasattr(layer.self_attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) \
                and hasattr(base.model, "rotary_emb") and hasattr(base.model, "norm")
        except Exception:
            return False


class FastDecoder:
    """One decoding session over a ``FastLM``: a preallocated KV cache, rows with their own
    positions (left padding as the framework handles it).

    Use: ``h = dec.start(embeds, mask)`` (prefill; returns the last position's final hidden
    state), then ``h = dec.feed(new_embeds)`` for each new block of positions; ``dec.select(idx)``
    keeps (or repeats) rows of the cache; ``dec.logits(h)`` applies the LM head.
    """

    can_select = True

    def __init__(self, weights: FastLM) -> None:
        self.w = weights
        self.layers = weights.layers
        self.kv_heads, self.head_dim, self.heads = weights.kv_heads, weights.head_dim, weights.heads
        self._reset_cache()

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.w.logits(h)

    # ------------------------------------------------------------------ cache
    def _reset_cache(self) -> None:
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.mask = torch.zeros(0, 0, dtype=torch.bool)  # (B, capacity) valid keys
        self.pos = torch.zeros(0, dtype=torch.long)  # (B,) position id of the last fed position
        self.length = 0

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    def _ensure_capacity(self, extra: int) -> None:
        cap = self.mask.shape[1]
        if self.length + extra <= cap:
            return
        new = max(self.length + extra, 2 * cap, 64)
        B = self.rows
        for i in range(len(self.layers)):
            for store in (self.k, self.v):
                t = torch.zeros(B, self.kv_heads, new, self.head_dim)
                t[:, :, : self.length] = store[i][:, :, : self.length]
                store[i] = t
        m = torch.zeros(B, new, dtype=torch.bool)
        m[:, : self.length] = self.mask[:, : self.length]
        self.mask = m

    def select(self, index: torch.Tensor | list[int]) -> None:
        """Keep the cache rows ``index`` (in that order; repeats allowed)."""
        index = torch.as_tensor(index, dtype=torch.long)
        # index_select copies; only the filled part of the cache is worth copying.
        cap, L = self.mask.shape[1], self.length
        self.k = [_select_rows(t, index, L, cap) for t in self.k]
        self.v = [_select_rows(t, index, L, cap) for t in self.v]
        self.mask = self.mask.index_select(0, index)
        self.pos = self.pos.index_select(0, index)

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` fed positions of every row (a re-planned step feeds anew)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot rewind {n} of {self.length} positions")
        self.mask[:, self.length - n: self.length] = False
        self.length -= n
        self.pos = self.pos - n

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def start(self, embeds: torch.Tensor, mask: torch.Tensor, capacity: int = 0) -> torch.Tensor:
        """Prefill: ``embeds`` (B, T, H), ``mask`` (B, T) with 1 for real (left-padded) positions.

        Returns the final hidden state at the last position, (B, H). ``capacity``: the total
        number of positions expected (prompt + generated), to allocate the cache once.
        """
        B, T, _ = embeds.shape
        self._alloc(B, max(capacity, T))
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        self.pos = positions[:, -1]
        return self._forward(embeds.float(), positions, mask.bool())

    def _alloc(self, B: int, cap: int) -> None:
        self.k = [torch.zeros(B, self.kv_heads, cap, self.head_dim) for _ in self.layers]
        self.v = [torch.zeros(B, self.kv_heads, cap, self.head_dim) for _ in self.layers]
        self.mask = torch.zeros(B, cap, dtype=torch.bool)
        self.length = 0

    @torch.no_grad()
    def feed(self, embeds: torch.Tensor) -> torch.Tensor:
        """Feed (B, n, H) new positions after the cached ones; returns the last hidden state."""
        B, n, _ = embeds.shape
        if B != self.rows:
            raise ValueError(f"feed got {B} rows; the cache has {self.rows}")
        positions = self.pos[:, None] + torch.arange(1, n + 1)[None]
        self.pos = positions[:, -1]
        return self._forward(embeds.float(), positions, torch.ones(B, n, dtype=torch.bool))

    def _forward(self, x: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
                 every_position: bool = False) -> torch.Tensor:
        B, n, _ = x.shape
        self._ensure_capacity(n)
        s, e = self.length, self.length + n
        self.mask[:, s:e] = valid
        # Attention mask (B, 1, n, e): a query sees valid keys up to itself, and always itself
        # (a padded query then stays finite; nobody attends to it). None when it masks nothing.
        mask = None
        if n > 1 or not bool(self.mask[:, :e].all()):
            keys = torch.arange(e)
            q_at = s + torch.arange(n)
            attend = (self.mask[:, None, :e] & (keys[None, :] <= q_at[:, None])[None]) \
                | (keys[None, None, :] == q_at[None, :, None])
            mask = torch.zeros(attend.shape, dtype=x.dtype).masked_fill_(~attend, float("-inf"))[:, None]
        cos, sin = self.w.rope(positions)  # (B, n, D)
        cos, sin = cos[:, :, None], sin[:, :, None]
        Hq, Hk, D = self.heads, self.kv_heads, self.head_dim
        gqa, G = Hq != Hk, Hq // Hk
        QK, V = (Hq + Hk) * D, Hk * D
        exact = n > _SMALL_QUERY  # a prompt: fp32 weights (see _Int8Linear)
        scripted = _decode_int8() if (self.w.precision == "int8" and not exact
                                       and _USE_SCRIPT) else None
        if scripted is not None:
            x = scripted(x, cos, sin, mask, self.w.packs, self.w.inv_s, self.w.eps, self.k, self.v,
                         s, e, Hq, Hk, D, self.w.inter)
        for i, L in enumerate(self.layers if scripted is None else ()):
            qkv = L.qkv(x * _inv_rms(x, L.eps1), exact)
            # RoPE on q and k at once (the rotated copies are rows of the same product)
            qk = torch.addcmul(qkv[..., :QK].view(B, n, Hq + Hk, D) * cos,
                               qkv[..., QK + V:].view(B, n, Hq + Hk, D), sin)
            q = qk[:, :, :Hq].transpose(1, 2)
            self.k[i][:, :, s:e] = qk[:, :, Hq:].transpose(1, 2)
            self.v[i][:, :, s:e] = qkv[..., QK: QK + V].view(B, n, Hk, D).transpose(1, 2)
            K, Vs = self.k[i][:, :, :e], self.v[i][:, :, :e]
            if n <= _SMALL_QUERY:
                # A few new positions: plain batched products over the kv heads' query groups
                # (the CPU's fused attention is slow for one query). q carries the 1/sqrt(D).
                att = torch.matmul(q.reshape(B, Hk, G * n, D), K.transpose(-1, -2))
                if mask is not None:
                    att = (att.view(B, Hk, G, n, e) + mask[:, :, None]).view(B, Hk, G * n, e)
                a = torch.matmul(att.softmax(-1), Vs).view(B, Hq, n, D)
            else:
                a = F.scaled_dot_product_attention(q, K, Vs, attn_mask=mask, enable_gqa=gqa,
                                                   scale=1.0)
            x = x + L.o(a.transpose(1, 2).reshape(B, n, Hq * D), exact)
            gu = L.gate_up(x * _inv_rms(x, L.eps2), exact)
            x = x + L.down(F.silu(gu[..., : L.inter]) * gu[..., L.inter:], exact)
        self.length = e
        x = x if every_position else x[:, -1]
        return self.w.norm * (x * _inv_rms(x, self.w.norm_eps))

    @torch.no_grad()
    def forward_all(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states at every position of a left-padded batch, (B, T, H).

        The cache is filled as by ``start``, so ``feed`` may follow.
        """
        B, T, _ = embeds.shape
        self._alloc(B, T)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        self.pos = positions[:, -1]
        return self._forward(embeds.float(), positions, mask.bool(), every_position=True)

def _select_rows(t: torch.Tensor, index: torch.Tensor, filled: int, cap: int) -> torch.Tensor:
    """Rows ``index`` of a (B, heads, cap, D) cache; positions past ``filled`` left unset."""
    out = torch.empty(len(index), t.shape[1], cap, t.shape[3])
    out[:, :, :filled] = t[:, :, :filled].index_select(0, index)
    return out


def _causal_lm(lm: torch.nn.Module) -> torch.nn.Module:
    """The HF causal LM inside a peft wrapper (or ``lm`` itself)."""
    if hasattr(lm, "get_base_model"):
        return lm.get_base_model()
    return lm


def fingerprint(lm: torch.nn.Module) -> tuple:
    """Changes whenever a trainable weight is updated in place (optimizer steps)."""
    return tuple(p._version for p in lm.parameters() if p.requires_grad)

