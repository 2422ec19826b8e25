# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVMe controllers and namespaces from sysfs, and which disks back a given path.

Controllers are ``/sys/class/nvme/nvmeN``. Namespaces are the block devices
``/sys/block/nvmeXnY``; with native NVMe multipath the visible ``nvmeXnY`` hangs below
the ``nvme-subsysX`` device and the per-controller path devices ``nvmeXcCnY`` are
hidden, so namespaces are attributed to their controller through the ``device`` link,
the path devices or, last, the name prefix. Sysfs ``size`` files count 512-byte sectors
whatever the logical block size is.

For a path (the model directory), the nearest existing ancestor is stat'ed; its device
number leads to ``/sys/dev/block/M:m``; when that does not exist (overlay, tmpfs, btrfs
anonymous devices) the longest-prefix entry of ``/proc/self/mountinfo`` and its source
device are used instead. Partitions resolve to their parent disk, device-mapper and md
devices to their ``slaves``, recursively. All sizes are bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import (
    link_name,
    list_dir,
    pcie_link,
    read_int,
    read_text,
)

DEFAULT_PATH = '/data/models'
SECTOR_BYTES = 512

_CTRL_RE = re.compile(r'^nvme(\d+)$')
_NS_RE = re.compile(r'^nvme(\d+)n(\d+)$')
_PATH_DEV_RE = re.compile(r'^nvme(\d+)c(\d+)n(\d+)$')
_PCI_ADDR_RE = re.compile(r'^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$')
_PART_SUFFIX_RE = re.compile(r'^(.*\d)p\d+$|^(.*\D)\d+$')

OVERLAY_FS = ('overlay', 'aufs', 'overlayfs', 'fuse-overlayfs')
MEMORY_FS = ('tmpfs', 'ramfs')
NETWORK_FS = ('nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ceph', 'glusterfs', 'lustre',
              'beegfs', 'gpfs', 'fuse.sshfs', 'fuse.glusterfs', 'fuse.ceph')


def _stat(path):
    return os.stat(path)


def _statvfs(path):
    return os.statvfs(path)


# --- mountinfo --------------------------------------------------------------------

def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """``/proc/self/mountinfo`` -> list of dicts (dev, root, mountpoint, fstype, source)."""
    mounts = []
    for line in (text or '').splitlines():
        fields = line.split()
        if '-' not in fields:
            continue
        sep = fields.index('-')
        if sep < 6 or len(fields) < sep + 3:
            continue
        mounts.append({
            'dev': fields[2],
            'root': _unescape(fields[3]),
            'mountpoint': _unescape(fields[4]),
            'fstype': fields[sep + 1],
            'source': _unescape(fields[sep + 2]),
        })
    return mounts


def _is_under(path, mountpoint):
    if mountpoint == '/':
        return path.startswith('/')
    return path == mountpoint or path.startswith(mountpoint.rstrip('/') + '/')


def find_mount(mounts, path):
    """Mount entry in effect for *path*: longest mountpoint prefix, the last one mounted."""
    best = None
    for mount in mounts:
        if _is_under(path, mount['mountpoint']):
            if best is None or len(mount['mountpoint']) >= len(best['mountpoint']):
                best = mount
    return best


# --- block devices ----------------------------------------------------------------

def _block_dir(paths, name):
    """Sysfs directory of block device *name* (disk or partition), or None."""
    for candidate in (paths.sys('class', 'block', name), paths.sys('block', name)):
        if os.path.isdir(candidate):
            return candidate
    return None


def _mountpoints(mounts, dev, name):
    found = []
    for mount in mounts:
        if (dev and mount['dev'] == dev) or mount['source'] == '/dev/' + name:
            if mount['mountpoint'] not in found:
                found.append(mount['mountpoint'])
    return found


def _size_bytes(directory):
    sectors = read_int(os.path.join(directory, 'size'))
    return None if sectors is None else sectors * SECTOR_BYTES


def _partitions(directory, name, mounts):
    parts = []
    for entry in list_dir(directory):
        part_dir = os.path.join(directory, entry)
        if entry.startswith(name) and os.path.isfile(os.path.join(part_dir, 'partition')):
            parts.append({
                'name': entry,
                'block_device': '/dev/' + entry,
                'size_bytes': _size_bytes(part_dir),
                'mountpoints': _mountpoints(mounts, read_text(os.path.join(part_dir, 'dev')),
                                            entry),
            })
    return parts


def _namespace(name, directory, mounts):
    return {
        'name': name,
        'block_device': '/dev/' + name,
        'size_bytes': _size_bytes(directory),
        'logical_block_size': read_int(os.path.join(directory, 'queue', 'logical_block_size')),
        'mountpoints': _mountpoints(mounts, read_text(os.path.join(directory, 'dev')), name),
        'partitions': _partitions(directory, name, mounts),
    }


def _namespace_owner(paths, name, controllers, block_entries):
    """Controller name a namespace block device belongs to, or None."""
    device = link_name(paths.sys('block', name, 'device'))
    if device in controllers:
        return device
    subsys, nsid = _NS_RE.match(name).groups()
    # Native multipath: hidden path devices nvme<subsys>c<ctrl>n<nsid> name the controllers.
    ctrl_ids = sorted(int(m.group(2)) for m in (_PATH_DEV_RE.match(e) for e in block_entries)
                      if m and m.group(1) == subsys and m.group(3) == nsid)
    for ctrl_id in ctrl_ids:
        if 'nvme%d' % ctrl_id in controllers:
            return 'nvme%d' % ctrl_id
    if device and device.startswith('nvme-subsys'):
        for entry in list_dir(paths.sys('class', 'nvme-subsystem', device)):
            if entry in controllers:
                return entry
    prefix = 'nvme' + subsys
    return prefix if prefix in controllers else None


def _controller(paths, name):
    base = paths.sys('class', 'nvme', name)
    transport = read_text(os.path.join(base, 'transport'))
    address = read_text(os.path.join(base, 'address'))
    device = link_name(os.path.join(base, 'device'))
    pci_address = None
    if device and _PCI_ADDR_RE.match(device) and transport in (None, 'pcie'):
        pci_address = device
        transport = transport or 'pcie'
    elif transport == 'pcie' and address and _PCI_ADDR_RE.match(address):
        pci_address = address
    return {
        'name': name,
        'model': read_text(os.path.join(base, 'model')),
        'serial': read_text(os.path.join(base, 'serial')),
        'firmware': read_text(os.path.join(base, 'firmware_rev')),
        'transport': transport,
        'address': address or pci_address,
        'pcie': pcie_link(paths, pci_address) if pci_address else None,
        'namespaces': [],
    }


def controllers_and_namespaces(paths, mounts):
    """``(controllers, unattributed_namespaces)`` with namespaces filled in."""
    names = [n for n in list_dir(paths.sys('class', 'nvme')) if _CTRL_RE.match(n)]
    names.sort(key=lambda n: int(_CTRL_RE.match(n).group(1)))
    controllers = dict((name, _controller(paths, name)) for name in names)
    block_entries = list_dir(paths.sys('block'))
    unattributed = []
    seen = set()
    for entry in sorted(block_entries, key=_natural_key):
        if not _NS_RE.match(entry):
            continue
        seen.add(entry)
        namespace = _namespace(entry, paths.sys('block', entry), mounts)
        owner = _namespace_owner(paths, entry, controllers, block_entries)
        if owner:
            controllers[owner]['namespaces'].append(namespace)
        else:
            unattributed.append(namespace)
    # Namespaces only visible below the controller (no /sys/block entry).
    for name in names:
        base = paths.sys('class', 'nvme', name)
        for entry in list_dir(base):
            if _NS_RE.match(entry) and entry not in seen:
                seen.add(entry)
                controllers[name]['namespaces'].append(
                    _namespace(entry, os.path.join(base, entry), mounts))
    return [controllers[name] for name in names], unattributed


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def _partition_parent(paths, name, directory):
    parent = os.path.basename(os.path.dirname(os.path.realpath(directory)))
    if parent != name and os.path.isdir(paths.sys('block', parent)):
        return parent
    for disk in list_dir(paths.sys('block')):
        if os.path.isdir(paths.sys('block', disk, name)):
            return disk
    match = _PART_SUFFIX_RE.match(name)
    if match:
        return match.group(1) or match.group(2)
    return name


def backing_disks(paths, name, _depth=0):
    """Whole disks below block device *name*: partitions -> parent, dm/md -> slaves."""
    directory = _block_dir(paths, name)
    if directory is None or _depth > 16:
        return [name]
    slaves = list_dir(os.path.join(directory, 'slaves'))
    if slaves:
        disks = []
        for slave in slaves:
            for disk in backing_disks(paths, slave, _depth + 1):
                if disk not in disks:
                    disks.append(disk)
        return sorted(disks, key=_natural_key)
    if os.path.isfile(os.path.join(directory, 'partition')):
        parent = _partition_parent(paths, name, directory)
        if parent != name:
            return backing_disks(paths, parent, _depth + 1)
    return [name]


def _dev_block_name(paths, dev):
    if not dev:
        return None
    if not os.path.exists(paths.sys('dev', 'block', dev)):
        return None
    return link_name(paths.sys('dev', 'block', dev))


def _source_block_name(paths, source):
    """Block device name of a mount source such as /dev/nvme0n1p1 or /dev/mapper/vg-lv."""
    if not source or not source.startswith('/dev/'):
        return None
    base = os.path.basename(source)
    if source.startswith('/dev/mapper/'):
        for entry in list_dir(paths.sys('block')):
            if entry.startswith('dm-') and read_text(paths.sys('block', entry, 'dm', 'name')) == base:
                return entry
    if _block_dir(paths, base):
        return base
    real = os.path.basename(os.path.realpath(paths.path(source)))
    if _block_dir(paths, real):
        return real
    return None


def nearest_existing(paths, path):
    """*path* itself if it exists, else its closest existing ancestor."""
    current = os.path.normpath(path)
    while not os.path.exists(paths.path(current)):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _st_dev(stat, full_path):
    try:
        st_dev = stat(full_path).st_dev
    except (IOError, OSError):
        return None
    return '%d:%d' % (os.major(st_dev), os.minor(st_dev))


def model_dir_problem(path, option='path'):
    """Why *path* cannot be the model directory (a sentence naming *option*), or None.

    It must be absolute; it need not exist, but when it does it must be a directory.
    """
    if not os.path.isabs(path):
        return '%s must be absolute, got %r: give the full path of the model directory' % (option, path)
    if os.path.exists(path) and not os.path.isdir(path):
        return ('%s %s exists and is not a directory (a regular file or a device): give the directory '
                'that holds, or will hold, the model weights' % (option, path))
    return None


def path_facts(paths, path, mounts, mounts_readable, namespaces, stat=None, statvfs=None):
    """Where *path* lives: block device, backing disks, filesystem, NVMe or not."""
    stat = stat or _stat
    statvfs = statvfs or _statvfs
    notes = []
    existing = nearest_existing(paths, path)
    if existing != os.path.normpath(path):
        notes.append('model path %s does not exist; judged its nearest existing parent %s'
                     % (path, existing))
    full = paths.path(existing)

    mount = find_mount(mounts, existing)
    if not mounts_readable:
        notes.append('/proc/self/mountinfo not readable: filesystem and mountpoint unknown')

    name = _dev_block_name(paths, _st_dev(stat, full))
    if name is None and mount:
        name = _dev_block_name(paths, mount['dev']) or _source_block_name(paths, mount['source'])
    disks = backing_disks(paths, name) if name else []

    fstype = mount['fstype'] if mount else None
    on_nvme = None
    if disks:
        nvme_disks = [d for d in disks if _NS_RE.match(d)]
        if len(nvme_disks) == len(disks):
            on_nvme = True
            remote = [ns['name'] for ns in namespaces
                      if ns['name'] in disks and ns.get('transport') not in (None, 'pcie')]
            if remote:
                notes.append('path is on NVMe over fabrics namespace(s) %s, not local PCIe'
                             % ', '.join(remote))
        elif all(_NS_RE.match(d) or d.startswith('loop') for d in disks):
            notes.append('path is on a loop device (%s): the disk behind its backing file '
                         'is not resolved' % ', '.join(disks))
        else:
            on_nvme = False
            if nvme_disks:
                notes.append('path spans NVMe and non-NVMe disks (%s): not all NVMe'
                             % ', '.join(disks))
    elif fstype in OVERLAY_FS:
        notes.append('path is on %s (container): backing device unknown' % fstype)
    elif fstype in MEMORY_FS:
        on_nvme = False
        notes.append('path is on %s (memory), not on a disk' % fstype)
    elif fstype in NETWORK_FS or (fstype and fstype.startswith('nfs')):
        on_nvme = False
        notes.append('path is on network filesystem %s (%s), not local NVMe'
                     % (fstype, mount['source']))
    elif mount:
        notes.append('backing block device of %s (%s from %s) unknown'
                     % (mount['mountpoint'], fstype, mount['source']))
    else:
        notes.append('backing block device of %s unknown' % existing)

    size_bytes = free_bytes = None
    try:
        vfs = statvfs(full)
        size_bytes = vfs.f_blocks * vfs.f_frsize
        free_bytes = vfs.f_bavail * vfs.f_frsize
    except (IOError, OSError):
        notes.append('cannot statvfs %s: filesystem size unknown' % existing)

    facts = {
        'path': path,
        'existing_path': existing,
        'block_device': '/dev/' + name if name else None,
        'disks': disks,
        'filesystem': fstype,
        'mountpoint': mount['mountpoint'] if mount else None,
        'on_nvme': on_nvme,
        'size_bytes': size_bytes,
        'free_bytes': free_bytes,
    }
    return facts, notes


def collect(paths, path=DEFAULT_PATH, stat=None, statvfs=None):
    """NVMe facts of the host behind *paths* (a sysfs.HostPaths); see the module docs.

    *stat* and *statvfs* default to os.stat / os.statvfs; tests pass fakes.
    """
    notes = []
    mountinfo = read_text(paths.proc('self', 'mountinfo'))
    mounts = parse_mountinfo(mountinfo)

    controllers, unattributed = controllers_and_namespaces(paths, mounts)
    if not controllers:
        notes.append('no NVMe controllers in /sys/class/nvme (none installed, VM without '
                     'NVMe passthrough, or nvme driver not loaded)')
    for namespace in unattributed:
        notes.append('namespace %s could not be attributed to a controller' % namespace['name'])

    namespaces = []
    for controller in controllers:
        for namespace in controller['namespaces']:
            namespaces.append(dict(namespace, transport=controller['transport']))
    namespaces.extend(unattributed)
    sizes = [ns['size_bytes'] for ns in namespaces if ns['size_bytes'] is not None]

    path_info, path_notes = path_facts(paths, path, mounts, mountinfo is not None, namespaces,
                                       stat=stat, statvfs=statvfs)
    notes.extend(path_notes)

    return {
        'controllers': controllers,
        'count': len(controllers),
        'namespace_count': len(namespaces),
        'total_bytes': sum(sizes),
        'largest_namespace_bytes': max(sizes) if sizes else None,
        'path': path_info,
        'notes': notes,
    }
