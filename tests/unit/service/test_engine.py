# -*- coding: utf-8 -*-
"""Engine without HTTP: batched decode equals plain generate, joins/leaves/rolls, loading states."""

import contextlib
import threading
import time

import pytest


class Result:
    """What a test needs of one finished request: its limit, generated ids and events."""

    def __init__(self, max_new_tokens, events):
        self.max_new_tokens = max_new_tokens
        self.events = events
        done = events[-1] if events and events[-1]['type'] == 'done' else {}
        self.generated = done.get('token_ids', [])


def _submit(engine, ids, max_new, emit, **params):
    from autoglm_service.types import GenRequest, Prompt, SamplingParams
    return engine.submit(GenRequest(prompt=Prompt(ids=list(ids)),
                                    params=SamplingParams(max_new_tokens=max_new, **params), emit=emit))


def _run(engine, prompts, max_new, temperature=0.0, stagger=0.0, hold=False):
    """Submit one request per prompt from threads; ``hold`` queues them all before any runs."""
    reqs, events = [None] * len(prompts), [None] * len(prompts)

    def go(i, p):
        done = threading.Event()
        evs = []

        def emit(ev):
            evs.append(ev)
            if ev['type'] in ('done', 'error'):
                done.set()
        time.sleep(stagger * i)
        _submit(engine, p, max_new[i], emit, temperature=temperature)
        assert done.wait(60)
        reqs[i], events[i] = Result(max_new[i], evs), evs
    threads = [threading.Thread(target=go, args=(i, p)) for i, p in enumerate(prompts)]
    with (engine.paused() if hold else contextlib.nullcontext()):
        for t in threads:
            t.start()
        if hold:
            deadline = time.monotonic() + 30
            while engine.num_waiting < len(prompts) and time.monotonic() < deadline:
                time.sleep(0.01)
    for t in threads:
        t.join()
    return reqs, events


def _chat_ids(eng, text):
    return eng.encode_chat([{'role': 'user', 'content': text}]).ids


@pytest.mark.parametrize('backend', ['auto', 'batched'])
def test_batched_greedy_matches_generate_with_joins_leaves_and_rolls(tiny_model_dir, backend):
    import torch
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    # 9 requests on 4 slots with different lengths force joins and leaves between steps;
    # the generic path (backend=batched) also rolls its short cache; the fast path prefills
    # several prompts together (small max_prefill_tokens: more than one prefill batch)
    eng = Engine(EngineConfig(model_path=tiny_model_dir, max_batch_size=4, max_model_len=64,
                              max_new_tokens=40, backend=backend,
                              max_prefill_tokens=64)).start(background=False)
    try:
        assert (eng.backend_name == 'fast') == (backend == 'auto')
        prompts = [_chat_ids(eng, 'Hello ' + 'abc ' * i) for i in range(9)]
        max_new = [8 + 3 * i for i in range(9)]
        reqs, events = _run(eng, prompts, max_new, hold=True)
        assert eng.stats['max_batch'] == 4, eng.stats
        if eng.backend_name == 'fast':
            assert eng.stats['prefills'] == 9 + 0 and eng.stats['prefill_batches'] < 9, eng.stats
        else:
            assert eng.backend.rolls > 0, eng.stats
        for p, r, evs in zip(prompts, reqs, events):
            assert evs[-1]['type'] == 'done'
            ref = eng.model.generate(torch.tensor([p]), max_new_tokens=r.max_new_tokens, do_sample=False,
                                     pad_token_id=eng.tokenizer.pad_token_id)[0][len(p):].tolist()
            ref = [t for t in ref if t not in eng.eos_ids][:len(r.generated)]
            assert r.generated == ref
            assert ''.join(e['text'] for e in evs if e['type'] == 'delta') == evs[-1]['text']
    finally:
        eng.stop()


def test_prompt_longer_than_cache_allows_is_clamped(engine):
    from autoglm_service.types import EngineError, PromptTooLongError
    with pytest.raises(PromptTooLongError, match='limit is 64 tokens'):
        _submit(engine, [5] * 65, 4, None)
    with pytest.raises(EngineError, match='max_tokens'):
        _submit(engine, [5] * 4, 33, None)


def test_health_is_503_while_loading(tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient
    from autoglm_service.app import create_app
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    gate = threading.Event()
    eng = Engine(EngineConfig(model_path=tiny_model_dir, max_batch_size=2))
    real_load = eng._load

    def slow_load():
        assert gate.wait(60)
        real_load()
    monkeypatch.setattr(eng, '_load', slow_load)
    client = TestClient(create_app(engine=eng))
    try:
        r = client.get('/health')
        assert r.status_code == 503 and r.json() == {'status': 'loading'}
        r = client.post('/v1/chat/completions', json={'messages': [{'role': 'user', 'content': 'hi'}]})
        assert r.status_code == 503 and r.headers['retry-after']
        gate.set()
        eng.wait_ready(60)
        assert client.get('/health').status_code == 200
        r = client.post('/v1/chat/completions', json={'messages': [{'role': 'user', 'content': 'hi'}],
                                                      'max_tokens': 2})
        assert r.status_code == 200
    finally:
        gate.set()
        eng.stop()


def test_missing_model_dir_reports_failed(tmp_path):
    from fastapi.testclient import TestClient
    from autoglm_service.app import create_app
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=str(tmp_path / 'absent')))
    client = TestClient(create_app(engine=eng))
    with pytest.raises(RuntimeError, match='no config.json'):
        eng.wait_ready(30)
    r = client.get('/health')
    assert r.status_code == 500 and r.json()['status'] == 'failed'


def test_sequential_backend(tiny_model_dir):
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_model_dir, backend='sequential', max_new_tokens=8))
    eng.start(background=False)
    ref = Engine(EngineConfig(model_path=tiny_model_dir, max_new_tokens=8)).start(background=False)
    try:
        p = _chat_ids(eng, 'Open the app')
        (a,), _eng_stats = _run(eng, [p], [8])
        (b,), _ref_stats = _run(ref, [p], [8])
        assert eng.backend_name == 'sequential' and a.generated == b.generated
    finally:
        eng.stop()
        ref.stop()


@pytest.fixture(scope='module')
def tiny_glm_dir(tmp_path_factory):
    from autoglm_service import tiny_model
    out = str(tmp_path_factory.mktemp('tiny-glm'))
    tiny_model.create(out, shape='tiny-glm')
    return out


def _check_greedy(eng, reqs, events, prompts):
    import torch
    for p, r, evs in zip(prompts, reqs, events):
        assert evs[-1]['type'] == 'done', evs[-1]
        ref = eng.model.generate(torch.tensor([p]), max_new_tokens=r.max_new_tokens, do_sample=False,
                                 pad_token_id=eng.tokenizer.pad_token_id)[0][len(p):].tolist()
        ref = [t for t in ref if t not in eng.eos_ids][:len(r.generated)]
        assert r.generated == ref


def test_fast_path_glm_layout_matches_generate_with_staggered_arrivals(tiny_glm_dir):
    """GLM layout (fused gate/up, qkv bias, interleaved partial RoPE) on the fast path; requests
    arrive while others decode (joins between pipelined steps, several length buckets)."""
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=220,
                              max_new_tokens=100)).start(background=False)
    try:
        assert eng.backend_name == 'fast' and eng.backend.len_buckets == [64, 128, 220]
        prompts = [_chat_ids(eng, 'Open the app ' + 'xyz ' * (3 * i))
                   for i in range(7)]
        max_new = [90, 5, 40, 12, 70, 3, 25]
        reqs, events = _run(eng, prompts, max_new, stagger=0.02)
        _check_greedy(eng, reqs, events, prompts)
        assert eng.stats['max_batch'] >= 2, eng.stats
    finally:
        eng.stop()


def test_fast_path_sampled_rows_next_to_greedy_rows(tiny_model_dir):
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_model_dir, max_batch_size=4, max_model_len=96,
                              max_new_tokens=40)).start(background=False)
    try:
        assert eng.backend_name == 'fast'
        p = _chat_ids(eng, 'Hello there')
        (alone,), _stats = _run(eng, [p], [20])
        done, out = threading.Event(), []

        def emit(e):
            out.append(e)
            if e['type'] in ('done', 'error'):
                done.set()
        with eng.paused():
            _submit(eng, p, 20, emit, temperature=1.5, top_p=0.9)
        reqs, _stats = _run(eng, [p, p], [20, 20])     # greedy rows decoded in the same steps as the sampled one
        assert done.wait(60) and out[-1]['type'] == 'done'
        assert 1 <= len(out[-1]['token_ids']) <= 20
        assert all(r.generated == alone.generated for r in reqs)
    finally:
        eng.stop()


@pytest.mark.parametrize('attn,min_bucket', [('matmul', 1), ('sdpa', 1)])
def test_fast_path_variants_match_generate(tiny_glm_dir, attn, min_bucket):
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=600,
                              max_new_tokens=100, decode_attention=attn,
                              min_batch_bucket=min_bucket)).start(background=False)
    try:
        assert eng.backend.attn == attn and eng.backend.buckets[0] == min_bucket
        assert eng.backend.len_buckets == [64, 128, 256, 384, 512, 600]
        prompts = [_chat_ids(eng, 'Tap ' + 'go ' * (5 * i)) for i in range(5)]
        reqs, events = _run(eng, prompts, [60, 7, 30, 90, 15], stagger=0.01)
        _check_greedy(eng, reqs, events, prompts)
    finally:
        eng.stop()


def test_fast_path_step_with_the_triton_decode_kernels_equals_the_torch_step(tiny_glm_dir):
    """The decode kernels as the fast backend wires them (cache views, positions, spans, scale,
    the LM head through the GEMV), on the CPU in Triton's interpreter: one decode step from the
    same state gives the same logits, next tokens and cache as the torch step, for three rows of
    different lengths (attention kernel) and for one row (attention and every product a GEMV)."""
    pytest.importorskip('triton')
    import torch
    import torch.nn.functional as F
    from autoglm_service.backends import kernels
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig, Prompt
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=220,
                              max_new_tokens=40)).start(background=False)
    gemv_calls = []

    def linear(x, w, b=None):
        if x.shape[0] != 1:
            return F.linear(x, w, b)
        gemv_calls.append(w.shape)  # wide blocks: fewer programs for the interpreter (shapes: test_kernels)
        return kernels.gemv_launch(x.contiguous(), w, b, x.new_empty((1, w.shape[0])), {'BN': 64, 'BK': 64})
    be = eng.backend
    try:
        assert (be.attn, be.products) == ('matmul', 'torch')       # auto, off CUDA
        with eng.paused(), torch.inference_mode():
            prompts = [_chat_ids(eng, 'Open the app ' + 'xyz ' * (9 * i)) for i in range(3)]
            logits = be.prefill(0, [Prompt(ids=p) for p in prompts])
            be.ids[:3].copy_(logits.argmax(-1))
            for b in (3, 1):
                lb = be.len_bucket(max(be.lens[:b]) + 1)
                state = [t.clone() for t in (be.k_cache, be.v_cache, be.pos, be.ids)]
                out = {}
                for attn, lin in (('matmul', F.linear), ('triton', linear)):
                    for buf, saved in zip((be.k_cache, be.v_cache, be.pos, be.ids), state):
                        buf.copy_(saved)
                    be.attn, be._linear = attn, lin
                    out[attn] = [be._raw_step(b, lb).clone(), be.ids[:b].clone(), be.k_cache.clone(),
                                 be.v_cache.clone(), be.pos[:b].clone()]
                want, got = out['matmul'], out['triton']
                torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-4)
                for w_, g_ in zip(want[1:], got[1:]):
                    torch.testing.assert_close(g_, w_, atol=1e-5, rtol=1e-5)
        # one row: q/k/v, o, gate/up and down of every layer and the LM head
        assert len(gemv_calls) == 4 * len(be.layers) + 1, gemv_calls
    finally:
        be.attn, be._linear = 'matmul', F.linear
        eng.stop()


@pytest.mark.parametrize('setting,fallback', [('decode_attention', 'matmul'), ('decode_products', 'torch')])
def test_triton_kernels_off_cuda_auto_falls_back_explicit_fails(tiny_glm_dir, setting, fallback):
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    limits = dict(model_path=tiny_glm_dir, max_batch_size=2, max_model_len=128, max_new_tokens=8, warmup=False)
    eng = Engine(EngineConfig(**limits)).start(background=False)
    try:
        chosen = eng.backend.attn if setting == 'decode_attention' else eng.backend.products
        assert chosen == fallback           # auto, on the CPU
    finally:
        eng.stop()
    eng = Engine(EngineConfig(**dict(limits, **{setting: 'triton'})))
    with pytest.raises(RuntimeError, match=r'%s=triton: not running on CUDA \(allowed: auto, triton, ' % setting):
        eng.start(background=False)


def test_fast_path_single_prompt_prefill_graph_logic(tiny_glm_dir):
    """The CUDA-graph prefill path (staging K/V, static token buffer), with a stand-in graph on CPU."""
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig

    class FakeGraph:
        def __init__(self, d, lb):
            self.d, self.lb = d, lb

        def replay(self):
            self.d.pf_out[self.lb] = self.d._pf_graph_body(self.lb)

    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=200,
                              max_new_tokens=60)).start(background=False)
    try:
        d = eng.backend
        d.prefill_buckets = [64, 128]
        d._alloc_prefill_staging()
        for lb in d.prefill_buckets:
            d.pf_graphs[lb] = FakeGraph(d, lb)
        prompts = [_chat_ids(eng, 'Find ' + 'cafe ' * (4 * i)) for i in range(4)]
        assert max(len(p) for p in prompts) > 64
        reqs, events = _run(eng, prompts, [40, 9, 25, 33], stagger=0.05)
        _check_greedy(eng, reqs, events, prompts)
    finally:
        eng.stop()


@pytest.mark.parametrize('prefix_cache_tokens', [0, 512])
def test_chunked_prefill_and_prefix_reuse_match_generate(tiny_glm_dir, prefix_cache_tokens):
    """Prompts longer than max_prefill_tokens are prefilled in pieces in the last row while the
    other rows decode; a resent prefix (agent: same system prompt, growing history) is copied
    from the prefix cache. Greedy output is the same as model.generate either way."""
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=400, max_new_tokens=60,
                              max_prefill_tokens=24, prefix_cache_tokens=prefix_cache_tokens)).start(background=False)
    try:
        system = 'You are a phone agent. ' + 'Read the screen, think, then act. ' * 12
        history = ['Step %d: tapped the %s icon and waited.' % (i, w) for i, w in enumerate(['mail', 'map', 'cam'])]
        prompts = [eng.encode_chat([{'role': 'system', 'content': system},
                                    {'role': 'user', 'content': ' '.join(history[:i + 1])}]).ids for i in range(3)]
        prompts.insert(0, _chat_ids(eng, 'short'))      # decodes while the long ones come in pieces
        assert min(len(p) for p in prompts[1:]) > 24 * 3
        reqs, events = _run(eng, prompts, [50, 30, 20, 25], hold=True)
        _check_greedy(eng, reqs, events, prompts)
        # several pieces per long prompt while a row decodes (an idle server takes the rest at once)
        assert eng.stats['chunked_prefills'] >= 3 and eng.stats['prefill_chunks'] >= 3 + 2, eng.stats
        if prefix_cache_tokens:
            # the next step of the same agent: its earlier prompt is a prefix -> cached blocks
            again = eng.encode_chat([{'role': 'system', 'content': system},
                                     {'role': 'user', 'content': ' '.join(history) + ' Now?'}]).ids
            hits = eng.backend.prefix.hit_tokens
            reqs, events = _run(eng, [again], [20])
            _check_greedy(eng, reqs, events, [again])
            assert eng.backend.prefix.hit_tokens - hits >= 64, eng.backend.prefix.hit_tokens
        else:
            assert eng.backend.prefix is None
    finally:
        eng.stop()


def test_prefix_reuse_and_pieces_give_the_same_logits_as_one_prefill(tiny_glm_dir):
    """Backend level: logits after a cached prefix + pieces equal one whole prefill's."""
    import torch
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig, Prompt
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=2, max_model_len=400, max_new_tokens=60,
                              prefix_cache_tokens=256, warmup=False)).start(background=False)
    try:
        be = eng.backend
        ids = _chat_ids(eng, 'Open the settings app ' * 16)
        assert len(ids) > 130
        with torch.inference_mode():
            whole = be.prefill(0, [Prompt(ids=ids)])
            st = be.begin_prefill(1, Prompt(ids=ids))            # first time: nothing cached yet
            assert st.done == 0
            while (out := be.prefill_next(1, st, 40)) is None:
                pass
            assert torch.allclose(out, whole, atol=1e-4), (out - whole).abs().max()
            st = be.begin_prefill(1, Prompt(ids=ids))            # now the leading blocks come from the pool
            assert st.done == (len(ids) - 1) // 64 * 64 > 0
            while (out2 := be.prefill_next(1, st, 1000)) is None:
                pass
            assert torch.allclose(out2, whole, atol=1e-4), (out2 - whole).abs().max()
            assert torch.allclose(be.k_cache[:, 1, :, :len(ids)], be.k_cache[:, 0, :, :len(ids)], atol=1e-5)
    finally:
        eng.stop()


def _penalised_greedy_reference(model, ids, n, freq, pres, eos):
    """Greedy decoding with OpenAI's penalties by definition: full forward each step,
    logit -= frequency * count + presence * (count > 0) over the tokens generated so far."""
    import torch
    out, counts = [], {}
    seq = list(ids)
    for _i in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -1].float()
        for tok, c in counts.items():
            logits[tok] -= freq * c + pres
        tok = int(torch.argmax(logits))
        if tok in eos:
            break
        out.append(tok)
        counts[tok] = counts.get(tok, 0) + 1
        seq.append(tok)
    return out


def test_fast_path_applies_penalties_inside_the_step(tiny_glm_dir):
    """The phone agent's greedy + frequency_penalty rows stay on the fast path: the penalties are
    applied inside the decode step (before its argmax), per row, beside a plain greedy row and a
    sampled row; each greedy row equals decoding by the definition."""
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=tiny_glm_dir, max_batch_size=4, max_model_len=220,
                              max_new_tokens=40)).start(background=False)
    try:
        assert eng.backend_name == 'fast' and eng.backend.penalized
        prompts = [_chat_ids(eng, 'Open the app ' + 'go ' * i) for i in range(3)]
        rows = [dict(frequency_penalty=1.5), dict(), dict(frequency_penalty=0.4, presence_penalty=2.0)]
        results, dones = [None] * 3, [threading.Event() for _i in range(3)]
        sampled_done = threading.Event()

        def emitter(i):
            evs = []

            def emit(ev):
                evs.append(ev)
                if ev['type'] in ('done', 'error'):
                    results[i] = evs
                    dones[i].set()
            return emit
        with eng.paused():
            for i, (p, extra) in enumerate(zip(prompts, rows)):
                _submit(eng, p, 30, emitter(i), temperature=0.0, top_p=0.85, **extra)
            _submit(eng, prompts[0], 30, lambda ev: ev['type'] in ('done', 'error') and sampled_done.set(),
                    temperature=1.0, frequency_penalty=0.2)
        assert all(d.wait(60) for d in dones) and sampled_done.wait(60)
        assert eng.stats['max_batch'] == 4
        for p, extra, evs in zip(prompts, rows, results):
            assert evs[-1]['type'] == 'done', evs[-1]
            want = _penalised_greedy_reference(eng.model, p, 30, extra.get('frequency_penalty', 0.0),
                                               extra.get('presence_penalty', 0.0), eng.eos_ids)
            assert evs[-1]['token_ids'] == want[:len(evs[-1]['token_ids'])] and evs[-1]['token_ids']
        # the penalties changed the answer (else this test could not fail)
        plain = _penalised_greedy_reference(eng.model, prompts[0], 30, 0.0, 0.0, eng.eos_ids)
        assert results[0][-1]['token_ids'] != plain[:len(results[0][-1]['token_ids'])]
    finally:
        eng.stop()
