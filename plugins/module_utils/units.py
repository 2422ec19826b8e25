# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte units used throughout the collection.

Convention (documented in docs/units.md): thresholds and human-readable figures use
decimal SI units, GB = 10**9 bytes and TB = 10**12 bytes, the units GPU, DIMM and drive
vendors print on their datasheets. Facts always carry exact byte counts; GiB figures are
reported beside GB where people commonly think in binary units (RAM, VRAM).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

KB = 10 ** 3
MB = 10 ** 6
GB = 10 ** 9
TB = 10 ** 12
KiB = 2 ** 10
MiB = 2 ** 20
GiB = 2 ** 30
TiB = 2 ** 40


def to_gb(num_bytes, digits=1):
    """Bytes -> decimal gigabytes, rounded; None stays None."""
    if num_bytes is None:
        return None
    return round(float(num_bytes) / GB, digits)


def to_gib(num_bytes, digits=1):
    """Bytes -> binary gibibytes, rounded; None stays None."""
    if num_bytes is None:
        return None
    return round(float(num_bytes) / GiB, digits)


def human_bytes(num_bytes):
    """``1000204886016`` -> ``'1.0 TB'``; decimal units, one decimal; None -> 'unknown'."""
    if num_bytes is None:
        return 'unknown'
    value = float(num_bytes)
    for unit, size in (('TB', TB), ('GB', GB), ('MB', MB), ('KB', KB)):
        if abs(value) >= size:
            return '%.1f %s' % (value / size, unit)
    return '%d B' % int(value)
