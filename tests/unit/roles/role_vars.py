# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render a role's variables the way a play would, for a given set of facts.

Loads roles/<role>/defaults/main.yml, then vars/main.yml and vars/<os_family>.yml when present
(as the roles' include_vars does), puts ``ansible_facts`` and the caller's extra variables on
top, and templates names with Ansible's own Templar, so collection filters
(openautoglm.deploy.*) resolve as in a play. No host, no play: the roles' OS and version
selection is tested as data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
ROLES = os.path.join(REPO, 'roles')


def _install_collection_finder():
    """Let the Templar find openautoglm.deploy.* plugins as ansible-playbook does.

    Other unit tests import ``ansible_collections`` as a plain namespace package (conftest.py puts
    .collections on sys.path); Ansible's finder only takes over a package it loaded itself, so
    those entries are dropped first (already imported objects stay valid).
    """
    if AnsibleCollectionConfig.collection_finder is None:
        for name in [name for name in sys.modules if name == 'ansible_collections' or name.startswith('ansible_collections.')]:
            del sys.modules[name]
        _AnsibleCollectionFinder(paths=[os.path.join(REPO, '.collections')])._install()


# Fact sets of the releases the roles name (what `setup` reports there).
FACTS = {
    'debian11': {'distribution': 'Debian', 'distribution_major_version': '11', 'distribution_version': '11.11',
                 'distribution_release': 'bullseye', 'os_family': 'Debian'},
    'debian12': {'distribution': 'Debian', 'distribution_major_version': '12', 'distribution_version': '12.8',
                 'distribution_release': 'bookworm', 'os_family': 'Debian'},
    'debian13': {'distribution': 'Debian', 'distribution_major_version': '13', 'distribution_version': '13.2',
                 'distribution_release': 'trixie', 'os_family': 'Debian'},
    'ubuntu2004': {'distribution': 'Ubuntu', 'distribution_major_version': '20', 'distribution_version': '20.04',
                   'distribution_release': 'focal', 'os_family': 'Debian'},
    'ubuntu2204': {'distribution': 'Ubuntu', 'distribution_major_version': '22', 'distribution_version': '22.04',
                   'distribution_release': 'jammy', 'os_family': 'Debian'},
    'ubuntu2404': {'distribution': 'Ubuntu', 'distribution_major_version': '24', 'distribution_version': '24.04',
                   'distribution_release': 'noble', 'os_family': 'Debian'},
    'centos_stream8': {'distribution': 'CentOS', 'distribution_major_version': '8', 'distribution_version': '8',
                       'distribution_release': 'NA', 'os_family': 'RedHat'},
    'rocky9': {'distribution': 'Rocky', 'distribution_major_version': '9', 'distribution_version': '9.5',
               'distribution_release': 'Blue Onyx', 'os_family': 'RedHat'},
}
for _facts in FACTS.values():
    _facts.setdefault('architecture', 'x86_64')
    _facts.setdefault('kernel', '6.1.0-28-amd64')


def _trusted(value):
    """Role files are trusted templates in a play; mark them so for the Templar (ansible-core >= 2.19)."""
    if isinstance(value, dict):
        return dict((key, _trusted(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, str):
        return trust_as_template(value)
    return value


class RoleVars(object):
    """``RoleVars('cuda', facts, cuda_versions=['12.1']).get('__cuda_repo_distro')``."""

    def __init__(self, role, facts, **extra):
        _install_collection_finder()
        self.loader = DataLoader()
        variables = {}
        for name in ('defaults/main.yml', 'vars/main.yml', 'vars/%s.yml' % facts.get('os_family', '')):
            path = os.path.join(ROLES, role, name)
            if os.path.isfile(path):
                variables.update(_trusted(self.loader.load_from_file(path) or {}))
        variables['ansible_facts'] = dict(facts)
        variables['inventory_hostname'] = 'testhost'
        variables['role_path'] = os.path.join(ROLES, role)
        variables.update(_trusted(extra))
        self.variables = variables
        self.templar = Templar(loader=self.loader, variables=variables)

    def get(self, name):
        return self.templar.template(self.variables[name])

    def render(self, expression):
        """Template a Jinja expression written in the test (e.g. a role task's condition)."""
        return self.templar.template(trust_as_template('{{ %s }}' % expression))


def task_var(role, task_file, task_name, var):
    """The expression a role's set_fact task assigns to ``var`` (to render it with RoleVars)."""
    import yaml
    with open(os.path.join(ROLES, role, 'tasks', task_file)) as handle:
        tasks = yaml.safe_load(handle)
    for task in tasks:
        if task.get('name') == task_name:
            return trust_as_template(task['ansible.builtin.set_fact'][var])
    raise KeyError('%s/tasks/%s has no task %r' % (role, task_file, task_name))
