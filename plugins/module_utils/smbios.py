# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Decoder for the raw SMBIOS structure table (DMTF DSP0134), memory structures only.

Linux exposes the table the firmware hands over as ``/sys/firmware/dmi/tables/DMI``
(readable by root only). This module walks that binary table itself instead of running
``dmidecode`` and scraping its output: the structures are a stable, documented format.

Each structure is a 4-byte header (type, length of the formatted area, handle), the rest
of the formatted area, then a set of NUL-terminated strings closed by one more NUL
(``\\0\\0`` when there are no strings). Fields a structure is too short to carry (older
SMBIOS versions) decode as None. A truncated or corrupt table never raises: the walker
returns the structures it could read and flags the table as truncated.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import read_bytes

DMI_TABLE = 'firmware/dmi/tables/DMI'

TYPE_MEMORY_ARRAY = 16
TYPE_MEMORY_DEVICE = 17
TYPE_END_OF_TABLE = 127

# Type 16, offset 0x05 "Use".
MEMORY_ARRAY_USE = {
    0x01: 'Other',
    0x02: 'Unknown',
    0x03: 'System memory',
    0x04: 'Video memory',
    0x05: 'Flash memory',
    0x06: 'Non-volatile RAM',
    0x07: 'Cache memory',
}
USE_SYSTEM_MEMORY = 0x03

# Type 16, offset 0x06 "Memory Error Correction".
ERROR_CORRECTION = {
    0x01: 'Other',
    0x02: 'Unknown',
    0x03: 'None',
    0x04: 'Parity',
    0x05: 'Single-bit ECC',
    0x06: 'Multi-bit ECC',
    0x07: 'CRC',
}
ECC_NONE = (0x03,)
ECC_PRESENT = (0x04, 0x05, 0x06, 0x07)

# Type 17, offset 0x12 "Memory Type".
MEMORY_TYPE = {
    0x01: 'Other',
    0x02: 'Unknown',
    0x03: 'DRAM',
    0x04: 'EDRAM',
    0x05: 'VRAM',
    0x06: 'SRAM',
    0x07: 'RAM',
    0x08: 'ROM',
    0x09: 'Flash',
    0x0A: 'EEPROM',
    0x0B: 'FEPROM',
    0x0C: 'EPROM',
    0x0D: 'CDRAM',
    0x0E: '3DRAM',
    0x0F: 'SDRAM',
    0x10: 'SGRAM',
    0x11: 'RDRAM',
    0x12: 'DDR',
    0x13: 'DDR2',
    0x14: 'DDR2 FB-DIMM',
    0x18: 'DDR3',
    0x19: 'FBD2',
    0x1A: 'DDR4',
    0x1B: 'LPDDR',
    0x1C: 'LPDDR2',
    0x1D: 'LPDDR3',
    0x1E: 'LPDDR4',
    0x1F: 'Logical non-volatile device',
    0x20: 'HBM',
    0x21: 'HBM2',
    0x22: 'DDR5',
    0x23: 'LPDDR5',
    0x24: 'HBM3',
}

_KIB = 1024
_MIB = 1024 * 1024


def read_table(paths):
    """Raw SMBIOS structure table of the host, or None when it cannot be read."""
    return read_bytes(paths.sys(DMI_TABLE))


def parse_structures(data):
    """Walk a raw structure table.

    Returns ``(structures, truncated)``. Each structure is a dict with ``type``,
    ``length``, ``handle``, ``data`` (the formatted area, header included) and
    ``strings`` (list of decoded strings; string number N is ``strings[N - 1]``).
    ``truncated`` is True when the table ended inside a structure or a header was
    invalid; the structures before that point are still returned.
    """
    structures = []
    if not data:
        return structures, False
    offset = 0
    size = len(data)
    while offset < size:
        if offset + 4 > size:
            # Trailing bytes too short for a header: padding if all zero, else truncation.
            return structures, bool(data[offset:].strip(b'\x00'))
        stype, length, handle = struct.unpack_from('<BBH', data, offset)
        if length < 4 or offset + length > size:
            return structures, True
        formatted = data[offset:offset + length]
        strings_start = offset + length
        end = data.find(b'\x00\x00', strings_start)
        truncated = end < 0
        if truncated:
            # Keep the complete strings; the fragment after the last NUL is cut off.
            raw_strings = data[strings_start:].split(b'\x00')[:-1]
        else:
            raw_strings = data[strings_start:end].split(b'\x00')
        strings = [_decode_string(s) for s in raw_strings if s]
        structures.append({
            'type': stype,
            'length': length,
            'handle': handle,
            'data': formatted,
            'strings': strings,
        })
        if truncated:
            return structures, True
        if stype == TYPE_END_OF_TABLE:
            break
        offset = end + 2
    return structures, False


def _decode_string(raw):
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        text = raw.decode('latin-1')
    return text.strip() or None


def _byte(structure, offset):
    data = structure['data']
    if offset + 1 > len(data):
        return None
    return struct.unpack_from('<B', data, offset)[0]


def _word(structure, offset):
    data = structure['data']
    if offset + 2 > len(data):
        return None
    return struct.unpack_from('<H', data, offset)[0]


def _dword(structure, offset):
    data = structure['data']
    if offset + 4 > len(data):
        return None
    return struct.unpack_from('<I', data, offset)[0]


def _qword(structure, offset):
    data = structure['data']
    if offset + 8 > len(data):
        return None
    return struct.unpack_from('<Q', data, offset)[0]


def _string(structure, offset):
    """String referenced by the string-number byte at *offset* (0 = no string)."""
    index = _byte(structure, offset)
    if not index:
        return None
    strings = structure['strings']
    if index > len(strings):
        return None
    return strings[index - 1]


def decode_memory_array(structure):
    """Type 16 (Physical Memory Array) -> dict; missing fields are None."""
    use = _byte(structure, 0x05)
    correction = _byte(structure, 0x06)
    capacity = _dword(structure, 0x07)
    if capacity == 0x80000000:
        capacity_bytes = _qword(structure, 0x0F)
    elif capacity is None:
        capacity_bytes = None
    else:
        capacity_bytes = capacity * _KIB
    return {
        'handle': structure['handle'],
        'use': MEMORY_ARRAY_USE.get(use),
        'system_memory': use == USE_SYSTEM_MEMORY,
        'error_correction_code': correction,
        'error_correction': ERROR_CORRECTION.get(correction),
        'max_capacity_bytes': capacity_bytes,
        'device_count': _word(structure, 0x0D),
    }


def _width(value):
    if value is None or value == 0xFFFF:
        return None
    return value


def _speed(structure, offset, ext_offset):
    """Speed in MT/s; 0 = unknown; 0xFFFF = look in the 32-bit extended field (3.3+)."""
    speed = _word(structure, offset)
    if speed == 0xFFFF:
        extended = _dword(structure, ext_offset)
        speed = extended & 0x7FFFFFFF if extended is not None else None
    return speed or None


def memory_device_size(structure):
    """Installed size of a type 17 device in bytes.

    0 means the slot is empty; None means the size is unknown. ``0x7FFF`` points at the
    32-bit Extended Size field (MB, SMBIOS 2.7+); bit 15 of the 16-bit Size selects KB
    instead of MB granularity.
    """
    size = _word(structure, 0x0C)
    if size is None or size == 0xFFFF:
        return None
    if size == 0x7FFF:
        extended = _dword(structure, 0x1C)
        if extended is None:
            return None
        return (extended & 0x7FFFFFFF) * _MIB
    if size & 0x8000:
        return (size & 0x7FFF) * _KIB
    return size * _MIB


def decode_memory_device(structure):
    """Type 17 (Memory Device) -> dict; missing fields are None."""
    total_width = _width(_word(structure, 0x08))
    data_width = _width(_word(structure, 0x0A))
    if total_width is not None and data_width is not None:
        ecc = total_width > data_width
    else:
        ecc = None
    size_bytes = memory_device_size(structure)
    type_code = _byte(structure, 0x12)
    return {
        'handle': structure['handle'],
        'array_handle': _word(structure, 0x04),
        'locator': _string(structure, 0x10),
        'bank_locator': _string(structure, 0x11),
        'size_bytes': size_bytes,
        'populated': size_bytes != 0,
        'type': MEMORY_TYPE.get(type_code),
        'speed_mts': _speed(structure, 0x15, 0x54),
        'configured_speed_mts': _speed(structure, 0x20, 0x58),
        'manufacturer': _string(structure, 0x17),
        'serial_number': _string(structure, 0x18),
        'part_number': _string(structure, 0x1A),
        'total_width': total_width,
        'data_width': data_width,
        'ecc': ecc,
    }


def memory_inventory(data):
    """Decode the memory structures of a raw table.

    Returns ``{'arrays': [type 16 dicts], 'devices': [type 17 dicts],
    'structure_count': int, 'truncated': bool}``. Structures too short to hold the
    fields that identify them (shorter than SMBIOS 2.1 allows) are skipped.
    """
    structures, truncated = parse_structures(data)
    arrays = []
    devices = []
    for structure in structures:
        if structure['type'] == TYPE_MEMORY_ARRAY and structure['length'] >= 0x0F:
            arrays.append(decode_memory_array(structure))
        elif structure['type'] == TYPE_MEMORY_DEVICE and structure['length'] >= 0x15:
            devices.append(decode_memory_device(structure))
    return {
        'arrays': arrays,
        'devices': devices,
        'structure_count': len(structures),
        'truncated': truncated,
    }
