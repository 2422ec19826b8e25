# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""python_venv's default stack is the one the model server is tested with, and serves GLM-4.1V.

The versions are written in two places for two installers: the role's defaults (the venv on a
host) and files/autoglm_service/requirements-test.txt (the server's test venv). This test holds
them together, so a bump in one fails here until the other follows.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
DEFAULTS = os.path.join(REPO, 'roles', 'python_venv', 'defaults', 'main.yml')
SERVER_PINS = os.path.join(REPO, 'files', 'autoglm_service', 'requirements-test.txt')
SERVER_RANGES = os.path.join(REPO, 'files', 'autoglm_service', 'requirements.txt')


def _norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _defaults():
    with open(DEFAULTS) as handle:
        return yaml.safe_load(handle)


def _requirement_names(lines):
    names = []
    for line in lines:
        line = line.split('#', 1)[0].strip()
        if line:
            names.append(_norm(re.match(r'[A-Za-z0-9_.\-]+', line).group(0)))
    return names


def _server_pins():
    pins = {}
    with open(SERVER_PINS) as handle:
        for line in handle:
            match = re.match(r'^([A-Za-z0-9_.\-]+)==([^\s#]+)', line)
            if match:
                pins[_norm(match.group(1))] = match.group(2)
    return pins


def test_pins_equal_the_server_test_pins():
    """Every package both files pin has the same version (torch aside: the CPU test build)."""
    role = dict((_norm(name), str(version)) for name, version in _defaults()['python_venv_constraints'].items())
    server = _server_pins()
    shared = sorted(set(role) & set(server) - {'torch'})
    assert {'transformers', 'tokenizers', 'pillow', 'fastapi', 'uvicorn', 'accelerate'} <= set(shared)
    assert dict((n, role[n]) for n in shared) == dict((n, server[n]) for n in shared)


def test_every_requirement_is_pinned():
    """Each requirement has an exact pin (torch through python_venv_torch_version)."""
    defaults = _defaults()
    pinned = set(_norm(name) for name in defaults['python_venv_constraints']) | {'torch'}
    assert set(_requirement_names(defaults['python_venv_requirements'])) <= pinned


def test_the_server_runtime_requirements_are_installed():
    """What `python -m autoglm_service` imports (its requirements.txt) is in the role's venv;
    pydantic comes with fastapi."""
    with open(SERVER_RANGES) as handle:
        server = set(_requirement_names(handle)) - {'pydantic'}
    defaults = _defaults()
    installed = set(_requirement_names(defaults['python_venv_requirements'])) | set(
        _norm(name) for name in defaults['python_venv_constraints'])
    assert server <= installed, server - installed


def test_stack_serves_glm4v():
    """transformers 5 (Glm4vForConditionalGeneration) with a torch it accepts (>= 2.6) and Pillow."""
    defaults = _defaults()
    assert str(defaults['python_venv_constraints']['transformers']).split('.', maxsplit=1)[0] == '5'
    torch = tuple(int(part) for part in str(defaults['python_venv_torch_version']).split('.')[:2])
    assert torch >= (2, 6)
    assert 'pillow' in _requirement_names(defaults['python_venv_requirements'])
