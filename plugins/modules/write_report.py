#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: write_report
short_description: Write a JSON report file on the Ansible controller
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Serialises O(content) as indented JSON with sorted keys and writes it atomically to
    O(path) on the controller, creating the directory. Nothing runs on the managed host.
  - Used by the preflight role for the per-host reports that the fleet report reads;
    much cheaper than M(ansible.builtin.copy) delegated to localhost.
  - Reports C(changed) only when the document differs from the file already there,
    ignoring the keys in O(ignore_keys) (such as a collection timestamp).
extends_documentation_fragment:
  - openautoglm.deploy.attributes
  - openautoglm.deploy.attributes.action
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  path:
    description: Controller path of the JSON file.
    type: path
    required: true
  content:
    description: The document to write (any JSON-serialisable value).
    type: raw
    required: true
  mode:
    description: File mode as an octal string.
    type: str
    default: "0644"
  ignore_keys:
    description:
      - Keys ignored, at any depth, when deciding whether the file changed - values that
        move on every run, such as a timestamp or a filesystem's free bytes.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Write this host's report on the controller
  openautoglm.deploy.write_report:
    path: "{{ playbook_dir }}/reports/{{ inventory_hostname }}.json"
    content:
      host: "{{ inventory_hostname }}"
      collected_at: "{{ now(utc=true, fmt='%Y-%m-%dT%H:%M:%SZ') }}"
      passed: true
    ignore_keys: [collected_at]
"""

RETURN = r"""
path:
  description: The file written.
  returned: always
  type: str
"""
