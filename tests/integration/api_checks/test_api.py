# -*- coding: utf-8 -*-
"""Post-deploy API checks against any running model service.

    AUTOGLM_BASE_URL=http://host:8080 [AUTOGLM_API_KEY=... | AUTOGLM_API_KEY_FILE=path] \
        [AUTOGLM_MODEL=name] python -m pytest tests/integration/api_checks

The key is the one the model_service role wrote (given, or generated on the host at the
first deploy: /etc/openautoglm/<name>.key, or the controller copy that
model_service_api_key_fetch_dir asks for).

Standard library only (urllib), so it runs from the Ansible venv, molecule verify or CI.
Skipped, with the reason, when AUTOGLM_BASE_URL is not set.
"""

import json
import os
import urllib.error
import urllib.request

import pytest

BASE = os.environ.get('AUTOGLM_BASE_URL', '').rstrip('/')


def _key():
    if os.environ.get('AUTOGLM_API_KEY_FILE'):
        with open(os.environ['AUTOGLM_API_KEY_FILE']) as fh:
            return fh.read().strip() or None
    return os.environ.get('AUTOGLM_API_KEY') or None


KEY = _key()
TIMEOUT = float(os.environ.get('AUTOGLM_TIMEOUT', '120'))

pytestmark = pytest.mark.skipif(not BASE, reason='AUTOGLM_BASE_URL is not set: no deployed service to check')


class Resp(object):
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def call(method, path, body=None, raw=None, key=KEY, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if key:
        req.add_header('Authorization', 'Bearer ' + key)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return Resp(r.status, dict(r.headers), r.read().decode())
    except urllib.error.HTTPError as e:
        return Resp(e.code, dict(e.headers), e.read().decode())


@pytest.fixture(scope='module')
def model():
    name = os.environ.get('AUTOGLM_MODEL')
    if name:
        return name
    r = call('GET', '/v1/models')
    assert r.status == 200, r.body
    return r.json()['data'][0]['id']


def chat(model, **kw):
    body = {'model': model, 'messages': [{'role': 'user', 'content': 'Say hello.'}], 'max_tokens': 8,
            'temperature': 0}
    body.update(kw)
    return body


def test_health():
    r = call('GET', '/health')
    assert r.status == 200, r.body
    assert r.json()['status'] == 'ok'


def test_models(model):
    r = call('GET', '/v1/models')
    data = r.json()
    assert data['object'] == 'list' and model in [m['id'] for m in data['data']]


def test_chat_completion(model):
    r = call('POST', '/v1/chat/completions', chat(model))
    assert r.status == 200, r.body
    b = r.json()
    assert b['object'] == 'chat.completion' and b['model'] == model
    assert isinstance(b['choices'][0]['message']['content'], str)
    assert b['choices'][0]['finish_reason'] in ('stop', 'length')
    u = b['usage']
    assert 0 < u['completion_tokens'] <= 8 and u['total_tokens'] == u['prompt_tokens'] + u['completion_tokens']


def test_streaming(model):
    r = call('POST', '/v1/chat/completions', chat(model, stream=True))
    assert r.status == 200, r.body
    assert r.headers.get('content-type', r.headers.get('Content-Type', '')).startswith('text/event-stream')
    blocks = [b for b in r.body.split('\n\n') if b.strip()]
    assert all(b.startswith('data: ') for b in blocks)
    assert blocks[-1] == 'data: [DONE]'
    chunks = [json.loads(b[6:]) for b in blocks[:-1]]
    assert all(c['object'] == 'chat.completion.chunk' for c in chunks)
    assert any(c['choices'] and c['choices'][0]['finish_reason'] for c in chunks)


def test_predict():
    r = call('POST', '/predict', {'prompt': 'Hello', 'max_new_tokens': 4})
    assert r.status == 200, r.body
    assert isinstance(r.json()['generated_text'], str)


def test_metrics():
    r = call('GET', '/metrics')
    assert r.status == 200
    for name in ('request_duration_seconds_bucket', 'time_to_first_token_seconds', 'generated_tokens_total',
                 'prompt_tokens_total', 'requests_running', 'requests_waiting', 'batch_size_bucket'):
        assert name in r.body, name


@pytest.mark.parametrize('body, raw, status', [
    (None, b'{"messages": [', 400),                                      # invalid JSON
    ({'max_tokens': 4}, None, 400),                                      # missing messages
    ('max_tokens=0', None, 400),
    ('max_tokens=huge', None, 400),
    ('unknown model', None, 404),
    ('oversized prompt', None, (400, 413)),
], ids=['invalid-json', 'missing-messages', 'max-tokens-0', 'max-tokens-huge', 'unknown-model', 'long-prompt'])
def test_bad_inputs(model, body, raw, status):
    if body == 'max_tokens=0':
        body = chat(model, max_tokens=0)
    elif body == 'max_tokens=huge':
        body = chat(model, max_tokens=10 ** 9)
    elif body == 'unknown model':
        body = chat('no-such-model-xyz')
    elif body == 'oversized prompt':
        body = chat(model, messages=[{'role': 'user', 'content': 'word ' * 300000}])
    r = call('POST', '/v1/chat/completions', body, raw=raw)
    assert r.status in (status if isinstance(status, tuple) else (status,)), r.body
    err = r.json()['error']
    assert err['message'] and 'type' in err
    assert call('GET', '/health').status == 200


@pytest.mark.skipif(not KEY, reason='AUTOGLM_API_KEY is not set: the service runs without an API key')
def test_wrong_api_key_is_401(model):
    assert call('POST', '/v1/chat/completions', chat(model), key='wrong-key').status == 401
    assert call('GET', '/v1/models', key=None).status == 401
