# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Installed vs visible system memory, DIMM inventory and ECC state.

Three sources, from most to least direct:

* SMBIOS type 16/17 structures (``/sys/firmware/dmi/tables/DMI``, root only, often
  absent or synthetic in VMs): DIMM sizes, types, speeds and the memory array's error
  correction type.
* Memory blocks (``/sys/devices/system/memory``): block size x number of blocks, i.e. the
  physical memory the kernel knows about, including what firmware or a crash kernel
  reserved and MemTotal therefore omits.
* ``/proc/meminfo`` MemTotal: what the kernel can hand out, always below installed.

ECC is "yes" or "no" only with evidence (SMBIOS error correction type, or EDAC memory
controllers registered by the kernel); otherwise "unknown", with ``notes`` saying why.
All sizes are bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.openautoglm.deploy.plugins.module_utils import smbios
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import (
    list_dir,
    read_int,
    read_text,
)
from ansible_collections.openautoglm.deploy.plugins.module_utils.units import human_bytes

MEMORY_DIR = 'devices/system/memory'
EDAC_MC_DIR = 'devices/system/edac/mc'

_MEMORY_BLOCK_RE = re.compile(r'^memory\d+$')
_EDAC_MC_RE = re.compile(r'^mc\d+$')
_EDAC_DIMM_RE = re.compile(r'^(dimm|rank)\d+$')
_EDAC_CSROW_RE = re.compile(r'^csrow\d+$')


def meminfo_total(paths):
    """MemTotal from /proc/meminfo in bytes, or None."""
    text = read_text(paths.proc('meminfo'))
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith('MemTotal:'):
            fields = line.split()
            try:
                value = int(fields[1])
            except (IndexError, ValueError):
                return None
            unit = fields[2].lower() if len(fields) > 2 else 'kb'
            return value * 1024 if unit == 'kb' else value
    return None


def memory_blocks(paths):
    """``(block_size_bytes, block_count)`` from sysfs, or ``(None, 0)`` when absent."""
    base = paths.sys(MEMORY_DIR)
    block_size = read_int(os.path.join(base, 'block_size_bytes'), base=16)
    count = len([name for name in list_dir(base) if _MEMORY_BLOCK_RE.match(name)])
    return block_size, count


def edac_state(paths):
    """EDAC memory controllers: count, summed CE/UE counters and reported ECC modes."""
    base = paths.sys(EDAC_MC_DIR)
    controllers = [name for name in list_dir(base) if _EDAC_MC_RE.match(name)]
    ce_total = None
    ue_total = None
    modes = set()
    for name in controllers:
        mc_dir = os.path.join(base, name)
        ce = read_int(os.path.join(mc_dir, 'ce_count'))
        ue = read_int(os.path.join(mc_dir, 'ue_count'))
        if ce is not None:
            ce_total = (ce_total or 0) + ce
        if ue is not None:
            ue_total = (ue_total or 0) + ue
        for entry in list_dir(mc_dir):
            if _EDAC_DIMM_RE.match(entry):
                mode = read_text(os.path.join(mc_dir, entry, 'dimm_edac_mode'))
            elif _EDAC_CSROW_RE.match(entry):
                mode = read_text(os.path.join(mc_dir, entry, 'edac_mode'))
            else:
                continue
            if mode:
                modes.add(mode)
    return {
        'controllers': len(controllers),
        'ce_count': ce_total,
        'ue_count': ue_total,
        'modes': sorted(modes),
    }


def _system_memory_devices(inventory):
    """Type 17 devices that belong to a system-memory array (or to no known array)."""
    arrays = inventory['arrays']
    system_handles = set(a['handle'] for a in arrays if a['system_memory'])
    if not system_handles:
        return list(inventory['devices'])
    known_handles = set(a['handle'] for a in arrays)
    return [d for d in inventory['devices']
            if d['array_handle'] in system_handles or d['array_handle'] not in known_handles]


def _dimm_fact(device):
    keys = ('locator', 'bank_locator', 'size_bytes', 'type', 'speed_mts',
            'configured_speed_mts', 'manufacturer', 'part_number', 'total_width',
            'data_width', 'ecc')
    return dict((key, device[key]) for key in keys)


def smbios_ecc(inventory):
    """``(ecc, ecc_type)`` decided by the system-memory arrays; ecc is None if undecided."""
    arrays = [a for a in inventory['arrays'] if a['system_memory']]
    present = [a for a in arrays if a['error_correction_code'] in smbios.ECC_PRESENT]
    if present:
        return 'yes', present[0]['error_correction']
    if arrays and all(a['error_correction_code'] in smbios.ECC_NONE for a in arrays):
        return 'no', arrays[0]['error_correction']
    return None, None


def collect(paths):
    """Memory facts of the host behind *paths* (a sysfs.HostPaths); see the module docs."""
    notes = []

    visible = meminfo_total(paths)
    if visible is None:
        notes.append('/proc/meminfo not readable: visible memory unknown')

    block_size, block_count = memory_blocks(paths)
    if block_size and block_count:
        blocks_bytes = block_size * block_count
    else:
        blocks_bytes = None
        notes.append('no memory block information in /sys/devices/system/memory '
                     '(kernel without memory hotplug sysfs, or a container)')

    dimms = []
    dimm_slots = None
    smbios_bytes = None
    ecc = None
    ecc_type = None
    ecc_source = None
    table = smbios.read_table(paths)
    if not table:
        notes.append('SMBIOS tables not readable (/sys/%s): DIMM data unavailable '
                     '(VM or not root)' % smbios.DMI_TABLE)
    else:
        inventory = smbios.memory_inventory(table)
        if inventory['truncated']:
            notes.append('SMBIOS table truncated or corrupt after %d structures: '
                         'decoded what could be read' % inventory['structure_count'])
        devices = _system_memory_devices(inventory)
        dimm_slots = len(devices)
        populated = [d for d in devices if d['populated']]
        dimms = [_dimm_fact(d) for d in populated]
        if not devices:
            notes.append('SMBIOS lists no memory devices (type 17)')
        elif not populated:
            notes.append('SMBIOS lists %d memory slots, none populated' % len(devices))
        elif any(d['size_bytes'] is None for d in populated):
            notes.append('SMBIOS reports an unknown size for some populated DIMMs: '
                         'DIMM total not used')
        else:
            smbios_bytes = sum(d['size_bytes'] for d in populated)
        ecc, ecc_type = smbios_ecc(inventory)
        if ecc is not None:
            ecc_source = 'smbios'
            if ecc == 'no' and any(d['ecc'] for d in dimms):
                notes.append('DIMMs are ECC-capable (total width > data width) but the '
                             'memory array reports no error correction: ECC disabled '
                             'in firmware or unsupported by the platform')
        elif inventory['arrays']:
            names = sorted(set(a['error_correction'] or 'not reported'
                               for a in inventory['arrays'] if a['system_memory']))
            notes.append('SMBIOS memory array error correction is %s: not conclusive'
                         % (', '.join(names) or 'not reported for system memory'))
        else:
            notes.append('SMBIOS has no physical memory array (type 16): '
                         'error correction not reported')

    if smbios_bytes is not None:
        installed, source = smbios_bytes, 'smbios'
    elif blocks_bytes is not None:
        installed, source = blocks_bytes, 'memory_blocks'
    elif visible is not None:
        installed, source = visible, 'meminfo'
        notes.append('installed memory estimated from MemTotal, which excludes '
                     'firmware/kernel reservations: the real figure is a little higher')
    else:
        installed, source = None, None

    edac = edac_state(paths)
    if not edac['controllers']:
        notes.append('no EDAC memory controllers')
    if ecc is None and edac['controllers']:
        known = [m for m in edac['modes'] if m not in ('Unknown', 'Reserved')]
        if known and all(m == 'None' for m in known):
            notes.append('EDAC memory controllers present but every DIMM reports '
                         'edac_mode None: ECC state not decided')
        else:
            ecc, ecc_source = 'yes', 'edac'
            modes = [m for m in known if m != 'None']
            ecc_type = modes[0] if modes else None
    if ecc is None:
        ecc = 'unknown'
        notes.append('ECC unknown: neither SMBIOS nor EDAC gives evidence either way')

    types = sorted(set(d['type'] for d in dimms if d['type']))
    if visible is not None and installed is not None and installed > visible:
        notes.append('%s installed, %s visible to the kernel (difference reserved by '
                     'firmware, kernel or devices)' % (human_bytes(installed),
                                                       human_bytes(visible)))

    return {
        'visible_bytes': visible,
        'memory_blocks_bytes': blocks_bytes,
        'smbios_dimm_bytes': smbios_bytes,
        'installed_bytes': installed,
        'installed_source': source,
        'dimms': dimms,
        'dimm_count': len(dimms),
        'dimm_slots': dimm_slots,
        'dimm_types': types,
        'ecc': ecc,
        'ecc_source': ecc_source,
        'ecc_type': ecc_type,
        'edac_controllers': edac['controllers'],
        'edac_ce_count': edac['ce_count'],
        'edac_ue_count': edac['ue_count'],
        'notes': notes,
    }
