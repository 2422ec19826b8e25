# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Will it fit? GPU memory needed by a model, computed from its ``config.json`` alone.

This file is the one implementation. The ``model_fit`` module uses it on a managed host
and the model server's CLI (``python -m autoglm_service.fit``) loads it too, so it stays
pure Python: standard library only, no Ansible, torch or transformers imports.

needed = weights at the serving dtype
       + KV cache: 2 (K and V) x layers x kv_heads x head_dim x bytes x context x concurrency
       + runtime overhead: a fixed part per GPU (CUDA context, allocator slack, activations)
         plus a fraction of weights + KV cache

Sizes are decimal GB (1e9 bytes), the unit GPU vendors print; exact byte counts are
returned beside every GB figure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os

GB = 1e9

DTYPE_BYTES = {
    'float32': 4, 'fp32': 4, 'f32': 4,
    'bfloat16': 2, 'bf16': 2,
    'float16': 2, 'fp16': 2, 'f16': 2, 'half': 2,
    'int8': 1, 'fp8': 1, 'float8': 1,
    'int4': 0.5,
}
# Weight-only quantised dtypes keep a 16-bit KV cache unless told otherwise.
QUANTISED = ('int8', 'int4')

DEFAULT_OVERHEAD_BYTES = int(1.5 * GB)
DEFAULT_OVERHEAD_FRACTION = 0.10


class FitError(ValueError):
    """The config cannot be understood (missing keys, unknown dtype, bad numbers)."""


def _dtype_key(dtype):
    return str(dtype).lower().replace('torch.', '')


def dtype_bytes(dtype):
    """Bytes per element for a dtype name ('bf16', 'bfloat16', 'fp16', 'float32', ...)."""
    key = _dtype_key(dtype)
    if key not in DTYPE_BYTES:
        raise FitError('unknown dtype %r; use one of %s' % (dtype, ', '.join(sorted(DTYPE_BYTES))))
    return DTYPE_BYTES[key]


def dtype_label(dtype):
    """Short name of a dtype: bfloat16 -> bf16, float16 -> fp16, float32 -> fp32."""
    key = _dtype_key(dtype)
    return {'bfloat16': 'bf16', 'float16': 'fp16', 'half': 'fp16', 'float32': 'fp32'}.get(key, key)


def default_kv_dtype(dtype):
    """KV cache dtype when none is given: the weight dtype, 16-bit for weight-only quantisation."""
    return 'bf16' if dtype_label(dtype) in QUANTISED else dtype_label(dtype)


def _first(cfg, *names, **kw):
    for name in names:
        if cfg.get(name) is not None:
            return cfg[name]
    if 'default' in kw:
        return kw['default']
    raise FitError('config.json has none of %s' % ', '.join(names))


def load_config(path):
    """Parse a ``config.json`` file, or the one inside a model directory."""
    if os.path.isdir(path):
        path = os.path.join(path, 'config.json')
    with open(path) as fh:
        try:
            cfg = json.load(fh)
        except ValueError as exc:
            raise FitError('%s is not valid JSON: %s' % (path, exc))
    if not isinstance(cfg, dict):
        raise FitError('%s does not hold a JSON object' % path)
    return cfg


def text_config(cfg):
    """The language-model part of a config (VLMs nest it under ``text_config``)."""
    for key in ('text_config', 'llm_config', 'language_config'):
        sub = cfg.get(key)
        if isinstance(sub, dict) and sub.get('hidden_size'):
            return sub
    return cfg


def shape(cfg):
    """Normalised decoder shape from HF llama/glm/glm4v/qwen2/mistral or THUDM chatglm configs."""
    tc = text_config(cfg)
    hidden = int(_first(tc, 'hidden_size', 'n_embd', 'd_model'))
    layers = int(_first(tc, 'num_hidden_layers', 'num_layers', 'n_layer'))
    heads = int(_first(tc, 'num_attention_heads', 'n_head'))
    multi_query = tc.get('multi_query_attention', True)
    kv_heads = int(_first(tc, 'num_key_value_heads', 'multi_query_group_num', 'n_head_kv',
                          default=heads) if multi_query else heads)
    head_dim = int(_first(tc, 'head_dim', 'kv_channels', default=hidden // heads))
    inter = int(_first(tc, 'intermediate_size', 'ffn_hidden_size', 'n_inner', default=4 * hidden))
    vocab = int(_first(tc, 'padded_vocab_size', 'vocab_size'))
    tied = bool(_first(tc, 'tie_word_embeddings', default=cfg.get('tie_word_embeddings', False)))
    bias = bool(_first(tc, 'attention_bias', 'add_qkv_bias', 'qkv_bias', default=False))
    if tc.get('model_type') in ('qwen2', 'qwen2_vl', 'qwen2_5_vl'):
        bias = True
    ctx = _first(tc, 'max_position_embeddings', 'seq_length', default=cfg.get('max_position_embeddings'))
    return {
        'hidden_size': hidden, 'layers': layers, 'heads': heads, 'kv_heads': kv_heads,
        'head_dim': head_dim, 'intermediate_size': inter, 'vocab_size': vocab,
        'tied_embeddings': tied, 'qkv_bias': bias,
        'max_context': int(ctx) if ctx else None,
    }


def _vision_params(cfg):
    vc = cfg.get('vision_config')
    if not isinstance(vc, dict):
        return 0
    hidden = vc.get('hidden_size') or vc.get('embed_dim')
    depth = vc.get('depth') or vc.get('num_hidden_layers')
    if not hidden or not depth:
        return 0
    inter = vc.get('intermediate_size') or 4 * hidden
    # attention (qkv + proj) + gated MLP per block; patch embedding and merger are small.
    per_block = 4 * hidden * hidden + 3 * hidden * inter
    return int(depth) * per_block


def count_params(cfg):
    """Parameters of a llama-like decoder (gated MLP, GQA) plus a VLM's vision tower."""
    s = shape(cfg)
    h, n_layers = s['hidden_size'], s['layers']
    q = s['heads'] * s['head_dim']
    kv = s['kv_heads'] * s['head_dim']
    attn = h * q + 2 * h * kv + q * h
    if s['qkv_bias']:
        attn += q + 2 * kv
    mlp = 3 * h * s['intermediate_size']
    norms = 2 * h
    embed = s['vocab_size'] * h
    head = 0 if s['tied_embeddings'] else s['vocab_size'] * h
    return embed + head + n_layers * (attn + mlp + norms) + h + _vision_params(cfg)


def weights_bytes_from_index(model_dir, cfg):
    """(stored weight bytes, bytes per stored element) from ``model.safetensors.index.json``."""
    path = os.path.join(model_dir, 'model.safetensors.index.json')
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        total = json.load(fh).get('metadata', {}).get('total_size')
    if not total:
        return None
    return int(total), _stored_bytes(cfg)


def _stored_bytes(cfg):
    """Bytes per stored element, from the config's dtype (bf16 when it names none)."""
    return dtype_bytes(cfg.get('torch_dtype') or cfg.get('dtype') or 'bf16')


def kv_bytes_per_token(cfg, dtype='bf16'):
    """KV cache bytes one token takes: 2 x layers x kv_heads x head_dim x bytes."""
    s = shape(cfg)
    return 2 * s['layers'] * s['kv_heads'] * s['head_dim'] * dtype_bytes(dtype)


def gpu_pool(memory_bytes, gpus=None):
    """(bytes per GPU, GPUs used) for a model split over ``gpus`` GPUs.

    ``memory_bytes`` is one GPU's memory or a list of the host's GPU memories. One GPU: the
    largest. N GPUs (tensor parallel): the N largest, each limited to the smallest of them,
    since the split is even. A single figure with ``gpus`` N means N GPUs of that size.
    """
    want = 1 if gpus is None else int(gpus)
    if want < 1:
        raise FitError('the number of GPUs must be at least 1 (got %d)' % want)
    if isinstance(memory_bytes, (list, tuple)):
        sizes = sorted((int(m) for m in memory_bytes if m is not None), reverse=True)
    else:
        sizes = [int(memory_bytes)] * want
    if not sizes:
        raise FitError('no GPU memory figure given')
    if any(m <= 0 for m in sizes):
        raise FitError('GPU memory must be positive bytes (got %s)' % ', '.join(str(m) for m in sizes))
    if want > len(sizes):
        raise FitError('%d GPUs requested but the host has %d' % (want, len(sizes)))
    return sizes[want - 1], want


def gpu_memory_from_facts(facts):
    """List of per-GPU memory bytes from the openautoglm_gpu fact; raises FitError."""
    facts = facts.get('openautoglm_gpu', facts)
    devices = facts.get('devices')
    if not isinstance(devices, list):
        raise FitError('gpu_facts has no devices list; pass ansible_facts.openautoglm_gpu '
                       'from openautoglm.deploy.gpu_facts')
    if not devices:
        raise FitError('gpu_facts reports no GPU on this host')
    sizes = []
    for dev in devices:
        dev = dev if isinstance(dev, dict) else {'name': str(dev)}
        if not dev.get('memory_total_bytes'):
            raise FitError('gpu_facts has no memory figure for GPU %s (%s); pass gpu_memory_bytes instead'
                           % (dev.get('index', '?'), dev.get('name', 'unknown')))
        sizes.append(int(dev['memory_total_bytes']))
    return sizes


def _round_context(ctx):
    if ctx >= 1024:
        return int(ctx // 1024 * 1024)
    return int(max(ctx, 0))


def _gb_text(num_bytes):
    return ('%.1f' % (num_bytes / GB)).rstrip('0').rstrip('.')


def estimate(cfg, gpu_memory_gb=None, dtype='bf16', context=None, concurrency=1,
             overhead_bytes=DEFAULT_OVERHEAD_BYTES, overhead_fraction=DEFAULT_OVERHEAD_FRACTION,
             model_dir=None, gpu_memory_bytes=None, gpus=1, kv_dtype=None, stored_weights_bytes=None):
    """Return a dict: params, the byte breakdown, ``fits`` and a human ``msg``.

    ``cfg`` is a parsed config, a config.json path or a model directory. ``context``
    defaults to the model's maximum context. ``gpu_memory_bytes`` (or ``gpu_memory_gb``) is
    one GPU's memory or a list of the host's GPUs; ``gpus`` GPUs are used (see gpu_pool)
    and pooled, each paying the fixed ``overhead_bytes``. Without GPU memory ``fits`` is None.
    """
    if isinstance(cfg, str):
        if model_dir is None and os.path.isdir(cfg):
            model_dir = cfg
        cfg = load_config(cfg)
    s = shape(cfg)
    bpe = dtype_bytes(dtype)
    kv_dtype = default_kv_dtype(dtype) if kv_dtype in (None, 'auto') else kv_dtype
    concurrency = int(concurrency)
    if context is None:
        context = s['max_context'] or 4096
    context = int(context)
    if context <= 0 or concurrency <= 0:
        raise FitError('context and concurrency must be positive (got %s, %s)' % (context, concurrency))
    if overhead_bytes < 0 or not 0 <= overhead_fraction < 10:
        raise FitError('overhead must be >= 0 bytes and a fraction in [0, 10) (got %s, %s)'
                       % (overhead_bytes, overhead_fraction))

    if gpu_memory_bytes is None and gpu_memory_gb is not None:
        gpu_memory_bytes = ([g * GB for g in gpu_memory_gb] if isinstance(gpu_memory_gb, (list, tuple))
                            else gpu_memory_gb * GB)
    per_gpu, n_gpus = gpu_pool(gpu_memory_bytes, gpus) if gpu_memory_bytes is not None else (None, int(gpus))
    if n_gpus < 1:
        raise FitError('the number of GPUs must be at least 1 (got %d)' % n_gpus)
    fixed = overhead_bytes * n_gpus

    params = count_params(cfg)
    source = 'config'
    if stored_weights_bytes:  # the files' sizes, known before a download (the Hub's listing)
        params = int(stored_weights_bytes / _stored_bytes(cfg))
        source = 'stored weight size'
    elif model_dir:
        idx = weights_bytes_from_index(model_dir, cfg)
        if idx:
            params = int(idx[0] / idx[1])
            source = 'safetensors index'
    weights = params * bpe
    per_token = kv_bytes_per_token(cfg, kv_dtype)
    kv = per_token * context * concurrency
    needed = (weights + kv) * (1 + overhead_fraction) + fixed

    result = {
        'params': params, 'params_source': source, 'dtype': dtype_label(dtype),
        'kv_dtype': dtype_label(kv_dtype),
        'bytes_per_param': bpe, 'weights_bytes': int(weights), 'weights_gb': round(weights / GB, 1),
        'kv_bytes_per_token': int(per_token), 'kv_cache_bytes': int(kv), 'kv_cache_gb': round(kv / GB, 1),
        'overhead_bytes': int(needed - weights - kv), 'overhead_gb': round((needed - weights - kv) / GB, 1),
        'needed_bytes': int(needed), 'needed_gb': round(needed / GB, 1),
        'context': context, 'concurrency': concurrency, 'gpus': n_gpus, 'shape': s,
    }
    head = 'needs %.1f GB at %s with %d x %s-token contexts' % (
        needed / GB, dtype_label(dtype), concurrency, '{:,}'.format(context))
    if per_gpu is None:
        result.update(fits=None, msg=head)
        return result

    gpu = float(per_gpu) * n_gpus
    result.update(gpu_bytes=int(gpu), gpu_gb=round(gpu / GB, 1), per_gpu_bytes=int(per_gpu),
                  headroom_bytes=int(gpu - needed))
    fits = needed <= gpu
    # Largest concurrency at this context, largest context at this concurrency.
    avail_kv = (gpu - fixed) / (1 + overhead_fraction) - weights
    max_conc = int(math.floor(avail_kv / (per_token * context))) if avail_kv > 0 else 0
    max_ctx = _round_context(avail_kv / (per_token * concurrency)) if avail_kv > 0 else 0
    if s['max_context']:
        max_ctx = min(max_ctx, s['max_context'])
    result.update(fits=fits, max_concurrency=max_conc, max_context=max_ctx)

    if n_gpus == 1:
        head += '; GPU has %s GB' % _gb_text(gpu)
    else:
        head += '; %d GPUs have %s GB (%s GB each)' % (n_gpus, _gb_text(gpu), _gb_text(per_gpu))
    if fits:
        result['msg'] = head + '; fits (up to %d concurrent %s-token contexts)' % (
            max_conc, '{:,}'.format(context))
    elif avail_kv <= per_token * 1024:
        result['msg'] = head + ('; does not fit: the weights alone need %.1f GB at %s; use a '
                                'GPU with more memory, more GPUs or a smaller dtype'
                                % (weights / GB, dtype_label(dtype)))
    else:
        hints = []
        if max_conc >= 1:
            hints.append('max_concurrency to %d' % max_conc)
        if max_ctx >= 1:
            hints.append('context to %s' % '{:,}'.format(max_ctx))
        if not hints:
            hints.append('max_concurrency to 1 and context to %s'
                         % '{:,}'.format(_round_context(avail_kv / per_token)))
        result['msg'] = head + '; does not fit: lower ' + ' or '.join(hints)
    return result
