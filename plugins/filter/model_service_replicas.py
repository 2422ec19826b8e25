# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter openautoglm.deploy.model_service_replicas: the replicas one host runs.

The one place that turns model_service_replicas (1, a number, or "gpus") into unit/container
names, ports and GPU pins; the model_service role, the gateway role and upgrade.yml all read
its result. Documentation: plugins/filter/model_service_replicas.yml, docs/gateway.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types


def replica_count(spec, gpu_count):
    """Number of replicas for *spec* (1, N or 'gpus') on a host with *gpu_count* GPUs."""
    gpu_count = int(gpu_count or 0)
    if isinstance(spec, string_types) and spec.strip().lower() == 'gpus':
        if gpu_count < 1:
            raise AnsibleFilterError(
                'model_service_replicas: "gpus" asks for one replica per GPU, but openautoglm.deploy.gpu_facts '
                'sees no GPU on this host; give a number instead')
        return gpu_count
    try:
        count = int(spec)
    except (TypeError, ValueError):
        raise AnsibleFilterError('model_service_replicas must be a whole number >= 1 or "gpus" (got %r)' % (spec,))
    if isinstance(spec, float) and spec != count:
        raise AnsibleFilterError('model_service_replicas must be a whole number >= 1 or "gpus" (got %r)' % (spec,))
    if count < 1:
        raise AnsibleFilterError('model_service_replicas must be >= 1 or "gpus" (got %d)' % count)
    if gpu_count and count > gpu_count:
        raise AnsibleFilterError(
            'model_service_replicas=%d but this host has %d GPU(s): each replica is pinned to its own GPU; '
            'give at most %d or "gpus"' % (count, gpu_count, gpu_count))
    return count


def model_service_replicas(spec, gpu_count=0, name='autoglm', port=8080, max_batch_size=8, host=None):
    """List of replica dicts: index, name, unit, port, gpu, max_batch_size, id."""
    count = replica_count(spec, gpu_count)
    try:
        port = int(port)
        max_batch_size = int(max_batch_size)
    except (TypeError, ValueError):
        raise AnsibleFilterError('model_service_port and model_service_max_batch_size must be numbers (got %r, %r)'
                                 % (port, max_batch_size))
    if port < 1 or port + count - 1 > 65535:
        raise AnsibleFilterError('model_service_port %d with %d replica(s) needs ports %d-%d, outside 1-65535'
                                 % (port, count, port, port + count - 1))
    pinned = count > 1 and int(gpu_count or 0) > 0
    replicas = []
    for index in range(count):
        # replica 0 keeps the single-replica name: one replica is exactly today's service
        rname = name if index == 0 else '%s-%d' % (name, index)
        replicas.append(dict(
            index=index,
            name=rname,
            unit='%s.service' % rname,
            port=port + index,
            gpu=index if pinned else None,
            max_batch_size=max_batch_size,
            id='%s-%s' % (host, rname) if host else rname,
        ))
    return replicas


class FilterModule(object):
    def filters(self):
        return {'model_service_replicas': model_service_replicas}
