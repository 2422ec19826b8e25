# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU inventory: NVML first, PCI sysfs scan as the fallback (and for driver binding)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu_ids, nvml
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import (
    link_name, list_dir, loaded_modules, pcie_link, read_int, read_text)


def _nvidia_functions(paths, wanted):
    """(address, sysfs dir, device id) of NVIDIA PCI functions whose class (>> 8) passes ``wanted``, in bus order."""
    base = paths.sys('bus', 'pci', 'devices')
    for address in list_dir(base):
        dev = os.path.join(base, address)
        if read_int(os.path.join(dev, 'vendor'), 16) != gpu_ids.NVIDIA_VENDOR_ID:
            continue
        pci_class = read_int(os.path.join(dev, 'class'), 16)
        if pci_class is None or not wanted(pci_class >> 8):
            continue
        yield address, dev, read_int(os.path.join(dev, 'device'), 16)


def _hex_id(device_id):
    return '0x%04x' % device_id if device_id is not None else None


def scan_pci(paths):
    """NVIDIA display/3D controllers in /sys/bus/pci/devices, in bus order (not audio, NVSwitches, bridges)."""
    found = []
    for address, dev, device_id in _nvidia_functions(paths, lambda cls: cls in gpu_ids.GPU_PCI_CLASSES):
        known = gpu_ids.lookup(device_id) or {}
        found.append({
            'pci_bus_id': address,
            'pci_device_id': device_id,
            'device_id': _hex_id(device_id),
            'kernel_driver': link_name(os.path.join(dev, 'driver')) or 'none',
            'numa_node': read_int(os.path.join(dev, 'numa_node')),
            'pcie': pcie_link(paths, address),
            'known_device': bool(known),
            'name': known.get('name', 'NVIDIA GPU (device %s)' % (_hex_id(device_id) if device_id else 'unknown')),
            'memory_total_bytes': known.get('memory_total_bytes'),
            'compute_capability': known.get('compute_capability'),
            'architecture': known.get('architecture', 'unknown'),
        })
    return found


def scan_nvswitches(paths):
    """NVIDIA NVSwitch functions (PCI class 0x0680) in bus order."""
    found = []
    for address, dev, device_id in _nvidia_functions(paths, lambda cls: cls == gpu_ids.NVSWITCH_PCI_CLASS):
        entry = gpu_ids.nvswitch_lookup(device_id)
        entry.update(pci_bus_id=address, device_id=_hex_id(device_id),
                     kernel_driver=link_name(os.path.join(dev, 'driver')) or 'none')
        found.append(entry)
    return found


FABRIC_MANAGER_BINARY = ('usr', 'bin', 'nv-fabricmanager')
FABRIC_MANAGER_WANTS = ('etc', 'systemd', 'system', 'multi-user.target.wants', 'nvidia-fabricmanager.service')


def fabric_manager(paths, nvswitches):
    """Whether Fabric Manager is needed, installed and enabled (from files, no systemd call)."""
    return {
        'required': bool(nvswitches),
        'installed': os.path.isfile(paths.path(*FABRIC_MANAGER_BINARY)),
        'enabled': os.path.lexists(paths.path(*FABRIC_MANAGER_WANTS)),
    }


def collect(paths, nvml_lib=None):
    """Return the ``openautoglm_gpu`` facts dict (see the gpu_facts documentation)."""
    modules = loaded_modules(paths)
    pci_gpus = scan_pci(paths)
    by_bus = dict((g['pci_bus_id'], g) for g in pci_gpus)
    facts = {
        'source': 'pci',
        'count': 0,
        'devices': [],
        'driver_version': read_text(paths.sys('module', 'nvidia', 'version')),
        'cuda_driver_version': None,
        'nvml_version': None,
        'nvml_available': False,
        'nvml_error': None,
        'driver_library_mismatch': False,
        'nvidia_loaded': 'nvidia' in modules or os.path.isdir(paths.sys('module', 'nvidia')),
        'nouveau_loaded': 'nouveau' in modules or os.path.isdir(paths.sys('module', 'nouveau')),
        'pci_device_count': len(pci_gpus),
        'notes': [],
    }
    lib = nvml_lib if nvml_lib is not None else nvml.pynvml
    if lib is None:
        facts['nvml_error'] = nvml.MISSING_PYNVML_MSG % sys.executable
    else:
        try:
            with nvml.Nvml(lib) as session:
                # A field NVML cannot answer keeps its sysfs value (driver_version).
                facts.update((k, v) for k, v in session.system().items() if v is not None)
                devices = session.devices()
            facts['nvml_available'] = True
            facts['source'] = 'nvml'
            for dev in devices:
                pci = by_bus.get(dev['pci_bus_id'], {})
                dev['architecture'] = gpu_ids.architecture_for(dev.pop('cc_major'))
                dev['kernel_driver'] = pci.get('kernel_driver', 'nvidia')
                dev['numa_node'] = pci.get('numa_node')
                dev['device_id'] = '0x%04x' % dev['pci_device_id'] if dev['pci_device_id'] is not None else None
                if pci.get('pcie'):
                    # NVML knows generations; sysfs adds the speed strings.
                    for key in ('current_speed', 'max_speed'):
                        dev['pcie'][key] = pci['pcie'][key]
                dev['source'] = 'nvml'
            facts['devices'] = devices
            missing = sorted(set(by_bus) - set(d['pci_bus_id'] for d in devices))
            if missing:
                facts['notes'].append(
                    'GPU(s) on the PCI bus but not visible to NVML: %s (fallen off the bus, '
                    'bound to another driver, or hidden by CUDA_VISIBLE_DEVICES/cgroups)' % ', '.join(missing))
        except nvml.NvmlUnavailable as exc:
            facts['nvml_error'] = str(exc)
            facts['driver_library_mismatch'] = exc.driver_mismatch
    if facts['source'] == 'pci':
        for index, dev in enumerate(pci_gpus):
            dev = dict(dev, index=index, uuid=None, source='pci')
            facts['devices'].append(dev)
        if pci_gpus:
            facts['notes'].append(
                'NVML unavailable (%s): %d GPU(s) identified from PCI IDs; memory and compute '
                'capability come from the device table' % (facts['nvml_error'], len(pci_gpus)))
    facts['count'] = len(facts['devices'])
    if facts['count'] == 0 and not pci_gpus:
        facts['notes'].append('no NVIDIA GPU found (NVML and PCI scan)')
    if facts['nouveau_loaded']:
        facts['notes'].append('nouveau kernel module is loaded: blacklist it (role openautoglm.deploy.nouveau)')
    if facts['driver_library_mismatch']:
        facts['notes'].append('NVML reports a driver/library version mismatch: reboot (or reload the nvidia module) after the driver upgrade')
    nvswitches = scan_nvswitches(paths)
    facts['nvswitches'] = nvswitches
    facts['nvswitch_count'] = len(nvswitches)
    facts['fabric_manager'] = fabric_manager(paths, nvswitches)
    if nvswitches and not (facts['fabric_manager']['installed'] and facts['fabric_manager']['enabled']):
        facts['notes'].append(
            '%d NVSwitch(es): CUDA needs NVIDIA Fabric Manager at the driver\'s version, which is not %s '
            '(role openautoglm.deploy.nvidia_driver installs it)'
            % (len(nvswitches), 'enabled' if facts['fabric_manager']['installed'] else 'installed'))
    facts['total_memory_bytes'] = sum(d.get('memory_total_bytes') or 0 for d in facts['devices'])
    facts['mig_enabled'] = any(d.get('mig_mode') == 'enabled' for d in facts['devices'])
    return facts
