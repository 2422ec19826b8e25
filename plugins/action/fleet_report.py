# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin for openautoglm.deploy.fleet_report: runs on the controller only."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.openautoglm.deploy.plugins.plugin_utils import controller_files, fleet_report, tco as tco_utils

ARGUMENT_SPEC = dict(
    preflight_dir=dict(type='path', required=True),
    dest=dict(type='path', required=True),
    basename=dict(type='str', default='fleet'),
    hosts=dict(type='list', elements='str'),
    unreachable=dict(type='list', elements='str', default=[]),
    failed=dict(type='dict', default={}),
    gateways=dict(type='dict', default={}),
    tco=dict(type='dict', default={}),
    tco_by_host=dict(type='dict', default={}),
    title=dict(type='str', default='Fleet preflight report'),
    formats=dict(type='list', elements='str', default=['json', 'csv', 'html'], choices=['json', 'csv', 'html']),
    mode=dict(type='str', default='0644'),
)
VOLATILE = ('generated_at', 'collected_at')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        mode = controller_files.parse_mode(args['mode'])
        failed = dict((str(k), to_native(v)) for k, v in args['failed'].items())
        try:
            document = fleet_report.build(
                args['preflight_dir'], hosts=args['hosts'], unreachable=args['unreachable'], failed=failed,
                tco=args['tco'], tco_by_host=args['tco_by_host'], title=args['title'], gateways=args['gateways'])
        except (fleet_report.FleetReportError, tco_utils.TcoError) as exc:
            raise AnsibleActionFail(to_native(exc))

        paths = dict((fmt, os.path.join(args['dest'], '%s.%s' % (args['basename'], fmt))) for fmt in args['formats'])
        previous = None
        json_path = os.path.join(args['dest'], '%s.json' % args['basename'])
        if os.path.exists(json_path):
            try:
                with open(json_path) as handle:
                    previous = json.load(handle)
            except (IOError, OSError, ValueError):
                previous = None
        current = json.loads(fleet_report.to_json(document))
        same = previous is not None and (
            controller_files.comparable(previous, VOLATILE) == controller_files.comparable(current, VOLATILE))
        changed = not same or not all(os.path.exists(p) for p in paths.values())
        result.update(changed=changed, paths=paths, summary=document['summary'])
        if changed and not self._play_context.check_mode:
            try:
                for fmt, path in paths.items():
                    controller_files.atomic_write(path, fleet_report.RENDERERS[fmt](document), mode, prefix='.fleet-')
            except (IOError, OSError) as exc:
                raise AnsibleActionFail('dest: cannot write the fleet report under %s: %s' % (args['dest'], to_native(exc)))
        counts = document['summary']['counts']
        result['msg'] = ('%d hosts: %d meet the baseline, %d below, %d unreachable, %d failed, %d without report'
                         % (document['summary']['hosts'], counts['passed'], counts['below_baseline'],
                            counts['unreachable'], counts['failed'], counts['no_report']))
        return result
