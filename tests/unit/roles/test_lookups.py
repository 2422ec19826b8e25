# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Defaults that work for an installed collection: report directory and role lookup.

The reports default is never inside the collection (read-only in an execution environment);
upgrade.yml finds openautoglm.deploy.model_service by its FQCN, so a copied playbook keeps
its service step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from role_vars import FACTS, REPO, RoleVars, _install_collection_finder


@pytest.fixture
def lookups():
    _install_collection_finder()
    from ansible_collections.openautoglm.deploy.plugins.lookup import reports_dir, role_path
    return reports_dir, role_path


def test_reports_dir_is_the_working_directory_or_the_environment(lookups, tmp_path):
    reports_dir = lookups[0]
    assert reports_dir.reports_root({}, str(tmp_path)) == str(tmp_path / 'reports')
    assert reports_dir.reports_root({'OPENAUTOGLM_REPORTS_DIR': '/runner/artifacts/reports'}, '/x') == \
        '/runner/artifacts/reports'


def test_role_defaults_use_the_lookup_not_the_collection_tree(lookups, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.delenv('OPENAUTOGLM_REPORTS_DIR', raising=False)
    role = RoleVars('preflight', FACTS['debian12'], playbook_dir=os.path.join(REPO, 'playbooks'))
    assert role.get('preflight_report_dir') == str(tmp_path / 'reports' / 'preflight')
    probe = RoleVars('perf_probe', FACTS['debian12'], playbook_dir=os.path.join(REPO, 'playbooks'))
    assert probe.get('perf_probe_report_dir') == str(tmp_path / 'reports' / 'preflight')
    monkeypatch.setenv('OPENAUTOGLM_REPORTS_DIR', str(tmp_path / 'elsewhere'))
    assert role.get('preflight_report_dir') == str(tmp_path / 'elsewhere' / 'preflight')


def test_no_playbook_or_role_defaults_to_playbook_dir_reports():
    offenders = []
    for top in ('playbooks', 'roles', 'plugins'):
        for dirpath, _dirs, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, 'rb') as handle:
                    if b'/../reports' in handle.read():
                        offenders.append(os.path.relpath(path, REPO))
    assert offenders == []


def test_role_path_finds_collection_roles_by_fqcn(lookups, tmp_path):
    role_path = lookups[1]
    found = role_path.find_role('openautoglm.deploy.model_service')
    assert os.path.realpath(found) == os.path.join(REPO, 'roles', 'model_service')
    assert role_path.find_role('openautoglm.deploy.model_service_not_installed') == ''
    (tmp_path / 'roles' / 'local_role' / 'tasks').mkdir(parents=True)
    assert role_path.find_role('local_role', str(tmp_path)) == str(tmp_path / 'roles' / 'local_role')
    assert role_path.find_role('no_such_role', str(tmp_path)) == ''


def test_upgrade_playbook_asks_the_lookup():
    with open(os.path.join(REPO, 'playbooks', 'upgrade.yml')) as handle:
        text = handle.read()
    assert "lookup('openautoglm.deploy.role_path', __upgrade_service_role)" in text
    assert "'/../roles/'" not in text


def test_upgrade_playbook_regenerates_the_cdi_spec_after_the_driver():
    import yaml
    with open(os.path.join(REPO, 'playbooks', 'upgrade.yml')) as handle:
        plays = yaml.safe_load(handle)
    tasks = [t for play in plays for block in play.get('tasks', []) for t in block.get('block', [block])]
    names = [t.get('name') for t in tasks]
    cdi = [t for t in tasks if t.get('ansible.builtin.include_role', {}).get('tasks_from') == 'cdi.yml']
    assert cdi and cdi[0]['ansible.builtin.include_role']['name'] == 'openautoglm.deploy.docker'
    assert names.index(cdi[0]['name']) > names.index('Upgrade the NVIDIA driver')
