# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin for openautoglm.deploy.write_report: runs on the controller only.

Writing a per-host report with ansible.builtin.file + ansible.builtin.copy delegated to
localhost costs two module executions (about a second per host); this writes the JSON
in-process, atomically, in a few milliseconds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.openautoglm.deploy.plugins.plugin_utils import controller_files

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    content=dict(type='raw', required=True),
    mode=dict(type='str', default='0644'),
    ignore_keys=dict(type='list', elements='str', default=[]),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        path = args['path']
        mode = controller_files.parse_mode(args['mode'])
        try:
            text = json.dumps(args['content'], indent=4, sort_keys=True, default=str) + '\n'
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail('content: not serialisable as JSON: %s' % to_native(exc))

        previous = None
        if os.path.exists(path):
            try:
                with open(path) as handle:
                    previous = json.load(handle)
            except (IOError, OSError, ValueError):
                previous = None
        changed = previous is None or (
            controller_files.comparable(previous, args['ignore_keys']) != controller_files.comparable(json.loads(text), args['ignore_keys']))
        result.update(changed=changed, path=path)
        if self._play_context.check_mode and changed:
            result['msg'] = 'would write %s' % path
            return result
        if changed or not os.path.exists(path):
            try:
                controller_files.atomic_write(path, text, mode, prefix='.report-')
            except (IOError, OSError) as exc:
                raise AnsibleActionFail('path: cannot write %s on the controller: %s' % (path, to_native(exc)))
        return result
