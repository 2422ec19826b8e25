# -*- coding: utf-8 -*-
"""Will it fit? GPU memory needed by a model, computed from its ``config.json`` alone.

Pure Python (no torch, no transformers) so that an Ansible module can reuse it on a
controller or a target before anything is downloaded or started.

needed = weights at the serving dtype
       + KV cache: 2 (K and V) x layers x kv_heads x head_dim x bytes x context x concurrency
       + runtime overhead: a fixed part (CUDA context, allocator slack, activations)
         plus a fraction of the above

Sizes are decimal GB (1e9 bytes), as GPU vendors and ``nvidia-smi``'s marketing
numbers use them; pass ``gpu_memory_bytes`` when you have the exact figure.

CLI::

    python -m autoglm_service.fit --config config.json --gpu-memory-gb 80 \
        --dtype bf16 --context 8192 --concurrency 8 [--json]

Exit status: 0 fits, 1 does not fit, 2 bad input.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import math
import os
import sys

GB = 1e9

DTYPE_BYTES = {
    'float32': 4, 'fp32': 4, 'f32': 4,
    'bfloat16': 2, 'bf16': 2,
    'float16': 2, 'fp16': 2, 'f16': 2, 'half': 2,
    'int8': 1, 'fp8': 1, 'float8': 1,
    'int4': 0.5,
}
DTYPE_LABEL = {4: 'fp32', 1: 'int8', 0.5: 'int4'}

DEFAULT_OVERHEAD_GB = 1.5
DEFAULT_OVERHEAD_FRACTION = 0.10


class FitError(ValueError):
    """The config cannot be understood (missing keys, unknown dtype)."""


def dtype_bytes(dtype):
    """Bytes per element for a dtype name ('bf16', 'bfloat16', 'fp16', 'float32', ...)."""
    key = str(dtype).lower().replace('torch.', '')
    if key not in DTYPE_BYTES:
        raise FitError('unknown dtype %r; use one of %s' % (dtype, ', '.join(sorted(DTYPE_BYTES))))
    return DTYPE_BYTES[key]


def dtype_label(dtype):
    key = str(dtype).lower().replace('torch.', '')
    return {'bfloat16': 'bf16', 'float16': 'fp16', 'half': 'fp16', 'float32': 'fp32'}.get(key, key)


def _first(cfg, *names, **kw):
    for name in names:
        if cfg.get(name) is not None:
            return cfg[name]
    if 'default' in kw:
        return kw['default']
    raise FitError('config.json has none of %s' % ', '.join(names))


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
    h, L = s['hidden_size'], s['layers']
    q = s['heads'] * s['head_dim']
    kv = s['kv_heads'] * s['head_dim']
    attn = h * q + 2 * h * kv + q * h
    if s['qkv_bias']:
        attn += q + 2 * kv
    mlp = 3 * h * s['intermediate_size']
    norms = 2 * h
    embed = s['vocab_size'] * h
    head = 0 if s['tied_embeddings'] else s['vocab_size'] * h
    return embed + head + L * (attn + mlp + norms) + h + _vision_params(cfg)


def weights_bytes_from_index(model_dir, cfg):
    """Stored weight bytes from ``model.safetensors.index.json`` ``metadata.total_size``."""
    path = os.path.join(model_dir, 'model.safetensors.index.json')
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        total = json.load(fh).get('metadata', {}).get('total_size')
    if not total:
        return None
    stored = dtype_bytes(cfg.get('torch_dtype') or cfg.get('dtype') or 'bf16')
    return int(total), stored


def kv_bytes_per_token(cfg, dtype='bf16'):
    s = shape(cfg)
    return 2 * s['layers'] * s['kv_heads'] * s['head_dim'] * dtype_bytes(dtype)


def _round_context(ctx):
    if ctx >= 1024:
        return int(ctx // 1024 * 1024)
    return int(max(ctx, 0))


def estimate(cfg, gpu_memory_gb=None, dtype='bf16', context=None, concurrency=1,
             overhead_gb=DEFAULT_OVERHEAD_GB, overhead_fraction=DEFAULT_OVERHEAD_FRACTION,
             model_dir=None, gpu_memory_bytes=None, gpus=1):
    """Return a dict: params, the byte breakdown, ``fits`` and a human ``msg``.

    ``context`` defaults to the model's maximum context; ``gpu_memory_gb`` is per GPU
    and ``gpus`` GPUs are pooled (tensor/pipeline split, as device_map="auto" does).
    """
    if isinstance(cfg, str):
        if model_dir is None and os.path.isdir(cfg):
            model_dir = cfg
        path = os.path.join(cfg, 'config.json') if os.path.isdir(cfg) else cfg
        with open(path) as fh:
            cfg = json.load(fh)
    s = shape(cfg)
    bpe = dtype_bytes(dtype)
    concurrency = int(concurrency)
    if context is None:
        context = s['max_context'] or 4096
    context = int(context)
    if context <= 0 or concurrency <= 0:
        raise FitError('context and concurrency must be positive (got %s, %s)' % (context, concurrency))

    params = count_params(cfg)
    source = 'config'
    if model_dir:
        idx = weights_bytes_from_index(model_dir, cfg)
        if idx:
            params = int(idx[0] / idx[1])
            source = 'safetensors index'
    weights = params * bpe
    per_token = kv_bytes_per_token(cfg, dtype)
    kv = per_token * context * concurrency
    needed = (weights + kv) * (1 + overhead_fraction) + overhead_gb * GB

    result = {
        'params': params, 'params_source': source, 'dtype': dtype_label(dtype),
        'bytes_per_param': bpe, 'weights_bytes': int(weights),
        'kv_bytes_per_token': int(per_token), 'kv_cache_bytes': int(kv),
        'overhead_bytes': int(needed - weights - kv),
        'needed_bytes': int(needed), 'needed_gb': round(needed / GB, 1),
        'context': context, 'concurrency': concurrency, 'shape': s,
    }
    if gpu_memory_bytes is None and gpu_memory_gb is None:
        result.update(fits=None, msg='needs %.1f GB at %s with %d x %s-token contexts'
                      % (needed / GB, dtype_label(dtype), concurrency, '{:,}'.format(context)))
        return result
    gpu = float(gpu_memory_bytes) if gpu_memory_bytes is not None else float(gpu_memory_gb) * GB
    gpu *= max(int(gpus), 1)
    result['gpu_bytes'] = int(gpu)
    result['gpu_gb'] = round(gpu / GB, 1)
    fits = needed <= gpu
    # Largest concurrency at this context, largest context at this concurrency.
    avail_kv = (gpu - overhead_gb * GB) / (1 + overhead_fraction) - weights
    max_conc = int(math.floor(avail_kv / (per_token * context))) if avail_kv > 0 else 0
    max_ctx = _round_context(avail_kv / (per_token * concurrency)) if avail_kv > 0 else 0
    if s['max_context']:
        max_ctx = min(max_ctx, s['max_context'])
    result.update(fits=fits, max_concurrency=max_conc, max_context=max_ctx)

    head = 'needs %.1f GB at %s with %d x %s-token contexts; GPU has %s GB' % (
        needed / GB, dtype_label(dtype), concurrency, '{:,}'.format(context),
        ('%.1f' % (gpu / GB)).rstrip('0').rstrip('.'))
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
        result['msg'] = head + '; does not fit: lower ' + ' or '.join(hints)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m autoglm_service.fit',
                                description='Will a model fit on a GPU? (from config.json)')
    p.add_argument('--config', required=True, help='config.json or a model directory')
    p.add_argument('--gpu-memory-gb', type=float, help='memory of one GPU, decimal GB')
    p.add_argument('--gpus', type=int, default=1)
    p.add_argument('--dtype', default='bf16')
    p.add_argument('--context', type=int, help='tokens per sequence (default: model maximum)')
    p.add_argument('--concurrency', type=int, default=1)
    p.add_argument('--overhead-gb', type=float, default=DEFAULT_OVERHEAD_GB)
    p.add_argument('--overhead-fraction', type=float, default=DEFAULT_OVERHEAD_FRACTION)
    p.add_argument('--json', action='store_true', help='print the result as JSON')
    a = p.parse_args(argv)
    try:
        res = estimate(a.config, gpu_memory_gb=a.gpu_memory_gb, dtype=a.dtype, context=a.context,
                       concurrency=a.concurrency, overhead_gb=a.overhead_gb,
                       overhead_fraction=a.overhead_fraction, gpus=a.gpus)
    except (FitError, OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2, sort_keys=True) if a.json else res['msg'])
    return 0 if res['fits'] in (True, None) else 1


if __name__ == '__main__':
    sys.exit(main())
