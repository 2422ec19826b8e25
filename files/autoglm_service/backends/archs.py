# -*- coding: utf-8 -*-
"""The architectures the fast backend runs: one :class:`Arch` row each.

A new architecture with Llama's layout is one entry in :data:`ARCHS`; one with another layout
names where its decoder sits, whether its layers carry GLM-4's extra norms, and how a prompt
with images becomes embeddings and M-RoPE positions. :func:`unsupported_reason` checks a
loaded model against its row (so an unexpected module is a clear reason, not a wrong answer).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .vision import fuse_glm4v_vision

LAYER_CHILDREN = {'self_attn', 'mlp', 'input_layernorm', 'post_attention_layernorm'}
SANDWICH_NORMS = ('post_self_attn_layernorm', 'post_mlp_layernorm')
ATTN_CHILDREN = {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'rotary_fn'}
ACTIVATIONS = {'silu': F.silu, 'swish': F.silu}


def _llama_decoder(model):
    return model.model


def _vlm_decoder(model):
    return model.model.language_model


def _cpu(v):
    return v.cpu() if isinstance(v, torch.Tensor) else v


def glm4v_positions(model, prompt):
    """(3-D positions [3, 1, T], rope delta) of a GLM-4.1V prompt: the model's ``get_rope_index``
    on CPU tensors (no device reads), at encode time."""
    extra = prompt.inputs
    ids = torch.tensor([prompt.ids], dtype=torch.long)
    pos, delta = model.model.get_rope_index(ids, mm_token_type_ids=_cpu(extra.get('mm_token_type_ids')),
                                            image_grid_thw=_cpu(extra.get('image_grid_thw')))
    return pos, int(delta.reshape(-1)[0])


def glm4v_embed(model, prompt, device, dtype):
    """A GLM-4.1V prompt with images -> (embeddings [T, H], 3-D positions [3, 1, T], rope delta).

    The model's own pieces: the vision tower (``get_image_features``), the placeholder
    scatter of ``Glm4vModel.forward`` and its ``get_rope_index`` (computed at encode time by
    :func:`glm4v_positions` where the backend prepared the prompt)."""
    inner = model.model
    ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
    emb = inner.get_input_embeddings()(ids)
    pixels = prompt.inputs['pixel_values'].to(device, dtype)
    grid = prompt.inputs['image_grid_thw'].to(device)
    feats = inner.get_image_features(pixels, grid, return_dict=True).pooler_output
    feats = torch.cat(feats, dim=0).to(emb.device, emb.dtype)
    mask, _video = inner.get_placeholder_mask(ids, emb, image_features=feats)
    emb = emb.masked_scatter(mask, feats)
    pos, delta = prompt.positions or glm4v_positions(model, prompt)
    return emb[0], pos.to(device), delta


@dataclass(frozen=True)
class Arch:
    """One architecture the fast path runs (gpt-fast's ``transformer_configs``, by layout)."""

    decoder: Callable = _llama_decoder           # model -> the text decoder (layers, embed_tokens, norm, rotary_emb)
    sandwich: bool = False                       # GLM-4 extra norms after attention and after the MLP
    embed_images: Optional[Callable] = None      # (model, prompt, device, dtype) -> (emb, pos3d, delta)
    mrope: bool = False                          # rotary_emb takes 3-D (t, h, w) positions [3, B, T]
    fuse_vision: Optional[Callable] = None       # (model, compile) -> undo(): a faster vision tower
    positions: Optional[Callable] = None         # (model, prompt) -> (pos3d, delta), on the host at encode time


ARCHS = {
    'llama': Arch(),
    'mistral': Arch(),
    'qwen2': Arch(),
    'glm': Arch(),
    'glm4': Arch(sandwich=True),
    'glm4v': Arch(decoder=_vlm_decoder, sandwich=True, embed_images=glm4v_embed, mrope=True,
                  fuse_vision=fuse_glm4v_vision, positions=glm4v_positions),
}


def text_config(model):
    cfg = model.config
    return getattr(cfg, 'text_config', None) or cfg


def unsupported_reason(model):
    """None when :class:`FastBackend` can run ``model``; otherwise why not."""
    mtype = getattr(getattr(model, 'config', None), 'model_type', None)
    arch = ARCHS.get(mtype)
    if arch is None:
        return 'model type %r not in %s' % (mtype, sorted(ARCHS))
    cfg = text_config(model)
    if getattr(cfg, 'sliding_window', None) and getattr(cfg, 'use_sliding_window', True):
        return 'sliding-window attention'
    if getattr(cfg, 'hidden_act', None) not in ACTIVATIONS:
        return 'activation %r' % getattr(cfg, 'hidden_act', None)
    if getattr(cfg, 'pretraining_tp', 1) not in (1, None):
        return 'pretraining_tp > 1'
    try:
        inner = arch.decoder(model)
    except AttributeError as exc:
        return 'decoder not found (%s)' % exc
    for name in ('layers', 'embed_tokens', 'norm', 'rotary_emb'):
        if not hasattr(inner, name):
            return 'decoder has no %s' % name
    if not hasattr(model, 'lm_head'):
        return 'no lm_head'
    mod = sys.modules.get(type(inner.layers[0].self_attn).__module__)
    if mod is None or not hasattr(mod, 'apply_rotary_pos_emb'):
        return 'no apply_rotary_pos_emb in the modeling module'
    allowed = LAYER_CHILDREN | (set(SANDWICH_NORMS) if arch.sandwich else set())
    for layer in inner.layers:
        names = {n for n, _child in layer.named_children()}
        if names - allowed:
            return 'decoder layer has extra modules %s' % sorted(names - allowed)
        if arch.sandwich and not set(SANDWICH_NORMS) <= names:
            return 'decoder layer lacks %s' % sorted(set(SANDWICH_NORMS) - names)
        attn = layer.self_attn
        names = {n for n, _child in attn.named_children()}
        if names - ATTN_CHILDREN or not {'q_proj', 'k_proj', 'v_proj', 'o_proj'} <= names:
            return 'attention modules %s' % sorted(names)
        mlp = layer.mlp
        if not (hasattr(mlp, 'down_proj') and (hasattr(mlp, 'gate_up_proj') or
                                               (hasattr(mlp, 'gate_proj') and hasattr(mlp, 'up_proj')))):
            return 'unknown MLP layout'
        norms = [layer.input_layernorm, layer.post_attention_layernorm]
        norms += [getattr(layer, n) for n in SANDWICH_NORMS] if arch.sandwich else []
        for norm in norms:
            if not (hasattr(norm, 'weight') and hasattr(norm, 'variance_epsilon')) or \
                    'RMSNorm' not in type(norm).__name__:
                return 'norm %s' % type(norm).__name__
    norm = inner.norm
    if not (hasattr(norm, 'weight') and hasattr(norm, 'variance_epsilon')):
        return 'final norm %s' % type(norm).__name__
    return None
