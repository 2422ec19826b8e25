# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only helpers over sysfs / procfs that every fact collector shares.

All collectors take a ``HostPaths`` so unit tests can point them at a fixture tree
(``HostPaths('/path/to/fixture')``) instead of the live ``/sys`` and ``/proc``.
Every reader returns ``None`` (or an empty container) for a missing or unreadable
file: a VM or container without some sysfs node is normal, never an error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


class HostPaths(object):
    """Where the host's pseudo filesystems live (``/`` on a real host)."""

    def __init__(self, root='/'):
        self.root = root

    def path(self, *parts):
        """Join *parts* (absolute or relative) below the root."""
        rel = os.path.join(*parts).lstrip('/')
        return os.path.join(self.root, rel)

    def sys(self, *parts):
        return self.path('sys', *parts)

    def proc(self, *parts):
        return self.path('proc', *parts)

    def to_host(self, path):
        """Strip the root again: a fixture path back to the path the host would show."""
        root = os.path.abspath(self.root)
        path = os.path.abspath(path)
        if root == '/':
            return path
        if path == root:
            return '/'
        if path.startswith(root + os.sep):
            return path[len(root):]
        return path


def read_text(path, default=None):
    """Stripped text content of *path*, or *default* when it cannot be read."""
    try:
        with open(path, 'r') as handle:
            return handle.read().strip()
    except (IOError, OSError, UnicodeDecodeError):
        return default


def read_bytes(path, default=None):
    """Raw content of *path* (e.g. SMBIOS tables), or *default*."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def read_int(path, base=10, default=None):
    """Integer content of *path* (``base=16`` for ``0x10de``-style files), or *default*."""
    text = read_text(path)
    if text is None:
        return default
    try:
        return int(text, base)
    except ValueError:
        return default


def list_dir(path):
    """Sorted entries of directory *path*; empty list when it does not exist."""
    try:
        return sorted(os.listdir(path))
    except (IOError, OSError):
        return []


def link_name(path):
    """Basename of the symlink target of *path* (e.g. the bound driver), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except (IOError, OSError):
        return None


def loaded_modules(paths):
    """Set of kernel module names currently loaded, from /proc/modules."""
    text = read_text(paths.proc('modules'), default='')
    return set(line.split(' ', 1)[0] for line in text.splitlines() if line.strip())


def pcie_link(paths, pci_address):
    """PCIe link state of a PCI function from sysfs (speed strings, widths as int).

    Returns a dict with ``current_speed``, ``max_speed`` (e.g. ``"16.0 GT/s PCIe"``),
    ``current_gen``/``max_gen`` derived from the speed, ``current_width``/``max_width``.
    Keys are None when the host does not expose them (common in VMs).
    """
    base = paths.sys('bus', 'pci', 'devices', pci_address)
    cur = read_text(os.path.join(base, 'current_link_speed'))
    top = read_text(os.path.join(base, 'max_link_speed'))
    return {
        'current_speed': cur,
        'max_speed': top,
        'current_gen': pcie_gen_from_speed(cur),
        'max_gen': pcie_gen_from_speed(top),
        'current_width': read_int(os.path.join(base, 'current_link_width')),
        'max_width': read_int(os.path.join(base, 'max_link_width')),
    }


_GEN_BY_GTS = {'2.5': 1, '5.0': 2, '5': 2, '8.0': 3, '8': 3, '16.0': 4, '16': 4,
               '32.0': 5, '32': 5, '64.0': 6, '64': 6}


def pcie_gen_from_speed(speed):
    """``"16.0 GT/s PCIe"`` -> 4; None for unknown or missing speeds."""
    if not speed:
        return None
    return _GEN_BY_GTS.get(speed.split(' ', 1)[0])
