# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Preflight + fleet report on 50 simulated hosts, one of which disappears mid-run.

Hosts are lightweight containers (`sleep infinity`, no network, 64 MiB; preflight needs only
python3, /proc and /sys) reached with the community.docker.docker connection. The run pings
every host, removes one container, then runs playbooks/report.yml: the other 49 must get a
verdict and the report must show the victim as unreachable. FLEET_SCALE_HOSTS changes N.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

import pytest

from conftest import REPO, Containers, ansible_env, run

N = int(os.environ.get('FLEET_SCALE_HOSTS', '50'))
WRAPPER = os.path.join(os.path.dirname(__file__), 'scale.yml')


@pytest.fixture(scope='module')
def fleet(require_docker, tmp_path_factory):
    containers = Containers('scale')
    try:
        names = containers.start(N, parallel=8)
        inventory = tmp_path_factory.mktemp('scale') / 'hosts.yml'
        inventory.write_text(json.dumps({'all': {'children': {'gpu_nodes': {
            'hosts': dict((name, {}) for name in names),
            'vars': {'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3',
                     'preflight_preset': 'development'}}}}}))
        yield dict(names=names, inventory=str(inventory), dir=inventory.parent)
    finally:
        containers.remove()


def test_fleet_report_with_a_host_lost_mid_run(fleet):
    names = fleet['names']
    victim = names[N // 2]
    out = fleet['dir']
    extra = {'scale_victim': victim, 'report_dir': str(out / 'fleet'), 'report_preflight_dir': str(out / 'preflight'),
             'report_title': 'Scale test: %d hosts' % N,
             'report_tco': {'hardware_price': 22300, 'electricity_price': 1.0, 'hours_per_day': 8,
                            'maintenance_total': 1500}}
    start = time.time()
    proc = run(['ansible-playbook', '-i', fleet['inventory'], WRAPPER, '-e', json.dumps(extra)], check=False,
               env=ansible_env(), cwd=REPO)
    elapsed = time.time() - start
    print('preflight + report on %d hosts (one lost): %.1f s' % (N, elapsed))
    # the victim is unreachable; the play recap must still show every other host ok
    assert 'unreachable=1' in proc.stdout
    recap = proc.stdout[proc.stdout.rindex('PLAY RECAP'):]
    for name in names:
        line = [l for l in recap.splitlines() if l.startswith(name + ' ')]
        assert line, name
        if name == victim:
            assert 'unreachable=1' in line[0]
        else:
            assert 'unreachable=0' in line[0] and 'failed=0' in line[0], line[0]
    document = json.load(open(str(out / 'fleet' / 'fleet.json')))
    summary = document['summary']
    assert summary['hosts'] == N
    assert summary['counts'] == {'passed': N - 1, 'below_baseline': 0, 'unreachable': 1, 'failed': 0, 'no_report': 0}
    assert summary['unreachable_hosts'] == [victim]
    assert document['hosts'][0]['host'] == victim and document['hosts'][0]['status'] == 'unreachable'
    assert sorted(os.listdir(str(out / 'preflight'))) == sorted(n + '.json' for n in names if n != victim)
    html = open(str(out / 'fleet' / 'fleet.html')).read()
    assert '<b>Unreachable:</b> %s' % victim in html
    assert html.count('<tr class="s-') == N
    # cost of the 49 hosts that reported (GPU-less: 300 W rest of system)
    assert summary['tco']['hosts'] == N - 1
    assert proc.returncode == 4, proc.returncode   # ansible-playbook's exit code for unreachable hosts
