#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fleet_report
short_description: Fleet report (JSON, CSV, HTML) from per-host preflight reports, on the controller
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Reads the per-host preflight reports (C(<host>.json), written by the C(preflight) role
    through M(openautoglm.deploy.write_report)) of any number of hosts and writes one JSON
    document, one CSV table and one self-contained HTML page under O(dest).
  - Every host of O(hosts) gets a row, with status C(passed), C(below_baseline),
    C(unreachable), C(failed) (the run failed before a verdict) or C(no_report). A report left
    by an earlier run for a host that is unreachable now is shown, marked as stale.
  - The HTML page has a per-host table (GPU, VRAM, driver, CUDA, CPU cores, RAM, NVMe,
    verdict, shortfalls, and the cost of ownership when O(tco) is given) and a summary with
    counts and plots drawn as inline SVG. It loads nothing from the network and runs no script.
  - Runs entirely on the controller (action plugin); nothing runs on managed hosts.
    Run it once, for example in a play on C(localhost) (see C(playbooks/report.yml)).
  - Reports C(changed) when the fleet data differ from the existing O(dest) JSON (ignoring
    timestamps); unchanged data leave the files alone.
extends_documentation_fragment:
  - openautoglm.deploy.attributes
  - openautoglm.deploy.attributes.action
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  preflight_dir:
    description: Controller directory holding the per-host preflight reports.
    type: path
    required: true
  dest:
    description: Controller directory for the fleet report files (created when missing).
    type: path
    required: true
  basename:
    description: File name without extension; files are C(<basename>.json), C(.csv), C(.html).
    type: str
    default: fleet
  hosts:
    description:
      - The hosts the run targeted; each gets a row, with or without a report. When omitted,
        every report in O(preflight_dir) is used.
    type: list
    elements: str
  unreachable:
    description: Hosts the run could not reach (shown as unreachable even when an older report exists).
    type: list
    elements: str
    default: []
  failed:
    description: Host -> error message for hosts that failed before the preflight verdict.
    type: dict
    default: {}
  gateways:
    description:
      - Gateway host -> its replicas as HAProxy's runtime API reports them (C(show stat) of backend
        C(model_service)), a list of dicts with C(server), C(status) (UP, DOWN, DRAIN, MAINT, ...),
        C(sessions) (in flight), C(queued) and C(total) (sessions served); or a dict with C(error)
        when the gateway could not be read.
      - Shown in a section per gateway and under C(gateways) in the JSON.
    type: dict
    default: {}
  tco:
    description:
      - Cost-of-ownership parameters applied to every host, as for the
        P(openautoglm.deploy.tco#filter) filter (C(hardware_price), C(electricity_price),
        C(power_watts) or C(rest_of_system_watts), C(hours_per_day), C(years),
        C(maintenance_per_year) or C(maintenance_total), C(pue), C(currency)). Empty - no cost columns.
      - Without C(power_watts) a host's power is its GPUs' power limits plus C(rest_of_system_watts).
    type: dict
    default: {}
  tco_by_host:
    description: Host -> cost parameters overriding O(tco) for that host (for example its own C(hardware_price)).
    type: dict
    default: {}
  title:
    description: Title of the HTML page and the JSON document.
    type: str
    default: Fleet preflight report
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [json, csv, html]
    default: [json, csv, html]
  mode:
    description: File mode as an octal string.
    type: str
    default: "0644"
seealso:
  - module: openautoglm.deploy.write_report
  - module: openautoglm.deploy.hardware_baseline
"""

EXAMPLES = r"""
- name: Build the fleet report from every report in the directory
  openautoglm.deploy.fleet_report:
    preflight_dir: "{{ lookup('openautoglm.deploy.reports_dir', 'preflight') }}"
    dest: "{{ lookup('openautoglm.deploy.reports_dir', 'fleet') }}"

- name: Build it for the hosts of this run, with unreachable hosts and the 3-year cost
  openautoglm.deploy.fleet_report:
    preflight_dir: "{{ lookup('openautoglm.deploy.reports_dir', 'preflight') }}"
    dest: "{{ lookup('openautoglm.deploy.reports_dir', 'fleet') }}"
    hosts: "{{ query('ansible.builtin.inventory_hostnames', 'gpu_nodes') }}"
    unreachable: "{{ fleet_unreachable }}"
    tco:
      hardware_price: 22300
      electricity_price: 1.0
      hours_per_day: 8
      maintenance_total: 1500
      currency: CNY
"""

RETURN = r"""
paths:
  description: Format -> file written (or that would be written).
  returned: always
  type: dict
  sample: {json: reports/fleet/fleet.json, csv: reports/fleet/fleet.csv, html: reports/fleet/fleet.html}
summary:
  description:
    - Fleet summary as in the JSON document - C(hosts), C(counts) per status, C(gpus),
      C(vram_gb_total), C(gpu_models), C(failed_checks), C(driver_versions), C(nvswitch_hosts),
      C(fabric_manager_missing_hosts) (NVSwitch hosts whose Fabric Manager is not enabled),
      C(unreachable_hosts), C(failed_hosts), C(below_baseline_hosts), and C(tco) when costed.
  returned: always
  type: dict
msg:
  description: The counts in one line.
  returned: always
  type: str
"""
