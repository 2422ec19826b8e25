# -*- coding: utf-8 -*-
"""Engine-level GPU smoke test and rough speed check (no HTTP).

    python -m autoglm_service.gpu_smoke --model-path DIR [--max-batch-size 32] [--cuda-graphs on|off]

Checks that batched greedy decoding (CUDA graphs when on) matches ``model.generate`` for
the first tokens, then times 1, 8 and 32 concurrent streams of --new-tokens each.
The full HTTP benchmark (TTFT percentiles, transformers serve, naive baseline) is separate.
"""

import argparse
import json
import threading
import time

import torch

from .engine import Engine
from .types import EngineConfig, GenRequest, Prompt, SamplingParams


def _emitter(ev, times, done, lock):
    def emit(e):
        if e['type'] == 'delta':
            times.append(time.perf_counter())
        if e['type'] in ('done', 'error'):
            with lock:
                done.append(e)
            ev.set()
    return emit


def run_streams(eng, prompt, n, new_tokens):
    done, stamps = [], []
    lock = threading.Lock()
    with eng.paused():
        for _round in range(n):
            ev = threading.Event()
            times = []
            stamps.append((ev, times))
            emit = _emitter(ev, times, done, lock)
            eng.submit(GenRequest(prompt=Prompt(ids=list(prompt)),
                                  params=SamplingParams(max_new_tokens=new_tokens, temperature=0), emit=emit))
        t0 = time.perf_counter()
    for ev, _times in stamps:
        ev.wait(600)
    wall = time.perf_counter() - t0
    tokens = sum(e.get('completion_tokens', 0) for e in done)
    ttft = sorted(times[0] - t0 for _ev, times in stamps if times)
    decode = [(t[-1] - t[0]) / max(len(t) - 1, 1) for _ev, t in stamps if len(t) > 1]
    return {'streams': n, 'tokens': tokens, 'wall_s': round(wall, 3), 'agg_tok_s': round(tokens / wall, 1),
            'ttft_first_s': round(ttft[0], 4) if ttft else None, 'ttft_last_s': round(ttft[-1], 4) if ttft else None,
            'per_stream_decode_ms': round(1000 * sum(decode) / len(decode), 2) if decode else None,
            'errors': [e for e in done if e['type'] == 'error'][:2]}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--model-path', required=True)
    p.add_argument('--max-batch-size', type=int, default=32)
    p.add_argument('--prompt-tokens', type=int, default=128)
    p.add_argument('--new-tokens', type=int, default=64)
    p.add_argument('--max-seq-len', type=int, default=1024)
    p.add_argument('--cuda-graphs', default='auto')
    p.add_argument('--streams', default='1,8,32')
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    eng = Engine(EngineConfig(model_path=a.model_path, max_batch_size=a.max_batch_size, max_queue=256,
                              max_model_len=a.max_seq_len, max_new_tokens=a.max_seq_len // 2,
                              cuda_graphs=a.cuda_graphs)).start(background=False)
    out = {'load_and_warmup_s': round(time.perf_counter() - t0, 1), 'backend': eng.backend_name,
           'graphs': len(eng.backend.graphs), 'device': eng.device,
           'dtype': str(eng.dtype), 'torch': torch.__version__}
    prompt = (eng.encode_text('word ' * a.prompt_tokens).ids * 4)[:a.prompt_tokens]
    # correctness: engine greedy vs plain generate
    ev, final = threading.Event(), {}

    def keep(e):
        if e['type'] in ('done', 'error'):
            final.update(e)
            ev.set()
    eng.submit(GenRequest(prompt=Prompt(ids=prompt), params=SamplingParams(max_new_tokens=16, temperature=0), emit=keep))
    ev.wait(300)
    with torch.inference_mode():
        ref = eng.model.generate(torch.tensor([prompt], device=eng.device), max_new_tokens=16, do_sample=False)
    ref = ref[0][len(prompt):].tolist()
    same = 0
    for x, y in zip(final.get('token_ids', []), ref):
        if x != y:
            break
        same += 1
    out['greedy_prefix_match'] = '%d/%d' % (same, len(ref))
    for n in [int(s) for s in a.streams.split(',')]:
        out['streams_%d' % n] = run_streams(eng, prompt, n, a.new_tokens)
    out['batch_sizes'] = dict(sorted(eng.batch_sizes.items()))
    eng.stop()
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
