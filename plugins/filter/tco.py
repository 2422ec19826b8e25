# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters openautoglm.deploy.tco (one host) and openautoglm.deploy.tco_fleet (sum of hosts).

Documentation: plugins/filter/tco.yml, plugins/filter/tco_fleet.yml, docs/cost-of-ownership.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.openautoglm.deploy.plugins.plugin_utils import tco as tco_utils


def tco(hardware=None, **params):
    """3-year (or ``years``) cost of ownership of one host; see tco.yml."""
    try:
        return tco_utils.host_tco(hardware, **params)
    except tco_utils.TcoError as exc:
        raise AnsibleFilterError('openautoglm.deploy.tco: %s' % exc)


def tco_fleet(host_costs):
    """Sum of per-host tco results (list or dict host -> result)."""
    try:
        return tco_utils.fleet_tco(host_costs)
    except tco_utils.TcoError as exc:
        raise AnsibleFilterError('openautoglm.deploy.tco_fleet: %s' % exc)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError('openautoglm.deploy.tco_fleet: input must be results of the tco filter: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {'tco': tco, 'tco_fleet': tco_fleet}
