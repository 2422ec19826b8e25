#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvme_facts
short_description: Gather NVMe controllers and namespaces, and whether a path is on NVMe
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Lists the NVMe controllers of the host (C(/sys/class/nvme)) with model, serial,
    firmware, transport and PCIe link, and their namespaces (C(/sys/block/nvmeXnY)) with
    sizes, partitions and mountpoints, as the C(openautoglm_nvme) fact.
  - Namespaces of native NVMe multipath (hidden C(nvmeXcYnZ) path devices) are counted
    once and attributed to their controller.
  - Works out which filesystem and which whole disks hold O(path) (the model directory).
    Partitions resolve to their disk; LVM/device-mapper and md RAID devices resolve to
    the disks below them. C(on_nvme) is V(true) only when every such disk is an NVMe
    namespace.
  - When O(path) does not exist yet, its nearest existing parent directory is judged
    instead, which is where the directory will be created.
  - All sizes are exact byte counts; sysfs C(size) files count 512-byte sectors whatever
    the namespace's logical block size. Thresholds and messages elsewhere in this
    collection use decimal units (1 GB = 10^9 bytes, 1 TB = 10^12 bytes), the units
    drive vendors print.
  - Nothing is run and nothing is changed. The module never fails because a sysfs node
    is missing; in virtual machines there are often no NVMe controllers (or only
    emulated ones), and in containers the root filesystem is an overlay whose backing
    device cannot be seen. Then C(on_nvme) is V(null) and C(notes) says why.
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
  facts:
    support: full
    description: Returns the C(openautoglm_nvme) fact.
options:
  path:
    description:
      - Absolute path of the directory to judge, normally where models are stored.
      - It does not have to exist; when it does, it must be a directory (a regular file is refused).
    type: path
    default: /data/models
notes:
  - Supports Linux only (sysfs and procfs). No root privileges are needed.
seealso:
  - module: openautoglm.deploy.memory_facts
"""

EXAMPLES = r"""
- name: Gather NVMe facts for the default model directory
  openautoglm.deploy.nvme_facts:

- name: Gather NVMe facts for another model store
  openautoglm.deploy.nvme_facts:
    path: /srv/llm/weights

- name: Require the model store to be on NVMe with 1 TB of space
  ansible.builtin.assert:
    that:
      - ansible_facts.openautoglm_nvme.path.on_nvme is true
      - ansible_facts.openautoglm_nvme.path.size_bytes >= 1000 * 1000 * 1000 * 1000
    fail_msg: >-
      {{ ansible_facts.openautoglm_nvme.path.path }} is on
      {{ ansible_facts.openautoglm_nvme.path.disks | join(', ') or 'an unknown device' }}:
      {{ ansible_facts.openautoglm_nvme.notes | join('; ') }}

- name: Show the NVMe drives in decimal TB
  ansible.builtin.debug:
    msg: >-
      {{ item.name }} {{ item.model }}:
      {{ ((item.namespaces | map(attribute='size_bytes') | sum) / 1000000000000) | round(2) }} TB
  loop: "{{ ansible_facts.openautoglm_nvme.controllers }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    openautoglm_nvme:
      description: NVMe inventory and where O(path) lives. All sizes in bytes.
      returned: always
      type: dict
      contains:
        controllers:
          description: NVMe controllers, in numeric order (nvme0, nvme1, ..., nvme10).
          type: list
          elements: dict
          returned: always
          contains:
            name:
              description: Controller name.
              type: str
              sample: nvme0
            model:
              description: Model string reported by the controller.
              type: str
              sample: SAMSUNG MZQL23T8HCLS-00A07
            serial:
              description: Serial number.
              type: str
              sample: S64HNE0T123456
            firmware:
              description: Firmware revision (C(firmware_rev)).
              type: str
              sample: GDC5602Q
            transport:
              description: Transport the controller is reached over.
              type: str
              sample: pcie
              choices: [pcie, tcp, rdma, fc, loop]
            address:
              description: PCI address for PCIe controllers, the transport address otherwise.
              type: str
              sample: "0000:01:00.0"
            pcie:
              description:
                - PCIe link of the controller's PCI function; V(null) for other transports.
                - Keys are V(null) where the host does not expose them (common in VMs).
              type: dict
              contains:
                current_speed:
                  description: Negotiated link speed as sysfs prints it.
                  type: str
                  sample: 16.0 GT/s PCIe
                max_speed:
                  description: Maximum link speed of the device.
                  type: str
                  sample: 16.0 GT/s PCIe
                current_gen:
                  description: PCIe generation of the negotiated speed.
                  type: int
                  sample: 4
                max_gen:
                  description: PCIe generation of the maximum speed.
                  type: int
                  sample: 4
                current_width:
                  description: Negotiated number of lanes.
                  type: int
                  sample: 4
                max_width:
                  description: Maximum number of lanes.
                  type: int
                  sample: 4
            namespaces:
              description: Namespaces (block devices) of this controller.
              type: list
              elements: dict
              contains:
                name:
                  description: Block device name.
                  type: str
                  sample: nvme0n1
                block_device:
                  description: Device node.
                  type: str
                  sample: /dev/nvme0n1
                size_bytes:
                  description: Namespace size in bytes (sysfs sectors x 512).
                  type: int
                  sample: 3840755982336
                logical_block_size:
                  description: Logical block size in bytes.
                  type: int
                  sample: 512
                mountpoints:
                  description: Where the whole namespace is mounted directly.
                  type: list
                  elements: str
                  sample: []
                partitions:
                  description: Partitions of the namespace.
                  type: list
                  elements: dict
                  contains:
                    name:
                      description: Partition name.
                      type: str
                      sample: nvme0n1p1
                    block_device:
                      description: Device node.
                      type: str
                      sample: /dev/nvme0n1p1
                    size_bytes:
                      description: Partition size in bytes.
                      type: int
                      sample: 3840754933760
                    mountpoints:
                      description: Where the partition is mounted.
                      type: list
                      elements: str
                      sample: [/data]
        count:
          description: Number of NVMe controllers.
          type: int
          returned: always
          sample: 1
        namespace_count:
          description: Number of NVMe namespaces (multipath path devices not counted).
          type: int
          returned: always
          sample: 1
        total_bytes:
          description: Sum of all namespace sizes; V(0) without NVMe.
          type: int
          returned: always
          sample: 3840755982336
        largest_namespace_bytes:
          description: Size of the largest namespace; V(null) without NVMe.
          type: int
          returned: always
          sample: 3840755982336
        path:
          description: Where O(path) lives.
          type: dict
          returned: always
          contains:
            path:
              description: The path requested in O(path).
              type: str
              sample: /data/models
            existing_path:
              description: O(path) if it exists, else its nearest existing parent, which
                is what was judged.
              type: str
              sample: /data
            block_device:
              description: Device node of the filesystem holding RV(ansible_facts.openautoglm_nvme.path.existing_path);
                V(null) when there is none or it cannot be seen (overlay, tmpfs, network).
              type: str
              sample: /dev/nvme0n1p1
            disks:
              description: Whole disks behind RV(ansible_facts.openautoglm_nvme.path.block_device), through
                partitions, device-mapper and md RAID.
              type: list
              elements: str
              sample: [nvme0n1]
            filesystem:
              description: Filesystem type from C(/proc/self/mountinfo).
              type: str
              sample: xfs
            mountpoint:
              description: Mountpoint of that filesystem.
              type: str
              sample: /data
            on_nvme:
              description:
                - V(true) if every backing disk is an NVMe namespace, V(false) if any is
                  not (or the filesystem is in memory or on the network), V(null) if it
                  cannot be determined (overlay in a container, ZFS, loop devices).
              type: bool
              sample: true
            size_bytes:
              description: Total size of that filesystem (statvfs).
              type: int
              sample: 3800000000000
            free_bytes:
              description: Space available to unprivileged users on that filesystem (statvfs).
              type: int
              sample: 3700000000000
        notes:
          description: What the host could not tell and why, in plain words.
          type: list
          elements: str
          returned: always
          sample:
            - model path /data/models does not exist; judged its nearest existing parent /data
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils.nvme import DEFAULT_PATH, collect, model_dir_problem
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', default=DEFAULT_PATH),
        ),
        supports_check_mode=True,
    )
    path = module.params['path']
    problem = model_dir_problem(path, 'path')
    if problem:
        module.fail_json(msg=problem)
    facts = collect(HostPaths(), path)
    module.exit_json(changed=False, ansible_facts={'openautoglm_nvme': facts})


if __name__ == '__main__':
    main()
