# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: reports_dir
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
short_description: The controller directory for this collection's reports
description:
  - The one default behind C(preflight_report_dir), C(perf_probe_report_dir), C(report_dir), C(report_preflight_dir)
    and C(upgrade_report_dir) (each can still be set on its own).
  - The environment variable C(OPENAUTOGLM_REPORTS_DIR) when set, else C(reports/) in the directory
    ansible-playbook was started from (a project checkout, or C(/runner/project) under AWX and ansible-runner).
    Never inside the installed collection, which is read-only in an execution environment.
  - Terms are joined below it (C(preflight), C(fleet), C(upgrade)).
options:
  _terms:
    description: Subdirectories; none gives the root itself.
    required: false
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Where the preflight reports go by default
  ansible.builtin.debug:
    msg: "{{ lookup('openautoglm.deploy.reports_dir', 'preflight') }}"   # e.g. /home/me/site/reports/preflight
"""

RETURN = r"""
_raw:
  description: One absolute directory per term (the root when no term is given).
  type: list
  elements: str
"""

import os

from ansible.plugins.lookup import LookupBase

ENV = 'OPENAUTOGLM_REPORTS_DIR'


def reports_root(environ=None, cwd=None):
    environ = os.environ if environ is None else environ
    root = environ.get(ENV) or os.path.join(cwd or os.getcwd(), 'reports')
    return os.path.abspath(os.path.expanduser(root))


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        root = reports_root()
        return [os.path.join(root, str(term)) for term in terms] if terms else [root]
