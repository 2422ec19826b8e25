# -*- coding: utf-8 -*-
"""One test per hostile input of issue 11, on the tiny model; after each the server still answers.

JSON-level inputs go through the TestClient; socket-level ones (huge Content-Length, chunked
bodies, half-sent heads and bodies, connection limit) go to a real uvicorn server with our
protocol and middleware on a free loopback port (``live_server``); SIGTERM goes to a
``python -m autoglm_service`` subprocess.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import FILES, settled

CHAT = '/v1/chat/completions'
MSG = b'"messages": [{"role": "user", "content": "Hello"}]'


def body(extra: bytes) -> bytes:
    return b'{' + MSG + b', "max_tokens": 2, ' + extra + b'}'


def assert_alive(client, engine):
    assert client.get('/health').status_code == 200
    r = client.post(CHAT, json={'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 2})
    assert r.status_code == 200, r.text
    assert settled(engine), 'requests left running'
    assert _sample(client.get('/metrics').text, 'requests_running') == 0


def _sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + ' '):
            return float(line.split()[-1])
    raise AssertionError('%s not in metrics' % name)


def post_raw(client, raw, path=CHAT):
    return client.post(path, content=raw, headers={'content-type': 'application/json'})


# ---------------------------------------------------------------------- numbers
NON_FINITE = [
    (b'"temperature": NaN', 'temperature'),
    (b'"temperature": Infinity', 'temperature'),
    (b'"temperature": -Infinity', 'temperature'),
    (b'"temperature": 1e400', 'temperature'),
    (b'"top_p": NaN', 'top_p'),
    (b'"frequency_penalty": NaN', 'frequency_penalty'),
    (b'"presence_penalty": Infinity', 'presence_penalty'),
    (b'"repetition_penalty": NaN', 'repetition_penalty'),
]


@pytest.mark.parametrize('extra, param', NON_FINITE, ids=[case[0].decode() for case in NON_FINITE])
def test_non_finite_numbers_refused(client, engine, extra, param):
    r = post_raw(client, body(extra))
    assert r.status_code == 400, r.text
    err = r.json()['error']
    assert err['param'] == param and 'finite' in err['message'], err
    assert_alive(client, engine)


def test_non_finite_in_predict_refused(client, engine):
    r = post_raw(client, b'{"prompt": "hi", "temperature": NaN}', '/predict')
    assert r.status_code == 400 and r.json()['error']['param'] == 'temperature'
    assert_alive(client, engine)


def test_top_p_zero_refused_not_greedy(client, engine):
    r = post_raw(client, body(b'"top_p": 0'))
    assert r.status_code == 400
    err = r.json()['error']
    assert err['param'] == 'top_p' and 'greater than 0' in err['message']
    assert_alive(client, engine)


@pytest.mark.parametrize('field', ['max_tokens', 'max_completion_tokens', 'temperature', 'seed', 'top_k'])
def test_huge_integer_is_400(client, engine, field):
    r = post_raw(client, body(b'"%s": 1%s' % (field.encode(), b'0' * 400)))
    assert r.status_code == 400, r.text
    assert r.json()['error']['param'] == field
    assert_alive(client, engine)


# ---------------------------------------------------------------------- structure
@pytest.mark.parametrize('where', ['messages', 'unknown_field'])
def test_50000_deep_json_is_400(client, engine, where):
    deep = b'[' * 50000 + b']' * 50000
    raw = (b'{"messages": ' + deep + b'}') if where == 'messages' else body(b'"x": ' + deep)
    r = post_raw(client, raw)
    assert r.status_code == 400, r.text
    assert 'not valid JSON' in r.json()['error']['message']
    assert_alive(client, engine)


@pytest.mark.parametrize('extra, param', [(b'"stream_options": "yes"', 'stream_options'),
                                          (b'"stream_options": {"include_usage": "yes"}', 'stream_options.include_usage'),
                                          (b'"stream": "no"', 'stream'),
                                          (b'"stream": 1', 'stream')])
def test_wrong_boolean_types_refused(client, engine, extra, param):
    r = post_raw(client, body(extra))
    assert r.status_code == 400, r.text
    assert r.json()['error']['param'] == param
    assert_alive(client, engine)


def test_null_content_refused(client, engine):
    r = client.post(CHAT, json={'messages': [{'role': 'system', 'content': 'be brief'},
                                             {'role': 'user', 'content': None}]})
    assert r.status_code == 400
    assert r.json()['error']['param'] == 'messages[1].content'
    assert_alive(client, engine)


def test_roles(client, engine):
    ok = client.post(CHAT, json={'messages': [{'role': 'developer', 'content': 'be brief'},
                                              {'role': 'user', 'content': 'hi'}], 'max_tokens': 2})
    assert ok.status_code == 200, ok.text
    r = client.post(CHAT, json={'messages': [{'role': 'robot', 'content': 'x'}]})
    assert r.status_code == 400
    err = r.json()['error']
    assert err['param'] == 'messages[0].role'
    # the message lists exactly the accepted roles
    assert "'system', 'user', 'assistant', 'tool' or 'developer'" in err['message']
    assert_alive(client, engine)


# ---------------------------------------------------------------------- socket level
def rss_bytes():
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def read_response(sock, timeout=5.0):
    """Everything the server sends until it closes (or ``timeout``): (status, raw, closed)."""
    sock.settimeout(timeout)
    data, closed = b'', False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    status = int(data.split(b' ', 2)[1]) if data.startswith(b'HTTP/1.1 ') else None
    return status, data, closed


def head(length=None, chunked=False, path=CHAT):
    lines = [b'POST %s HTTP/1.1' % path.encode(), b'Host: test', b'Content-Type: application/json']
    if length is not None:
        lines.append(b'Content-Length: %d' % length)
    if chunked:
        lines.append(b'Transfer-Encoding: chunked')
    return b'\r\n'.join(lines) + b'\r\n\r\n'


def test_100mb_content_length_is_413_before_reading(live_server, engine):
    srv = live_server(max_body_bytes=8 * 1024 * 1024)
    before = rss_bytes()
    t0 = time.monotonic()
    with srv.connect() as s:
        s.sendall(head(100 * 1024 * 1024) + b'{"messages": [' + b' ' * 4096)
        status, raw, closed = read_response(s)
    assert status == 413, raw
    assert b'--max-body-bytes' in raw
    assert closed, 'the connection stays open after a refused body'
    assert time.monotonic() - t0 < 2
    assert rss_bytes() - before < 20 * 1024 * 1024
    assert httpx.get(srv.url + '/health').status_code == 200
    assert _sample(httpx.get(srv.url + '/metrics').text, 'requests_rejected_total{reason="body_too_large"}') == 1


def test_chunked_body_cut_at_the_limit(live_server, engine):
    srv = live_server(max_body_bytes=1024 * 1024)
    before = rss_bytes()
    chunk = b' ' * 65536
    with srv.connect() as s:
        s.sendall(head(chunked=True) + b'%x\r\n{"messages": []\r\n' % len(b'{"messages": []'))
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:          # the server must answer long before this
                s.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, raw, _closed = read_response(s)
    assert status == 413, raw
    assert sent < 8 * 1024 * 1024, 'the server read %d bytes past a 1 MiB limit' % sent
    assert rss_bytes() - before < 40 * 1024 * 1024
    assert httpx.get(srv.url + '/health').status_code == 200


def test_2mb_body_does_not_stall_health(live_server, engine):
    srv = live_server()
    big = json.dumps({'messages': [{'role': 'user', 'content': 'tap the button ' * (2 * 1024 * 1024 // 15)}]})
    result = {}

    def send():
        t0 = time.monotonic()
        result['r'] = httpx.post(srv.url + CHAT, content=big, timeout=120)
        result['s'] = time.monotonic() - t0
    t = threading.Thread(target=send)
    t.start()
    worst = 0.0
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        while t.is_alive():
            t0 = time.monotonic()
            assert c.get('/health').status_code == 200
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.02)
    t.join()
    assert result['r'].status_code == 413, result['r'].text      # prompt longer than max_model_len
    assert 'at least' in result['r'].json()['error']['message']   # refused by size, before tokenising
    assert result['s'] < 5.0, 'a 2 MB prompt took %.1f s to refuse' % result['s']
    assert worst < 1.0, '/health took %.2f s while a 2 MB body was handled' % worst
    assert settled(engine)


def test_made_up_methods_do_not_grow_metric_labels(client, engine):
    def methods():
        return {line.split('method="')[1].split('"')[0] for line in client.get('/metrics').text.splitlines()
                if line.startswith('request_duration_seconds_count')}
    client.get('/health')
    before = methods()
    for i in range(30):
        client.request('MADEUP%d' % i, '/health')
        client.request('X%d' % i, '/nope/%d' % i)
    after = methods()
    assert after - before <= {'other'}, after - before
    assert not any(m.startswith('MADEUP') for m in after)
    assert_alive(client, engine)


def test_50_half_sent_bodies_closed_after_body_timeout(live_server, engine):
    srv = live_server(body_timeout=1.0, header_timeout=1.0)
    socks = [srv.connect() for _i in range(50)]
    t0 = time.monotonic()
    for s in socks:
        s.sendall(head(1000) + b'{"messages": [')
    assert httpx.get(srv.url + '/health').status_code == 200
    results = [read_response(s, timeout=6) for s in socks]
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    assert all(status == 408 and closed for status, _raw, closed in results), results[:3]
    assert elapsed < 6
    assert httpx.get(srv.url + '/health').status_code == 200
    assert _sample(httpx.get(srv.url + '/metrics').text, 'requests_rejected_total{reason="body_timeout"}') == 50
    assert settled(engine)


def test_50_half_sent_heads_closed_after_header_timeout(live_server, engine):
    srv = live_server(header_timeout=1.0)
    socks = [srv.connect() for _i in range(50)]
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n')     # never ends the head
    t0 = time.monotonic()
    results = [read_response(s, timeout=6) for s in socks]
    for s in socks:
        s.close()
    assert all(closed for _status, _raw, closed in results)
    assert all(status == 408 for status, _raw, _closed in results)
    assert time.monotonic() - t0 < 6
    assert httpx.get(srv.url + '/health').status_code == 200


def test_connection_limit_answers_503(live_server, engine):
    srv = live_server(max_connections=5, header_timeout=5.0)
    idle = [srv.connect() for _i in range(5)]
    time.sleep(0.2)
    try:
        r = httpx.get(srv.url + '/health')
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while httpx.get(srv.url + '/health').status_code != 200:
        assert time.monotonic() < deadline, 'connections not released'
        time.sleep(0.05)


# ---------------------------------------------------------------------- process
def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_drains_and_exits_0(tiny_model_dir):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=FILES, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, '-m', 'autoglm_service', '--model-path', tiny_model_dir,
                             '--host', '127.0.0.1', '--port', str(port), '--device', 'cpu', '--no-warmup',
                             '--served-model-name', 'tiny', '--max-model-len', '1100', '--max-new-tokens', '1000',
                             '--default-max-new-tokens', '8',
                             '--log-level', 'warning'],
                            env=env, stderr=subprocess.PIPE, text=True)
    url = 'http://127.0.0.1:%d' % port
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(url + '/health', timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, 'server not ready'
            time.sleep(0.2)
        result = {}

        def long_request():
            result['r'] = httpx.post(url + CHAT, timeout=60, json={
                'messages': [{'role': 'user', 'content': 'Tell a story'}], 'max_tokens': 1000, 'temperature': 0})
        t = threading.Thread(target=long_request)
        t.start()
        # SIGTERM once the request is being generated (a fixed sleep raced a loaded machine)
        deadline = time.monotonic() + 30
        while _sample(httpx.get(url + '/metrics', timeout=5).text, 'requests_running') < 1:
            assert time.monotonic() < deadline and t.is_alive(), 'the request never started'
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert rc == 0, stderr
    assert result['r'].status_code == 200, result['r'].text     # the running request finished
    assert 'Traceback' not in stderr, stderr


def test_client_gone_before_its_answer_frees_the_request(live_server, engine):
    """A client that sends a whole request and hangs up: its request is cancelled, not generated."""
    srv = live_server()
    generated = _sample(httpx.get(srv.url + '/metrics').text, 'generated_tokens_total')
    raw = json.dumps({'messages': [{'role': 'user', 'content': 'Tell a story'}], 'max_tokens': 32}).encode()
    with engine.paused():
        socks = []
        for _i in range(4):
            s = srv.connect()
            s.sendall(head(len(raw)) + raw)
            socks.append(s)
        deadline = time.monotonic() + 10
        while engine.num_waiting < 4:
            assert time.monotonic() < deadline, 'requests not queued'
            time.sleep(0.01)
        for s in socks:
            s.close()
        time.sleep(0.3)
    assert settled(engine, timeout=5)
    assert _sample(httpx.get(srv.url + '/metrics').text, 'generated_tokens_total') == generated
    r = httpx.post(srv.url + CHAT, json={'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 2})
    assert r.status_code == 200
