# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: role_path
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
short_description: Where a role is installed, found the way include_role finds it
description:
  - For a fully qualified name (C(openautoglm.deploy.model_service)), asks Ansible's collection loader, so the
    role is found in any configured collections path, in an execution environment, or next to the playbook.
  - For a plain name, looks in the configured roles path (C(ANSIBLE_ROLES_PATH)) and in C(roles/) beside the playbook.
  - Returns an empty string for a role that is not installed, so a play can skip an optional step with a message
    instead of failing inside include_role.
options:
  _terms:
    description: Role names.
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Skip the service step where the model_service role is missing
  ansible.builtin.include_role:
    name: openautoglm.deploy.model_service
  when: lookup('openautoglm.deploy.role_path', 'openautoglm.deploy.model_service') | length > 0
"""

RETURN = r"""
_raw:
  description: One directory per term; an empty string where the role is not installed.
  type: list
  elements: str
"""

import os

from ansible import constants as C
from ansible.plugins.lookup import LookupBase
from ansible.utils.collection_loader import AnsibleCollectionRef
from ansible.utils.collection_loader._collection_finder import _get_collection_role_path


def find_role(name, basedir=None):
    """Directory of role ``name`` or '' (see DOCUMENTATION)."""
    if AnsibleCollectionRef.is_valid_fqcr(name):
        found = _get_collection_role_path(name)
        return found[1] if found else ''
    candidates = list(C.DEFAULT_ROLES_PATH or [])
    if basedir:
        candidates.append(os.path.join(basedir, 'roles'))
    for root in candidates:
        path = os.path.join(os.path.expanduser(root), name)
        if os.path.isdir(os.path.join(path, 'tasks')):
            return path
    return ''


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        basedir = self._loader.get_basedir() if self._loader else None
        return [find_role(str(term), basedir) for term in terms]
