# -*- coding: utf-8 -*-
"""GLM-4.1V's vision tower with fused elementwise work (the model's own modules and weights).

On a 1080x2400 phone screenshot (12,432 patches) the tower took 118 ms on an H200: 36 ms of
attention (cuDNN SDPA), 22 ms of matrix products, and ~50 ms of elementwise kernels in
float32 (the RMSNorms, the rotary embedding, SiLU x up) and copies between them
(tests/benchmarks/vlm_kernels.py). :func:`fuse_glm4v_vision` keeps the tower's own forward
(patch embedding, position interpolation, attention with its sequence splits, merger) and
replaces three of its pieces in every block:

* ``norm1`` / ``norm2``: one function (:func:`~autoglm_service.backends.ops.rms_norm`, the
  model's RMSNorm bit for bit) with the block's weight passed as a tensor;
* ``mlp``: gate and up projections fused into one product (the weights re-pointed as views,
  no copy), SiLU x up, down projection;
* the modeling module's ``apply_rotary_pos_emb_vision``: its own code, compiled.

With ``compile=True`` each piece is ``torch.compile``-d once with a dynamic patch count, and
shared by all 24 blocks (weights are arguments, not module attributes). The returned
``undo()`` puts the model's own pieces back (a compile failure in warm-up).
"""

from __future__ import annotations

import functools
import logging
import sys

import torch
import torch.nn.functional as F

from .ops import fuse_linear, rms_norm

LOG = logging.getLogger('autoglm_service.backends.vision')
ROPE_NAME = 'apply_rotary_pos_emb_vision'


def _mlp(x, w_gu, b_gu, w_d, b_d, act):
    gate, up = F.linear(x, w_gu, b_gu).chunk(2, dim=-1)
    return F.linear(act(gate) * up, w_d, b_d)


def vision_unfusable_reason(visual):
    """None when :func:`fuse_glm4v_vision` applies to this tower; otherwise why not."""
    from .archs import ACTIVATIONS
    mod = sys.modules.get(type(visual).__module__)
    if mod is None or not callable(getattr(mod, ROPE_NAME, None)):
        return 'no %s in the modeling module' % ROPE_NAME
    if getattr(visual.config, 'hidden_act', None) not in ACTIVATIONS:
        return 'vision activation %r' % getattr(visual.config, 'hidden_act', None)
    for blk in getattr(visual, 'blocks', ()):
        for norm in (getattr(blk, 'norm1', None), getattr(blk, 'norm2', None)):
            if not (hasattr(norm, 'weight') and hasattr(norm, 'variance_epsilon')) or \
                    'RMSNorm' not in type(norm).__name__:
                return 'vision norm %s' % type(norm).__name__
        mlp = getattr(blk, 'mlp', None)
        if not all(isinstance(getattr(mlp, n, None), torch.nn.Linear) for n in ('gate_proj', 'up_proj', 'down_proj')):
            return 'vision MLP layout'
    return None if getattr(visual, 'blocks', None) else 'no vision blocks'


def fuse_glm4v_vision(model, compile=False):
    """Replace the vision blocks' norms, MLPs and rotary function (see the module docstring).

    Returns ``undo()``, or None (and changes nothing) when the tower's layout is not the one
    this was written for."""
    visual = model.model.visual
    reason = vision_unfusable_reason(visual)
    if reason is not None:
        LOG.info('vision tower runs as loaded: %s', reason)
        return None
    from .archs import ACTIVATIONS
    mod = sys.modules[type(visual).__module__]
    wrap = (lambda fn: torch.compile(fn, dynamic=True)) if compile else (lambda fn: fn)
    norm_fn, mlp_fn = wrap(rms_norm), wrap(_mlp)
    act = ACTIVATIONS[visual.config.hidden_act]
    replaced = []
    for blk in visual.blocks:
        for norm in (blk.norm1, blk.norm2):
            norm.forward = functools.partial(norm_fn, weight=norm.weight, eps=float(norm.variance_epsilon))
            replaced.append(norm)
        mlp = blk.mlp
        w_gu, b_gu = fuse_linear([mlp.gate_proj, mlp.up_proj])
        mlp.forward = functools.partial(mlp_fn, w_gu=w_gu, b_gu=b_gu, w_d=mlp.down_proj.weight,
                                        b_d=mlp.down_proj.bias, act=act)
        replaced.append(mlp)
    rope = getattr(mod, ROPE_NAME)
    if compile:
        setattr(mod, ROPE_NAME, torch.compile(rope, dynamic=True))

    def undo():
        for m in replaced:
            m.__dict__.pop('forward', None)
        setattr(mod, ROPE_NAME, rope)
    LOG.info('vision tower: %d blocks with fused norms and MLPs (compile=%s)', len(visual.blocks), compile)
    return undo
