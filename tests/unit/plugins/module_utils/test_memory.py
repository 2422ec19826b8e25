# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""memory.collect() against fake host roots built per case in tmp_path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import memory
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.module_utils.units import GB
from ansible_collections.openautoglm.deploy.tests.unit.plugins.module_utils.test_smbios import (
    GIB,
    dimm,
    empty_slot,
    memory_array,
    memory_device,
    table,
)

MIB = 1024 * 1024
BASELINE = 128 * GB


def _write(root, rel, content, mode='w'):
    path = os.path.join(root, rel)
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, mode) as handle:
        handle.write(content)


def build_host(root, meminfo_kib=None, block_size=None, blocks=0, offline=0, dmi=None,
               edac=None):
    """Fake host: /proc/meminfo, memory blocks, raw DMI table, EDAC controllers."""
    root = str(root)
    if meminfo_kib is not None:
        _write(root, 'proc/meminfo',
               'MemTotal:       %d kB\nMemFree:        1024 kB\nMemAvailable:   2048 kB\n'
               % meminfo_kib)
    if block_size is not None:
        _write(root, 'sys/devices/system/memory/block_size_bytes', '%x\n' % block_size)
        _write(root, 'sys/devices/system/memory/auto_online_blocks', 'online\n')
        for index in range(blocks):
            state = 'offline' if index >= blocks - offline else 'online'
            _write(root, 'sys/devices/system/memory/memory%d/state' % index, state + '\n')
    if dmi is not None:
        _write(root, 'sys/firmware/dmi/tables/DMI', dmi, mode='wb')
    for index, mc in enumerate(edac or []):
        base = 'sys/devices/system/edac/mc/mc%d' % index
        _write(root, base + '/mc_name', mc.get('name', 'Skylake Socket#0 IMC#0') + '\n')
        if 'ce' in mc:
            _write(root, base + '/ce_count', '%d\n' % mc['ce'])
        if 'ue' in mc:
            _write(root, base + '/ue_count', '%d\n' % mc['ue'])
        for dimm_index, mode in enumerate(mc.get('modes', [])):
            _write(root, base + '/dimm%d/dimm_edac_mode' % dimm_index, mode + '\n')
        for row, mode in enumerate(mc.get('csrow_modes', [])):
            _write(root, base + '/csrow%d/edac_mode' % row, mode + '\n')
    if edac is not None:
        _write(root, 'sys/devices/system/edac/mc/power/control', 'auto\n')
    return HostPaths(root)


def server_dimms(count, size_gib, mem_type=0x22, ecc=True, start=0x1100):
    width = 72 if ecc else 64
    return [dimm(start + i, size_gib, mem_type=mem_type, total_width=width, data_width=64,
                 locator='DIMM_%s1' % 'ABCDEFGHIJKLMNOP'[i])
            for i in range(count)]


def has_note(result, fragment):
    return any(fragment in note for note in result['notes'])


# Each case: host description, expected subset of facts, note fragments that must appear,
# note fragments that must not appear.
CASES = [
    pytest.param(
        dict(meminfo_kib=int(62.7 * 1024 * 1024), block_size=128 * MIB, blocks=512,
             dmi=table(memory_array(ecc=0x03), *server_dimms(4, 16, mem_type=0x1A, ecc=False))),
        dict(installed_bytes=64 * GIB, installed_source='smbios', smbios_dimm_bytes=64 * GIB,
             memory_blocks_bytes=64 * GIB, dimm_count=4, dimm_types=['DDR4'], ecc='no',
             ecc_source='smbios', ecc_type='None', edac_controllers=0, edac_ce_count=None),
        ['no EDAC memory controllers'], ['ECC unknown', 'ECC-capable'],
        id='workstation-64g-below-baseline-no-ecc'),
    pytest.param(
        dict(meminfo_kib=int(125.6 * 1024 * 1024), block_size=2048 * MIB, blocks=64,
             dmi=table(memory_array(ecc=0x06), *server_dimms(8, 16)),
             edac=[dict(ce=0, ue=0, modes=['SECDED'] * 4), dict(ce=2, ue=0)]),
        dict(installed_bytes=128 * GIB, installed_source='smbios', dimm_count=8,
             dimm_slots=8, dimm_types=['DDR5'], ecc='yes', ecc_source='smbios',
             ecc_type='Multi-bit ECC', edac_controllers=2, edac_ce_count=2, edac_ue_count=0,
             visible_bytes=int(125.6 * 1024 * 1024) * 1024),
        ['137.4 GB installed, 134.9 GB visible'], ['SMBIOS tables not readable'],
        id='server-128gib-installed-125.6gib-visible-ecc-smbios'),
    pytest.param(
        dict(meminfo_kib=int(125.6 * 1024 * 1024), block_size=128 * MIB, blocks=1024,
             offline=16),
        dict(installed_bytes=128 * GIB, installed_source='memory_blocks',
             smbios_dimm_bytes=None, dimms=[], dimm_count=0, dimm_slots=None, dimm_types=[],
             ecc='unknown', ecc_source=None, ecc_type=None, edac_controllers=0,
             edac_ce_count=None, edac_ue_count=None),
        ['SMBIOS tables not readable (/sys/firmware/dmi/tables/DMI): DIMM data unavailable '
         '(VM or not root)', 'no EDAC memory controllers', 'ECC unknown'], [],
        id='vm-no-smbios-memory-blocks-incl-offline'),
    pytest.param(
        dict(meminfo_kib=32 * 1024 * 1024),
        dict(installed_bytes=32 * GIB, installed_source='meminfo', memory_blocks_bytes=None,
             smbios_dimm_bytes=None, visible_bytes=32 * GIB, ecc='unknown'),
        ['no memory block information', 'SMBIOS tables not readable',
         'estimated from MemTotal'], [],
        id='container-meminfo-only'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, block_size=2048 * MIB, blocks=128,
             edac=[dict(ce=3, ue=0, modes=['SECDED', 'SECDED']), dict(ce=1, ue=1)]),
        dict(installed_bytes=256 * GIB, installed_source='memory_blocks', ecc='yes',
             ecc_source='edac', ecc_type='SECDED', edac_controllers=2, edac_ce_count=4,
             edac_ue_count=1),
        ['SMBIOS tables not readable'], ['ECC unknown', 'no EDAC'],
        id='ecc-yes-via-edac-only'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, edac=[dict(csrow_modes=['S4ECD4ED'])]),
        dict(ecc='yes', ecc_source='edac', ecc_type='S4ECD4ED', edac_controllers=1,
             edac_ce_count=None, edac_ue_count=None),
        [], ['ECC unknown'],
        id='ecc-yes-via-edac-legacy-csrow-no-counters'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, edac=[dict(ce=0, ue=0)]),
        dict(ecc='yes', ecc_source='edac', ecc_type=None, edac_controllers=1),
        [], ['ECC unknown'],
        id='ecc-yes-via-edac-without-mode'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, dmi=table(memory_array(ecc=0x02), *server_dimms(2, 32))),
        dict(ecc='unknown', ecc_source=None, ecc_type=None, installed_source='smbios',
             installed_bytes=64 * GIB),
        ['error correction is Unknown: not conclusive', 'ECC unknown',
         'no EDAC memory controllers'], [],
        id='ecc-unknown-smbios-unknown-no-edac'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, dmi=table(memory_array(ecc=0x01), *server_dimms(2, 32)),
             edac=[dict(ce=0, ue=0, modes=['SECDED'])]),
        dict(ecc='yes', ecc_source='edac', ecc_type='SECDED'),
        ['error correction is Other: not conclusive'], ['ECC unknown'],
        id='smbios-other-falls-through-to-edac'),
    pytest.param(
        dict(meminfo_kib=250 * 1024 * 1024, dmi=table(*server_dimms(2, 32))),
        dict(ecc='unknown', ecc_source=None, installed_bytes=64 * GIB),
        ['no physical memory array (type 16)', 'ECC unknown'], [],
        id='smbios-without-type16'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024, edac=[dict(modes=['None', 'None'])]),
        dict(ecc='unknown', ecc_source=None, edac_controllers=1),
        ['edac_mode None', 'ECC unknown'], [],
        id='edac-present-but-reports-no-ecc-mode'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024,
             dmi=table(memory_array(ecc=0x03), *server_dimms(4, 16, ecc=True))),
        dict(ecc='no', ecc_source='smbios', ecc_type='None'),
        ['ECC-capable (total width > data width)'], [],
        id='ecc-dimms-on-non-ecc-array'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024,
             dmi=table(memory_array(ecc=0x03), memory_array(handle=0x2000, use=0x04, ecc=0x06),
                       *server_dimms(2, 32))),
        dict(ecc='no', ecc_source='smbios'),
        [], [],
        id='video-memory-array-does-not-decide-ecc'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024, block_size=128 * MIB, blocks=512,
             dmi=table(memory_array(ecc=0x06), dimm(0x1100, 32), memory_device(0x1101, size=0xFFFF))),
        dict(smbios_dimm_bytes=None, installed_source='memory_blocks',
             installed_bytes=64 * GIB, dimm_count=2),
        ['unknown size for some populated DIMMs'], [],
        id='dimm-of-unknown-size-falls-back-to-blocks'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024, block_size=128 * MIB, blocks=512,
             dmi=table(memory_array(ecc=0x06), *[empty_slot(0x1100 + i) for i in range(4)])),
        dict(smbios_dimm_bytes=None, installed_source='memory_blocks', dimm_count=0,
             dimm_slots=4, dimms=[], ecc='yes'),
        ['4 memory slots, none populated'], [],
        id='smbios-with-only-empty-slots'),
    pytest.param(
        dict(meminfo_kib=60 * 1024 * 1024, block_size=128 * MIB, blocks=512,
             dmi=table(memory_array(ecc=0x06))[:9]),
        dict(smbios_dimm_bytes=None, installed_source='memory_blocks', dimm_count=0,
             ecc='unknown'),
        ['SMBIOS table truncated or corrupt after 0 structures', 'SMBIOS lists no memory devices'],
        [], id='corrupt-smbios'),
    pytest.param(
        dict(),
        dict(visible_bytes=None, installed_bytes=None, installed_source=None, ecc='unknown',
             edac_controllers=0, dimm_count=0),
        ['/proc/meminfo not readable', 'no memory block information',
         'SMBIOS tables not readable'], [],
        id='nothing-readable'),
]


@pytest.mark.parametrize('host, expected, notes, absent_notes', CASES)
def test_collect(tmp_path, host, expected, notes, absent_notes):
    result = memory.collect(build_host(tmp_path, **host))
    for key, value in expected.items():
        assert result[key] == value, key
    for fragment in notes:
        assert has_note(result, fragment), (fragment, result['notes'])
    for fragment in absent_notes:
        assert not has_note(result, fragment), (fragment, result['notes'])


def test_keys_are_the_contract(tmp_path):
    result = memory.collect(build_host(tmp_path, meminfo_kib=1024))
    assert set(result) == set([
        'visible_bytes', 'memory_blocks_bytes', 'smbios_dimm_bytes', 'installed_bytes',
        'installed_source', 'dimms', 'dimm_count', 'dimm_slots', 'dimm_types', 'ecc',
        'ecc_source', 'ecc_type', 'edac_controllers', 'edac_ce_count', 'edac_ue_count',
        'notes'])


def test_installed_vs_visible_against_baseline(tmp_path):
    """128 GiB of DIMMs passes a 128 GB baseline although MemTotal (125.6 GiB) would too,
    while 120 GB of MemTotal alone would not: the installed figure is what to gate on."""
    result = memory.collect(build_host(
        tmp_path, meminfo_kib=int(125.6 * 1024 * 1024),
        dmi=table(memory_array(), *server_dimms(8, 16))))
    assert result['installed_bytes'] == 137438953472
    assert result['installed_bytes'] >= BASELINE
    assert result['visible_bytes'] < result['installed_bytes']


def test_under_baseline(tmp_path):
    result = memory.collect(build_host(
        tmp_path, meminfo_kib=int(94 * 1024 * 1024),
        dmi=table(memory_array(), *server_dimms(6, 16))))
    assert result['installed_bytes'] == 96 * GIB
    assert result['installed_bytes'] < BASELINE


def test_dimm_fact_shape(tmp_path):
    dimm0 = dimm(0x1100, 64, mem_type=0x22, speed=0xFFFF, ext_speed=6400, configured_speed=5600)
    dmi = table(memory_array(), dimm0,
                empty_slot(0x1101), dimm(0x1102, 32, mem_type=0x1A, total_width=64))
    result = memory.collect(build_host(tmp_path, meminfo_kib=90 * 1024 * 1024, dmi=dmi))
    assert result['dimm_count'] == 2
    assert result['dimm_slots'] == 3
    assert result['dimm_types'] == ['DDR4', 'DDR5']
    assert result['smbios_dimm_bytes'] == 96 * GIB
    assert result['dimms'][0] == {
        'locator': 'DIMM_A1', 'bank_locator': 'P0 CHANNEL A', 'size_bytes': 64 * GIB,
        'type': 'DDR5', 'speed_mts': 6400, 'configured_speed_mts': 5600,
        'manufacturer': 'Samsung', 'part_number': 'M321R8GA0BB0-CQKZJ', 'total_width': 72,
        'data_width': 64, 'ecc': True}
    assert result['dimms'][1]['ecc'] is False


@pytest.mark.parametrize('text, expected', [
    ('MemTotal:       131675560 kB\n', 131675560 * 1024),
    ('MemFree: 1 kB\nMemTotal: 2048 kB\n', 2048 * 1024),
    ('MemTotal: lots kB\n', None),
    ('MemTotal:\n', None),
    ('MemFree: 1 kB\n', None),
    ('', None),
])
def test_meminfo_total(tmp_path, text, expected):
    _write(str(tmp_path), 'proc/meminfo', text)
    assert memory.meminfo_total(HostPaths(str(tmp_path))) == expected


def test_memory_blocks_bad_block_size(tmp_path):
    paths = build_host(tmp_path, meminfo_kib=1024, block_size=128 * MIB, blocks=4)
    _write(str(tmp_path), 'sys/devices/system/memory/block_size_bytes', 'garbage\n')
    result = memory.collect(paths)
    assert result['memory_blocks_bytes'] is None
    assert result['installed_source'] == 'meminfo'
