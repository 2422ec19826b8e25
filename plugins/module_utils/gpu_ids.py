# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVIDIA PCI device IDs of current data-center and workstation GPUs.

Used when NVML cannot answer (driver not installed / not loaded, nouveau bound, GPU
passed to vfio-pci): the PCI sysfs scan still finds the GPU, and this table names it and
supplies the figures the baseline gate needs (memory, compute capability). Memory is the
board's marketed capacity in bytes (decimal GB x 10**9 for HBM boards sold as "80GB";
NVML reports slightly different usable totals). Sources: pci.ids and NVIDIA datasheets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

NVIDIA_VENDOR_ID = 0x10de

# PCI class codes (the top 16 bits of the 24-bit class): VGA controller and 3D controller.
GPU_PCI_CLASSES = (0x0300, 0x0302)

# NVSwitch: an NVIDIA function of PCI class 0x0680 ("other bridge") on HGX/DGX baseboards.
# CUDA does not start on such a system until NVIDIA Fabric Manager (at exactly the driver's
# version) has configured the switches.
NVSWITCH_PCI_CLASS = 0x0680

# device id: (name, generation)
NVSWITCH_DEVICE_IDS = {
    0x1af1: ('NVSwitch (HGX A100)', 2),
    0x22a3: ('NVSwitch (HGX H100/H200)', 3),
}

ARCHITECTURE_BY_CC_MAJOR = {
    3: 'Kepler', 5: 'Maxwell', 6: 'Pascal', 7: 'Volta', 8: 'Ampere', 9: 'Hopper',
    10: 'Blackwell', 12: 'Blackwell',
}

_GB = 10 ** 9

# device id: (name, memory bytes, compute capability, architecture)
GPU_DEVICE_IDS = {
    0x1db1: ('Tesla V100 SXM2 16GB', 16 * _GB, '7.0', 'Volta'),
    0x1db4: ('Tesla V100 PCIe 16GB', 16 * _GB, '7.0', 'Volta'),
    0x1db5: ('Tesla V100 SXM2 32GB', 32 * _GB, '7.0', 'Volta'),
    0x1db6: ('Tesla V100 PCIe 32GB', 32 * _GB, '7.0', 'Volta'),
    0x1eb8: ('Tesla T4', 16 * _GB, '7.5', 'Turing'),
    0x20b0: ('A100 SXM4 40GB', 40 * _GB, '8.0', 'Ampere'),
    0x20b1: ('A100 PCIe 40GB', 40 * _GB, '8.0', 'Ampere'),
    0x20f1: ('A100 PCIe 40GB', 40 * _GB, '8.0', 'Ampere'),
    0x20b2: ('A100 SXM4 80GB', 80 * _GB, '8.0', 'Ampere'),
    0x20b3: ('A100 SXM 64GB', 64 * _GB, '8.0', 'Ampere'),
    0x20b5: ('A100 PCIe 80GB', 80 * _GB, '8.0', 'Ampere'),
    0x20b8: ('A100X', 80 * _GB, '8.0', 'Ampere'),
    0x20f3: ('A800 SXM4 80GB', 80 * _GB, '8.0', 'Ampere'),
    0x20f5: ('A800 PCIe 80GB', 80 * _GB, '8.0', 'Ampere'),
    0x20f6: ('A800 PCIe 40GB', 40 * _GB, '8.0', 'Ampere'),
    0x20b7: ('A30', 24 * _GB, '8.0', 'Ampere'),
    0x2203: ('GeForce RTX 3090 Ti', 24 * _GB, '8.6', 'Ampere'),
    0x2204: ('GeForce RTX 3090', 24 * _GB, '8.6', 'Ampere'),
    0x2230: ('RTX A6000', 48 * _GB, '8.6', 'Ampere'),
    0x2231: ('RTX A5000', 24 * _GB, '8.6', 'Ampere'),
    0x2235: ('A40', 48 * _GB, '8.6', 'Ampere'),
    0x2236: ('A10', 24 * _GB, '8.6', 'Ampere'),
    0x2237: ('A10G', 24 * _GB, '8.6', 'Ampere'),
    0x25b6: ('A2 / A16', 16 * _GB, '8.6', 'Ampere'),
    0x2684: ('GeForce RTX 4090', 24 * _GB, '8.9', 'Ada Lovelace'),
    0x26b1: ('RTX 6000 Ada Generation', 48 * _GB, '8.9', 'Ada Lovelace'),
    0x26b5: ('L40', 48 * _GB, '8.9', 'Ada Lovelace'),
    0x26b9: ('L40S', 48 * _GB, '8.9', 'Ada Lovelace'),
    0x27b8: ('L4', 24 * _GB, '8.9', 'Ada Lovelace'),
    0x2321: ('H100 NVL', 94 * _GB, '9.0', 'Hopper'),
    0x2322: ('H800 PCIe', 80 * _GB, '9.0', 'Hopper'),
    0x2324: ('H800', 80 * _GB, '9.0', 'Hopper'),
    0x2330: ('H100 SXM5 80GB', 80 * _GB, '9.0', 'Hopper'),
    0x2331: ('H100 PCIe', 80 * _GB, '9.0', 'Hopper'),
    0x2335: ('H200 SXM 141GB', 141 * _GB, '9.0', 'Hopper'),
    0x233b: ('H200 NVL', 141 * _GB, '9.0', 'Hopper'),
    0x2342: ('GH200 480GB', 96 * _GB, '9.0', 'Hopper'),
    0x2901: ('B200', 180 * _GB, '10.0', 'Blackwell'),
}


def lookup(device_id):
    """Table entry for a PCI device id as a dict, or None for an unknown device."""
    entry = GPU_DEVICE_IDS.get(device_id)
    if entry is None:
        return None
    name, memory, cc, arch = entry
    return {'name': 'NVIDIA ' + name, 'memory_total_bytes': memory,
            'compute_capability': cc, 'architecture': arch}


def architecture_for(cc_major):
    """Architecture name for a CUDA compute capability major number."""
    return ARCHITECTURE_BY_CC_MAJOR.get(cc_major, 'unknown')


def nvswitch_lookup(device_id):
    """Name and generation of an NVSwitch device id (unknown ids still are NVSwitches)."""
    name, generation = NVSWITCH_DEVICE_IDS.get(device_id, (None, None))
    return {'name': 'NVIDIA ' + name if name else 'NVIDIA NVSwitch (device 0x%04x)' % (device_id or 0),
            'generation': generation}
