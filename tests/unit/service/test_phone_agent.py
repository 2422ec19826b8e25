# -*- coding: utf-8 -*-
"""The Open-AutoGLM phone agent against the real server, with the server's DEFAULT settings.

``python -m autoglm_service`` runs in a subprocess on a tiny random GLM-4.1V whose directory is
named like the real one (AutoGLM-Phone-9B); only ``--device cpu`` and the port are given. The
client is the ``openai`` library, used the way Open-AutoGLM's phone agent uses it: the agent's
system prompt, one user step with a phone screenshot as a data URL, streamed, temperature 0.0,
top_p 0.85, frequency_penalty 0.2, max_tokens 3000, model "autoglm-phone-9b"; then the next
step with the older screenshot removed from the history. Also one non-streamed request with a
full-size 1080x2400 screenshot.
"""

import os
import subprocess
import sys
import time

import pytest

from test_glm4v_engine import phone_screenshot

openai = pytest.importorskip('openai')

FILES = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
SYSTEM = ('The current date: 2026-12-01. # Setup\nYou are a professional Android operation agent assistant '
          'that can fulfill the user\'s high-level instructions. Given a screenshot of the Android interface at '
          'each step, you first analyze the situation, then plan the best course of action using Python-style '
          'pseudo-code. Your response format must be: <think>{think}</think>\n<answer>{action}</answer>\n'
          '- do(action="Launch", app="xxx")\n- do(action="Tap", element=[x,y])\n- do(action="Type", text="xxx")\n'
          '- do(action="Swipe", start=[x1,y1], end=[x2,y2])\n- do(action="Back")\n- finish(message="xxx")\n') * 3
PARAMS = dict(model='autoglm-phone-9b', temperature=0.0, top_p=0.85, frequency_penalty=0.2, max_tokens=3000)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    from autoglm_service import tiny_glm4v
    model = str(tmp_path_factory.mktemp('models') / 'AutoGLM-Phone-9B')
    tiny_glm4v.create(model)
    port = _free_port()
    log = open(str(tmp_path_factory.mktemp('log') / 'server.log'), 'w+')
    env = dict(os.environ, PYTHONPATH=FILES)
    proc = subprocess.Popen([sys.executable, '-m', 'autoglm_service', '--model-path', model, '--device', 'cpu',
                             '--host', '127.0.0.1', '--port', str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    base = 'http://127.0.0.1:%d' % port
    import httpx
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + '/health', timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, open(log.name).read()[-3000:]
        time.sleep(0.5)
    else:
        pytest.fail('server not healthy: ' + open(log.name).read()[-3000:])
    yield base, proc, log.name
    proc.terminate()
    assert proc.wait(60) == 0, open(log.name).read()[-3000:]


def _client(base):
    return openai.OpenAI(base_url=base + '/v1', api_key='EMPTY', timeout=300, max_retries=0)


def _user(text, shot):
    return {'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': shot}},
                                        {'type': 'text', 'text': text}]}


def _without_images(msg):
    return dict(msg, content=[p for p in msg['content'] if p['type'] == 'text'])


def test_agent_steps_streamed_with_defaults(server):
    base, _proc, _log = server
    client = _client(base)
    assert 'autoglm-phone-9b' in [m.id for m in client.models.list().data]
    messages = [{'role': 'system', 'content': SYSTEM},
                _user('Task: open Settings and turn on Wi-Fi\n\n** Screen Info **\n{"current_app": "Launcher"}',
                      phone_screenshot(540, 1200, seed=11))]
    for step in range(2):
        stream = client.chat.completions.create(messages=messages, stream=True, **PARAMS)
        text, finish, chunks = '', None, 0
        for chunk in stream:
            chunks += 1
            if chunk.choices:
                text += chunk.choices[0].delta.content or ''
                finish = chunk.choices[0].finish_reason or finish
        assert finish in ('stop', 'length') and chunks >= 2
        # the agent's next step: the answer joins the history, the old screenshot is removed
        messages[-1] = _without_images(messages[-1])
        messages.append({'role': 'assistant', 'content': text})
        messages.append(_user('** Screen Info **\n{"current_app": "Settings"}', phone_screenshot(540, 1200, seed=12)))


def test_full_size_screenshot_non_streamed(server):
    base, _proc, _log = server
    client = _client(base)
    shot = phone_screenshot(1080, 2400, seed=13)
    resp = client.chat.completions.create(messages=[{'role': 'system', 'content': SYSTEM},
                                                    _user('What is on the screen?', shot)],
                                          **dict(PARAMS, max_tokens=16))
    assert resp.choices[0].finish_reason in ('stop', 'length')
    # a 1080x2400 screen is ~3,300 image tokens at 28x28 pixels per token: the default limits take it
    assert resp.usage.prompt_tokens > 3000, resp.usage
    assert resp.model == 'autoglm-phone-9b' or resp.model == 'AutoGLM-Phone-9B'
