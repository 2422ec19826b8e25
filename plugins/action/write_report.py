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
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    content=dict(type='raw', required=True),
    mode=dict(type='str', default='0644'),
    ignore_keys=dict(type='list', elements='str', default=[]),
)


def _comparable(document, ignore_keys):
    """The document without the ignored keys, at any depth."""
    if isinstance(document, dict):
        return dict((k, _comparable(v, ignore_keys)) for k, v in document.items() if k not in ignore_keys)
    if isinstance(document, list):
        return [_comparable(v, ignore_keys) for v in document]
    return document


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        path = args['path']
        try:
            mode = int(args['mode'], 8)
        except ValueError:
            raise AnsibleActionFail('mode: must be an octal string such as "0644", got %r' % args['mode'])
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
            _comparable(previous, args['ignore_keys']) != _comparable(json.loads(text), args['ignore_keys']))
        result.update(changed=changed, path=path)
        if self._play_context.check_mode and changed:
            result['msg'] = 'would write %s' % path
            return result
        if changed or not os.path.exists(path):
            directory = os.path.dirname(path) or '.'
            try:
                os.makedirs(directory, exist_ok=True)
                fd, tmp_path = tempfile.mkstemp(prefix='.report-', dir=directory)
                with os.fdopen(fd, 'w') as handle:
                    handle.write(text)
                os.chmod(tmp_path, mode)
                os.rename(tmp_path, path)
            except (IOError, OSError) as exc:
                raise AnsibleActionFail('path: cannot write %s on the controller: %s' % (path, to_native(exc)))
        return result
