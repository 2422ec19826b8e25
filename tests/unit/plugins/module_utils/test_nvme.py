# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nvme.collect() against fake hosts whose sysfs layout (symlinks included) mirrors Linux."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import nvme
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths
from ansible_collections.openautoglm.deploy.plugins.module_utils.units import GB, TB

SECTOR = 512


class FakeStat(object):
    def __init__(self, st_dev):
        self.st_dev = st_dev


class FakeVfs(object):
    def __init__(self, size, free, frsize=4096):
        self.f_frsize = frsize
        self.f_blocks = size // frsize
        self.f_bavail = free // frsize


class Host(object):
    """Builds a fake root: /sys with real-looking symlinks, /proc/self/mountinfo, dirs.

    ``stat``/``statvfs`` answer like the kernel would for paths below the mounts
    registered with ``mount()``: st_dev of the longest-prefix mount.
    """

    def __init__(self, root):
        self.root = str(root)
        self.paths = HostPaths(self.root)
        self.mounts = []
        self.next_minor = {259: 0, 253: 0, 9: 0}
        self.devs = {}  # block device name -> "M:m"
        self.write('sys/class/block/.keep', '')
        self.write('sys/block/.keep', '')

    # -- files ---------------------------------------------------------------------
    def write(self, rel, content):
        path = os.path.join(self.root, rel)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, 'w') as handle:
            handle.write(content)

    def link(self, rel, target_rel):
        """Symlink root/rel -> root/target_rel, relative like sysfs links."""
        path = os.path.join(self.root, rel)
        if os.path.lexists(path):
            return
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        target = os.path.join(self.root, target_rel)
        relative = os.path.relpath(target, os.path.dirname(path))
        if os.path.basename(relative) == '..':
            # sysfs never links to a bare '..': it climbs once more and names the target.
            relative = os.path.join(relative, '..', os.path.basename(target))
        os.symlink(relative, path)

    def mkdir(self, host_path):
        path = self.paths.path(host_path)
        if not os.path.isdir(path):
            os.makedirs(path)

    # -- block devices -------------------------------------------------------------
    def _blockdev(self, name, directory, size_bytes, major, minor, partition=None):
        self.write(directory + '/size', '%d\n' % (size_bytes // SECTOR))
        self.write(directory + '/dev', '%d:%d\n' % (major, minor))
        if partition is not None:
            self.write(directory + '/partition', '%d\n' % partition)
        else:
            self.write(directory + '/queue/logical_block_size', '512\n')
            self.link('sys/block/' + name, directory)
        self.link('sys/class/block/' + name, directory)
        self.link('sys/dev/block/%d:%d' % (major, minor), directory)
        self.devs[name] = '%d:%d' % (major, minor)

    def _minor(self, major):
        minor = self.next_minor[major]
        self.next_minor[major] += 1
        return minor

    def _disk_with_parts(self, name, directory, size_bytes, parts, major, sep, lbs=512):
        self._blockdev(name, directory, size_bytes, major, self._minor(major) if major != 8
                       else self.sd_minor(name))
        if lbs != 512:
            self.write(directory + '/queue/logical_block_size', '%d\n' % lbs)
        for index, part_size in enumerate(parts or [], 1):
            pname = '%s%s%d' % (name, sep, index)
            minor = self._minor(major) if major != 8 else self.sd_minor(name) + index
            self._blockdev(pname, directory + '/' + pname, part_size, major, minor,
                           partition=index)

    @staticmethod
    def sd_minor(name):
        return (ord(name[2]) - ord('a')) * 16

    def pci_function(self, address, speed='16.0 GT/s PCIe', width=4):
        directory = 'sys/devices/pci0000:00/0000:00:01.1/' + address
        self.write(directory + '/current_link_speed', speed + '\n')
        self.write(directory + '/max_link_speed', speed + '\n')
        self.write(directory + '/current_link_width', '%d\n' % width)
        self.write(directory + '/max_link_width', '%d\n' % width)
        self.link('sys/bus/pci/devices/' + address, directory)
        return directory

    def nvme(self, index, namespaces, pci='0000:%02x:00.0', model='SAMSUNG MZQL23T8HCLS-00A07',
             transport='pcie', address=None, multipath=False, lbs=512):
        """Controller nvme<index>; *namespaces* = [(nsid, size_bytes, [partition sizes])]."""
        name = 'nvme%d' % index
        if transport == 'pcie':
            pci = pci % (index + 1) if '%' in pci else pci
            parent = self.pci_function(pci)
            address = address or pci
        else:
            parent = 'sys/devices/virtual/nvme-fabrics/ctl'
            self.write(parent + '/uevent', '')
        ctrl = parent + '/nvme/' + name
        self.write(ctrl + '/model', model + '    \n')
        self.write(ctrl + '/serial', 'S64HNE0T%06d\n' % index)
        self.write(ctrl + '/firmware_rev', 'GDC5602Q\n')
        self.write(ctrl + '/transport', transport + '\n')
        self.write(ctrl + '/address', (address or '') + '\n')
        self.link(ctrl + '/device', parent)
        self.link('sys/class/nvme/' + name, ctrl)
        for nsid, size_bytes, parts in namespaces:
            if multipath:
                subsys = 'sys/devices/virtual/nvme-subsystem/nvme-subsys%d' % index
                self.link('sys/class/nvme-subsystem/nvme-subsys%d' % index, subsys)
                self.link(subsys + '/' + name, ctrl)
                head = 'nvme%dn%d' % (index, nsid)
                self._disk_with_parts(head, subsys + '/' + head, size_bytes, parts, 259, 'p', lbs)
                self.link(subsys + '/' + head + '/device', subsys)
                hidden = 'nvme%dc%dn%d' % (index, index, nsid)
                self.write(ctrl + '/' + hidden + '/size', '%d\n' % (size_bytes // SECTOR))
                self.link('sys/block/' + hidden, ctrl + '/' + hidden)
            else:
                ns = 'nvme%dn%d' % (index, nsid)
                self._disk_with_parts(ns, ctrl + '/' + ns, size_bytes, parts, 259, 'p', lbs)
                self.link(ctrl + '/' + ns + '/device', ctrl)
        return ctrl

    def sata(self, name, size_bytes, parts=None):
        directory = ('sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/'
                     'block/' + name)
        self._disk_with_parts(name, directory, size_bytes, parts, 8, '')

    def virtual(self, kind, index, slaves, dm_name=None):
        """dm-<index> or md<index> with *slaves* (block device names)."""
        name = 'dm-%d' % index if kind == 'dm' else 'md%d' % index
        major = 253 if kind == 'dm' else 9
        directory = 'sys/devices/virtual/block/' + name
        size = sum(int(open(os.path.join(self.root, 'sys/class/block', s, 'size')).read())
                   for s in slaves) * SECTOR
        self._blockdev(name, directory, size, major, self._minor(major))
        for slave in slaves:
            target = os.path.realpath(os.path.join(self.root, 'sys/class/block', slave))
            self.link(directory + '/slaves/' + slave, os.path.relpath(target, self.root))
        if dm_name:
            self.write(directory + '/dm/name', dm_name + '\n')
        return name

    # -- mounts --------------------------------------------------------------------
    def mount(self, mountpoint, fstype, source, dev=None, size=2 * TB, free=TB):
        """Mount *source* (a block device name or a free-form source) at *mountpoint*."""
        if dev is None:
            dev = self.devs.get(source, '0:%d' % (40 + len(self.mounts)))
        if source in self.devs:
            source = '/dev/' + source
        self.mounts.append(dict(mountpoint=mountpoint, fstype=fstype, source=source, dev=dev,
                                size=size, free=free))
        self.mkdir(mountpoint)

    def write_mountinfo(self):
        lines = []
        for index, mount in enumerate(self.mounts):
            lines.append('%d %d %s / %s rw,relatime shared:%d - %s %s rw' % (
                20 + index, 1 if index == 0 else 20, mount['dev'],
                mount['mountpoint'].replace(' ', '\\040'), index + 1, mount['fstype'],
                mount['source']))
        self.write('proc/self/mountinfo', '\n'.join(lines) + '\n')

    def _mount_of(self, full_path):
        host_path = self.paths.to_host(full_path)
        return nvme.find_mount(self.mounts, host_path)

    def stat(self, full_path):
        if not os.path.exists(full_path):
            raise OSError(2, 'No such file or directory', full_path)
        mount = self._mount_of(full_path) or {'dev': '0:99'}
        major, minor = (int(x) for x in mount['dev'].split(':'))
        return FakeStat(os.makedev(major, minor))

    def statvfs(self, full_path):
        mount = self._mount_of(full_path) or {'size': 0, 'free': 0}
        return FakeVfs(mount['size'], mount['free'])

    def collect(self, path='/data/models', mountinfo=True):
        if mountinfo:
            self.write_mountinfo()
        return nvme.collect(self.paths, path, stat=self.stat, statvfs=self.statvfs)


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def base_system(host, root_source='sda2'):
    """A root filesystem on *root_source* (build that device first)."""
    host.mount('/', 'ext4', root_source)


# --- inventory --------------------------------------------------------------------

def test_no_nvme_at_all(host):
    host.mount('/', 'overlay', 'overlay')
    host.mkdir('/data/models')
    result = host.collect()
    assert result['controllers'] == []
    assert result['count'] == 0
    assert result['namespace_count'] == 0
    assert result['total_bytes'] == 0
    assert result['largest_namespace_bytes'] is None
    assert any(n.startswith('no NVMe controllers in /sys/class/nvme') for n in result['notes'])


def test_empty_root_never_raises(tmp_path):
    result = nvme.collect(HostPaths(str(tmp_path)), '/data/models')
    assert result['count'] == 0
    assert result['path']['existing_path'] == '/'
    assert result['path']['on_nvme'] is None
    assert result['path']['block_device'] is None
    assert any('mountinfo not readable' in n for n in result['notes'])


def test_sata_only_host(host):
    host.sata('sda', 960 * GB, [GB, 959 * GB - 2 ** 20])
    host.mount('/', 'ext4', 'sda2')
    host.mount('/boot/efi', 'vfat', 'sda1')
    host.mkdir('/data/models')
    result = host.collect()
    assert result['count'] == 0
    assert result['path'] == {
        'path': '/data/models', 'existing_path': '/data/models', 'block_device': '/dev/sda2',
        'disks': ['sda'], 'filesystem': 'ext4', 'mountpoint': '/', 'on_nvme': False,
        'size_bytes': 2 * TB, 'free_bytes': TB}


def test_one_3_84tb_nvme(host):
    size = 3840755982336
    host.nvme(0, [(1, size, [GB, size - GB - 2 ** 20])])
    host.mount('/', 'ext4', 'nvme0n1p2', size=3800 * GB, free=3000 * GB)
    host.mount('/boot/efi', 'vfat', 'nvme0n1p1')
    host.mkdir('/data/models')
    result = host.collect()
    assert result['count'] == 1
    controller = result['controllers'][0]
    assert controller['name'] == 'nvme0'
    assert controller['model'] == 'SAMSUNG MZQL23T8HCLS-00A07'
    assert controller['serial'] == 'S64HNE0T000000'
    assert controller['firmware'] == 'GDC5602Q'
    assert controller['transport'] == 'pcie'
    assert controller['address'] == '0000:01:00.0'
    assert controller['pcie'] == {
        'current_speed': '16.0 GT/s PCIe', 'max_speed': '16.0 GT/s PCIe', 'current_gen': 4,
        'max_gen': 4, 'current_width': 4, 'max_width': 4}
    assert controller['namespaces'] == [{
        'name': 'nvme0n1', 'block_device': '/dev/nvme0n1', 'size_bytes': size,
        'logical_block_size': 512, 'mountpoints': [],
        'partitions': [
            {'name': 'nvme0n1p1', 'block_device': '/dev/nvme0n1p1', 'size_bytes': GB,
             'mountpoints': ['/boot/efi']},
            {'name': 'nvme0n1p2', 'block_device': '/dev/nvme0n1p2',
             'size_bytes': size - GB - 2 ** 20, 'mountpoints': ['/']}]}]
    assert result['namespace_count'] == 1
    assert result['total_bytes'] == size
    assert result['largest_namespace_bytes'] == size
    assert result['largest_namespace_bytes'] >= 3.84 * TB
    path = result['path']
    assert path['block_device'] == '/dev/nvme0n1p2'
    assert path['disks'] == ['nvme0n1']
    assert path['on_nvme'] is True
    assert path['size_bytes'] == 3800 * GB and path['free_bytes'] == 3000 * GB
    assert result['notes'] == []


def test_size_is_sectors_even_with_4k_blocks(host):
    host.nvme(0, [(1, 512110190592, [])], model='WDC PC SN730 512GB', lbs=4096)
    host.mount('/', 'ext4', 'nvme0n1')
    result = host.collect('/')
    namespace = result['controllers'][0]['namespaces'][0]
    assert namespace['logical_block_size'] == 4096
    assert namespace['size_bytes'] == 512110190592
    assert namespace['mountpoints'] == ['/']
    assert result['largest_namespace_bytes'] < TB
    assert result['path']['on_nvme'] is True


def test_two_nvme_namespaces_natural_order(host):
    host.nvme(0, [(1, 1920 * GB, [])])
    host.nvme(1, [(1, 7680 * GB, []), (2, 3840 * GB, [])])
    for extra in range(2, 11):
        host.nvme(extra, [])
    host.sata('sda', 480 * GB, [480 * GB])
    host.mount('/', 'ext4', 'sda1')
    result = host.collect('/')
    assert [c['name'] for c in result['controllers']] == ['nvme%d' % i for i in range(11)]
    assert [n['name'] for n in result['controllers'][1]['namespaces']] == ['nvme1n1', 'nvme1n2']
    assert result['namespace_count'] == 3
    assert result['total_bytes'] == (1920 + 7680 + 3840) * GB
    assert result['largest_namespace_bytes'] == 7680 * GB
    assert result['path']['on_nvme'] is False


def test_native_multipath_namespaces(host):
    host.nvme(0, [(1, 3840 * GB, [3840 * GB - 2 ** 20])], multipath=True)
    host.mount('/', 'xfs', 'nvme0n1p1')
    result = host.collect('/')
    assert result['namespace_count'] == 1  # the hidden nvme0c0n1 path device is not counted
    namespace = result['controllers'][0]['namespaces'][0]
    assert namespace['name'] == 'nvme0n1'
    assert namespace['partitions'][0]['mountpoints'] == ['/']
    assert result['path']['disks'] == ['nvme0n1']
    assert result['path']['on_nvme'] is True


@pytest.mark.parametrize('path_device', [True, False])
def test_multipath_head_numbered_by_subsystem(host, path_device):
    """Head nvme1n1 (subsystem 1) belongs to controller nvme3: found through the hidden
    path device nvme1c3n1, or without it through the nvme-subsystem link."""
    host.nvme(0, [])
    host.nvme(3, [(1, 960 * GB, [])], multipath=True)
    blk = os.path.join(host.root, 'sys/block')
    os.rename(os.path.join(blk, 'nvme3n1'), os.path.join(blk, 'nvme1n1'))
    hidden = os.path.join(blk, 'nvme3c3n1')
    if path_device:
        os.rename(hidden, os.path.join(blk, 'nvme1c3n1'))
    else:
        os.remove(hidden)
    result = host.collect('/')
    assert result['controllers'][0]['namespaces'] == []
    assert [n['name'] for n in result['controllers'][1]['namespaces']] == ['nvme1n1']
    assert result['namespace_count'] == 1


def test_namespace_only_below_controller(host):
    ctrl = host.nvme(0, [(1, 1000 * GB, [])])
    os.remove(os.path.join(host.root, 'sys/block/nvme0n1'))
    result = host.collect('/')
    assert [n['name'] for n in result['controllers'][0]['namespaces']] == ['nvme0n1']
    assert result['total_bytes'] == 1000 * GB
    assert ctrl.endswith('nvme/nvme0')


def test_unattributed_namespace_is_counted_and_noted(host):
    host.nvme(0, [(1, 1000 * GB, [])])
    os.rename(os.path.join(host.root, 'sys/class/nvme/nvme0'),
              os.path.join(host.root, 'sys/class/nvme/nvme-hidden'))
    result = host.collect('/')
    assert result['count'] == 0
    assert result['namespace_count'] == 1
    assert result['total_bytes'] == 1000 * GB
    assert 'namespace nvme0n1 could not be attributed to a controller' in result['notes']


def test_nvme_over_tcp(host):
    host.nvme(0, [(1, 2 * TB, [])], transport='tcp',
              address='traddr=192.0.2.10,trsvcid=4420,src_addr=192.0.2.2')
    host.mount('/', 'ext4', 'nvme0n1')
    result = host.collect('/')
    controller = result['controllers'][0]
    assert controller['transport'] == 'tcp'
    assert controller['address'].startswith('traddr=192.0.2.10')
    assert controller['pcie'] is None
    assert result['path']['on_nvme'] is True
    assert any('NVMe over fabrics' in n for n in result['notes'])


def test_old_kernel_without_transport_and_address_files(host):
    ctrl = host.nvme(0, [(1, 1000 * GB, [])])
    os.remove(os.path.join(host.root, ctrl, 'transport'))
    os.remove(os.path.join(host.root, ctrl, 'address'))
    controller = host.collect('/')['controllers'][0]
    assert controller['transport'] == 'pcie'
    assert controller['address'] == '0000:01:00.0'
    assert controller['pcie']['max_width'] == 4


# --- where the model path lives ---------------------------------------------------

def test_model_path_on_nvme_partition(host):
    host.sata('sda', 480 * GB, [480 * GB])
    host.nvme(0, [(1, 3840 * GB, [3840 * GB - 2 ** 20])])
    host.mount('/', 'ext4', 'sda1')
    host.mount('/data', 'xfs', 'nvme0n1p1', size=3800 * GB, free=3700 * GB)
    host.mkdir('/data/models')
    path = host.collect()['path']
    assert path['block_device'] == '/dev/nvme0n1p1'
    assert path['disks'] == ['nvme0n1']
    assert path['filesystem'] == 'xfs'
    assert path['mountpoint'] == '/data'
    assert path['on_nvme'] is True
    assert path['size_bytes'] == 3800 * GB


def test_model_path_on_lvm_over_nvme_partition(host):
    host.sata('sda', 480 * GB, [480 * GB])
    host.nvme(0, [(1, 3840 * GB, [GB, 3839 * GB - 2 ** 20])])
    dm = host.virtual('dm', 0, ['nvme0n1p2'], dm_name='vg0-models')
    host.mount('/', 'ext4', 'sda1')
    host.mount('/data/models', 'ext4', '/dev/mapper/vg0-models', dev=host.devs[dm])
    path = host.collect()['path']
    assert path['block_device'] == '/dev/dm-0'
    assert path['disks'] == ['nvme0n1']
    assert path['on_nvme'] is True
    assert path['mountpoint'] == '/data/models'


def test_model_path_on_lvm_striped_over_two_nvme(host):
    host.nvme(0, [(1, 3840 * GB, [])])
    host.nvme(1, [(1, 3840 * GB, [])])
    host.sata('sda', 480 * GB, [480 * GB])
    dm = host.virtual('dm', 0, ['nvme0n1', 'nvme1n1'], dm_name='vg0-models')
    host.mount('/', 'ext4', 'sda1')
    host.mount('/data', 'xfs', '/dev/mapper/vg0-models', dev=host.devs[dm])
    host.mkdir('/data/models')
    assert host.collect()['path']['disks'] == ['nvme0n1', 'nvme1n1']
    assert host.collect()['path']['on_nvme'] is True


def test_model_path_on_md_raid_of_nvme_and_sata(host):
    host.nvme(0, [(1, 1000 * GB, [1000 * GB - 2 ** 20])])
    host.sata('sdb', 1000 * GB, [1000 * GB - 2 ** 20])
    md = host.virtual('md', 0, ['nvme0n1p1', 'sdb1'])
    host.mount('/', 'ext4', md)
    host.mkdir('/data/models')
    result = host.collect()
    path = result['path']
    assert path['block_device'] == '/dev/md0'
    assert path['disks'] == ['nvme0n1', 'sdb']
    assert path['on_nvme'] is False
    assert any('not all NVMe' in n for n in result['notes'])


def test_model_path_on_dm_crypt_over_md_over_nvme(host):
    host.nvme(0, [(1, 1000 * GB, [])])
    host.nvme(1, [(1, 1000 * GB, [])])
    md = host.virtual('md', 0, ['nvme0n1', 'nvme1n1'])
    dm = host.virtual('dm', 0, [md], dm_name='luks-models')
    host.mount('/', 'ext4', dm)
    path = host.collect('/')['path']
    assert path['disks'] == ['nvme0n1', 'nvme1n1']
    assert path['on_nvme'] is True


def test_model_path_missing_judges_nearest_parent(host):
    host.nvme(0, [(1, 3840 * GB, [3840 * GB - 2 ** 20])])
    host.sata('sda', 480 * GB, [480 * GB])
    host.mount('/', 'ext4', 'sda1')
    host.mount('/data', 'xfs', 'nvme0n1p1')
    result = host.collect('/data/models/glm-4')
    path = result['path']
    assert path['path'] == '/data/models/glm-4'
    assert path['existing_path'] == '/data'
    assert path['on_nvme'] is True
    assert ('model path /data/models/glm-4 does not exist; judged its nearest existing '
            'parent /data') in result['notes']


def test_model_path_missing_up_to_root(host):
    host.sata('sda', 480 * GB, [480 * GB])
    host.mount('/', 'ext4', 'sda1')
    result = host.collect('/data/models')
    assert result['path']['existing_path'] == '/'
    assert result['path']['on_nvme'] is False
    assert any('nearest existing parent /' in n for n in result['notes'])


def test_overlay_root_in_container(host):
    host.nvme(0, [(1, 3840 * GB, [])])  # the host's NVMe is visible through /sys
    host.mount('/', 'overlay', 'overlay')
    host.mkdir('/data/models')
    result = host.collect()
    path = result['path']
    assert path['filesystem'] == 'overlay'
    assert path['block_device'] is None
    assert path['disks'] == []
    assert path['on_nvme'] is None
    assert 'path is on overlay (container): backing device unknown' in result['notes']


def test_bind_mounted_volume_in_container(host):
    host.nvme(0, [(1, 3840 * GB, [3840 * GB - 2 ** 20])])
    host.mount('/', 'overlay', 'overlay')
    host.mount('/data/models', 'ext4', 'nvme0n1p1')
    result = host.collect()
    assert result['path']['on_nvme'] is True
    assert result['path']['mountpoint'] == '/data/models'


def test_btrfs_anonymous_device_resolved_through_mount_source(host):
    host.nvme(0, [(1, 2 * TB, [2 * TB - 2 ** 20])])
    host.mount('/', 'btrfs', '/dev/nvme0n1p1', dev='0:31')
    host.mkdir('/data/models')
    path = host.collect()['path']
    assert path['block_device'] == '/dev/nvme0n1p1'
    assert path['on_nvme'] is True


def test_st_dev_is_used_without_mountinfo(host):
    host.nvme(0, [(1, 2 * TB, [2 * TB - 2 ** 20])])
    host.mount('/', 'ext4', 'nvme0n1p1')
    result = host.collect('/', mountinfo=False)
    assert result['path']['block_device'] == '/dev/nvme0n1p1'
    assert result['path']['on_nvme'] is True
    assert result['path']['filesystem'] is None
    assert any('mountinfo not readable' in n for n in result['notes'])


@pytest.mark.parametrize('fstype, source, on_nvme, note', [
    ('tmpfs', 'tmpfs', False, 'path is on tmpfs (memory), not on a disk'),
    ('nfs4', 'filer:/export/models', False,
     'path is on network filesystem nfs4 (filer:/export/models), not local NVMe'),
    ('zfs', 'tank/models', None, 'backing block device of /data/models (zfs from tank/models) '
     'unknown'),
    ('virtiofs', 'models', None, 'backing block device of /data/models (virtiofs from models) '
     'unknown'),
])
def test_filesystems_without_block_device(host, fstype, source, on_nvme, note):
    host.nvme(0, [(1, 2 * TB, [])])
    host.mount('/', 'overlay', 'overlay')
    host.mount('/data/models', fstype, source)
    result = host.collect()
    assert result['path']['on_nvme'] is on_nvme
    assert result['path']['filesystem'] == fstype
    assert note in result['notes']


def test_loop_device_is_undetermined(host):
    host.nvme(0, [(1, 2 * TB, [])])
    directory = 'sys/devices/virtual/block/loop0'
    host._blockdev('loop0', directory, 10 * GB, 7, 0)
    host.mount('/', 'ext4', 'nvme0n1')
    host.mount('/data/models', 'squashfs', 'loop0')
    result = host.collect()
    assert result['path']['disks'] == ['loop0']
    assert result['path']['on_nvme'] is None
    assert any('loop device' in n for n in result['notes'])


def test_statvfs_failure_is_a_note(host):
    host.nvme(0, [(1, 2 * TB, [])])
    host.mount('/', 'ext4', 'nvme0n1')
    host.write_mountinfo()

    def broken(path):
        raise OSError(13, 'Permission denied', path)

    result = nvme.collect(host.paths, '/', stat=host.stat, statvfs=broken)
    assert result['path']['size_bytes'] is None
    assert result['path']['on_nvme'] is True
    assert 'cannot statvfs /: filesystem size unknown' in result['notes']


def test_mountpoint_with_space_is_unescaped(host):
    host.nvme(0, [(1, 2 * TB, [])])
    host.mount('/', 'overlay', 'overlay')
    host.mount('/data/my models', 'ext4', 'nvme0n1')
    result = host.collect('/data/my models')
    assert result['path']['mountpoint'] == '/data/my models'
    assert result['path']['on_nvme'] is True
    assert result['controllers'][0]['namespaces'][0]['mountpoints'] == ['/data/my models']


# --- helpers ----------------------------------------------------------------------

def test_parse_mountinfo_skips_garbage():
    text = ('22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n'
            'garbage line\n'
            '23 22 0:5 / /dev rw - devtmpfs udev rw,size=1k\n'
            '24 22 0:6 /sub /mnt/with\\040space rw master:2 unbindable - ext4 /dev/sda1 rw\n')
    assert nvme.parse_mountinfo(text) == [
        {'dev': '259:2', 'root': '/', 'mountpoint': '/', 'fstype': 'ext4',
         'source': '/dev/nvme0n1p2'},
        {'dev': '0:5', 'root': '/', 'mountpoint': '/dev', 'fstype': 'devtmpfs',
         'source': 'udev'},
        {'dev': '0:6', 'root': '/sub', 'mountpoint': '/mnt/with space', 'fstype': 'ext4',
         'source': '/dev/sda1'},
    ]


@pytest.mark.parametrize('path, expected', [
    ('/data/models', '/data'),
    ('/data', '/data'),
    ('/database', '/'),
    ('/srv/x', '/srv'),
    ('/', '/'),
])
def test_find_mount_longest_prefix_last_wins(path, expected):
    mounts = [dict(mountpoint='/', dev='1:1'), dict(mountpoint='/data', dev='1:2'),
              dict(mountpoint='/srv', dev='1:3'), dict(mountpoint='/srv', dev='1:4')]
    mount = nvme.find_mount(mounts, path)
    assert mount['mountpoint'] == expected
    if expected == '/srv':
        assert mount['dev'] == '1:4'


@pytest.mark.parametrize('name, parent', [
    ('nvme0n1p3', 'nvme0n1'), ('sda1', 'sda'), ('mmcblk0p2', 'mmcblk0'), ('vda', 'vda'),
])
def test_backing_disks_without_sysfs_parent_uses_name(tmp_path, name, parent):
    """Partition files present but no parent directory to find: fall back to the name."""
    os.makedirs(str(tmp_path / 'sys' / 'class' / 'block' / name))
    if parent != name:
        (tmp_path / 'sys' / 'class' / 'block' / name / 'partition').write_text(u'1\n')
    assert nvme.backing_disks(HostPaths(str(tmp_path)), name) == [parent]
