# -*- coding: utf-8 -*-
"""Kernel-level breakdown of a phone-agent step on the GPU: what each piece costs and why.

    PYTHONPATH=files python tests/benchmarks/vlm_kernels.py [--model-dir DIR] [--out DIR]

On the GLM-4.1V-9B-shaped model of vlm_bench.py (built when absent), with the server's fast
backend, one process:

* decode: one captured step (batch 1 and 16, a short and a screenshot-length span) timed by
  graph replay, its kernels grouped (matrix products, attention, norms/elementwise, other) with
  the bytes the matrix products must read, so the achieved bandwidth of the products alone and
  the cost of everything around them are read from the same run; the same step with the
  attention variants;
* the matrix products alone (every layer's weights, batch 1, one graph): the floor of a step;
* the vision tower: each SDPA backend on the screenshot, and its kernels grouped;
* the CPU side of a step: data URL and PNG decode, the image processor (on the CPU, and on the
  GPU where the processor takes ``device``), chat template and tokens.
Output: tables on stdout and vlm_kernels.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.abspath(os.path.join(HERE, '..', '..', 'files')))

import vlm_bench  # noqa: E402
from benchlib import datasheet_tb_s  # noqa: E402

GROUPS = (('gemm', ('gemm', 'gemv', 'cutlass', 'sm90', 'xmma', 'splitk', 'cublas', 'ampere', 'nvjet')),
          ('attention', ('flash', 'fmha', 'softmax', 'attention', 'cudnn')),
          ('copy/index', ('index', 'copy', 'scatter', 'gather', 'cat')))


def group_of(name):
    low = name.lower()
    for g, keys in GROUPS:
        if any(k in low for k in keys):
            return g
    if low.startswith('triton'):
        return 'triton (fused elementwise)'
    return 'other elementwise'


def kernel_table(fn, reps):
    """Run ``fn`` ``reps`` times under the profiler: per-group and top kernels, us per call."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _i in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        t = getattr(ev, 'self_device_time_total', None)
        if t is None:
            t = getattr(ev, 'self_cuda_time_total', 0)
        dt = getattr(ev, 'device_type', None)
        # kernels and memcpy/memset only (runtime calls and operator rows carry no self device time)
        if not t or not ev.count or (dt is not None and not str(dt).endswith('CUDA')) or \
                ev.key.startswith(('cuda', 'aten::')):
            continue
        rows.append((ev.key, t / reps, ev.count / reps))
    rows.sort(key=lambda r: -r[1])
    groups = {}
    for name, us, cnt in rows:
        g = groups.setdefault(group_of(name), [0.0, 0.0])
        g[0] += us
        g[1] += cnt
    return {'total_kernel_us': round(sum(r[1] for r in rows), 1),
            'kernels_per_call': round(sum(r[2] for r in rows), 1),
            'groups': {k: {'us': round(v[0], 1), 'kernels': round(v[1], 1)} for k, v in
                       sorted(groups.items(), key=lambda kv: -kv[1][0])},
            'top': [{'kernel': n[:110], 'us': round(us, 1), 'per_call': round(c, 1)} for n, us, c in rows[:14]]}


def graph_ms(fn, reps=50):
    """Capture ``fn`` in a CUDA graph, median ms of a replay (events, 5 batches)."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g, events_ms(g.replay, reps)


def events_ms(fn, reps=50):
    import torch
    fn()
    torch.cuda.synchronize()
    out = []
    for _b in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _i in range(reps):
            fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / reps)
    return statistics.median(out)


def decode_part(be, R, bw_ref):
    import torch
    layers = be.layers
    w_bytes = sum(t.numel() * t.element_size() for L in layers for t in (L.w_qkv, L.w_o, L.w_gu, L.w_d))
    w_bytes += be.lm_head.weight.numel() * be.lm_head.weight.element_size()
    R['decode_weight_gb'] = round(w_bytes / 1e9, 3)
    x = torch.randn(1, layers[0].w_qkv.shape[1], device=be.device, dtype=be.dtype)
    inter = layers[0].w_d.shape[1]
    xi = torch.randn(1, inter, device=be.device, dtype=be.dtype)
    hq = torch.randn(1, layers[0].w_o.shape[1], device=be.device, dtype=be.dtype)

    from autoglm_service.backends import kernels
    import torch.nn.functional as F
    chosen = be.attn, be._linear
    for lin_name, lin in (('torch', F.linear), ('triton', kernels.linear)):
        if lin_name == 'triton' and not kernels.available():
            continue

        def products():
            for L in layers:
                lin(x, L.w_qkv, L.b_qkv)
                lin(hq, L.w_o, L.b_o)
                lin(x, L.w_gu, L.b_gu)
                lin(xi, L.w_d, L.b_d)
            lin(x, be.lm_head.weight, be.lm_head.bias)
        _g, ms = graph_ms(products)
        key = 'products_alone' if lin_name == 'torch' else 'products_alone_triton'
        R[key] = {'ms': round(ms, 3), 'tb_s': round(w_bytes / ms / 1e9, 2),
                  'of_ref_bw': round(w_bytes / ms / 1e6 / bw_ref, 3) if bw_ref else None}
        R[key]['kernels'] = kernel_table(products, 3)
        print('%s: %.3f ms, %.2f TB/s' % (key, ms, w_bytes / ms / 1e9), flush=True)
    R['decode'] = {}
    variants = [('matmul', 'torch'), ('sdpa', 'torch')]
    if kernels.available():
        variants += [('triton', 'torch'), ('matmul', 'triton'), ('triton', 'triton')]
    for attn, lin_name in variants:
        be.attn = attn
        be._linear = kernels.linear if lin_name == 'triton' else F.linear
        for b, span in ((1, 256), (1, 4608), (16, 256), (16, 4608)):
            lb = be.len_bucket(span)
            be.pos.zero_()
            be.pos[:b] = span - 8

            def step():
                be.pos[:b] = span - 8
                be._raw_step(b, lb)
            g, ms = graph_ms(step)
            key = '%s+%s/b%d/span%d' % (attn, lin_name, b, lb)
            d = {'ms': round(ms, 3), 'tok_s_per_stream': round(1000 / ms, 1),
                 'weights_tb_s': round(w_bytes / ms / 1e9, 2)}
            if b == 1 or attn != 'sdpa':
                d['kernels'] = kernel_table(g.replay, 5)
            R['decode'][key] = d
            print('decode %-30s %.3f ms' % (key, ms), flush=True)
    be.attn, be._linear = chosen
    be.pos.zero_()


def vision_part(eng, prompt, R):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    be = eng.backend
    R['vision'] = {}

    def run():
        be.arch.embed_images(be.model, prompt, be.device, be.dtype)
    for name, backends in (('default', None), ('flash', [SDPBackend.FLASH_ATTENTION]),
                           ('cudnn', [SDPBackend.CUDNN_ATTENTION]), ('efficient', [SDPBackend.EFFICIENT_ATTENTION])):
        try:
            if backends is None:
                ms = events_ms(run, 3)
                kt = kernel_table(run, 2)
            else:
                with sdpa_kernel(backends):
                    ms = events_ms(run, 3)
                    kt = kernel_table(run, 2)
            R['vision'][name] = {'ms': round(ms, 2), 'kernels': kt}
            print('vision %-10s %.2f ms' % (name, ms), flush=True)
        except Exception as exc:  # noqa: BLE001 - a backend that does not run is a finding
            R['vision'][name] = {'error': '%s: %s' % (type(exc).__name__, str(exc)[:300])}
    grid = prompt.inputs['image_grid_thw']
    R['vision']['patches'] = int(grid.prod(-1).sum())
    R['vision']['attn_impl'] = getattr(be.model.config.vision_config, '_attn_implementation', None)


def cpu_part(eng, url, messages, R):
    import torch
    proc = eng.processor
    R['cpu'] = {}

    def med(fn, n=5):
        out = []
        for _i in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return round(1000 * statistics.median(out), 2)
    raw = base64.b64decode(url.split(',', 1)[1])
    R['cpu']['png_bytes'] = len(raw)
    R['cpu']['b64_decode_ms'] = med(lambda: base64.b64decode(url.split(',', 1)[1]))
    from PIL import Image
    R['cpu']['png_decode_ms'] = med(lambda: Image.open(io.BytesIO(raw)).convert('RGB'))
    img = Image.open(io.BytesIO(raw)).convert('RGB')
    ip = proc.image_processor
    R['cpu']['image_processor'] = type(ip).__name__
    R['cpu']['image_processor_cpu_ms'] = med(lambda: ip(images=[img], return_tensors='pt'))
    try:
        R['cpu']['image_processor_cuda_ms'] = med(lambda: (ip(images=[img], return_tensors='pt', device='cuda'),
                                                           torch.cuda.synchronize()))
    except Exception as exc:  # noqa: BLE001
        R['cpu']['image_processor_cuda_ms'] = 'error: %s' % str(exc)[:200]
    R['cpu']['encode_chat_ms'] = med(lambda: eng.encode_chat(messages), 3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model-dir', default='/dev/shm/glm4v-9b-random')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'reports/vlm_kernels')
    ap.add_argument('--parts', default='cpu,vision,decode')
    args = ap.parse_args(argv)
    import torch
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    os.makedirs(args.out, exist_ok=True)
    if not os.path.isfile(os.path.join(args.model_dir, 'config.json')):
        vlm_bench.build_model(args.model_dir)
    cfg = EngineConfig(model_path=args.model_dir, max_batch_size=16, max_model_len=12288)
    eng = Engine(cfg).start(background=False)
    R = {'gpu': torch.cuda.get_device_name(0), 'torch': torch.__version__, 'backend': eng.backend_name}
    sheet = datasheet_tb_s(R['gpu'])             # the collection's table (plugins/module_utils/perf.py)
    bw_ref = R['ref_bw_gb_s'] = sheet * 1e3 if sheet else None
    urls, _size = vlm_bench.screenshot_urls(2)
    system = vlm_bench.system_prompt(eng.tokenizer, 1500)
    messages = [{'role': 'system', 'content': system},
                {'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': urls[0]}},
                                             {'type': 'text', 'text': 'Task: open Settings and turn on Wi-Fi'}]}]
    parts = args.parts.split(',')

    def save():
        with open(os.path.join(args.out, 'vlm_kernels.json'), 'w') as fh:
            json.dump(R, fh, indent=1)
    if 'cpu' in parts:
        cpu_part(eng, urls[0], messages, R)
        print(json.dumps(R['cpu']), flush=True)
        save()
    prompt = eng.encode_chat(messages)
    with eng.paused(), torch.inference_mode():
        if 'vision' in parts:
            vision_part(eng, prompt, R)
            save()
        if 'decode' in parts:
            decode_part(eng.backend, R, bw_ref)
            save()
    eng.stop()
    save()
    short = {k: v for k, v in R.items() if k not in ('decode', 'vision', 'products_alone')}
    print(json.dumps(short, indent=1))
    print('products alone:', json.dumps({k: v for k, v in R.get('products_alone', {}).items() if k != 'kernels'}),
          json.dumps(R.get('products_alone', {}).get('kernels', {}).get('groups')))
    for k, v in R.get('decode', {}).items():
        print('decode', k, v['ms'], 'ms', json.dumps(v.get('kernels', {}).get('groups')),
              'kernels/step', v.get('kernels', {}).get('kernels_per_call'))
    for k, v in R.get('vision', {}).items():
        if isinstance(v, dict):
            print('vision', k, v.get('ms'), json.dumps(v.get('kernels', {}).get('groups')), v.get('error', ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
