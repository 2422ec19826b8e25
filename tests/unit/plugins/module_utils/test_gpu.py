# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU collector: NVML through a fake pynvml, PCI sysfs fallback over tmp_path trees.

``FakeNvml`` mimics the subset of pynvml that nvml.Nvml calls; per-device answers come
from plain dicts (``nvml_gpu``), a value of ``UNSUPPORTED`` raises an NVMLError-like
"Not Supported". ``add_pci_gpu`` / ``write_modules`` build the sysfs/procfs tree.
Figures are the ones real boards report (NVML usable totals, PCI device ids).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import gpu, nvml
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths

GB = 10 ** 9
UNSUPPORTED = object()
NVIDIA = 0x10de


# --------------------------------------------------------------------------- fake NVML

class FakeNVMLError(Exception):
    """Like pynvml.NVMLError: ``value`` is the NVML return code, str() its text."""

    def __init__(self, value, text):
        super(FakeNVMLError, self).__init__(text)
        self.value = value


class FakePciInfo(object):
    def __init__(self, bus_id, device_id, vendor_id=NVIDIA):
        self.busId = bus_id
        # NVML packs the PCI device id in the high 16 bits, the vendor id in the low.
        self.pciDeviceId = (device_id << 16) | vendor_id


class FakeMemory(object):
    def __init__(self, total):
        self.total = total
        self.free = total
        self.used = 0


class FakeHandle(object):
    def __init__(self, index):
        self.index = index


def nvml_gpu(name, device_id, memory, cc, bus_id, **overrides):
    """Per-device NVML answers; overrides replace any field (UNSUPPORTED raises)."""
    dev = {
        'name': name,
        'uuid': 'GPU-%04x-%s' % (device_id, bus_id[-7:-5].lower()),
        'serial': '1650%08d' % device_id,
        'memory': UNSUPPORTED if memory is None or memory is UNSUPPORTED else FakeMemory(memory),
        'cc': cc,
        'pci': FakePciInfo(bus_id, device_id),
        'curr_gen': 4, 'max_gen': 4, 'curr_width': 16, 'max_width': 16,
        'ecc': [1, 1],
        'mig': [0, 0],
        'persistence': 1,
        'power_mw': 250000,
        'vbios': '92.00.36.00.01',
    }
    dev.update(overrides)
    return dev


A100_40 = dict(name='NVIDIA A100-PCIE-40GB', device_id=0x20b1, memory=42505273344, cc=(8, 0),
               bus_id='00000000:3B:00.0', vbios='92.00.25.00.08')
A100_80_SXM = dict(name='NVIDIA A100-SXM4-80GB', device_id=0x20b2, memory=85899345920, cc=(8, 0),
                   bus_id='00000000:07:00.0', power_mw=400000, vbios='92.00.36.00.02')
H100 = dict(name='NVIDIA H100 80GB HBM3', device_id=0x2330, memory=85520809984, cc=(9, 0),
            bus_id='00000000:18:00.0', curr_gen=5, max_gen=5, power_mw=700000, vbios='96.00.74.00.01')
RTX_3090 = dict(name='NVIDIA GeForce RTX 3090', device_id=0x2204, memory=25769803776, cc=(8, 6),
                bus_id='00000000:65:00.0', ecc=UNSUPPORTED, mig=UNSUPPORTED, persistence=0,
                power_mw=350000, vbios='94.02.42.00.a9')


def make(spec, **overrides):
    spec = dict(spec, **overrides)
    return nvml_gpu(spec.pop('name'), spec.pop('device_id'), spec.pop('memory'), spec.pop('cc'),
                    spec.pop('bus_id'), **spec)


class FakeNvml(object):
    """The pynvml functions nvml.Nvml uses, answering from dicts."""

    _DEVICE_FIELDS = {
        'nvmlDeviceGetName': 'name',
        'nvmlDeviceGetUUID': 'uuid',
        'nvmlDeviceGetSerial': 'serial',
        'nvmlDeviceGetMemoryInfo': 'memory',
        'nvmlDeviceGetCudaComputeCapability': 'cc',
        'nvmlDeviceGetPciInfo': 'pci',
        'nvmlDeviceGetCurrPcieLinkGeneration': 'curr_gen',
        'nvmlDeviceGetMaxPcieLinkGeneration': 'max_gen',
        'nvmlDeviceGetCurrPcieLinkWidth': 'curr_width',
        'nvmlDeviceGetMaxPcieLinkWidth': 'max_width',
        'nvmlDeviceGetEccMode': 'ecc',
        'nvmlDeviceGetMigMode': 'mig',
        'nvmlDeviceGetPersistenceMode': 'persistence',
        'nvmlDeviceGetPowerManagementLimit': 'power_mw',
        'nvmlDeviceGetVbiosVersion': 'vbios',
    }

    def __init__(self, devices=(), driver='550.54.15', cuda=12040, nvml_version='12.550.54.15',
                 init_error=None, shutdown_error=None, missing=()):
        self.devices = list(devices)
        self.system = {'driver': driver, 'cuda': cuda, 'nvml': nvml_version}
        self.init_error = init_error
        self.shutdown_error = shutdown_error
        self.missing = set(missing)  # functions this (older) pynvml does not have
        self.calls = []

    @staticmethod
    def _answer(value):
        if value is UNSUPPORTED:
            raise FakeNVMLError(3, 'Not Supported')
        return value

    def nvmlInit(self):
        self.calls.append('nvmlInit')
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append('nvmlShutdown')
        if self.shutdown_error is not None:
            raise self.shutdown_error

    def nvmlSystemGetDriverVersion(self):
        return self._answer(self.system['driver'])

    def nvmlSystemGetCudaDriverVersion(self):
        return self._answer(self.system['cuda'])

    def nvmlSystemGetNVMLVersion(self):
        return self._answer(self.system['nvml'])

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.devices):
            raise FakeNVMLError(2, 'Invalid Argument')
        return FakeHandle(index)

    def __getattr__(self, name):
        field = self._DEVICE_FIELDS.get(name)
        if field is None or name in self.missing:
            raise AttributeError(name)

        def call(handle):
            if not isinstance(handle, FakeHandle):
                raise FakeNVMLError(2, 'Invalid Argument')
            return self._answer(self.devices[handle.index][field])
        return call


# --------------------------------------------------------------------------- fake sysfs

def _write(path, text):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with open(path, 'w') as handle:
        handle.write(text)


def add_pci_gpu(root, address, device=0x2330, vendor=NVIDIA, pci_class=0x030200, driver='nvidia',
                numa_node=0, link=('32.0 GT/s PCIe', 16, '32.0 GT/s PCIe', 16)):
    """One PCI function under <root>/sys/bus/pci/devices/<address>; driver None = unbound."""
    dev = os.path.join(str(root), 'sys', 'bus', 'pci', 'devices', address)
    _write(os.path.join(dev, 'vendor'), '0x%04x\n' % vendor)
    _write(os.path.join(dev, 'device'), '0x%04x\n' % device)
    _write(os.path.join(dev, 'class'), '0x%06x\n' % pci_class)
    if numa_node is not None:
        _write(os.path.join(dev, 'numa_node'), '%d\n' % numa_node)
    if link is not None:
        cur_speed, cur_width, max_speed, max_width = link
        _write(os.path.join(dev, 'current_link_speed'), cur_speed + '\n')
        _write(os.path.join(dev, 'current_link_width'), '%d\n' % cur_width)
        _write(os.path.join(dev, 'max_link_speed'), max_speed + '\n')
        _write(os.path.join(dev, 'max_link_width'), '%d\n' % max_width)
    if driver:
        os.symlink('../../../../bus/pci/drivers/%s' % driver, os.path.join(dev, 'driver'))
    return dev


def write_modules(root, names, sys_module=True, nvidia_version='550.54.15'):
    """/proc/modules listing *names*; /sys/module/<name> (with nvidia's version file)."""
    lines = ['%s 1638400 0 - Live 0x0000000000000000' % name for name in names]
    _write(os.path.join(str(root), 'proc', 'modules'), '\n'.join(lines) + ('\n' if lines else ''))
    if sys_module:
        for name in names:
            mod = os.path.join(str(root), 'sys', 'module', name)
            if not os.path.isdir(mod):
                os.makedirs(mod)
            if name == 'nvidia' and nvidia_version:
                _write(os.path.join(mod, 'version'), nvidia_version + '\n')


def host(tmp_path):
    return HostPaths(str(tmp_path))


GEN4_X16 = {'current_speed': '16.0 GT/s PCIe', 'max_speed': '16.0 GT/s PCIe',
            'current_gen': 4, 'max_gen': 4, 'current_width': 16, 'max_width': 16}
GEN5_X16 = {'current_speed': '32.0 GT/s PCIe', 'max_speed': '32.0 GT/s PCIe',
            'current_gen': 5, 'max_gen': 5, 'current_width': 16, 'max_width': 16}


# --------------------------------------------------------------------------- NVML path

def test_nvml_h100_full_device_and_host_facts(tmp_path):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, numa_node=1)
    write_modules(tmp_path, ['nvidia_uvm', 'nvidia'])
    lib = FakeNvml([make(H100)], cuda=12020)

    facts = gpu.collect(host(tmp_path), nvml_lib=lib)

    assert facts['devices'] == [{
        'index': 0,
        'name': 'NVIDIA H100 80GB HBM3',
        'uuid': 'GPU-2330-18',
        'serial': '165000009008',
        'memory_total_bytes': 85520809984,
        'compute_capability': '9.0',
        'architecture': 'Hopper',
        'pci_bus_id': '0000:18:00.0',
        'pci_device_id': 0x2330,
        'device_id': '0x2330',
        'pcie': dict(GEN5_X16),
        'ecc_mode': 'enabled',
        'ecc_mode_pending': 'enabled',
        'mig_mode': 'disabled',
        'mig_mode_pending': 'disabled',
        'persistence_mode': 'enabled',
        'power_limit_watts': 700.0,
        'vbios_version': '96.00.74.00.01',
        'kernel_driver': 'nvidia',
        'numa_node': 1,
        'source': 'nvml',
    }]
    assert facts == dict(facts, **{
        'source': 'nvml',
        'count': 1,
        'pci_device_count': 1,
        'driver_version': '550.54.15',
        'cuda_driver_version': '12.2',
        'nvml_version': '12.550.54.15',
        'nvml_available': True,
        'nvml_error': None,
        'driver_library_mismatch': False,
        'nvidia_loaded': True,
        'nouveau_loaded': False,
        'total_memory_bytes': 85520809984,
        'mig_enabled': False,
        'notes': [],
    })
    assert lib.calls == ['nvmlInit', 'nvmlShutdown']


@pytest.mark.parametrize('spec, expected', [
    pytest.param(A100_40, {
        'name': 'NVIDIA A100-PCIE-40GB', 'memory_total_bytes': 42505273344,
        'compute_capability': '8.0', 'architecture': 'Ampere', 'device_id': '0x20b1',
        'pci_bus_id': '0000:3b:00.0', 'ecc_mode': 'enabled', 'mig_mode': 'disabled',
        'persistence_mode': 'enabled', 'power_limit_watts': 250.0}, id='a100-40gb-pcie'),
    pytest.param(A100_80_SXM, {
        'name': 'NVIDIA A100-SXM4-80GB', 'memory_total_bytes': 85899345920,
        'compute_capability': '8.0', 'architecture': 'Ampere', 'device_id': '0x20b2',
        'pci_bus_id': '0000:07:00.0', 'ecc_mode': 'enabled', 'mig_mode': 'disabled',
        'persistence_mode': 'enabled', 'power_limit_watts': 400.0}, id='a100-80gb-sxm'),
    pytest.param(H100, {
        'name': 'NVIDIA H100 80GB HBM3', 'memory_total_bytes': 85520809984,
        'compute_capability': '9.0', 'architecture': 'Hopper', 'device_id': '0x2330',
        'pci_bus_id': '0000:18:00.0', 'ecc_mode': 'enabled', 'mig_mode': 'disabled',
        'persistence_mode': 'enabled', 'power_limit_watts': 700.0}, id='h100-80gb-hbm3'),
    pytest.param(RTX_3090, {
        'name': 'NVIDIA GeForce RTX 3090', 'memory_total_bytes': 25769803776,
        'compute_capability': '8.6', 'architecture': 'Ampere', 'device_id': '0x2204',
        'pci_bus_id': '0000:65:00.0', 'ecc_mode': 'unsupported', 'mig_mode': 'unsupported',
        'persistence_mode': 'disabled', 'power_limit_watts': 350.0}, id='rtx-3090'),
])
def test_nvml_single_gpu(tmp_path, spec, expected):
    lib = FakeNvml([make(spec)])
    facts = gpu.collect(host(tmp_path), nvml_lib=lib)
    assert facts['source'] == 'nvml'
    assert facts['count'] == 1
    dev = facts['devices'][0]
    assert dict((k, dev[k]) for k in expected) == expected
    assert facts['total_memory_bytes'] == expected['memory_total_bytes']
    # Not in the (empty) sysfs tree: driver defaults to nvidia, no NUMA node.
    assert dev['kernel_driver'] == 'nvidia'
    assert dev['numa_node'] is None
    assert facts['pci_device_count'] == 0
    assert facts['notes'] == []


def test_nvml_mixed_multi_gpu(tmp_path):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, numa_node=0)
    add_pci_gpu(tmp_path, '0000:65:00.0', device=0x2204, numa_node=1,
                link=('2.5 GT/s PCIe', 16, '16.0 GT/s PCIe', 16))
    write_modules(tmp_path, ['nvidia'])
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100), make(RTX_3090, curr_gen=1)]))

    assert facts['count'] == 2
    assert facts['pci_device_count'] == 2
    assert [(d['index'], d['name'], d['compute_capability'], d['architecture'], d['numa_node'])
            for d in facts['devices']] == [
        (0, 'NVIDIA H100 80GB HBM3', '9.0', 'Hopper', 0),
        (1, 'NVIDIA GeForce RTX 3090', '8.6', 'Ampere', 1),
    ]
    assert facts['total_memory_bytes'] == 85520809984 + 25769803776
    # Idle 3090 downshifted to gen 1: NVML gens + sysfs speed strings side by side.
    assert facts['devices'][1]['pcie'] == {
        'current_gen': 1, 'max_gen': 4, 'current_width': 16, 'max_width': 16,
        'current_speed': '2.5 GT/s PCIe', 'max_speed': '16.0 GT/s PCIe'}
    assert facts['mig_enabled'] is False
    assert facts['notes'] == []


@pytest.mark.parametrize('mig, mode, pending, enabled', [
    ([1, 1], 'enabled', 'enabled', True),
    ([0, 1], 'disabled', 'enabled', False),   # enabled after the next GPU reset only
    ([1, 0], 'enabled', 'disabled', True),
    ([0, 0], 'disabled', 'disabled', False),
    (UNSUPPORTED, 'unsupported', 'unsupported', False),
])
def test_mig_mode(tmp_path, mig, mode, pending, enabled):
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(A100_80_SXM, mig=mig)]))
    dev = facts['devices'][0]
    assert (dev['mig_mode'], dev['mig_mode_pending']) == (mode, pending)
    assert facts['mig_enabled'] is enabled


def test_mig_on_one_of_two_gpus(tmp_path):
    lib = FakeNvml([make(H100), make(H100, bus_id='00000000:2A:00.0', mig=[1, 1])])
    facts = gpu.collect(host(tmp_path), nvml_lib=lib)
    assert [d['mig_mode'] for d in facts['devices']] == ['disabled', 'enabled']
    assert facts['mig_enabled'] is True


@pytest.mark.parametrize('field, key, expected', [
    ('ecc', 'ecc_mode', 'unsupported'),
    ('ecc', 'ecc_mode_pending', 'unsupported'),
    ('mig', 'mig_mode', 'unsupported'),
    ('persistence', 'persistence_mode', 'unsupported'),
    ('power_mw', 'power_limit_watts', None),
    ('vbios', 'vbios_version', None),
    ('serial', 'serial', None),
    ('uuid', 'uuid', None),
    ('memory', 'memory_total_bytes', None),
    ('cc', 'compute_capability', None),
    ('cc', 'architecture', 'unknown'),
    ('curr_gen', 'pcie', {'current_gen': None, 'max_gen': 5, 'current_width': 16, 'max_width': 16}),
    ('pci', 'pci_bus_id', None),
    ('pci', 'device_id', None),
])
def test_not_supported_field_becomes_none_or_unsupported(tmp_path, field, key, expected):
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100, **{field: UNSUPPORTED})]))
    assert facts['count'] == 1
    assert facts['devices'][0][key] == expected
    assert facts['nvml_available'] is True


def test_function_missing_from_older_pynvml_is_none(tmp_path):
    lib = FakeNvml([make(H100)], missing=('nvmlDeviceGetMigMode', 'nvmlDeviceGetVbiosVersion'))
    dev = gpu.collect(host(tmp_path), nvml_lib=lib)['devices'][0]
    assert dev['mig_mode'] == 'unsupported'
    assert dev['vbios_version'] is None
    assert dev['name'] == 'NVIDIA H100 80GB HBM3'


def test_unsupported_memory_counts_zero_in_total(tmp_path):
    lib = FakeNvml([make(H100, memory=None), make(A100_40)])
    facts = gpu.collect(host(tmp_path), nvml_lib=lib)
    assert [d['memory_total_bytes'] for d in facts['devices']] == [None, 42505273344]
    assert facts['total_memory_bytes'] == 42505273344


@pytest.mark.parametrize('cuda, expected', [
    (12020, '12.2'),
    (12040, '12.4'),
    (11080, '11.8'),
    (12090, '12.9'),
    (13000, '13.0'),
    (UNSUPPORTED, None),
])
def test_cuda_driver_version(tmp_path, cuda, expected):
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100)], cuda=cuda))
    assert facts['cuda_driver_version'] == expected


def test_old_pynvml_bytes_are_decoded(tmp_path):
    lib = FakeNvml([make(A100_40, name=b'NVIDIA A100-PCIE-40GB', bus_id=b'00000000:3B:00.0')],
                   driver=b'535.183.01', nvml_version=b'12.535.183.01')
    facts = gpu.collect(host(tmp_path), nvml_lib=lib)
    assert facts['driver_version'] == '535.183.01'
    assert facts['nvml_version'] == '12.535.183.01'
    assert facts['devices'][0]['name'] == 'NVIDIA A100-PCIE-40GB'
    assert facts['devices'][0]['pci_bus_id'] == '0000:3b:00.0'


def test_driver_version_falls_back_to_sysfs_when_nvml_cannot_say(tmp_path):
    write_modules(tmp_path, ['nvidia'], nvidia_version='550.90.07')
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100)], driver=UNSUPPORTED))
    assert facts['driver_version'] == '550.90.07'


def test_nvml_driver_version_wins_over_sysfs(tmp_path):
    write_modules(tmp_path, ['nvidia'], nvidia_version='550.90.07')
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100)], driver='550.54.15'))
    assert facts['driver_version'] == '550.54.15'


@pytest.mark.parametrize('nvml_bus_id, sysfs', [
    ('00000000:3B:00.0', '0000:3b:00.0'),
    (b'00000000:3B:00.0', '0000:3b:00.0'),
    ('0000:3B:00.0', '0000:3b:00.0'),
    ('00000001:AF:00.0', '0001:af:00.0'),
    ('0000:3b:00.0', '0000:3b:00.0'),
    ('', ''),
    (None, ''),
])
def test_normalize_bus_id(nvml_bus_id, sysfs):
    assert nvml.normalize_bus_id(nvml_bus_id) == sysfs


def test_bus_id_normalised_to_join_sysfs(tmp_path):
    add_pci_gpu(tmp_path, '0000:3b:00.0', device=0x20b1, driver='nvidia', numa_node=1,
                link=('16.0 GT/s PCIe', 8, '16.0 GT/s PCIe', 16))
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(A100_40, curr_width=8)]))
    dev = facts['devices'][0]
    assert dev['pci_bus_id'] == '0000:3b:00.0'
    assert dev['numa_node'] == 1
    assert dev['pcie'] == dict(GEN4_X16, current_width=8)
    assert facts['notes'] == []


def test_gpu_on_pci_but_not_visible_to_nvml(tmp_path):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330)
    add_pci_gpu(tmp_path, '0000:2a:00.0', device=0x2330)
    add_pci_gpu(tmp_path, '0000:3b:00.0', device=0x2330)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100)]))
    assert facts['count'] == 1
    assert facts['pci_device_count'] == 3
    assert facts['notes'] == [
        'GPU(s) on the PCI bus but not visible to NVML: 0000:2a:00.0, 0000:3b:00.0 (fallen off '
        'the bus, bound to another driver, or hidden by CUDA_VISIBLE_DEVICES/cgroups)']


def test_nvml_sees_none_of_the_pci_gpus(tmp_path):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([]))
    assert (facts['source'], facts['count'], facts['pci_device_count']) == ('nvml', 0, 1)
    # The PCI scan did find a GPU: no "no NVIDIA GPU found (NVML and PCI scan)" note.
    assert facts['notes'] == [
        'GPU(s) on the PCI bus but not visible to NVML: 0000:18:00.0 (fallen off '
        'the bus, bound to another driver, or hidden by CUDA_VISIBLE_DEVICES/cgroups)']


def test_shutdown_error_is_ignored(tmp_path):
    lib = FakeNvml([make(H100)], shutdown_error=FakeNVMLError(1, 'Uninitialized'))
    facts = gpu.collect(host(tmp_path), nvml_lib=lib)
    assert facts['count'] == 1
    assert lib.calls == ['nvmlInit', 'nvmlShutdown']


# --------------------------------------------------------------------------- PCI fallback

DRIVER_NOT_LOADED = FakeNVMLError(9, 'Driver Not Loaded')


@pytest.mark.parametrize('driver, modules, kernel_driver, nouveau_loaded, nvidia_loaded', [
    pytest.param('nouveau', ['nouveau', 'drm'], 'nouveau', True, False, id='nouveau-bound'),
    pytest.param('vfio-pci', ['vfio_pci', 'vfio'], 'vfio-pci', False, False, id='vfio-pci'),
    pytest.param(None, [], 'none', False, False, id='no-driver'),
])
def test_driver_not_loaded_pci_only(tmp_path, driver, modules, kernel_driver, nouveau_loaded, nvidia_loaded):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, driver=driver, numa_node=0)
    write_modules(tmp_path, modules)
    lib = FakeNvml([make(H100)], init_error=DRIVER_NOT_LOADED)

    facts = gpu.collect(host(tmp_path), nvml_lib=lib)

    assert lib.calls == ['nvmlInit']
    assert facts['devices'] == [{
        'index': 0,
        'name': 'NVIDIA H100 SXM5 80GB',
        'uuid': None,
        'memory_total_bytes': 80 * GB,
        'compute_capability': '9.0',
        'architecture': 'Hopper',
        'pci_bus_id': '0000:18:00.0',
        'pci_device_id': 0x2330,
        'device_id': '0x2330',
        'pcie': dict(GEN5_X16),
        'kernel_driver': kernel_driver,
        'numa_node': 0,
        'known_device': True,
        'source': 'pci',
    }]
    expected_notes = ['NVML unavailable (Driver Not Loaded): 1 GPU(s) identified from PCI IDs; memory '
                      'and compute capability come from the device table']
    if nouveau_loaded:
        expected_notes.append('nouveau kernel module is loaded: blacklist it (role openautoglm.deploy.nouveau)')
    assert facts == dict(facts, **{
        'source': 'pci',
        'count': 1,
        'pci_device_count': 1,
        'driver_version': None,
        'cuda_driver_version': None,
        'nvml_version': None,
        'nvml_available': False,
        'nvml_error': 'Driver Not Loaded',
        'driver_library_mismatch': False,
        'nvidia_loaded': nvidia_loaded,
        'nouveau_loaded': nouveau_loaded,
        'total_memory_bytes': 80 * GB,
        'mig_enabled': False,
        'notes': expected_notes,
    })


@pytest.mark.parametrize('device_id, name, memory, cc, arch', [
    (0x20b1, 'NVIDIA A100 PCIe 40GB', 40 * GB, '8.0', 'Ampere'),
    (0x20b0, 'NVIDIA A100 SXM4 40GB', 40 * GB, '8.0', 'Ampere'),
    (0x20b2, 'NVIDIA A100 SXM4 80GB', 80 * GB, '8.0', 'Ampere'),
    (0x20b5, 'NVIDIA A100 PCIe 80GB', 80 * GB, '8.0', 'Ampere'),
    (0x20b7, 'NVIDIA A30', 24 * GB, '8.0', 'Ampere'),
    (0x2236, 'NVIDIA A10', 24 * GB, '8.6', 'Ampere'),
    (0x27b8, 'NVIDIA L4', 24 * GB, '8.9', 'Ada Lovelace'),
    (0x26b9, 'NVIDIA L40S', 48 * GB, '8.9', 'Ada Lovelace'),
    (0x2330, 'NVIDIA H100 SXM5 80GB', 80 * GB, '9.0', 'Hopper'),
    (0x2331, 'NVIDIA H100 PCIe', 80 * GB, '9.0', 'Hopper'),
    (0x2321, 'NVIDIA H100 NVL', 94 * GB, '9.0', 'Hopper'),
    (0x2335, 'NVIDIA H200 SXM 141GB', 141 * GB, '9.0', 'Hopper'),
    (0x2204, 'NVIDIA GeForce RTX 3090', 24 * GB, '8.6', 'Ampere'),
    (0x2684, 'NVIDIA GeForce RTX 4090', 24 * GB, '8.9', 'Ada Lovelace'),
    (0x2230, 'NVIDIA RTX A6000', 48 * GB, '8.6', 'Ampere'),
    (0x1db6, 'NVIDIA Tesla V100 PCIe 32GB', 32 * GB, '7.0', 'Volta'),
])
def test_pci_device_table(tmp_path, device_id, name, memory, cc, arch):
    add_pci_gpu(tmp_path, '0000:01:00.0', device=device_id)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    dev = facts['devices'][0]
    assert (dev['name'], dev['memory_total_bytes'], dev['compute_capability'], dev['architecture'],
            dev['device_id'], dev['known_device']) == (name, memory, cc, arch, '0x%04x' % device_id, True)


def test_unknown_device_id(tmp_path):
    add_pci_gpu(tmp_path, '0000:01:00.0', device=0x1234, driver=None, numa_node=-1, link=None)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    assert facts['devices'] == [{
        'index': 0,
        'name': 'NVIDIA GPU (device 0x1234)',
        'uuid': None,
        'memory_total_bytes': None,
        'compute_capability': None,
        'architecture': 'unknown',
        'pci_bus_id': '0000:01:00.0',
        'pci_device_id': 0x1234,
        'device_id': '0x1234',
        'pcie': {'current_speed': None, 'max_speed': None, 'current_gen': None, 'max_gen': None,
                 'current_width': None, 'max_width': None},
        'kernel_driver': 'none',
        'numa_node': -1,
        'known_device': False,
        'source': 'pci',
    }]
    assert facts['total_memory_bytes'] == 0


def test_pci_scan_keeps_only_nvidia_display_and_3d_functions(tmp_path):
    add_pci_gpu(tmp_path, '0000:01:00.0', device=0x2204, pci_class=0x030000)          # VGA: kept
    add_pci_gpu(tmp_path, '0000:01:00.1', device=0x1aef, pci_class=0x040300,          # HDMI audio
                driver='snd_hda_intel')
    add_pci_gpu(tmp_path, '0000:05:00.0', device=0x22a3, pci_class=0x068000, driver=None)  # NVSwitch
    add_pci_gpu(tmp_path, '0000:06:00.0', vendor=0x1a03, device=0x2000, pci_class=0x030000,
                driver='ast')                                                          # BMC VGA
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, pci_class=0x030200)          # 3D: kept
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    assert [(d['index'], d['pci_bus_id'], d['name']) for d in facts['devices']] == [
        (0, '0000:01:00.0', 'NVIDIA GeForce RTX 3090'),
        (1, '0000:18:00.0', 'NVIDIA H100 SXM5 80GB'),
    ]
    assert facts['pci_device_count'] == 2
    assert facts['total_memory_bytes'] == 24 * GB + 80 * GB


def test_pci_function_without_class_file_is_skipped(tmp_path):
    dev = add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330)
    os.remove(os.path.join(dev, 'class'))
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    assert facts['count'] == 0
    assert facts['pci_device_count'] == 0


@pytest.mark.parametrize('modules, sys_module, nouveau, nvidia', [
    pytest.param(['nouveau', 'ttm'], True, True, False, id='nouveau-in-proc-modules'),
    pytest.param(['nouveau'], False, True, False, id='proc-modules-only'),
    pytest.param(['nouveau_fake', 'nvidiafb'], True, False, False, id='prefix-is-not-a-match'),
    pytest.param(['nvidia', 'nvidia_uvm', 'nvidia_drm'], True, False, True, id='nvidia-stack'),
    pytest.param([], False, False, False, id='none'),
])
def test_loaded_kernel_modules(tmp_path, modules, sys_module, nouveau, nvidia):
    write_modules(tmp_path, modules, sys_module=sys_module)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    assert (facts['nouveau_loaded'], facts['nvidia_loaded']) == (nouveau, nvidia)
    nouveau_note = 'nouveau kernel module is loaded: blacklist it (role openautoglm.deploy.nouveau)'
    assert (nouveau_note in facts['notes']) is nouveau


def test_nouveau_built_in_shows_in_sys_module_only(tmp_path):
    os.makedirs(os.path.join(str(tmp_path), 'sys', 'module', 'nouveau'))
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=DRIVER_NOT_LOADED))
    assert facts['nouveau_loaded'] is True


MISMATCH_NOTE = ('NVML reports a driver/library version mismatch: reboot (or reload the nvidia module) '
                 'after the driver upgrade')


@pytest.mark.parametrize('error, mismatch', [
    pytest.param(FakeNVMLError(18, 'Driver/library version mismatch'), True, id='nvidia-smi-wording'),
    pytest.param(FakeNVMLError(18, 'RM has detected an NVML/RM version mismatch.'), True, id='pynvml-wording'),
    pytest.param(Exception('Failed to initialize NVML: Driver/library version mismatch'), True,
                 id='text-only'),
    pytest.param(DRIVER_NOT_LOADED, False, id='driver-not-loaded'),
    pytest.param(FakeNVMLError(12, 'NVML Shared Library Not Found'), False, id='library-not-found'),
])
def test_driver_library_mismatch(tmp_path, error, mismatch):
    add_pci_gpu(tmp_path, '0000:18:00.0', device=0x2330, driver='nvidia')
    write_modules(tmp_path, ['nvidia'], nvidia_version='550.90.07')
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([make(H100)], init_error=error))
    assert facts['driver_library_mismatch'] is mismatch
    assert facts['nvml_error'] == str(error)
    assert facts['source'] == 'pci'
    # The kernel module's version is still reported from sysfs.
    assert facts['driver_version'] == '550.90.07'
    assert facts['nvidia_loaded'] is True
    assert facts['devices'][0]['kernel_driver'] == 'nvidia'
    assert (MISMATCH_NOTE in facts['notes']) is mismatch


def test_driver_library_mismatch_real_pynvml_exception(tmp_path):
    pynvml = pytest.importorskip('pynvml')
    error = pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=error))
    assert facts['driver_library_mismatch'] is True
    assert facts['nvml_error'] == 'RM has detected an NVML/RM version mismatch.'
    assert MISMATCH_NOTE in facts['notes']


def test_init_error_without_text_reports_class_name(tmp_path):
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=OSError()))
    assert facts['nvml_error'] == 'OSError'
    assert facts['nvml_available'] is False


# --------------------------------------------------------------------------- no GPU / no NVML

NO_GPU = {
    'source': 'pci', 'count': 0, 'devices': [], 'pci_device_count': 0, 'total_memory_bytes': 0,
    'mig_enabled': False, 'nvml_available': False, 'driver_library_mismatch': False,
    'cuda_driver_version': None, 'nvml_version': None, 'driver_version': None,
    'nvidia_loaded': False, 'nouveau_loaded': False,
    'nvswitch_count': 0, 'nvswitches': [], 'fabric_manager': {'required': False, 'installed': False, 'enabled': False},
}


def test_no_gpu_empty_host(tmp_path):
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml(init_error=FakeNVMLError(12, 'NVML Shared Library Not Found')))
    assert facts == dict(NO_GPU, nvml_error='NVML Shared Library Not Found',
                         notes=['no NVIDIA GPU found (NVML and PCI scan)'])


def test_no_gpu_nvml_answers_zero(tmp_path):
    add_pci_gpu(tmp_path, '0000:06:00.0', vendor=0x1a03, device=0x2000, pci_class=0x030000, driver='ast')
    facts = gpu.collect(host(tmp_path), nvml_lib=FakeNvml([]))
    assert (facts['source'], facts['count'], facts['devices'], facts['nvml_available']) == ('nvml', 0, [], True)
    assert facts['notes'] == ['no NVIDIA GPU found (NVML and PCI scan)']
    assert facts['total_memory_bytes'] == 0


def test_no_gpu_without_nvml_bindings(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu.nvml, 'pynvml', None)
    facts = gpu.collect(host(tmp_path))
    assert facts == dict(NO_GPU, nvml_error=nvml.MISSING_PYNVML_MSG % sys.executable,
                         notes=['no NVIDIA GPU found (NVML and PCI scan)'])


def test_nvml_bindings_missing_uses_pci_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu.nvml, 'pynvml', None)
    add_pci_gpu(tmp_path, '0000:3b:00.0', device=0x20b1, driver='nvidia')
    write_modules(tmp_path, ['nvidia'], nvidia_version='535.183.01')
    facts = gpu.collect(host(tmp_path))
    assert 'nvidia-ml-py' in facts['nvml_error']
    assert facts['nvml_error'] == (
        'Python NVML bindings not importable by %s: install nvidia-ml-py (pip install nvidia-ml-py, '
        'or the distribution package python3-pynvml); GPU facts come from the PCI sysfs scan instead'
        % sys.executable)
    assert (facts['source'], facts['count'], facts['driver_version']) == ('pci', 1, '535.183.01')
    assert facts['devices'][0]['name'] == 'NVIDIA A100 PCIe 40GB'
    assert facts['notes'] == ['NVML unavailable (%s): 1 GPU(s) identified from PCI IDs; memory and '
                              'compute capability come from the device table' % facts['nvml_error']]


def test_default_lib_is_the_imported_pynvml(tmp_path, monkeypatch):
    lib = FakeNvml([make(H100)])
    monkeypatch.setattr(gpu.nvml, 'pynvml', lib)
    facts = gpu.collect(host(tmp_path))
    assert facts['source'] == 'nvml'
    assert lib.calls == ['nvmlInit', 'nvmlShutdown']


def test_nvml_session_lib_none(monkeypatch):
    monkeypatch.setattr(nvml, 'pynvml', None)
    session = nvml.Nvml()
    with pytest.raises(nvml.NvmlUnavailable, match=r'^nvidia-ml-py \(pynvml\) is not installed$'):
        session.__enter__()
