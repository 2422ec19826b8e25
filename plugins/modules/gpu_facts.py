#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts through NVML, with a PCI sysfs fallback
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Reads every NVIDIA GPU through NVML (the C{pynvml} module of the C(nvidia-ml-py) package)
    and returns them as the C(openautoglm_gpu) fact.
  - When NVML cannot answer (bindings not installed, driver not installed or not loaded,
    driver/library version mismatch after an upgrade), NVIDIA display and 3D controllers are
    found by scanning PCI sysfs (vendor C(0x10de)) and named from a device-ID table of current
    data-center and workstation GPUs, which also supplies their memory and compute capability.
  - Reports the kernel driver bound to each GPU (C(nvidia), C(nouveau), C(vfio-pci), C(none))
    and whether the nouveau and nvidia kernel modules are loaded.
  - A host without GPUs is not an error; it returns C(count=0).
requirements:
  - nvidia-ml-py (optional; without it the PCI sysfs fallback is used)
notes:
  - Memory figures are bytes. NVML reports the usable total (an H100 80GB shows 85520809984
    bytes, an A100 40GB 42505273344); the PCI fallback reports the marketed capacity.
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
  - module: openautoglm.deploy.memory_facts
  - module: openautoglm.deploy.nvme_facts
  - module: openautoglm.deploy.cpu_facts
"""

EXAMPLES = r"""
- name: Gather GPU facts
  openautoglm.deploy.gpu_facts:

- name: Show the GPUs
  ansible.builtin.debug:
    msg: "{{ item.index }}: {{ item.name }} {{ (item.memory_total_bytes / 1e9) | round(1) }} GB cc {{ item.compute_capability }}"
  loop: "{{ ansible_facts.openautoglm_gpu.devices }}"

- name: Fail when the NVIDIA driver needs a reboot after an upgrade
  ansible.builtin.assert:
    that: not ansible_facts.openautoglm_gpu.driver_library_mismatch
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: dict
  contains:
    openautoglm_gpu:
      description: GPU inventory of the host.
      returned: always
      type: dict
      contains:
        source:
          description: C(nvml) when NVML answered, C(pci) when the sysfs fallback was used.
          type: str
          sample: nvml
        count:
          description: Number of GPUs in C(devices).
          type: int
          sample: 1
        pci_device_count:
          description: Number of NVIDIA GPUs on the PCI bus (can exceed C(count) when a GPU has fallen off the bus).
          type: int
        nvswitch_count:
          description: NVIDIA NVSwitches on the PCI bus (class 0x0680; HGX/DGX baseboards).
          type: int
          sample: 4
        nvswitches:
          description: The NVSwitches, in bus order.
          type: list
          elements: dict
          contains:
            pci_bus_id: {description: PCI address., type: str, sample: "0000:05:00.0"}
            device_id: {description: PCI device id., type: str, sample: "0x22a3"}
            name: {description: Name from the device table (or the id)., type: str, sample: NVIDIA NVSwitch (HGX H100/H200)}
            generation: {description: NVSwitch generation; null for an unknown device id., type: int, sample: 3}
            kernel_driver:
              description: Kernel driver bound to the function (C(nvidia), or C(none)).
              type: str
        fabric_manager:
          description:
            - NVIDIA Fabric Manager, which CUDA needs on NVSwitch systems (at exactly the driver's version).
            - C(installed) is C(/usr/bin/nv-fabricmanager); C(enabled) the unit's multi-user.target link.
          type: dict
          contains:
            required: {description: Whether the host has NVSwitches., type: bool}
            installed: {description: Whether nv-fabricmanager is installed., type: bool}
            enabled: {description: Whether nvidia-fabricmanager.service is enabled., type: bool}
        driver_version:
          description: NVIDIA kernel driver version (NVML, else C(/sys/module/nvidia/version)); null when not loaded.
          type: str
          sample: "535.183.01"
        cuda_driver_version:
          description: Highest CUDA version the driver supports, C(major.minor); null without NVML.
          type: str
          sample: "12.2"
        nvml_version:
          description: NVML library version; null without NVML.
          type: str
        nvml_available:
          description: Whether NVML initialised.
          type: bool
        nvml_error:
          description: Why NVML did not answer (missing bindings, driver not loaded, ...); null when it did.
          type: str
        driver_library_mismatch:
          description: NVML reported "Driver/library version mismatch" (driver upgraded, reboot pending).
          type: bool
        nvidia_loaded:
          description: The nvidia kernel module is loaded.
          type: bool
        nouveau_loaded:
          description: The nouveau kernel module is loaded.
          type: bool
        total_memory_bytes:
          description: Sum of C(memory_total_bytes) over all GPUs.
          type: int
        mig_enabled:
          description: MIG mode is enabled on at least one GPU.
          type: bool
        notes:
          description: What the host could not tell, in words.
          type: list
          elements: str
        devices:
          description: One entry per GPU, in NVML index order (PCI bus order for the fallback).
          type: list
          elements: dict
          contains:
            index:
              description: GPU index.
              type: int
            name:
              description: Product name.
              type: str
              sample: NVIDIA H100 80GB HBM3
            uuid:
              description: GPU UUID (null in the PCI fallback).
              type: str
            serial:
              description: Board serial number where NVML reports it.
              type: str
            memory_total_bytes:
              description: Total GPU memory in bytes (null for an unknown device in the PCI fallback).
              type: int
            compute_capability:
              description: CUDA compute capability, C(major.minor).
              type: str
              sample: "9.0"
            architecture:
              description: GPU architecture (Volta, Turing, Ampere, Ada Lovelace, Hopper, Blackwell, unknown).
              type: str
            pci_bus_id:
              description: PCI address in sysfs form.
              type: str
              sample: "0000:3b:00.0"
            pci_device_id:
              description: PCI device ID as an integer.
              type: int
            device_id:
              description: PCI device ID in hex.
              type: str
              sample: "0x2330"
            pcie:
              description: PCIe link, C(current_gen), C(max_gen), C(current_width), C(max_width) (and the sysfs speed strings).
              type: dict
            ecc_mode:
              description: C(enabled), C(disabled) or C(unsupported) (NVML only).
              type: str
            ecc_mode_pending:
              description: ECC mode after the next reset (NVML only).
              type: str
            mig_mode:
              description: C(enabled), C(disabled) or C(unsupported) (NVML only).
              type: str
            mig_mode_pending:
              description: MIG mode after the next reset (NVML only).
              type: str
            persistence_mode:
              description: C(enabled), C(disabled) or C(unsupported) (NVML only).
              type: str
            power_limit_watts:
              description: Power management limit in watts (NVML only).
              type: float
            vbios_version:
              description: VBIOS version (NVML only).
              type: str
            kernel_driver:
              description: Kernel driver bound to the PCI function (nvidia, nouveau, vfio-pci, none).
              type: str
            numa_node:
              description: NUMA node of the PCI function (-1 when none).
              type: int
            known_device:
              description: PCI fallback only, whether the device ID is in the collection's table.
              type: bool
            source:
              description: Where this entry came from, C(nvml) or C(pci).
              type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={'openautoglm_gpu': gpu.collect(HostPaths())})


if __name__ == '__main__':
    main()
