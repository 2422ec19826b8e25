# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers for the fleet-operation tests (run: pytest tests/integration/fleet).

Containers started here are named ``fleetops-<pid>-...`` and removed by the fixtures that
started them; nothing else on the Docker daemon is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
IMAGE = os.environ.get('FLEETOPS_IMAGE', 'local/debian:12')
PREFIX = 'fleetops-%d' % os.getpid()
COLLECTIONS = os.path.join(REPO, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_NOCOLOR='1',
        PATH=VENV_BIN + os.pathsep + env.get('PATH', ''),
    )
    env.update(extra)
    return env


def run(cmd, check=True, timeout=600, **kwargs):
    """Run *cmd*; on failure raise with its output (so a failing test shows why)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError('%s exited %d\nstdout:\n%s\nstderr:\n%s'
                             % (' '.join(cmd), proc.returncode, proc.stdout[-6000:], proc.stderr[-4000:]))
    return proc


def docker_ok():
    return subprocess.run(['docker', 'image', 'inspect', IMAGE], capture_output=True, check=False).returncode == 0


class Containers(object):
    """Start and remove test containers (all named PREFIX-<name>)."""

    def __init__(self, tag):
        self.prefix = '%s-%s' % (PREFIX, tag)
        self.names = []

    def start(self, count, systemd=False, start_index=1, parallel=1):
        names = ['%s-%03d' % (self.prefix, i) for i in range(start_index, start_index + count)]
        self.names.extend(names)   # removed by remove() even when a start fails half-way
        commands = []
        for name in names:
            if systemd:
                cmd = ['docker', 'run', '-d', '--name', name, '--hostname', name, '--cap-add', 'SYS_ADMIN',
                       '--security-opt', 'seccomp=unconfined', '--cgroupns=host',
                       '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--tmpfs', '/run', '--tmpfs', '/run/lock',
                       IMAGE, '/lib/systemd/systemd']
            else:
                # no systemd: preflight needs only python3, /proc and /sys
                cmd = ['docker', 'run', '-d', '--name', name, '--hostname', name, '--network', 'none',
                       '--memory', '64m', IMAGE, 'sleep', 'infinity']
            commands.append(cmd)
        if parallel > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(run, commands))
        else:
            for cmd in commands:
                run(cmd)
        if systemd:
            deadline = time.time() + 120
            for name in names:
                while True:
                    state = subprocess.run(['docker', 'exec', name, 'systemctl', 'is-system-running'],
                                           capture_output=True, text=True, check=False).stdout.strip()
                    if state in ('running', 'degraded'):
                        break
                    if time.time() > deadline:
                        raise AssertionError('systemd in %s did not finish booting: %s' % (name, state))
                    time.sleep(0.5)
        return names

    def remove(self):
        if self.names:
            subprocess.run(['docker', 'rm', '-f'] + self.names, capture_output=True, check=False)
            self.names = []


@pytest.fixture(scope='session')
def require_docker():
    if not docker_ok():
        pytest.fail('docker daemon or image %s missing: run `make deps` (tests/harness/docker-up.sh, build-image.sh)' % IMAGE)
