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

import pytest

FILES = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
if FILES not in sys.path:
    sys.path.insert(0, FILES)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
NEEDS = ('torch', 'transformers', 'fastapi', 'prometheus_client', 'httpx', 'tokenizers')
MISSING = [m for m in NEEDS if importlib.util.find_spec(m) is None]
PURE_PYTHON = {'test_fit.py'}

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
