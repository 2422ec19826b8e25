# -*- coding: utf-8 -*-
"""Where a phone-agent step's time goes, engine level (no HTTP), one process on the GPU.

    PYTHONPATH=files python tests/benchmarks/vlm_profile.py [--model-dir DIR] [--out DIR]

On the GLM-4.1V-9B-shaped model that vlm_bench.py builds (built here when absent), with the
server's default settings: the CPU side of one screenshot step (processor: decode, resize,
patches, tokens), the vision tower, the language-model prefill in one piece and in pieces of
``max_prefill_tokens``, and decode: milliseconds per token of one stream with a short and with
the screenshot-length context, greedy with and without frequency_penalty (the agent sends 0.2),
so the per-token cost of the penalty path and of the longer attention span are read from the
same run. Output: a table and vlm_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.abspath(os.path.join(HERE, '..', '..', 'files')))

import vlm_bench  # noqa: E402  (the workload: screenshots, the agent's system prompt, the model)


def _sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, n=3):
    """Median seconds of ``fn()`` over ``n`` runs (GPU synchronised)."""
    out = []
    for _i in range(n):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def stream_ms_per_token(eng, prompt, **params):
    """ms per generated token of one request (first to last token), from the engine's events."""
    from autoglm_service.types import GenRequest, SamplingParams
    stamps, done = [], threading.Event()

    def emit(ev):
        if ev['type'] == 'delta':
            stamps.append((time.perf_counter(), ev['tokens']))
        if ev['type'] in ('done', 'error'):
            done.set()
    eng.submit(GenRequest(prompt=prompt, params=SamplingParams(**params), emit=emit))
    assert done.wait(300)
    (t0, n0), (t1, n1) = stamps[0], stamps[-1]
    return 1000.0 * (t1 - t0) / max(1, n1 - n0)


def _counting_emitter(stamps, lock, done):
    """An emit() that records (time, tokens streamed since its previous delta) of one request."""
    seen = [0]

    def emit(ev):
        if ev['type'] == 'delta':              # 'tokens': generated so far in this request
            with lock:
                stamps.append((time.perf_counter(), ev['tokens'] - seen[0]))
            seen[0] = ev['tokens']
        if ev['type'] in ('done', 'error'):
            done.set()
    return emit


def engine_agents(eng, prompts, n, window_s, max_tokens=256):
    """``n`` closed-loop agents straight on the engine (prompts encoded beforehand, no HTTP):
    aggregate tok/s in the window, step latency, and the scheduler's counters over it."""
    from autoglm_service.types import GenRequest, SamplingParams
    stamps, steps, lock = [], [], threading.Lock()
    stop = threading.Event()
    before = dict(eng.stats)

    def agent(i):
        k = i
        while not stop.is_set():
            done = threading.Event()
            t0 = time.perf_counter()
            emit = _counting_emitter(stamps, lock, done)
            eng.submit(GenRequest(prompt=prompts[k % len(prompts)], emit=emit,
                                  params=SamplingParams(max_new_tokens=max_tokens, temperature=0.0, top_p=0.85,
                                                        frequency_penalty=0.2)))
            done.wait(600)
            with lock:
                steps.append((t0, time.perf_counter()))
            k += n
    threads = [threading.Thread(target=agent, args=(i,), daemon=True) for i in range(n)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(window_s * 0.2)          # ramp: every agent has started its first step
    w0 = time.perf_counter()
    time.sleep(window_s)
    w1 = time.perf_counter()
    stop.set()
    for t in threads:
        t.join(120)
    after = dict(eng.stats)
    toks = sum(c for t, c in stamps if w0 <= t < w1)
    lat = sorted(b - a for a, b in steps if a >= t_start + window_s * 0.2 and b <= w1) or [0.0]
    delta = {k: round(after.get(k, 0) - before.get(k, 0), 3) for k in after
             if isinstance(after.get(k), (int, float)) and k != 'max_batch'}
    return {'agg_tok_s': round(toks / (w1 - w0), 1), 'step_p50_s': round(statistics.median(lat), 3),
            'steps_in_window': len(lat), 'scheduler': delta, 'window_s': round(w1 - w0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model-dir', default='/dev/shm/glm4v-9b-random')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'reports/vlm_profile')
    ap.add_argument('--agents', default='', help='closed-loop agent counts at engine level (no HTTP), e.g. 16')
    ap.add_argument('--window-s', type=float, default=15.0)
    ap.add_argument('--shots', type=int, default=4, help='distinct screenshots (prompts) the agents cycle through')
    args = ap.parse_args(argv)
    import torch
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    os.makedirs(args.out, exist_ok=True)
    if not os.path.isfile(os.path.join(args.model_dir, 'config.json')):
        vlm_bench.build_model(args.model_dir)
    cfg = EngineConfig(model_path=args.model_dir, max_batch_size=16, max_model_len=12288)
    t0 = time.perf_counter()
    eng = Engine(cfg).start(background=False)
    R = {'ready_s': round(time.perf_counter() - t0, 1), 'backend': eng.backend_name,
         'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', 'torch': torch.__version__,
         'max_prefill_tokens': cfg.max_prefill_tokens}
    urls, _size = vlm_bench.screenshot_urls(max(4, args.shots))
    system = vlm_bench.system_prompt(eng.tokenizer, 1500)

    def messages(url):
        return [{'role': 'system', 'content': system},
                {'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': url}},
                                             {'type': 'text', 'text': 'Task: open Settings and turn on Wi-Fi'}]}]
    t_cpu = []
    prompts = []
    for url in urls:
        t = time.perf_counter()
        prompts.append(eng.encode_chat(messages(url)))
        t_cpu.append(time.perf_counter() - t)
    p = prompts[0]
    R['prompt_tokens'] = len(p.ids)
    R['cpu_encode_ms'] = round(1000 * statistics.median(t_cpu[1:]), 1)
    be = eng.backend
    row = be.rows - 1
    with eng.paused(), torch.inference_mode():
        R['vision_ms'] = round(1000 * timed(lambda: be.arch.embed_images(be.model, p, be.device, be.dtype)), 1)

        def whole():
            st = be.begin_prefill(row, p, reuse=False)
            be.prefill_next(row, st, st.total)

        def pieces():
            st = be.begin_prefill(row, p, reuse=False)
            while be.prefill_next(row, st, cfg.max_prefill_tokens) is None:
                pass
        R['prefill_whole_ms'] = round(1000 * timed(whole), 1)
        R['prefill_pieces_ms'] = round(1000 * timed(pieces), 1)
        R['lm_prefill_whole_ms'] = round(R['prefill_whole_ms'] - R['vision_ms'], 1)
    short = eng.encode_text('Open the settings app and turn on Wi-Fi. ' * 12)
    R['decode'] = {}
    for name, prompt in (('short_context', short), ('screenshot_context', p)):
        for label, params in (('greedy', {}), ('greedy_freq0.2', {'frequency_penalty': 0.2})):
            ms = stream_ms_per_token(eng, prompt, max_new_tokens=256, temperature=0.0, top_p=0.85, **params)
            R['decode']['%s/%s' % (name, label)] = {'ms_per_token': round(ms, 3), 'tok_s': round(1000 / ms, 1),
                                                    'context': len(prompt.ids)}
    if args.agents:
        R['engine_agents'] = {}
        for n in [int(x) for x in args.agents.split(',')]:
            R['engine_agents'][n] = engine_agents(eng, prompts, n, args.window_s)
            print('engine agents', n, json.dumps(R['engine_agents'][n]), flush=True)
    eng.stop()
    with open(os.path.join(args.out, 'vlm_profile.json'), 'w') as fh:
        json.dump(R, fh, indent=1)
    print(json.dumps(R, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
