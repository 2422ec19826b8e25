# -*- coding: utf-8 -*-
"""Shared fixtures for the unit tests.

Run with `make units` (plain pytest) or `ansible-test units`. Both need the repository
importable as ``ansible_collections.openautoglm.deploy``; for plain pytest this file puts
``<repo>/.collections`` (created by `make collection-link`) on ``sys.path``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
_LINK_PARENT = os.path.join(REPO, '.collections')
if os.path.isdir(os.path.join(_LINK_PARENT, 'ansible_collections')) and _LINK_PARENT not in sys.path:
    sys.path.insert(0, _LINK_PARENT)

from ansible.module_utils import basic  # noqa: E402  (after sys.path set-up)
from ansible.module_utils.testing import patch_module_args  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


class AnsibleExitJson(Exception):
    """Raised in place of exit_json; ``.result`` holds what the module returned."""

    def __init__(self, result):
        super(AnsibleExitJson, self).__init__(json.dumps(result, default=str))
        self.result = result


class AnsibleFailJson(Exception):
    """Raised in place of fail_json; ``.result`` holds msg and the other keys."""

    def __init__(self, result):
        super(AnsibleFailJson, self).__init__(result.get('msg'))
        self.result = result


def _exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg=None, **kwargs):
    kwargs['failed'] = True
    kwargs['msg'] = msg
    raise AnsibleFailJson(kwargs)


@pytest.fixture
def run_module(monkeypatch):
    """Call ``run_module(module.main, {args})``; returns ('exit'|'fail', result dict)."""
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', _fail_json)

    def _run(main, args, check_mode=False):
        args = dict(args or {})
        if check_mode:
            args['_ansible_check_mode'] = True
        with patch_module_args(args):
            try:
                main()
            except AnsibleExitJson as exc:
                return 'exit', exc.result
            except AnsibleFailJson as exc:
                return 'fail', exc.result
        raise AssertionError('module returned without exit_json/fail_json')

    return _run


@pytest.fixture
def fixture_root():
    """Path of a named fixture tree under tests/unit/fixtures."""

    def _root(name):
        path = os.path.join(FIXTURES, name)
        assert os.path.isdir(path), 'missing fixture tree %s' % path
        return path

    return _root
