# -*- coding: utf-8 -*-
"""Tensor helpers shared by the fast pieces (decoder layers, prefill, vision tower)."""

from __future__ import annotations

import torch


def rms_norm(x, weight, eps):
    """transformers' LlamaRMSNorm/GlmRMSNorm, bit for bit."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def fuse_linear(mods):
    """Concatenate nn.Linear weights (and biases) along the output dim; re-point them as views."""
    w = torch.cat([m.weight.data for m in mods], dim=0)
    has_bias = [m.bias is not None for m in mods]
    b = None
    if any(has_bias):
        b = torch.cat([m.bias.data if m.bias is not None else
                       torch.zeros(m.weight.shape[0], dtype=w.dtype, device=w.device) for m in mods])
    off = 0
    for m in mods:
        n = m.weight.shape[0]
        m.weight = torch.nn.Parameter(w[off:off + n], requires_grad=False)
        if m.bias is not None:
            m.bias = torch.nn.Parameter(b[off:off + n], requires_grad=False)
        off += n
    return w, b
