"""PyTorch SDPA with the signature of the official Wan ``flash_attention``.

The official ``wan`` package calls flash-attn directly (and asserts it is installed).
Where flash-attn is missing we rebind its ``flash_attention`` to this function. Unlike
the package's own SDPA fallback (``wan.modules.attention.attention``), it honours
``k_lens``: text contexts are padded to 512 tokens and the padded keys must be masked,
or the output changes.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

_HALF = (torch.float16, torch.bfloat16)


def sdpa_flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None,
                         q_scale=None, causal=False, window_size=(-1, -1), deterministic=False,
                         dtype=torch.bfloat16, version=None):
    """q: [B, Lq, Nq, C]; k, v: [B, Lk, Nk, C] (Nq divisible by Nk). Returns [B, Lq, Nq, C].

    Like flash-attn varlen, keys at or beyond ``k_lens[b]`` are ignored; rows at or beyond
    ``q_lens[b]`` are padding whose values do not matter (the official code never reads them).
    """
    out_dtype = q.dtype
    if tuple(window_size) != (-1, -1):
        warnings.warn("sliding-window attention is not supported by the SDPA fallback; using full attention")
    # flash-attn runs in half precision; match it so results agree with the official path.
    if q.device.type == "cuda":
        q, k, v = (x if x.dtype in _HALF else x.to(dtype) for x in (q, k, v))
    q, k = q.to(v.dtype), k.to(v.dtype)
    if q_scale is not None:
        q = q * q_scale
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # -> [B, N, L, C]
    if k.size(1) != q.size(1):  # grouped-query attention: share each key head
        repeat = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)

    lq, lk = q.size(2), k.size(2)
    mask = None
    if k_lens is not None:
        keys = torch.arange(lk, device=q.device)[None, :] < k_lens.to(q.device)[:, None]  # [B, Lk]
        mask = keys[:, None, None, :]
    if causal:
        # flash-attn aligns the causal diagonal to the bottom right when Lq != Lk.
        tri = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
        mask = tri[None, None] if mask is None else mask & tri[None, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                         scale=softmax_scale)
    return out.transpose(1, 2).contiguous().to(out_dtype)
