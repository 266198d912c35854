"""Attention maps of one example, as the model computes them (logging steps only).

Three ways in, all ending in `[heads, queries, keys]` probabilities of the
FIRST example of the batch (never more than one example's maps):

- `nn.MultiheadAttention` (also inside `nn.TransformerEncoderLayer` /
  `DecoderLayer`, which call it with `need_weights=False`): recomputed from
  the module's inputs and projection weights in a forward pre-hook,
  softmax(QKᵀ/√d + masks) with its attention and key-padding masks;
- `torch.nn.functional.scaled_dot_product_attention` (Hugging Face's default
  "sdpa" attention): intercepted by a `TorchFunctionMode` while an attention
  module's forward runs on a logging step (until its maps are captured), and
  recomputed from q, k, the mask, `is_causal`, `scale` and grouped-query
  heads;
- an explicit softmax over the last axis of a 4-D score tensor (Hugging
  Face's "eager" attention), taken before attention dropout.

The mode and hooks exist only during logging steps. Calls are attributed to
the innermost attention module running (`nn.MultiheadAttention`, or a module
whose class name contains "Attention", e.g. GPT2Attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from torch_visualization import pooling

# Largest side of a stored map (positions are mean-pooled beyond it).
MAX_POSITIONS = 64

_SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax)


def is_attention_module(module):
    """Whether `watch()` captures the attention of `module`."""
    return isinstance(module, torch.nn.MultiheadAttention) or "Attention" in type(module).__name__


def probabilities(scores):
    """softmax over keys in float32 (rows with every key masked are NaN, as
    the model's own softmax makes them)."""
    return torch.softmax(scores.float(), dim=-1)


def sdpa_probabilities(query, key, value=None, attn_mask=None, dropout_p=0.0, is_causal=False,
                       scale=None, enable_gqa=False):
    """The attention probabilities `scaled_dot_product_attention` applies (same
    arguments), for the first example: `[heads, queries, keys]` float32."""
    del value, dropout_p, enable_gqa  # dropout acts on the output; GQA is seen in the shapes
    q, k = query.detach(), key.detach()
    if q.dim() == 4:
        q, k = q[0], k[0]
    if q.dim() == 2:  # unbatched, one head
        q, k = q[None], k[None]
    heads, length, size = q.shape
    if k.shape[0] != heads:  # grouped-query attention: key heads are shared
        k = k.repeat_interleave(heads // k.shape[0], dim=0)
    scale = 1.0 / math.sqrt(size) if scale is None else scale
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    keys = scores.shape[-1]
    if is_causal:
        allowed = torch.ones(length, keys, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        mask = attn_mask.detach()
        if mask.dim() == 4:
            mask = mask[0]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    return probabilities(scores)


def mha_probabilities(module, args, kwargs):
    """The attention probabilities of an `nn.MultiheadAttention` call, for the
    first example, recomputed from its inputs (None when its options are not
    covered: added bias_k / zero attention)."""
    if module.bias_k is not None or module.add_zero_attn:
        return None
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal")
    call = dict(zip(names, args))
    call.update(kwargs)
    query, key = call["query"].detach(), call["key"].detach()
    batched = query.dim() == 3
    if batched:
        query, key = (query[0], key[0]) if module.batch_first else (query[:, 0], key[:, 0])
    embed, heads = module.embed_dim, module.num_heads
    if module.in_proj_weight is not None:
        w_q, w_k = module.in_proj_weight[:embed], module.in_proj_weight[embed:2 * embed]
    else:
        w_q, w_k = module.q_proj_weight, module.k_proj_weight
    bias = module.in_proj_bias
    b_q, b_k = (bias[:embed], bias[embed:2 * embed]) if bias is not None else (None, None)
    q = F.linear(query, w_q.detach(), None if b_q is None else b_q.detach())
    k = F.linear(key, w_k.detach(), None if b_k is None else b_k.detach())
    size = embed // heads
    q = q.reshape(q.shape[0], heads, size).transpose(0, 1)
    k = k.reshape(k.shape[0], heads, size).transpose(0, 1)
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(size)
    mask = call.get("attn_mask")
    if mask is not None:
        mask = mask.detach()
        if mask.dim() == 3:  # [batch * heads, L, S]: the first example's heads
            mask = mask[:heads]
        # MultiheadAttention's boolean masks mark positions NOT to attend.
        scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool \
            else scores + mask.float()
    padding = call.get("key_padding_mask")
    if padding is not None:
        padding = padding.detach()
        padding = padding[0] if batched else padding
        scores = scores.masked_fill(padding[None, None], float("-inf")) \
            if padding.dtype == torch.bool else scores + padding.float()[None, None]
    return probabilities(scores)


def entropy(maps):
    """Mean attention entropy (nats) per head over the query rows that have a
    distribution (fully masked rows are skipped); `[heads]` float32."""
    terms = torch.special.xlogy(maps, maps)
    rows = -terms.sum(-1)  # [heads, queries]
    finite = torch.isfinite(rows)
    count = finite.sum(-1).clamp_min(1)
    return torch.where(finite, rows, torch.zeros_like(rows)).sum(-1) / count


def pooled(maps):
    """`[heads, q, k]` maps pooled to at most 64 positions a side (means over
    the adaptive bins of pooling.py)."""
    return pooling.pool_stack(maps, (MAX_POSITIONS, MAX_POSITIONS))


class AttentionCapture(TorchFunctionMode):
    """While active, records the first attention map of each attention module.

    Args:
      record: Called as `record(module_index, maps)` for the first map of a
        module in the logging step (inside the model's forward).
      current: Returns the index of the innermost attention module running,
        or None (and whether that module is an `nn.MultiheadAttention`, whose
        maps come from its pre-hook instead).
    """

    def __init__(self, record, current):
        super().__init__()
        self._record = record
        self._current = current

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func is F.scaled_dot_product_attention or func in _SOFTMAX:
            index = self._current()
            if index is not None:
                if func is F.scaled_dot_product_attention:
                    self._record(index, lambda: sdpa_probabilities(*args, **kwargs))
                elif isinstance(result, torch.Tensor) and result.dim() == 4 and _last_axis(args, kwargs):
                    self._record(index, lambda: result.detach()[0].float())
        return result


def _last_axis(args, kwargs):
    """Whether a softmax call normalises over the last axis (keys)."""
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    return dim in (-1, 3)
