# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_fit module_utils: GPU pooling, and the server CLI running on this one implementation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_fit

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
CORE = os.path.join(REPO, 'plugins', 'module_utils', 'model_fit.py')
SERVICE = os.path.join(REPO, 'files', 'autoglm_service')
GLM_CHAT = os.path.join(REPO, 'tests', 'unit', 'service', 'fixtures', 'glm-4-9b-chat.config.json')
GB = 10 ** 9


@pytest.mark.parametrize('memory, gpus, expected', [
    (80 * GB, 1, (80 * GB, 1)),
    (80 * GB, 4, (80 * GB, 4)),                      # one figure, N GPUs of that size
    ([24 * GB, 80 * GB, 40 * GB], 1, (80 * GB, 1)),  # largest single GPU
    ([24 * GB, 80 * GB, 40 * GB], 2, (40 * GB, 2)),  # two largest, limited by the smaller
    ([24 * GB, 80 * GB, 40 * GB], 3, (24 * GB, 3)),
])
def test_gpu_pool(memory, gpus, expected):
    assert model_fit.gpu_pool(memory, gpus) == expected


@pytest.mark.parametrize('memory, gpus, message', [
    ([], 1, 'no GPU memory figure'),
    ([GB, -1], 1, 'must be positive'),
    ([GB], 2, '2 GPUs requested but the host has 1'),
    ([GB], 0, 'at least 1'),
])
def test_gpu_pool_errors(memory, gpus, message):
    with pytest.raises(model_fit.FitError, match=message):
        model_fit.gpu_pool(memory, gpus)


def test_gpu_memory_from_facts_accepts_the_fact_or_ansible_facts():
    fact = {'devices': [{'index': 0, 'memory_total_bytes': 85520809984}, {'index': 1, 'memory_total_bytes': 42505273344}]}
    assert model_fit.gpu_memory_from_facts(fact) == [85520809984, 42505273344]
    assert model_fit.gpu_memory_from_facts({'openautoglm_gpu': fact}) == [85520809984, 42505273344]
    with pytest.raises(model_fit.FitError, match='no devices list'):
        model_fit.gpu_memory_from_facts({'gpus': []})


def test_core_imports_nothing_but_the_standard_library():
    code = ('import importlib.util, sys; s = importlib.util.spec_from_file_location("core", %r); '
            'm = importlib.util.module_from_spec(s); s.loader.exec_module(m); '
            'bad = [n for n in sys.modules if n.split(".")[0] in ("ansible", "ansible_collections", "torch", "transformers")]; '
            'assert not bad, bad' % CORE)
    subprocess.run([sys.executable, '-c', code], check=True)


def _cli(pythonpath, *args):
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, '-m', 'autoglm_service.fit', '--config', GLM_CHAT, '--json'] + list(args),
                          capture_output=True, text=True, env=env, check=False)


def test_server_cli_in_the_source_tree_uses_this_file():
    sys.path.insert(0, os.path.join(REPO, 'files'))
    try:
        from autoglm_service import fit  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(os.path.join(REPO, 'files'))
    assert os.path.realpath(fit._core.__file__) == os.path.realpath(CORE)
    run = _cli(os.path.join(REPO, 'files'), '--gpu-memory-gb', '24', '--context', '25480', '--concurrency', '8')
    assert run.returncode == 1, run.stderr
    expected = model_fit.estimate(GLM_CHAT, gpu_memory_gb=24, context=25480, concurrency=8)
    assert json.loads(run.stdout) == json.loads(json.dumps(expected))


def _shipped_alone(tmp_path, with_core):
    """The server package copied on its own, as an image or a venv gets it."""
    pkg = tmp_path / 'site' / 'autoglm_service'
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    shutil.copy(os.path.join(SERVICE, 'fit.py'), str(pkg / 'fit.py'))
    if with_core:
        shutil.copy(CORE, str(pkg / '_fitcore.py'))
    return str(tmp_path / 'site')


def test_server_cli_shipped_alone_uses_the_copy_beside_it(tmp_path):
    run = _cli(_shipped_alone(tmp_path, True), '--gpu-memory-gb', '80', '--context', '8192', '--concurrency', '8')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == json.loads(json.dumps(
        model_fit.estimate(GLM_CHAT, gpu_memory_gb=80, context=8192, concurrency=8)))


def test_server_cli_shipped_without_the_core_says_what_to_copy(tmp_path):
    run = _cli(_shipped_alone(tmp_path, False), '--gpu-memory-gb', '80')
    assert run.returncode == 1
    assert 'needs the collection file plugins/module_utils/model_fit.py: copy it to' in run.stderr
    assert os.path.join('autoglm_service', '_fitcore.py') in run.stderr
