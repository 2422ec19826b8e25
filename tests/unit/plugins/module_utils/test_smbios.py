# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Raw SMBIOS decoding: tables are built here byte by byte with struct (DSP0134 layout).

The builders (``structure``, ``memory_array``, ``memory_device``, ``table``) are also
used by test_memory.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import smbios

MIB = 1024 * 1024
GIB = 1024 * MIB

# Type 17 field offsets (from the start of the structure, header included).
T17_LENGTH_3_3 = 0x5C
T17_LENGTH_2_8 = 0x28
T17_LENGTH_2_3 = 0x1B
T17_LENGTH_2_1 = 0x15


def structure(stype, handle, body, strings=()):
    """One raw structure: header, formatted area *body*, string-set."""
    head = struct.pack('<BBH', stype, 4 + len(body), handle)
    if strings:
        tail = b'\x00'.join(s.encode('utf-8') for s in strings) + b'\x00\x00'
    else:
        tail = b'\x00\x00'
    return head + bytes(body) + tail


def end_of_table(handle=0xFFFF):
    return structure(127, handle, b'')


def memory_array(handle=0x1000, use=0x03, ecc=0x06, max_kb=0x80000000,
                 ext_max_bytes=2 * 1024 * GIB, devices=16, length=0x17):
    """Type 16 Physical Memory Array (length 0x0F = SMBIOS 2.1, 0x17 = 2.7+)."""
    body = struct.pack('<BBBIHH', 0x03, use, ecc, max_kb, 0xFFFE, devices)
    body += struct.pack('<Q', ext_max_bytes)
    return structure(16, handle, body[:length - 4])


def memory_device(handle=0x1100, array=0x1000, size=0x7FFF, ext_size_mb=0,
                  total_width=72, data_width=64, mem_type=0x22, speed=4800,
                  configured_speed=4400, ext_speed=0, ext_configured_speed=0,
                  locator='DIMM_A1', bank='P0 CHANNEL A', manufacturer='Samsung',
                  serial='0x12345678', part='M321R8GA0BB0-CQKZJ',
                  length=T17_LENGTH_3_3):
    """Type 17 Memory Device; *length* truncates it to an older SMBIOS layout."""
    body = bytearray(T17_LENGTH_3_3 - 4)
    strings = [locator, bank, manufacturer, serial, 'AssetTag', part]

    def put(fmt, offset, value):
        struct.pack_into(fmt, body, offset - 4, value)

    put('<H', 0x04, array)
    put('<H', 0x06, 0xFFFE)
    put('<H', 0x08, total_width)
    put('<H', 0x0A, data_width)
    put('<H', 0x0C, size)
    put('<B', 0x0E, 0x09)  # DIMM
    put('<B', 0x10, 1)
    put('<B', 0x11, 2)
    put('<B', 0x12, mem_type)
    put('<H', 0x15, speed)
    put('<B', 0x17, 3)
    put('<B', 0x18, 4)
    put('<B', 0x19, 5)
    put('<B', 0x1A, 6)
    put('<I', 0x1C, ext_size_mb)
    put('<H', 0x20, configured_speed)
    put('<I', 0x54, ext_speed)
    put('<I', 0x58, ext_configured_speed)
    return structure(17, handle, bytes(body[:length - 4]), strings)


def dimm(handle, size_gib, **kwargs):
    """A populated DIMM of *size_gib* GiB (extended size field, as firmware does >= 32 GiB)."""
    mb = size_gib * 1024
    if mb < 0x7FFF:
        return memory_device(handle=handle, size=mb, **kwargs)
    return memory_device(handle=handle, size=0x7FFF, ext_size_mb=mb, **kwargs)


def empty_slot(handle, locator='DIMM_B1', **kwargs):
    return memory_device(handle=handle, size=0, total_width=0xFFFF, data_width=0xFFFF,
                         mem_type=0x02, speed=0, configured_speed=0, locator=locator,
                         manufacturer='NO DIMM', part='NO DIMM', serial='NO DIMM', **kwargs)


def table(*structures):
    return b''.join(structures) + end_of_table()


def first_device(raw):
    inventory = smbios.memory_inventory(table(raw))
    assert len(inventory['devices']) == 1
    return inventory['devices'][0]


# --- structure walker -------------------------------------------------------------

def test_walker_reads_headers_and_strings():
    raw = table(structure(0, 0x0000, b'\x01\x02', ['Vendor', 'Version']),
                structure(1, 0x0001, b'\x00' * 4))
    structures, truncated = smbios.parse_structures(raw)
    assert truncated is False
    assert [(s['type'], s['handle'], s['length']) for s in structures] == [
        (0, 0x0000, 6), (1, 0x0001, 8), (127, 0xFFFF, 4)]
    assert structures[0]['strings'] == ['Vendor', 'Version']
    assert structures[1]['strings'] == []


def test_walker_stops_at_end_of_table():
    raw = table(structure(1, 1, b'')) + structure(17, 2, b'\x00' * 20)
    structures, truncated = smbios.parse_structures(raw)
    assert [s['type'] for s in structures] == [1, 127]
    assert truncated is False


@pytest.mark.parametrize('data', [None, b''])
def test_walker_empty_input(data):
    assert smbios.parse_structures(data) == ([], False)


def test_walker_ignores_zero_padding_after_last_structure():
    raw = structure(1, 1, b'') + b'\x00\x00'
    structures, truncated = smbios.parse_structures(raw)
    assert [s['type'] for s in structures] == [1]
    assert truncated is False


def test_walker_invalid_length_is_truncation():
    raw = structure(16, 1, b'\x00' * 11) + struct.pack('<BBH', 17, 2, 0x20) + b'\x00' * 30
    structures, truncated = smbios.parse_structures(raw)
    assert [s['type'] for s in structures] == [16]
    assert truncated is True


def test_walker_cut_inside_string_set_keeps_formatted_area():
    raw = memory_device(size=16384)[:-10]
    structures, truncated = smbios.parse_structures(raw)
    assert truncated is True
    assert len(structures) == 1
    device = smbios.decode_memory_device(structures[0])
    assert device['size_bytes'] == 16 * GIB
    assert device['locator'] == 'DIMM_A1'
    assert device['part_number'] is None  # its string was cut off


def test_truncated_table_never_raises_and_keeps_a_prefix():
    """Every cut of a real-looking table decodes without exceptions."""
    parts = [memory_array(), dimm(0x1100, 64), empty_slot(0x1101), dimm(0x1102, 64),
             end_of_table()]
    full = b''.join(parts)
    # A cut exactly between structures is indistinguishable from a table without its
    # end-of-table marker (which some firmware omits): not flagged.
    boundaries = set(len(b''.join(parts[:n])) for n in range(len(parts) + 1))
    complete = smbios.memory_inventory(full)
    assert len(complete['devices']) == 3 and complete['truncated'] is False
    for cut in range(len(full)):
        inventory = smbios.memory_inventory(full[:cut])
        assert len(inventory['devices']) <= 3
        assert len(inventory['arrays']) <= 1
        for device in inventory['devices']:
            assert device['size_bytes'] in (0, 64 * GIB, None)
        assert inventory['truncated'] is (cut not in boundaries)


def test_garbage_does_not_raise():
    for junk in (b'\x11\xff\x00' + b'\xa5' * 300, b'\xa5' * 7, b'\x11\x02\x00\x00' * 9,
                 b'\x10\x30' + b'\x00' * 20):
        inventory = smbios.memory_inventory(junk)
        assert inventory['truncated'] is True
        for device in inventory['devices']:
            assert device['locator'] is None  # no complete string in the junk


def test_structures_too_short_for_their_type_are_skipped():
    short17 = structure(17, 3, b'\x00' * 8)
    short16 = structure(16, 4, b'\x00' * 4)
    inventory = smbios.memory_inventory(table(short17, short16))
    assert inventory['devices'] == [] and inventory['arrays'] == []
    assert inventory['structure_count'] == 3


# --- type 17 ----------------------------------------------------------------------

def test_memory_device_ddr5_rdimm():
    device = first_device(dimm(0x1100, 64))
    assert device == {
        'handle': 0x1100,
        'array_handle': 0x1000,
        'locator': 'DIMM_A1',
        'bank_locator': 'P0 CHANNEL A',
        'size_bytes': 64 * GIB,
        'populated': True,
        'type': 'DDR5',
        'speed_mts': 4800,
        'configured_speed_mts': 4400,
        'manufacturer': 'Samsung',
        'serial_number': '0x12345678',
        'part_number': 'M321R8GA0BB0-CQKZJ',
        'total_width': 72,
        'data_width': 64,
        'ecc': True,
    }


@pytest.mark.parametrize('size, ext_size_mb, expected', [
    pytest.param(0, 0, 0, id='empty-slot'),
    pytest.param(16384, 0, 16 * GIB, id='mb-units'),
    pytest.param(0x8000 | 512, 0, 512 * 1024, id='kb-units-bit15'),
    pytest.param(0x8000 | 0x7FFE, 0, 0x7FFE * 1024, id='kb-units-max'),
    pytest.param(0x7FFF, 32768, 32 * GIB, id='extended-32g'),
    pytest.param(0x7FFF, 262144, 256 * GIB, id='extended-256g'),
    pytest.param(0x7FFF, 0x80000000 | 65536, 64 * GIB, id='extended-reserved-bit31'),
    pytest.param(0xFFFF, 0, None, id='unknown'),
])
def test_memory_device_size(size, ext_size_mb, expected):
    device = first_device(memory_device(size=size, ext_size_mb=ext_size_mb))
    assert device['size_bytes'] == expected
    assert device['populated'] is (expected != 0)


def test_extended_size_missing_in_old_structure_is_unknown():
    device = first_device(memory_device(size=0x7FFF, ext_size_mb=32768, length=T17_LENGTH_2_3))
    assert device['size_bytes'] is None


def test_empty_slot():
    device = first_device(empty_slot(0x1101))
    assert device['populated'] is False
    assert device['size_bytes'] == 0
    assert device['total_width'] is None and device['data_width'] is None
    assert device['ecc'] is None
    assert device['speed_mts'] is None and device['configured_speed_mts'] is None
    assert device['type'] == 'Unknown'


@pytest.mark.parametrize('code, name', [
    (0x18, 'DDR3'), (0x1A, 'DDR4'), (0x22, 'DDR5'), (0x1E, 'LPDDR4'), (0x23, 'LPDDR5'),
    (0x21, 'HBM2'), (0x24, 'HBM3'), (0x20, 'HBM'), (0x02, 'Unknown'), (0x07, 'RAM'),
    (0x99, None),
])
def test_memory_type_table(code, name):
    assert first_device(dimm(1, 16, mem_type=code))['type'] == name


@pytest.mark.parametrize('total, data, ecc', [
    (72, 64, True), (80, 64, True), (64, 64, False), (0xFFFF, 64, None), (72, 0xFFFF, None),
])
def test_memory_device_widths(total, data, ecc):
    device = first_device(dimm(1, 32, total_width=total, data_width=data))
    assert device['ecc'] is ecc
    assert device['total_width'] == (None if total == 0xFFFF else total)
    assert device['data_width'] == (None if data == 0xFFFF else data)


@pytest.mark.parametrize('kwargs, speed, configured', [
    pytest.param({'speed': 3200, 'configured_speed': 2933}, 3200, 2933, id='plain'),
    pytest.param({'speed': 0xFFFF, 'ext_speed': 70000, 'configured_speed': 0xFFFF,
                  'ext_configured_speed': 68000}, 70000, 68000, id='extended-3.3'),
    pytest.param({'speed': 0xFFFF, 'ext_speed': 0x80000000 | 9000,
                  'configured_speed': 8800}, 9000, 8800, id='extended-reserved-bit'),
    pytest.param({'speed': 0, 'configured_speed': 0}, None, None, id='unknown'),
    pytest.param({'speed': 0xFFFF, 'configured_speed': 0xFFFF, 'ext_speed': 7000,
                  'length': T17_LENGTH_2_8}, None, None, id='extended-missing-in-2.8'),
    pytest.param({'speed': 2400, 'configured_speed': 2133, 'length': T17_LENGTH_2_3},
                 2400, None, id='no-configured-speed-in-2.3'),
    pytest.param({'speed': 2400, 'length': T17_LENGTH_2_1}, None, None, id='smbios-2.1'),
])
def test_memory_device_speeds(kwargs, speed, configured):
    device = first_device(dimm(1, 16, **kwargs))
    assert device['speed_mts'] == speed
    assert device['configured_speed_mts'] == configured


def test_smbios_2_1_device_has_strings_but_no_vendor_fields():
    device = first_device(memory_device(size=1024, length=T17_LENGTH_2_1))
    assert device['size_bytes'] == GIB
    assert device['locator'] == 'DIMM_A1'
    assert device['manufacturer'] is None and device['part_number'] is None


def test_string_number_out_of_range_is_none():
    raw = bytearray(memory_device(size=1024))
    raw[0x1A] = 42  # part number -> string 42 that does not exist
    device = first_device(bytes(raw))
    assert device['part_number'] is None
    assert device['manufacturer'] == 'Samsung'


def test_strings_are_stripped_and_non_utf8_survives():
    raw = structure(17, 1, bytes(memory_device(size=1024)[4:T17_LENGTH_3_3]), [])
    raw = raw[:-2] + b'  DIMM 0  \x00B\xe4nk\x00\x00'
    device = first_device(raw)
    assert device['locator'] == 'DIMM 0'
    assert device['bank_locator'] == u'B\xe4nk'


# --- type 16 ----------------------------------------------------------------------

@pytest.mark.parametrize('code, name', [
    (0x01, 'Other'), (0x02, 'Unknown'), (0x03, 'None'), (0x04, 'Parity'),
    (0x05, 'Single-bit ECC'), (0x06, 'Multi-bit ECC'), (0x07, 'CRC'), (0x42, None),
])
def test_memory_array_error_correction(code, name):
    array = smbios.memory_inventory(table(memory_array(ecc=code)))['arrays'][0]
    assert array['error_correction_code'] == code
    assert array['error_correction'] == name


@pytest.mark.parametrize('kwargs, expected', [
    pytest.param({}, 2 * 1024 * GIB, id='extended-max-capacity'),
    pytest.param({'max_kb': 256 * 1024 * 1024}, 256 * GIB, id='kb'),
    pytest.param({'length': 0x0F, 'max_kb': 64 * 1024 * 1024}, 64 * GIB, id='smbios-2.1'),
    pytest.param({'length': 0x0F}, None, id='extended-missing'),
])
def test_memory_array_capacity(kwargs, expected):
    array = smbios.memory_inventory(table(memory_array(**kwargs)))['arrays'][0]
    assert array['max_capacity_bytes'] == expected


@pytest.mark.parametrize('use, name, system', [
    (0x03, 'System memory', True), (0x04, 'Video memory', False),
    (0x05, 'Flash memory', False), (0x02, 'Unknown', False),
])
def test_memory_array_use(use, name, system):
    array = smbios.memory_inventory(table(memory_array(use=use)))['arrays'][0]
    assert array['use'] == name
    assert array['system_memory'] is system
    assert array['device_count'] == 16


def test_read_table_missing_file(tmp_path):
    from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
    assert smbios.read_table(HostPaths(str(tmp_path))) is None
