# -*- coding: utf-8 -*-
"""The decode step's kernels alone, ours (Triton) against torch's, on the GPU it runs on.

    PYTHONPATH=files python tests/benchmarks/decode_kernels.py [--out DIR] [--sweep]

For the GLM-4.1V-9B decoder's shapes (tiny_glm4v.SHAPES['9b'], the model of vlm_bench.py):

* weight products ``x[1, K] @ W[N, K].T``: cuBLAS (``F.linear``) against
  :func:`autoglm_service.backends.kernels.gemv` with its launch shapes, as TB/s of the weight
  bytes and as a fraction of the card's datasheet bandwidth (and cuBLAS with 16 rows, which
  the fast path keeps); with ``--sweep`` every launch shape of a grid, the best per shape;
* decode attention of one step over 40 layers' caches (b rows, a span of positions): the
  torch path of the fast backend (two KV ``index_put``, QK^T with the mask, softmax, PV)
  against :func:`~autoglm_service.backends.kernels.decode_attention`.

Each figure is a CUDA-graph replay over enough distinct weights / caches that the 50 MB L2
cannot hold them (a repeated 34 MB matrix would be read from L2, not from memory).
Output: a table on stdout and decode_kernels.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.abspath(os.path.join(HERE, '..', '..', 'files')))

from benchlib import datasheet_tb_s  # noqa: E402
from vlm_kernels import graph_ms  # noqa: E402


def shapes():
    from autoglm_service.tiny_glm4v import SHAPES
    t = SHAPES['9b'][0]
    h, hq, hkv = t['hidden_size'], t['num_attention_heads'], t['num_key_value_heads']
    d = t.get('head_dim') or h // hq
    return ({'qkv': ((hq + 2 * hkv) * d, h), 'o': (h, hq * d), 'gate_up': (2 * t['intermediate_size'], h),
             'down': (h, t['intermediate_size']), 'lm_head': (t['vocab_size'], h)},
            dict(layers=t['num_hidden_layers'], hq=hq, hkv=hkv, d=d))


def sweep_grid():
    return [dict(BN=bn, BK=bk, num_warps=w, num_stages=s) for bn, bk, w, s in
            itertools.product((2, 4, 8, 16), (256, 512, 1024), (4, 8), (2, 4))]


def products(R, args, bw):
    import torch
    import torch.nn.functional as F
    from autoglm_service.backends import kernels
    dev, dt = 'cuda', torch.bfloat16
    mats, a = shapes()
    R['products'] = {}
    for name, (n, k) in mats.items():
        copies = max(2, -(-200_000_000 // (n * k * 2)))          # > 4x the L2 per replay
        ws = [torch.randn(n, k, device=dev, dtype=dt) * 0.02 for _i in range(copies)]
        bias = torch.randn(n, device=dev, dtype=dt) if name == 'qkv' else None
        nbytes = copies * n * k * 2
        x = torch.randn(1, k, device=dev, dtype=dt)
        y = torch.empty(1, n, device=dev, dtype=dt)
        torch.testing.assert_close(kernels.linear(x, ws[0], bias), F.linear(x, ws[0], bias), atol=5e-2, rtol=5e-2)
        x16 = torch.randn(16, k, device=dev, dtype=dt)

        def run_torch(rows=x):
            for w in ws:
                F.linear(rows, w, bias)

        def run_ours(cfg=None):
            cfg = cfg or kernels.gemv_config(n, k)
            for w in ws:
                kernels.gemv_launch(x, w, bias, y, cfg)
        t_ms = graph_ms(run_torch)[1]
        o_ms = graph_ms(run_ours)[1]
        t16_ms = graph_ms(lambda: run_torch(x16))[1]
        row = {'torch_tb_s': round(nbytes / t_ms / 1e9, 2), 'ours_tb_s': round(nbytes / o_ms / 1e9, 2),
               'speedup': round(t_ms / o_ms, 3), 'torch_16_rows_tb_s': round(nbytes / t16_ms / 1e9, 2)}
        if bw:
            row['torch_of_datasheet'] = round(nbytes / t_ms / 1e9 / bw, 3)
            row['ours_of_datasheet'] = round(nbytes / o_ms / 1e9 / bw, 3)
        if args.sweep:
            best = None
            for cfg in sweep_grid():
                try:
                    ms = graph_ms(lambda: run_ours(cfg), reps=10)[1]
                except Exception as exc:  # noqa: BLE001 - a shape the compiler refuses
                    print('  skip %s: %s' % (cfg, str(exc)[:80]))
                    continue
                if best is None or ms < best[0]:
                    best = (ms, cfg)
            row['best'] = dict(best[1], tb_s=round(nbytes / best[0] / 1e9, 2))
        R['products'][name] = row
        print('%-8s N=%-6d K=%-5d 1 row: torch %5.2f TB/s, ours %5.2f TB/s (x%.3f); 16 rows torch %5.2f TB/s %s' % (
            name, n, k, row['torch_tb_s'], row['ours_tb_s'], row['speedup'], row['torch_16_rows_tb_s'],
            ('best %s' % row['best']) if 'best' in row else ''), flush=True)
        del ws
        torch.cuda.empty_cache()
    # the whole step's products (every layer, lm_head once)
    per_token = sum(n * k * 2 for nm, (n, k) in mats.items() if nm != 'lm_head') * a['layers'] + \
        mats['lm_head'][0] * mats['lm_head'][1] * 2
    R['step_weight_gb'] = round(per_token / 1e9, 3)


def attention(R, args):
    import torch
    from autoglm_service.backends import kernels
    _m, a = shapes()
    dev, dt = 'cuda', torch.bfloat16
    L, hq, hkv, d = a['layers'], a['hq'], a['hkv'], a['d']
    G = hq // hkv
    R['attention'] = {}
    for b, span in ((1, 256), (1, 4608), (4, 4608), (16, 4608), (16, 8192)):
        length = span
        kc = torch.randn(L, b, hkv, length, d, device=dev, dtype=dt)
        vc = torch.randn_like(kc)
        q = torch.randn(b, hq, d, device=dev, dtype=dt)
        k = torch.randn(b, hkv, d, device=dev, dtype=dt)
        v = torch.randn(b, hkv, d, device=dev, dtype=dt)
        pos = torch.full((b,), span - 8, device=dev, dtype=torch.long)
        rows = torch.arange(b, device=dev)
        ar = torch.arange(span, device=dev)
        scale = d ** -0.5

        def torch_path():
            allowed = ar.unsqueeze(0) <= pos.unsqueeze(1)
            mask = torch.zeros((b, 1, 1, span), dtype=dt, device=dev).masked_fill_(
                ~allowed[:, None, None, :], torch.finfo(dt).min).expand(b, hkv, G, span).contiguous()
            n = b * hkv
            for li in range(L):
                kl, vl = kc[li], vc[li]
                kl[rows, :, pos] = k
                vl[rows, :, pos] = v
                kt = kl.reshape(n, span, d).transpose(1, 2)
                sc = torch.baddbmm(mask.view(n, G, span), q.reshape(n, G, d), kt, alpha=scale)
                torch.bmm(torch.softmax(sc, dim=-1), vl.reshape(n, span, d))

        def ours(launch=None):
            for li in range(L):
                kernels.decode_attention(q, k, v, kc[li], vc[li], pos, scale, span, launch=launch)
        t_ms = graph_ms(torch_path)[1]
        o_ms = graph_ms(ours)[1]
        kv_bytes = L * b * hkv * (span - 7) * d * 2 * 2
        row = {'torch_ms_per_step': round(t_ms, 3), 'ours_ms_per_step': round(o_ms, 3),
               'speedup': round(t_ms / o_ms, 2), 'ours_kv_tb_s': round(kv_bytes / o_ms / 1e9, 2)}
        if args.sweep and span == 4608:
            best = None
            for bt, w, st, per_sm in itertools.product((32, 64, 128), (4, 8), (2, 3), (1, 2, 4, 8)):
                launch = dict(BT=bt, num_warps=w, num_stages=st, programs_per_sm=per_sm)
                try:
                    ms = graph_ms(lambda: ours(launch), reps=10)[1]
                except Exception as exc:  # noqa: BLE001
                    print('  skip %s: %s' % (launch, str(exc)[:80]))
                    continue
                if best is None or ms < best[0]:
                    best = (ms, launch)
            row['best'] = dict(best[1], ms=round(best[0], 3))
        R['attention']['b%d/span%d' % (b, span)] = row
        print('attention b=%-2d span=%-5d torch %.3f ms  ours %.3f ms  x%.2f  (KV read %.2f TB/s) %s' % (
            b, span, t_ms, o_ms, row['speedup'], row['ours_kv_tb_s'], row.get('best', '')), flush=True)
        del kc, vc
        torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    p.add_argument('--out', default='.')
    p.add_argument('--sweep', action='store_true', help='time every launch shape of a grid too')
    p.add_argument('--parts', default='products,attention')
    args = p.parse_args(argv)
    import torch
    name = torch.cuda.get_device_name(0)
    bw = datasheet_tb_s(name)      # the collection's table (plugins/module_utils/perf.py)
    R = {'gpu': name, 'torch': torch.__version__, 'datasheet_tb_s': bw}
    try:
        import triton
        R['triton'] = triton.__version__
    except ImportError:
        R['triton'] = None
    if 'products' in args.parts:
        products(R, args, bw)
    if 'attention' in args.parts:
        attention(R, args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'decode_kernels.json'), 'w') as fh:
        json.dump(R, fh, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
