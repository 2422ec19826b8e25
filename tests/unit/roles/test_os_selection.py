# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each role's OS selection, rendered from the facts of every release the collection names.

The reference deployment names Ubuntu 20.04 and CentOS Stream 8; CI hosts are Debian only,
so the selection itself is tested here: CentOS Stream 8's facts (CentOS, 8, RedHat) must take
the EL 8 paths, focal its own repository names and interpreter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from role_vars import FACTS, ROLES, RoleVars, task_var

RELEASES = ['debian11', 'debian12', 'debian13', 'ubuntu2004', 'ubuntu2204', 'ubuntu2404', 'centos_stream8', 'rocky9']

# release -> NVIDIA CUDA repository directory (developer.download.nvidia.com/compute/cuda/repos/<dir>)
CUDA_REPO = {'debian11': 'debian11', 'debian12': 'debian12', 'debian13': 'debian13', 'ubuntu2004': 'ubuntu2004',
             'ubuntu2204': 'ubuntu2204', 'ubuntu2404': 'ubuntu2404', 'centos_stream8': 'rhel8', 'rocky9': 'rhel9'}


@pytest.mark.parametrize('release', RELEASES)
def test_nvidia_driver_and_cuda_repository_and_sources(release):
    facts = FACTS[release]
    driver = RoleVars('nvidia_driver', facts)
    cuda = RoleVars('cuda', facts)
    assert driver.get('__nvidia_driver_repo_distro') == CUDA_REPO[release]
    assert cuda.get('__cuda_repo_distro') == CUDA_REPO[release]
    el = facts['os_family'] == 'RedHat'
    sources = ['cuda_repo', 'dnf_module'] if el else ['distro', 'cuda_repo']
    assert driver.get('__nvidia_driver_sources')[facts['os_family']] == sources
    assert driver.get('__nvidia_driver_repo_key_file') == ('D42D0685.pub' if el else '3bf863cc.pub')
    assert cuda.get('__cuda_lib_dir') == ('/usr/lib64' if el else '/usr/lib/x86_64-linux-gnu')
    assert driver.get('nvidia_driver_cuda_repo_url') == (
        'https://developer.download.nvidia.com/compute/cuda/repos/%s/x86_64/' % CUDA_REPO[release])


@pytest.mark.parametrize('release, packages', [
    ('debian12', ['nvidia-driver', 'nvidia-kernel-dkms', 'nvidia-smi', 'nvidia-persistenced']),
    ('ubuntu2004', ['nvidia-headless-535-server', 'nvidia-utils-535-server']),
    ('ubuntu2404', ['nvidia-headless-535-server', 'nvidia-utils-535-server']),
])
def test_nvidia_driver_apt_packages(release, packages):
    role = RoleVars('nvidia_driver', FACTS[release])
    expr = task_var('nvidia_driver', 'Debian.yml', 'Choose the driver packages', '__nvidia_driver_packages')
    assert role.templar.template(expr) == packages


@pytest.mark.parametrize('release', ['centos_stream8', 'rocky9'])
def test_nvidia_driver_el_packages(release):
    expr = task_var('nvidia_driver', 'RedHat.yml', 'Choose the driver packages', '__nvidia_driver_packages')
    assert RoleVars('nvidia_driver', FACTS[release], nvidia_driver_source='dnf_module').templar.template(expr) == \
        ['@nvidia-driver:535-dkms']
    assert RoleVars('nvidia_driver', FACTS[release], nvidia_driver_source='cuda_repo').templar.template(expr) == \
        ['cuda-drivers-535']


@pytest.mark.parametrize('release, key', [
    ('debian11', 'Debian-11'), ('debian12', 'Debian-12'), ('ubuntu2004', 'Ubuntu-20'), ('ubuntu2204', 'Ubuntu-22'),
    ('ubuntu2404', 'Ubuntu-24'), ('centos_stream8', 'EL-8'), ('rocky9', 'EL-9'),
])
def test_docker_release_key_is_supported(release, key):
    role = RoleVars('docker', FACTS[release])
    expr = task_var('docker', 'main.yml', "Name this host's release", 'docker__os_key')
    assert role.templar.template(expr) == key
    assert key in role.get('docker__supported')


def test_docker_repository_path_of_centos_stream_is_centos():
    with open(os.path.join(ROLES, 'docker', 'tasks', 'RedHat.yml')) as handle:
        text = handle.read()
    assert "'rhel' if ansible_facts.distribution == 'RedHat' else 'centos'" in text
    role = RoleVars('docker', FACTS['centos_stream8'])
    assert role.render("'rhel' if ansible_facts.distribution == 'RedHat' else 'centos'") == 'centos'


@pytest.mark.parametrize('release, family_file, packages', [
    ('debian13', 'Debian', ['initramfs-tools', 'kmod']),
    ('ubuntu2004', 'Debian', ['initramfs-tools', 'kmod']),
    ('centos_stream8', 'RedHat', ['dracut', 'kmod']),
])
def test_nouveau_family_vars(release, family_file, packages):
    role = RoleVars('nouveau', FACTS[release])
    assert FACTS[release]['os_family'] in role.get('__nouveau_supported_os_families')
    assert role.get('__nouveau_initramfs_packages') == packages


# release, python version, source, packages
PYTHONS = [
    ('debian11', '3.9', 'os', ['python3.9', 'python3.9-venv']),
    ('debian12', '3.11', 'os', ['python3.11', 'python3.11-venv']),
    ('debian13', '3.13', 'os', ['python3.13', 'python3.13-venv']),
    ('debian12', '3.9', 'none', []),                                     # refused, with the versions it has
    ('ubuntu2004', '3.9', 'os', ['python3.9', 'python3.9-venv']),         # focal's archive
    ('ubuntu2004', '3.11', 'deadsnakes', ['python3.11', 'python3.11-venv']),
    ('ubuntu2204', '3.11', 'os', ['python3.11', 'python3.11-venv']),
    ('ubuntu2404', '3.11', 'deadsnakes', ['python3.11', 'python3.11-venv']),  # noble packages 3.12 only
    ('ubuntu2404', '3.12', 'os', ['python3.12', 'python3.12-venv']),
    ('centos_stream8', '3.9', 'os', ['python39']),
    ('centos_stream8', '3.11', 'os', ['python3.11']),
    ('rocky9', '3.9', 'os', ['python3']),
]


@pytest.mark.parametrize('release, version, source, packages', PYTHONS)
def test_python_venv_interpreter(release, version, source, packages):
    role = RoleVars('python_venv', FACTS[release], python_venv_python_version=version)
    assert role.get('python_venv__os_key') in role.get('python_venv__supported')
    assert role.get('python_venv__python_source') == source
    assert role.get('python_venv__python_packages') == packages


def test_python_venv_deadsnakes_source_is_a_mirrorable_variable():
    role = RoleVars('python_venv', FACTS['ubuntu2404'], python_venv_python_version='3.11',
                    python_venv_deadsnakes_url='http://mirror.example.net/deadsnakes')
    assert role.get('python_venv_deadsnakes_url') == 'http://mirror.example.net/deadsnakes'
    assert role.get('python_venv_deadsnakes_key_url').endswith('F23C5A6CF475977595C89F51BA6932366A755776')
    # os: never a PPA, so noble without 3.11 has nothing to install (the role then refuses)
    assert RoleVars('python_venv', FACTS['ubuntu2404'], python_venv_python_version='3.11',
                    python_venv_python_source='os').get('python_venv__python_packages') == []
    # explicit packages win over every table
    assert RoleVars('python_venv', FACTS['ubuntu2404'], python_venv_python_packages=['mypython']).get(
        'python_venv__python_source') == 'packages'


@pytest.mark.parametrize('role', sorted(os.listdir(ROLES)))
def test_role_metadata_names_focal_wherever_it_names_ubuntu(role):
    import yaml
    with open(os.path.join(ROLES, role, 'meta', 'main.yml')) as handle:
        platforms = yaml.safe_load(handle)['galaxy_info'].get('platforms', [])
    ubuntu = [p for p in platforms if p['name'] == 'Ubuntu']
    assert not ubuntu or 'focal' in ubuntu[0]['versions']
    el = [p for p in platforms if p['name'] == 'EL']
    assert not el or '8' in el[0]['versions']
