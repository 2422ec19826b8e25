# -*- coding: utf-8 -*-
"""HTTP API on the tiny model: endpoints, streaming, metrics, bad inputs, overload, auth."""

import json
import time

import pytest

from conftest import LIMITS

CHAT = '/v1/chat/completions'


def chat_body(content='Hello there', **kw):
    body = {'model': 'tiny', 'messages': [{'role': 'user', 'content': content}], 'max_tokens': 8,
            'temperature': 0}
    body.update(kw)
    return body


def parse_sse(text):
    events = []
    for block in text.split('\n\n'):
        if not block.strip():
            continue
        assert block.startswith('data: '), block
        payload = block[len('data: '):]
        events.append(payload if payload == '[DONE]' else json.loads(payload))
    return events


def assert_alive(client):
    assert client.get('/health').status_code == 200
    r = client.post(CHAT, json=chat_body(max_tokens=2))
    assert r.status_code == 200, r.text


def test_health_ready(client):
    r = client.get('/health')
    assert r.status_code == 200
    assert r.json()['status'] == 'ok'


def test_models(client):
    r = client.get('/v1/models')
    assert r.status_code == 200
    body = r.json()
    assert body['object'] == 'list'
    assert [m['id'] for m in body['data']] == ['tiny']


def test_chat_completion_schema(client):
    r = client.post(CHAT, json=chat_body())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body['object'] == 'chat.completion' and body['id'].startswith('chatcmpl-')
    assert body['model'] == 'tiny'
    choice = body['choices'][0]
    assert choice['message']['role'] == 'assistant' and isinstance(choice['message']['content'], str)
    assert choice['finish_reason'] in ('stop', 'length')
    u = body['usage']
    assert u['prompt_tokens'] > 0 and 0 < u['completion_tokens'] <= 8
    assert u['total_tokens'] == u['prompt_tokens'] + u['completion_tokens']


def test_chat_text_parts_equal_plain_string(client):
    a = client.post(CHAT, json=chat_body('Open the settings app')).json()
    b = client.post(CHAT, json=chat_body([{'type': 'text', 'text': 'Open the '},
                                          {'type': 'text', 'text': 'settings app'}])).json()
    assert a['choices'][0]['message']['content'] == b['choices'][0]['message']['content']
    assert a['usage'] == b['usage']


def test_greedy_is_deterministic(client):
    texts = {client.post(CHAT, json=chat_body('Tap the button', max_tokens=16)).json()['choices'][0]['message']
             ['content'] for _round in range(3)}
    assert len(texts) == 1


def test_sampling_params_accepted(client):
    r = client.post(CHAT, json=chat_body(temperature=0.8, top_p=0.9, max_tokens=6))
    assert r.status_code == 200
    assert r.json()['usage']['completion_tokens'] <= 6


def test_max_tokens_is_respected(client):
    r = client.post(CHAT, json=chat_body(max_tokens=3))
    body = r.json()
    assert body['usage']['completion_tokens'] <= 3
    if body['usage']['completion_tokens'] == 3:
        assert body['choices'][0]['finish_reason'] == 'length'


def test_stop_string_truncates(client):
    full = client.post(CHAT, json=chat_body('Send a message', max_tokens=24)).json()['choices'][0]['message'][
        'content']
    assert len(full) >= 6, 'tiny model produced too little text to test stop strings: %r' % full
    stop = full[3:5]
    r = client.post(CHAT, json=chat_body('Send a message', max_tokens=24, stop=[stop]))
    body = r.json()
    assert body['choices'][0]['message']['content'] == full[:full.find(stop)]
    assert body['choices'][0]['finish_reason'] == 'stop'


def test_streaming_sse(client):
    plain = client.post(CHAT, json=chat_body(max_tokens=12)).json()
    with client.stream('POST', CHAT, json=chat_body(max_tokens=12, stream=True,
                                                    stream_options={'include_usage': True})) as r:
        assert r.status_code == 200
        assert r.headers['content-type'].startswith('text/event-stream')
        text = ''.join(r.iter_text())
    events = parse_sse(text)
    assert events[-1] == '[DONE]'
    chunks = events[:-1]
    assert all(c['object'] == 'chat.completion.chunk' for c in chunks)
    assert len({c['id'] for c in chunks}) == 1
    assert chunks[0]['choices'][0]['delta']['role'] == 'assistant'
    content = ''.join(c['choices'][0]['delta'].get('content', '') for c in chunks if c['choices'])
    assert content == plain['choices'][0]['message']['content']
    finals = [c for c in chunks if c['choices'] and c['choices'][0]['finish_reason']]
    assert len(finals) == 1 and finals[0]['usage'] == plain['usage']
    assert chunks[-1]['choices'] == [] and chunks[-1]['usage'] == plain['usage']
    # more than the role chunk and the final chunk: tokens were streamed one by one
    assert len(chunks) >= 4


def test_predict(client):
    r = client.post('/predict', json={'prompt': 'Hello', 'max_new_tokens': 5, 'temperature': 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body['generated_text'], str)
    assert 0 < body['completion_tokens'] <= 5
    r2 = client.post('/predict', json={'text': 'Hello', 'max_new_tokens': 5, 'temperature': 0})
    assert r2.json()['generated_text'] == body['generated_text']


def test_predict_default_max_new_tokens(client):
    r = client.post('/predict', json={'prompt': 'Hello', 'temperature': 0})
    assert r.status_code == 200
    assert r.json()['completion_tokens'] <= LIMITS['default_max_new_tokens']


BAD = [
    # (path, raw body or json, status, substring of the message)
    (CHAT, b'{"messages": [', 400, 'not valid JSON'),
    (CHAT, b'[1, 2]', 400, 'JSON object'),
    (CHAT, {'model': 'tiny'}, 400, "'messages'"),
    (CHAT, {'messages': []}, 400, "'messages'"),
    (CHAT, {'messages': [{'role': 'robot', 'content': 'x'}]}, 400, 'role'),
    (CHAT, {'messages': [{'role': 'user', 'content': 42}]}, 400, 'content'),
    (CHAT, {'messages': [{'role': 'user', 'content': [{'type': 'audio'}]}]}, 400, 'content[0]'),
    (CHAT, chat_body(max_tokens=0), 400, 'max_tokens'),
    (CHAT, chat_body(max_tokens=-5), 400, 'max_tokens'),
    (CHAT, chat_body(max_tokens=10 ** 9), 400, 'max_tokens'),
    (CHAT, chat_body(max_tokens='ten'), 400, 'max_tokens'),
    (CHAT, chat_body(temperature=7), 400, 'temperature'),
    (CHAT, chat_body(top_p=1.5), 400, 'top_p'),
    (CHAT, chat_body(stop=[1, 2]), 400, 'stop'),
    (CHAT, chat_body(model='gpt-4'), 404, "model 'gpt-4' not found"),
    (CHAT, chat_body('word ' * 200), 413, 'limit is %d tokens' % (LIMITS['max_model_len'] - 1)),
    (CHAT, chat_body([{'type': 'text', 'text': 'what is this?'},
                      {'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,iVBORw0KGgo='}}]),
     400, 'model does not accept images'),
    ('/predict', {'max_new_tokens': 4}, 400, "'prompt'"),
    ('/predict', {'prompt': ''}, 400, "'prompt'"),
    ('/predict', {'prompt': 'hi', 'max_new_tokens': 0}, 400, 'max_new_tokens'),
    ('/predict', {'prompt': 'word ' * 200}, 413, 'max_model_len'),
]


@pytest.mark.parametrize('path, body, status, needle', BAD, ids=['%s-%d-%s' % (b[0], b[2], b[3][:20]) for b in BAD])
def test_bad_inputs(client, path, body, status, needle):
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={'content-type': 'application/json'})
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()['error']
    assert needle in err['message']
    assert set(err) >= {'message', 'type', 'code'}
    assert_alive(client)


def test_wrong_method_and_unknown_path(client):
    assert client.get(CHAT).status_code == 405
    assert client.get('/nope/123').status_code == 404
    assert_alive(client)


def test_concurrent_requests_are_batched(client, engine, run_threads):
    before = sum(n * c for n, c in engine.batch_sizes.items() if n > 1)
    with engine.paused():
        join = run_threads(lambda i: client.post(CHAT, json=chat_body('Request %d' % i, max_tokens=16)), 8)
        deadline = time.monotonic() + 30
        while engine.num_waiting < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.num_waiting == 8
    results = join()
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert engine.stats['max_batch'] == 8
    assert sum(n * c for n, c in engine.batch_sizes.items() if n > 1) > before
    # each answer equals the same request run alone
    alone = client.post(CHAT, json=chat_body('Request 3', max_tokens=16)).json()
    assert results[3].json()['choices'][0]['message'] == alone['choices'][0]['message']
    metrics = client.get('/metrics').text
    le1 = _sample(metrics, 'batch_size_bucket{le="1.0"}')
    count = _sample(metrics, 'batch_size_count')
    assert count > le1, 'no decode step with more than one sequence'


def _sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + ' '):
            return float(line.split()[-1])
    raise AssertionError('%s not in metrics' % name)


def test_queue_full_gives_429_with_retry_after(client, engine, run_threads):
    old = engine.config.max_queue
    engine.config.max_queue = 1
    try:
        paused = engine.paused()
        paused.__enter__()
        join = run_threads(lambda i: client.post(CHAT, json=chat_body(max_tokens=2)), 1)
        deadline = time.monotonic() + 30
        while engine.num_waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = client.post(CHAT, json=chat_body(max_tokens=2))
        assert r.status_code == 429, r.text
        assert int(r.headers['retry-after']) >= 1
        assert 'max_queue 1' in r.json()['error']['message']
        assert client.get('/health').status_code == 200
    finally:
        engine.config.max_queue = old
        paused.__exit__(None, None, None)
    assert join()[0].status_code == 200
    assert 'requests_rejected_total{reason="queue_full"}' in client.get('/metrics').text


def test_metrics_content(client):
    client.post(CHAT, json=chat_body(max_tokens=4))
    client.post(CHAT, json=chat_body(max_tokens=0))
    client.get('/nope/123')
    r = client.get('/metrics')
    assert r.status_code == 200 and r.headers['content-type'].startswith('text/plain')
    m = r.text
    for name in ('request_duration_seconds_bucket', 'time_to_first_token_seconds_bucket', 'generated_tokens_total',
                 'prompt_tokens_total', 'requests_running', 'requests_waiting', 'batch_size_bucket',
                 'requests_rejected_total'):
        assert '\n' + name in m, name
    assert 'request_duration_seconds_count{endpoint="/v1/chat/completions",method="POST",status="200"}' in m
    assert 'request_duration_seconds_count{endpoint="/v1/chat/completions",method="POST",status="400"}' in m
    assert 'endpoint="unmatched"' in m and '/nope/123' not in m       # route templates, not raw paths
    assert 'requests_rejected_total{reason="bad_max_tokens"}' in m or \
        'requests_rejected_total{reason="invalid_request"}' in m
    assert _sample(m, 'generated_tokens_total') > 0
    assert _sample(m, 'prompt_tokens_total') > 0
    assert _sample(m, 'time_to_first_token_seconds_count{endpoint="/v1/chat/completions"}') > 0
    # the first token's time, by phase: encode, queue, prefill (each observed once per answer)
    for name in ('prompt_encode_seconds', 'request_queue_seconds', 'request_prefill_seconds'):
        assert _sample(m, name + '_count{endpoint="/v1/chat/completions"}') >= 1, name
    ttft = _sample(m, 'time_to_first_token_seconds_sum{endpoint="/v1/chat/completions"}')
    phases = sum(_sample(m, n + '_sum{endpoint="/v1/chat/completions"}')
                 for n in ('request_queue_seconds', 'request_prefill_seconds'))
    assert 0 < phases <= ttft
    assert _sample(m, 'requests_running') == 0 and _sample(m, 'requests_waiting') == 0


def test_api_key(app, engine):
    from fastapi.testclient import TestClient
    from autoglm_service.app import create_app
    secured = TestClient(create_app(engine=engine, api_key='s3cret', stop_engine_on_shutdown=False))
    assert secured.post(CHAT, json=chat_body()).status_code == 401
    r = secured.post(CHAT, json=chat_body(), headers={'Authorization': 'Bearer wrong'})
    assert r.status_code == 401 and r.json()['error']['type'] == 'authentication_error'
    assert 's3cret' not in r.text
    assert secured.get('/v1/models').status_code == 401
    assert secured.post(CHAT, json=chat_body(), headers={'Authorization': 'Bearer s3cret'}).status_code == 200
    assert secured.get('/v1/models', headers={'x-api-key': 's3cret'}).status_code == 200
    assert secured.get('/health').status_code == 200
    assert secured.get('/metrics').status_code == 200


def test_oom_in_prefill_gives_503_then_recovers(client, engine, monkeypatch):
    _oom_once(engine, monkeypatch, fail_on_call=1)
    r = client.post(CHAT, json=chat_body(max_tokens=4))
    assert r.status_code == 503 and 'out of GPU memory' in r.json()['error']['message']
    assert 'retry-after' in r.headers
    assert_alive(client)


def test_oom_in_decode_step_gives_503_then_recovers(client, engine, monkeypatch):
    _oom_once(engine, monkeypatch, fail_on_call=2)       # 1 = prefill, 2 = first batched step
    r = client.post(CHAT, json=chat_body(max_tokens=4))
    assert r.status_code == 503
    assert_alive(client)


def test_oom_while_streaming_is_an_error_event(client, engine, monkeypatch):
    _oom_once(engine, monkeypatch, fail_on_call=2)
    with client.stream('POST', CHAT, json=chat_body(max_tokens=4, stream=True)) as r:
        events = parse_sse(''.join(r.iter_text()))
    assert events[-1] == '[DONE]'
    assert events[-2]['error']['message'].startswith('out of GPU memory')
    assert_alive(client)


def _oom_once(engine, monkeypatch, fail_on_call):
    """Raise a (simulated) CUDA OOM in the ``fail_on_call``-th model call: 1 = prefill, 2 = first step."""
    import torch
    calls = {'n': 0}

    def failing(real):
        def call(*a, **kw):
            calls['n'] += 1
            if calls['n'] == fail_on_call:
                raise torch.cuda.OutOfMemoryError('CUDA out of memory (simulated)')
            return real(*a, **kw)
        return call
    # every backend has the same interface: fail its prefill / decode step
    monkeypatch.setattr(engine.backend, 'prefill', failing(engine.backend.prefill))
    monkeypatch.setattr(engine.backend, 'decode', failing(engine.backend.decode))
