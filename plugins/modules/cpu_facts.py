#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cpu_facts
short_description: Gather CPU topology facts (logical CPUs, physical cores, sockets)
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Counts online logical CPUs and distinct physical cores and sockets from
    C(/sys/devices/system/cpu/cpu*/topology), and reads the CPU model from C(/proc/cpuinfo).
  - Returns them as the C(openautoglm_cpu) fact. Much cheaper than the full C(setup) module.
notes:
  - In a VM the topology is what the hypervisor presents; a VM with 16 vCPUs shown as
    8 cores x 2 threads has 8 physical cores.
  - Supports check mode; never changes anything.
extends_documentation_fragment:
  - openautoglm.deploy.attributes
  - openautoglm.deploy.attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options: {}
seealso:
  - module: openautoglm.deploy.hardware_baseline
"""

EXAMPLES = r"""
- name: Gather CPU facts
  openautoglm.deploy.cpu_facts:

- name: Show the core count
  ansible.builtin.debug:
    var: ansible_facts.openautoglm_cpu.physical_cores
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: dict
  contains:
    openautoglm_cpu:
      description: CPU topology.
      returned: always
      type: dict
      contains:
        logical_cpus:
          description: Online logical CPUs (hardware threads).
          type: int
          sample: 64
        physical_cores:
          description: Distinct (socket, core) pairs; equals logical_cpus when sysfs has no topology.
          type: int
          sample: 32
        sockets:
          description: Distinct physical packages; null when unknown.
          type: int
        threads_per_core:
          description: logical_cpus divided by physical_cores.
          type: int
        model:
          description: CPU model name from /proc/cpuinfo.
          type: str
        usable_cpus:
          description: CPUs this process may run on (affinity mask, e.g. limited in a container).
          type: int
        notes:
          description: What the host could not tell.
          type: list
          elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import cpu
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={'openautoglm_cpu': cpu.collect(HostPaths())})


if __name__ == '__main__':
    main()
