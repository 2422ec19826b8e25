#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: memory_facts
short_description: Gather installed and visible system memory, DIMM inventory and ECC state
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Reads the host's memory configuration without running any external program and
    returns it as the C(openautoglm_memory) fact.
  - Installed memory is taken, in this order of preference, from the SMBIOS memory
    device structures (type 17) in the raw table C(/sys/firmware/dmi/tables/DMI), from
    the memory block count in C(/sys/devices/system/memory), or from C(MemTotal) in
    C(/proc/meminfo). The source used is reported in C(installed_source).
  - C(MemTotal) (C(visible_bytes)) is always lower than the installed DIMM total because
    firmware, the kernel and devices reserve part of it; gate on C(installed_bytes).
  - ECC is C(yes) or C(no) only with evidence, first the error correction type of the
    SMBIOS physical memory array (type 16), then EDAC memory controllers registered by
    the kernel (C(/sys/devices/system/edac/mc)). Without evidence it is C(unknown);
    C(no) is never guessed.
  - All sizes are exact byte counts. Human-readable figures in C(notes) use decimal
    units (1 GB = 10^9 bytes, 1 TB = 10^12 bytes), as DIMM datasheets do.
  - In virtual machines and containers the DMI table is often unreadable or synthetic,
    memory blocks may be absent and there are no EDAC controllers. The module then
    still succeeds, reports C(ecc=unknown), uses the best remaining source and explains
    each gap in C(notes). The DMI table is readable by root only, so run the module with
    C(become=true) to get DIMM data.
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
  facts:
    support: full
    description: Returns the C(openautoglm_memory) fact.
options: {}
notes:
  - Supports Linux only (sysfs and procfs).
seealso:
  - module: openautoglm.deploy.nvme_facts
  - module: ansible.builtin.setup
    description: C(ansible_memtotal_mb) is the kernel-visible memory, not the installed one.
"""

EXAMPLES = r"""
- name: Gather memory facts (root is needed to read the DMI table)
  openautoglm.deploy.memory_facts:
  become: true

- name: Show installed memory in decimal GB and the ECC state
  ansible.builtin.debug:
    msg: >-
      {{ (ansible_facts.openautoglm_memory.installed_bytes / 1000000000) | round(1) }} GB
      installed ({{ ansible_facts.openautoglm_memory.installed_source }}),
      ECC {{ ansible_facts.openautoglm_memory.ecc }}

- name: Require 128 GB of installed memory
  ansible.builtin.assert:
    that:
      - ansible_facts.openautoglm_memory.installed_bytes >= 128 * 1000 * 1000 * 1000
    fail_msg: "{{ ansible_facts.openautoglm_memory.notes | join('; ') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    openautoglm_memory:
      description: Memory of the host. All sizes in bytes.
      returned: always
      type: dict
      contains:
        visible_bytes:
          description: C(MemTotal) from C(/proc/meminfo), the memory the kernel can allocate.
          type: int
          returned: always
          sample: 134862589952
        memory_blocks_bytes:
          description:
            - Block size from C(/sys/devices/system/memory/block_size_bytes) times the number
              of C(memoryN) blocks, online or offline.
            - V(null) when the host does not expose memory blocks.
          type: int
          returned: always
          sample: 137438953472
        smbios_dimm_bytes:
          description:
            - Sum of the sizes of the populated SMBIOS memory devices in system memory arrays.
            - V(null) when the DMI table is unreadable, lists no populated device, or a
              populated device has an unknown size.
          type: int
          returned: always
          sample: 137438953472
        installed_bytes:
          description:
            - Best estimate of installed physical memory, from
              RV(ansible_facts.openautoglm_memory.installed_source).
            - V(null) if nothing was readable.
          type: int
          returned: always
          sample: 137438953472
        installed_source:
          description: Where C(installed_bytes) comes from; V(null) if nothing was readable.
          type: str
          returned: always
          choices: [smbios, memory_blocks, meminfo]
          sample: smbios
        dimms:
          description: Populated memory devices (SMBIOS type 17), in table order.
          type: list
          elements: dict
          returned: always
          contains:
            locator:
              description: Slot name printed on the board.
              type: str
              sample: DIMM_A1
            bank_locator:
              description: Bank or channel of the slot.
              type: str
              sample: P0 CHANNEL A
            size_bytes:
              description: Module size in bytes; V(null) if the firmware reports it unknown.
              type: int
              sample: 68719476736
            type:
              description: Memory type from the SMBIOS table.
              type: str
              sample: DDR5
            speed_mts:
              description: Maximum speed of the module in MT/s; V(null) if unknown.
              type: int
              sample: 4800
            configured_speed_mts:
              description: Speed the memory controller runs the module at, in MT/s.
              type: int
              sample: 4400
            manufacturer:
              description: Module manufacturer string as reported by the firmware.
              type: str
              sample: Samsung
            part_number:
              description: Module part number as reported by the firmware.
              type: str
              sample: M321R8GA0BB0-CQKZJ
            total_width:
              description: Total width in bits, including ECC bits; V(null) if unknown.
              type: int
              sample: 72
            data_width:
              description: Data width in bits; V(null) if unknown.
              type: int
              sample: 64
            ecc:
              description: Whether the module carries ECC bits (total width > data width).
              type: bool
              sample: true
        dimm_count:
          description: Number of populated DIMMs (length of C(dimms)).
          type: int
          returned: always
          sample: 8
        dimm_slots:
          description: Number of memory device slots SMBIOS lists, populated or empty;
            V(null) without SMBIOS.
          type: int
          returned: always
          sample: 16
        dimm_types:
          description: Sorted unique memory types of the populated DIMMs.
          type: list
          elements: str
          returned: always
          sample: [DDR5]
        ecc:
          description: Whether memory error correction is active.
          type: str
          returned: always
          choices: ['yes', 'no', unknown]
          sample: 'yes'
        ecc_source:
          description: Evidence behind C(ecc); V(null) when it is C(unknown).
          type: str
          returned: always
          choices: [smbios, edac]
          sample: smbios
        ecc_type:
          description:
            - SMBIOS error correction type of the memory array (V(None), V(Parity),
              V(Single-bit ECC), V(Multi-bit ECC), V(CRC)) when SMBIOS decided, the EDAC
              mode (for example V(SECDED)) when EDAC decided, else V(null).
          type: str
          returned: always
          sample: Multi-bit ECC
        edac_controllers:
          description: Number of EDAC memory controllers (C(/sys/devices/system/edac/mc/mc*)).
          type: int
          returned: always
          sample: 2
        edac_ce_count:
          description: Corrected errors summed over EDAC controllers; V(null) without counters.
          type: int
          returned: always
          sample: 0
        edac_ue_count:
          description: Uncorrected errors summed over EDAC controllers; V(null) without counters.
          type: int
          returned: always
          sample: 0
        notes:
          description: What the host could not tell and why, in plain words.
          type: list
          elements: str
          returned: always
          sample:
            - "SMBIOS tables not readable (/sys/firmware/dmi/tables/DMI): DIMM data unavailable (VM or not root)"
            - no EDAC memory controllers
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils.memory import collect
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    facts = collect(HostPaths())
    module.exit_json(changed=False, ansible_facts={'openautoglm_memory': facts})


if __name__ == '__main__':
    main()
