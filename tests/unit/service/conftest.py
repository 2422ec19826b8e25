# -*- coding: utf-8 -*-
"""Fixtures for the model-service tests (tiny random model, engine, FastAPI TestClient).

Run in the service venv (see files/autoglm_service/requirements-test.txt)::

    .venv-service/bin/python -m pytest tests/unit/service

Without torch/transformers/fastapi (the Ansible venv running `make units`), only the
pure-Python tests (fit) run; the others are not collected, with a note in the header.
"""

import importlib.util
import os
import sys
import threading
import time

import pytest

FILES = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
if FILES not in sys.path:
    sys.path.insert(0, FILES)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
NEEDS = ('torch', 'transformers', 'fastapi', 'prometheus_client', 'httpx', 'tokenizers')
MISSING = [m for m in NEEDS if importlib.util.find_spec(m) is None]
PURE_PYTHON = {'test_fit.py', 'test_cli.py'}

if not MISSING and 'TRITON_INTERPRET' not in os.environ:
    import torch
    if not torch.cuda.is_available():
        # the fast path's Triton kernels (test_kernels.py) run in Triton's interpreter; it
        # must be on before anything imports triton
        os.environ['TRITON_INTERPRET'] = '1'

if MISSING:
    collect_ignore_glob = [f for f in os.listdir(os.path.dirname(__file__))
                           if f.startswith('test_') and f.endswith('.py') and f not in PURE_PYTHON]


def pytest_report_header(config):
    if MISSING:
        return 'model-service tests: only pure-Python ones run; missing %s' % ', '.join(MISSING)
    return None


LIMITS = dict(max_batch_size=8, max_queue=16, max_model_len=65, max_new_tokens=32,
              default_max_new_tokens=8)


@pytest.fixture(scope='session')
def tiny_model_dir(tmp_path_factory):
    from autoglm_service import tiny_model
    out = str(tmp_path_factory.mktemp('tiny-model'))
    tiny_model.create(out)
    return out


@pytest.fixture(scope='session')
def glm4v_dir(tmp_path_factory):
    """A tiny random GLM-4.1V (AutoGLM-Phone-9B's architecture), built once per session."""
    from autoglm_service import tiny_glm4v
    out = str(tmp_path_factory.mktemp('tiny-glm4v'))
    tiny_glm4v.create(out)
    return out


@pytest.fixture(scope='session')
def engine(tiny_model_dir):
    import torch
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    torch.set_num_threads(1)
    eng = Engine(EngineConfig(model_path=tiny_model_dir, served_model_name='tiny', **LIMITS))
    eng.start(background=False)
    yield eng
    eng.stop()


@pytest.fixture(scope='session')
def app(engine):
    from autoglm_service.app import create_app
    return create_app(engine=engine, stop_engine_on_shutdown=False)


@pytest.fixture
def client(app, engine):
    from fastapi.testclient import TestClient
    yield TestClient(app)
    assert settled(engine), 'a test left requests behind: %d running, %d waiting' % (
        engine.num_running, engine.num_waiting)


def settled(engine, timeout=10.0):
    """True once the engine runs and queues nothing (rows are freed just after their last event)."""
    deadline = time.monotonic() + timeout
    while engine.num_running or engine.num_waiting:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class LiveServer:
    """A real uvicorn server (our protocol, middleware and limits) on a free loopback port, in a thread."""

    def __init__(self, engine, api_key=None, **server_settings):
        import socket
        from autoglm_service.app import create_app
        from autoglm_service.__main__ import bind
        from autoglm_service.server import Server, uvicorn_config
        from autoglm_service.types import ServerConfig
        self.settings = ServerConfig(host='127.0.0.1', port=0, **server_settings)
        self.engine = engine
        self.app = create_app(engine=engine, server=self.settings, api_key=api_key, stop_engine_on_shutdown=False)
        self.sock = bind('127.0.0.1', 0)
        self.port = self.sock.getsockname()[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        # engine=None: the session's engine is shared, stopping this server must not drain it
        self.server = Server(uvicorn_config(self.app, self.settings, log_level='warning'))
        self.thread = threading.Thread(target=self.server.run, kwargs={'sockets': [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, 'uvicorn did not start'
        self._socket = socket

    def connect(self, timeout=10):
        return self._socket.create_connection(('127.0.0.1', self.port), timeout=timeout)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live_server(engine):
    """``live_server(**ServerConfig settings)`` -> a started :class:`LiveServer`; stopped after the test."""
    servers = []

    def start(**settings):
        srv = LiveServer(engine, **settings)
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def run_threads():
    """Start ``fn(i)`` in n threads; returns a join() that gives the results in order."""
    def _start(fn, n):
        results = [None] * n

        def wrap(i):
            results[i] = fn(i)
        threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()

        def join(timeout=60):
            for t in threads:
                t.join(timeout)
            return results
        return join
    return _start
