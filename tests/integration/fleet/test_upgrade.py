# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/upgrade.yml on five systemd test hosts: serial batches, take out / put back, stop on failure.

Hosts h1..h5 (containers, no GPU: GPU verification is skipped by the playbook itself).
h1, h3, h4, h5 run a stand-in model service (`autoglm.service`, python http.server on 8080
serving /health); h2 has no service (must be skipped gracefully); h3's /health answers 404
(its upgrade must fail at the health check). The driver and CUDA roles are replaced by the
test role `upgrade_probe` (tests/integration/fleet/roles), which records when it ran and
whether the service was stopped at that moment.

Run 1: serial 2, max_fail_percentage 0 -> batches [h1,h2] [h3,h4] [h5]; h3 fails, h4 still
finishes its batch, the roll stops: h5 untouched. Run 2 (--limit h3,h4,h5): max_fail_percentage 50 ->
h3 fails again (1 of 2 = 50 %, not above 50) and the roll goes on to h5; its variables come as an AWX
survey sends them (strings for lists, an empty optional field).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from conftest import REPO, Containers, ansible_env, run

PLAYBOOK = os.path.join(REPO, 'playbooks', 'upgrade.yml')
ROLES = os.path.join(os.path.dirname(__file__), 'roles')
UNIT = """[Unit]
Description=stand-in model service for the upgrade test
[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv/autoglm
[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope='module')
def fleet(require_docker, tmp_path_factory):
    containers = Containers('upg')
    try:
        names = containers.start(5, systemd=True)
        for n, name in enumerate(names, start=1):
            if n == 2:
                continue    # no model service on h2
            health = '' if n == 3 else 'echo ok > /srv/autoglm/health && '
            run(['docker', 'exec', name, 'sh', '-c',
                 'mkdir -p /srv/autoglm && %s cat > /etc/systemd/system/autoglm.service <<"EOF"\n%sEOF\n'
                 'systemctl daemon-reload && systemctl enable --now autoglm.service' % (health, UNIT)])
        inventory = tmp_path_factory.mktemp('upgrade') / 'hosts.yml'
        inventory.write_text(json.dumps({'all': {'children': {'gpu_nodes': {
            'hosts': dict((name, {}) for name in names),
            'vars': {'ansible_connection': 'community.docker.docker',
                     'ansible_python_interpreter': '/usr/bin/python3'}}}}}))
        yield dict(names=names, inventory=str(inventory), dir=inventory.parent)
    finally:
        containers.remove()


def upgrade(fleet, report_dir, max_fail, limit=None, **overrides):
    extra = {
        'upgrade_serial': 2,
        'upgrade_max_fail_percentage': max_fail,
        'upgrade_report_dir': str(report_dir),
        'upgrade_driver_role': 'upgrade_probe',
        'upgrade_cuda_role': 'upgrade_probe',
        'upgrade_driver_version': '535.216.03',
        'upgrade_cuda_versions': ['12.1'],
        # the model_service role is optional: a name that is not installed must be skipped
        'upgrade_service_role': 'openautoglm.deploy.model_service_not_installed',
        'upgrade_health_retries': 3,
        'upgrade_health_delay': 1,
    }
    extra.update(overrides)
    proc = run(['ansible-playbook', '-i', fleet['inventory'], PLAYBOOK, '-e', json.dumps(extra)]
               + (['--limit', ','.join(limit)] if limit else []),
               check=False, env=ansible_env(ANSIBLE_ROLES_PATH=ROLES), cwd=REPO)
    with open(str(report_dir) + '.log', 'w') as handle:   # next to the reports, for a failing test
        handle.write(proc.stdout + proc.stderr)
    return proc


def probe(name, component):
    proc = run(['docker', 'exec', name, 'cat', '/var/lib/fleetops/%s.json' % component], check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def service_active(name):
    return run(['docker', 'exec', name, 'systemctl', 'is-active', 'autoglm.service'], check=False).stdout.strip()


def read(report_dir, name):
    with open(os.path.join(str(report_dir), name + '.json')) as handle:
        return json.load(handle)


def test_failed_host_stops_the_roll_and_later_batches_stay_untouched(fleet):
    h1, h2, h3, h4, h5 = fleet['names']
    report_dir = fleet['dir'] / 'run1'
    proc = upgrade(fleet, report_dir, max_fail=0)
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]

    summary = read(report_dir, 'summary')
    assert summary['batches'] == [[h1, h2], [h3, h4]]
    assert summary['upgraded'] == [h1, h2, h4]
    assert summary['failed'] == [h3]
    assert summary['not_started'] == [h5]
    assert summary['stopped'] is True
    assert 'STOPPED' in summary['message'] and h5 in summary['message']
    # the failing host's own report and the run's message say where and why
    failed = read(report_dir, h3)
    assert failed['state'] == 'failed'
    assert failed['failed_step'] == 'Wait for the model service to answer /health with 200'
    assert 'Upgrade FAILED on %s at step "Wait for the model service to answer /health with 200"' % h3 in out
    assert 'The roll stops here: hosts not started: %s' % h5 in out
    # the last batch never started: no report, no upgrade, service never taken out
    assert not os.path.exists(os.path.join(str(report_dir), h5 + '.json'))
    assert probe(h5, 'driver') is None and probe(h5, 'cuda') is None
    assert service_active(h5) == 'active'
    # upgraded hosts: driver then cuda, with the requested versions, while the service was out
    for name in (h1, h4):
        driver, cuda = probe(name, 'driver'), probe(name, 'cuda')
        assert driver['nvidia_driver_upgrade'] is True
        assert driver['nvidia_driver_version'] == '535.216.03'
        assert cuda['cuda_versions'] == ['12.1']
        assert driver['service'] == 'inactive' and cuda['service'] == 'inactive'
        assert driver['at'] <= cuda['at']
        assert service_active(name) == 'active'     # put back
        report = read(report_dir, name)
        assert report['state'] == 'done' and report['service_deployed'] is True
        assert report['steps'] == ['driver', 'cuda',
                                   'service skipped: role openautoglm.deploy.model_service_not_installed not installed']
        assert report['gpu_before']['count'] == '0' or report['gpu_before']['count'] == 0
    # serial batching: batch 2 started only after batch 1 had finished
    assert max(probe(h1, 'cuda')['at'], probe(h2, 'cuda')['at']) < min(probe(h3, 'driver')['at'], probe(h4, 'driver')['at'])
    # a host without the service: upgraded, nothing stopped or started
    assert read(report_dir, h2)['service_deployed'] is False
    assert service_active(h2) in ('inactive', 'unknown')
    # the failed host is kept out of service: its (unhealthy) service stopped again
    assert service_active(h3) == 'inactive'
    assert failed['service_stopped_after_failure'] is True
    assert 'the host stays out of service until fixed' in out


def test_within_max_fail_percentage_the_roll_goes_on(fleet):
    h1, h2, h3, h4, h5 = fleet['names']
    report_dir = fleet['dir'] / 'run2'
    # answers as an AWX survey sends them: multiselect default as a newline-joined string,
    # comma-separated text, an empty optional text field
    proc = upgrade(fleet, report_dir, max_fail=50, limit=[h3, h4, h5], upgrade_components='driver\ncuda\nservice',
                   upgrade_cuda_versions='12.1, 11.8', upgrade_driver_version='')
    assert proc.returncode != 0                  # h3 still failed: the run reports it
    assert 'Within max_fail_percentage: the roll goes on.' in proc.stdout
    summary = read(report_dir, 'summary')
    assert summary['batches'] == [[h3, h4], [h5]]
    assert summary['upgraded'] == [h4, h5]
    assert summary['failed'] == [h3]
    assert summary['not_started'] == []
    assert summary['stopped'] is False
    assert probe(h5, 'driver')['service'] == 'inactive'
    # empty driver version: the role keeps its own default (no version passed at all)
    assert probe(h5, 'driver')['nvidia_driver_version'] is None
    assert probe(h5, 'cuda')['cuda_versions'] == ['12.1', '11.8']
    assert read(report_dir, h5)['components'] == ['driver', 'cuda', 'service']
    assert service_active(h5) == 'active'


def test_every_failing_step_writes_the_host_report_and_the_summary(fleet):
    """One batch; each host fails at another step (driver and CUDA: before the reboot step).

    Regression: a host failing before the reboot step crashed the report task
    ('upgrade_rebooted' is undefined) and no summary.json was written.
    """
    h1, h2, h3, h4, h5 = fleet['names']
    steps = {h1: 'driver', h4: 'cuda', h5: 'service'}
    inventory = fleet['dir'] / 'fail-at-each-step.yml'
    inventory.write_text(json.dumps({'all': {'children': {'gpu_nodes': {
        'hosts': dict((name, {'upgrade_probe_fail': steps.get(name, '')}) for name in fleet['names']),
        'vars': {'ansible_connection': 'community.docker.docker',
                 'ansible_python_interpreter': '/usr/bin/python3'}}}}}))
    report_dir = fleet['dir'] / 'run3'
    proc = upgrade(dict(fleet, inventory=str(inventory)), report_dir, max_fail=100, upgrade_serial=5,
                   upgrade_reboot=False, upgrade_service_role='upgrade_probe')
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert 'is undefined' not in out, out[-3000:]
    # the failing task (inside the included role for driver/cuda/service) and the steps done before it
    probe_task = 'Fail this step when the test asks for it'
    expected = {h1: (probe_task, []), h4: (probe_task, ['driver']), h5: (probe_task, ['driver', 'cuda']),
                h3: ('Wait for the model service to answer /health with 200', ['driver', 'cuda', 'service'])}
    for name, (step, done) in expected.items():
        report = read(report_dir, name)
        assert report['state'] == 'failed', (name, report)
        assert report['failed_step'] == step, (name, report)
        assert report['steps'] == done, (name, report)
        assert report['rebooted'] is False
        assert ('failing the %s step' % (['driver', 'cuda', 'service'][len(done)]) in report['error']
                if name != h3 else '404' in report['error']), report['error']
        assert report['service_stopped_after_failure'] is True, (name, report)
        assert service_active(name) == 'inactive'      # kept out
    assert read(report_dir, h2)['state'] == 'done'
    summary = read(report_dir, 'summary')
    assert summary['batches'] == [fleet['names']]
    assert summary['upgraded'] == [h2]
    assert sorted(summary['failed']) == sorted(expected)
    assert summary['stopped'] is False      # max_fail_percentage 100: only the whole batch lost stops it


def test_a_gateway_that_cannot_drain_fails_the_host_before_its_service_stops(fleet):
    """A gateway listed for the roll without a runtime API: the drain step fails, the report says so."""
    h1, h2, h3, h4, h5 = fleet['names']
    run(['docker', 'exec', h5, 'systemctl', 'start', 'autoglm.service'])
    report_dir = fleet['dir'] / 'run4'
    proc = upgrade(fleet, report_dir, max_fail=0, limit=[h5], upgrade_gateway_hosts=[h2])
    assert proc.returncode != 0
    report = read(report_dir, h5)
    assert report['state'] == 'failed'
    assert report['failed_step'] == 'Take the host out - drain its replicas in the gateways'
    assert report['gateways'] == [h2]
    assert read(report_dir, 'summary')['failed'] == [h5]
