# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the built collection ships, and the EE requirements that install it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
NOT_SHIPPED = ('molecule/', 'tests/harness/', 'tests/device/', 'tests/benchmarks/', 'tests/integration/',
               'tests/prometheus/', 'docs/evidence/', 'docs/images/', '.ci/', '.venv', '.collections/', 'build/',
               'reports/', 'Makefile', '.git/')


def _load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def tarball_members(tmp_path_factory):
    out = tmp_path_factory.mktemp('galaxy-build')
    galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    subprocess.run([galaxy, 'collection', 'build', '--force', '--output-path', str(out), REPO], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(out))
    version = _load('galaxy.yml')['version']
    with tarfile.open(str(out / ('openautoglm-deploy-%s.tar.gz' % version))) as archive:
        return set(archive.getnames())


def test_development_trees_are_not_shipped(tarball_members):
    shipped = sorted(m for m in tarball_members if m.startswith(NOT_SHIPPED) or m in ('Makefile', '.ci'))
    assert shipped == []


def test_what_users_need_is_shipped(tarball_members):
    for member in ('roles/nvidia_driver/tasks/main.yml', 'plugins/module_utils/cuda_compat.py',
                   'plugins/lookup/reports_dir.py', 'playbooks/upgrade.yml', 'meta/ee-galaxy-requirements.yml',
                   'tests/unit/conftest.py', 'files/autoglm_service/app.py', 'README.md'):
        assert member in tarball_members, member


def test_ee_requirements_carry_no_version_of_their_own():
    """The EE installs this collection from a version-less tarball name the EE build renames to."""
    version = _load('galaxy.yml')['version']
    local = [c['name'] for c in _load('meta', 'ee-galaxy-requirements.yml')['collections']
             if c.get('type') == 'file']
    assert local == ['/tmp/openautoglm-collections/openautoglm-deploy.tar.gz']
    with open(os.path.join(REPO, 'meta', 'ee-galaxy-requirements.yml')) as handle:
        assert version not in handle.read()
    steps = _load('execution-environment.yml')['additional_build_steps']['prepend_galaxy']
    renames = [s for s in steps if s.startswith('RUN mv ')]
    assert renames and renames[0].split()[-1] == local[0]
    assert re.search(r'openautoglm-deploy-\*\.tar\.gz', renames[0])
