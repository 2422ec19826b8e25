# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The HAProxy gateway (role gateway, playbooks/gateway.yml) over three model-service hosts.

Four systemd containers on a network of their own with fixed addresses: gw (HAProxy from
Debian's packages) and r1..r3, each running the real model service (systemd unit from the
model_service role) on CPU with a tiny random model; the controller's service venv
(SVC_VENV, `make service-venv`) is mounted read-only as the hosts' venv, built once.

In order: bad input and check mode change nothing; converge and idempotence; a bounded load
(4 clients, streamed chat completions) through the gateway during a rolling upgrade
(upgrade.yml, serial 1) of the three hosts: 0 failures, every replica served; a replica host
killed mid-load (docker kill): at most its in-flight requests fail, it is marked down within the
check interval and up again after a restart; requests/s through the gateway vs direct.

The figures (failure counts, requests per replica, times to down/up, the overhead ratio, each
test's duration) are printed one line each (`gateway figures <section>: ...`, shown by -rA) and
kept in reports/tests/test_gateway.json (the collection's reports directory:
$OPENAUTOGLM_REPORTS_DIR or reports/ in the checkout), rewritten after every test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import os
import threading
import time

import pytest

from conftest import IMAGE, PREFIX, REPO, ansible_env, run
from ansible_collections.openautoglm.deploy.plugins.lookup.reports_dir import reports_root

SVC_VENV = os.environ.get('SVC_VENV', os.path.join(REPO, '.venv-service'))
SITE = os.path.join(os.path.dirname(__file__), 'gateway_site.yml')
GATEWAY = os.path.join(REPO, 'playbooks', 'gateway.yml')
UPGRADE = os.path.join(REPO, 'playbooks', 'upgrade.yml')
SUBNET = '172.29.%d' % (os.getpid() % 200 + 20)
ADDR = {'gw': SUBNET + '.10', 'r1': SUBNET + '.11', 'r2': SUBNET + '.12', 'r3': SUBNET + '.13'}
PORT = 8080
MODEL = 'tiny-autoglm'
SERVED = 'autoglm-phone-9b'       # the role's default served name, what the Open-AutoGLM client sends
FIGURES_PATH = os.path.join(reports_root(cwd=REPO), 'tests', 'test_gateway.json')
FIGURES = {}
# The setting the rolling upgrade changes; the later deploys keep it, so that hosts they do not
# look at have nothing to change (no restart of r1 and r2 in the two-replica test).
AFTER_ROLL = {'model_service_log_level': 'warning'}


def record(section, line, **figures):
    """Print one line of figures and keep them (with the others of this run) in FIGURES_PATH."""
    print('\ngateway figures %s: %s' % (section, line))
    FIGURES.setdefault(section, {}).update(figures)
    if not os.path.isdir(os.path.dirname(FIGURES_PATH)):
        os.makedirs(os.path.dirname(FIGURES_PATH))
    with open(FIGURES_PATH, 'w') as handle:
        json.dump(FIGURES, handle, indent=2, sort_keys=True)
        handle.write('\n')


def replica_counts(ctx, served):
    """{'fleetops-1-gw-r1-autoglm': 5} -> {'r1': 5} (None: answered without the header)."""
    short = dict(('%s-autoglm' % name, role) for role, name in ctx['names'].items())
    short.update(('%s-autoglm-1' % name, role + '-1') for role, name in ctx['names'].items())
    return dict((short.get(k, str(k)), v) for k, v in sorted(served.items(), key=lambda kv: str(kv[0])))


def docker_run(name, role, net, model_dir):
    cmd = ['docker', 'run', '-d', '--name', name, '--hostname', name, '--network', net, '--ip', ADDR[role],
           '--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined', '--cgroupns=host',
           '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--tmpfs', '/run', '--tmpfs', '/run/lock']
    if role != 'gw':
        cmd += ['-v', '%s:/srv/tiny-model:ro' % model_dir]
        prefix = venv_interpreter_prefix()
        if prefix is None:
            cmd += ['-v', '%s:/opt/openautoglm/venv:ro' % SVC_VENV]
        else:
            # The venv's interpreter is not the image's (e.g. pyenv under /root, hidden by the unit's
            # ProtectHome): mount the interpreter at /opt/py and a small venv whose python is /opt/py's
            # and whose lib/ is the service venv's.
            shim = os.path.join(os.path.dirname(model_dir), 'venv-shim')
            if not os.path.isdir(shim):
                os.makedirs(os.path.join(shim, 'bin'))
                os.symlink('/opt/py/bin/python3.11', os.path.join(shim, 'bin', 'python3.11'))
                os.symlink('python3.11', os.path.join(shim, 'bin', 'python3'))
                os.symlink('python3.11', os.path.join(shim, 'bin', 'python'))
                os.symlink('/opt/svc-venv/lib', os.path.join(shim, 'lib'))
                with open(os.path.join(shim, 'pyvenv.cfg'), 'w') as handle:
                    handle.write('home = /opt/py/bin\ninclude-system-site-packages = false\nversion = 3.11\n')
            cmd += ['-v', '%s:/opt/py:ro' % prefix, '-v', '%s:/opt/svc-venv:ro' % SVC_VENV,
                    '-v', '%s:/opt/openautoglm/venv:ro' % shim]
    run(cmd + [IMAGE, '/lib/systemd/systemd'])


def venv_interpreter_prefix():
    with open(os.path.join(SVC_VENV, 'pyvenv.cfg')) as handle:
        home = dict(line.split(' = ', 1) for line in handle.read().splitlines() if ' = ' in line)['home'].strip()
    prefix = os.path.dirname(home)
    return None if prefix == '/usr' else prefix


def wait_booted(name, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = run(['docker', 'exec', name, 'systemctl', 'is-system-running'], check=False).stdout.strip()
        if state in ('running', 'degraded'):
            return
        time.sleep(0.5)
    raise AssertionError('systemd in %s did not boot' % name)


@pytest.fixture(scope='module')
def gw(require_docker, tmp_path_factory):
    if not os.path.exists(os.path.join(SVC_VENV, 'bin', 'python')):
        pytest.fail('service venv %s missing: run `make service-venv` (or set SVC_VENV)' % SVC_VENV)
    started = time.time()
    FIGURES.clear()
    FIGURES['run'] = {'started_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started)),
                      'commit': run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], check=False).stdout.strip()}
    tmp = tmp_path_factory.mktemp('gateway')
    model_dir = str(tmp / 'tiny-model')
    run([os.path.join(SVC_VENV, 'bin', 'python'), '-m', 'autoglm_service.tiny_model', '--out', model_dir],
        env=dict(os.environ, PYTHONPATH=os.path.join(REPO, 'files')))
    os.chmod(str(tmp), 0o755)
    net = '%s-gwnet' % PREFIX
    names = dict((role, '%s-gw-%s' % (PREFIX, role)) for role in ('gw', 'r1', 'r2', 'r3'))
    run(['docker', 'network', 'create', '--subnet', SUBNET + '.0/24', net])
    try:
        for role, name in names.items():
            docker_run(name, role, net, model_dir)
        for name in names.values():
            wait_booted(name)
        # as a molecule prepare does: the package lists (check mode does not fetch them)
        run(['docker', 'exec', names['gw'], 'apt-get', 'update', '-qq'], timeout=300)
        if venv_interpreter_prefix() is not None:     # the mounted interpreter's libpython, for the loader
            for role in ('r1', 'r2', 'r3'):
                run(['docker', 'exec', names[role], 'sh', '-c', 'echo /opt/py/lib > /etc/ld.so.conf.d/opt-py.conf && ldconfig'])
        inventory = tmp / 'hosts.yml'
        inventory.write_text(json.dumps({'all': {
            'vars': {'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3'},
            'children': {
                'gateway': {'hosts': {names['gw']: {}},
                            'vars': {'gateway_served_by_header': 'X-Served-By', 'gateway_check_interval_ms': 1000,
                                     'gateway_timeout_connect': '1s', 'gateway_timeout_check': '1s'}},
                'model_service': {
                    'hosts': dict((names[r], {'gateway_server_address': ADDR[r]}) for r in ('r1', 'r2', 'r3')),
                    'vars': {'model_service_model_name': MODEL, 'model_service_weights_source': 'local',
                             'model_service_weights_src': '/srv/tiny-model', 'model_service_max_batch_size': 2,
                             'model_service_max_model_len': 320, 'model_service_max_new_tokens': 64,
                             'model_service_default_max_new_tokens': 32,
                             # balancing and draining are under test here, not the replicas' key (on by
                             # default since issue 13): the load clients send none
                             'model_service_api_key_required': False,
                             'model_service_warmup': False, 'model_service_health_timeout': 300,
                             'model_service_health_delay': 1}}}}}))
        ctx = dict(names=names, inventory=str(inventory), dir=tmp, started=started)
        # the replicas first (the gateway tests start from a host without HAProxy)
        proc = play(ctx, SITE, '--limit', 'model_service')
        assert proc.returncode == 0, proc.stdout[-4000:]
        record('deploy', '4 hosts up, 3 replicas deployed in %.0f s' % (time.time() - started),
               deploy_s=round(time.time() - started, 1))
        yield ctx
    finally:
        for name in names.values():
            subprocess_quiet(['docker', 'rm', '-f', name])
        subprocess_quiet(['docker', 'network', 'rm', net])
        record('run', 'module total %.0f s' % (time.time() - started), total_s=round(time.time() - started, 1))


@pytest.fixture(autouse=True)
def timed(request, gw):
    """Each test's duration, in the figures (the module fixture's set-up is in deploy_s)."""
    t0 = time.time()
    yield
    FIGURES.setdefault('durations_s', {})[request.node.name] = round(time.time() - t0, 1)


def subprocess_quiet(cmd):
    run(cmd, check=False)


def play(ctx, playbook, *args, **extra):
    cmd = ['ansible-playbook', '-i', ctx['inventory'], playbook] + list(args)
    if extra:
        cmd += ['-e', json.dumps(extra)]
    return run(cmd, check=False, env=ansible_env(), cwd=REPO, timeout=900)


def gw_exec(ctx, *cmd, **kwargs):
    return run(['docker', 'exec', '-i', ctx['names']['gw']] + list(cmd), **kwargs)


def runtime(ctx, command):
    return run(['docker', 'exec', '-i', ctx['names']['gw'], 'socat', 'stdio', 'UNIX-CONNECT:/run/haproxy/admin.sock'],
               input=command + '\n').stdout


def server_states(ctx):
    """server name -> (status, current sessions, total sessions) from show stat."""
    states = {}
    for line in runtime(ctx, 'show stat').splitlines():
        f = line.split(',')
        if len(f) > 17 and f[0] == 'model_service' and f[1] not in ('BACKEND', 'FRONTEND'):
            states[f[1]] = (f[17], int(f[4] or 0), int(f[7] or 0))
    return states


def haproxy_installed(ctx):
    return gw_exec(ctx, 'dpkg-query', '-W', '-f', '${Status}', 'haproxy', check=False).stdout.strip() == 'install ok installed'


def chat(address, port=PORT, max_tokens=8, stream=True, timeout=120):
    """One chat completion; returns (ok, served_by, error)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        body = json.dumps({'model': SERVED, 'messages': [{'role': 'user', 'content': 'hello there'}],
                           'max_tokens': max_tokens, 'stream': stream})
        conn.request('POST', '/v1/chat/completions', body, {'Content-Type': 'application/json'})
        resp = conn.getresponse()
        served = resp.getheader('X-Served-By')
        if resp.status != 200:
            return False, served, 'HTTP %d %s' % (resp.status, resp.read()[:200])
        if not stream:
            json.loads(resp.read())
            return True, served, None
        done = False
        while True:
            line = resp.readline()
            if not line:
                break
            if line.strip() == b'data: [DONE]':
                done = True
                break
        return done, served, None if done else 'stream ended without [DONE]'
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, None, '%s: %s' % (type(exc).__name__, exc)
    finally:
        conn.close()


class Load(object):
    """N clients sending requests back to back until stopped (or max_requests each)."""

    def __init__(self, address, port=PORT, clients=4, max_requests=None, pause=0.0, **kwargs):
        self.address, self.port, self.kwargs, self.pause = address, port, kwargs, pause
        self.max_requests = max_requests
        self.results = []      # (start, end, ok, served_by, error)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._client) for dummy in range(clients)]

    def _client(self):
        count = 0
        while not self.stop_event.is_set() and (self.max_requests is None or count < self.max_requests):
            start = time.time()
            ok, served, error = chat(self.address, self.port, **self.kwargs)
            with self.lock:
                self.results.append((start, time.time(), ok, served, error))
            count += 1
            if self.pause:
                time.sleep(self.pause)

    def start(self):
        self.t0 = time.time()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        return self.wait()

    def wait(self):
        """Until every client is done: after stop(), or for a bounded load (max_requests) every request sent."""
        for t in self.threads:
            t.join(300)
        self.elapsed = time.time() - self.t0
        return self

    def failures(self):
        return [r for r in self.results if not r[2]]

    def served(self):
        counts = {}
        for r in self.results:
            if r[2]:
                counts[r[3]] = counts.get(r[3], 0) + 1
        return counts


BAD = [
    ({'gateway_balance': 'weighted'}, 'gateway_balance'),
    ({'gateway_port': 70000}, 'gateway_port and gateway_stats_port must be different ports in 1-65535'),
    ({'gateway_backend_group': 'no_such_group'}, 'gateway_backend_hosts is empty'),
    ({'gateway_tls_certificate': '/etc/haproxy/missing.pem'}, 'gateway_tls_certificate /etc/haproxy/missing.pem does not exist'),
]


@pytest.mark.parametrize('extra, message', BAD, ids=[list(b[0])[0] for b in BAD])
def test_bad_input_fails_clearly_and_changes_nothing(gw, extra, message):
    proc = play(gw, GATEWAY, **extra)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    if 'gateway_balance' in extra:
        assert 'leastconn' in proc.stdout     # the allowed values are named
    assert not haproxy_installed(gw)


def test_check_mode_changes_nothing(gw):
    proc = play(gw, GATEWAY, '--check')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not haproxy_installed(gw)


def test_converge_and_idempotence(gw):
    t0 = time.time()
    proc = play(gw, GATEWAY)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert haproxy_installed(gw)
    again = play(gw, GATEWAY)
    assert again.returncode == 0
    assert 'changed=0' in again.stdout.split('PLAY RECAP')[-1], again.stdout[-3000:]
    record('converge', 'gateway converge + idempotence %.0f s' % (time.time() - t0),
           converge_idempotence_s=round(time.time() - t0, 1))
    # the live configuration: checked, private, every replica with maxconn = its batch size
    cfg = gw_exec(gw, 'cat', '/etc/haproxy/haproxy.cfg').stdout
    for r in ('r1', 'r2', 'r3'):
        assert 'server %s-autoglm %s:8080 maxconn 2' % (gw['names'][r], ADDR[r]) in cfg
    assert 'balance leastconn' in cfg and 'option httpchk GET /health' in cfg
    assert 'retry-on conn-failure empty-response 503' in cfg
    assert gw_exec(gw, 'stat', '-c', '%a %U %G', '/etc/haproxy/haproxy.cfg').stdout.split() == ['640', 'root', 'haproxy']
    # all three replicas up in the gateway (rise 2 x 1 s)
    deadline = time.time() + 30
    while time.time() < deadline and any(s[0] != 'UP' for s in server_states(gw).values()):
        time.sleep(1)
    assert [s[0] for s in server_states(gw).values()] == ['UP', 'UP', 'UP'], server_states(gw)
    ok, served, error = chat(ADDR['gw'])
    assert ok, error
    # the Prometheus endpoint
    metrics = gw_exec(gw, 'python3', '-c', 'import urllib.request;print(urllib.request.urlopen("http://127.0.0.1:8404/metrics").read().decode())').stdout
    assert 'haproxy_backend_active_servers{proxy="model_service"} 3' in metrics


def test_rolling_upgrade_under_load_fails_no_request(gw):
    # 4 clients, 0.2 s between requests: the 2 CPU cores also run the 4 hosts and Ansible
    load = Load(ADDR['gw'], clients=4, pause=0.2).start()
    time.sleep(3)
    roll_t0 = time.time()
    proc = play(gw, UPGRADE, upgrade_hosts='model_service', upgrade_serial=1, upgrade_components=['service'],
                upgrade_health_delay=1, upgrade_drain_delay=1, **AFTER_ROLL)
    roll_s = time.time() - roll_t0
    time.sleep(3)
    load.stop()
    served = load.served()
    failures = load.failures()
    record('rolling_upgrade', '%d of %d requests failed during the serial-1 roll of 3 replicas (%.0f s of load, '
           'roll %.0f s, playbook rc %d); served per replica %s'
           % (len(failures), len(load.results), load.elapsed, roll_s, proc.returncode, replica_counts(gw, served)),
           requests=len(load.results), failed=len(failures), load_s=round(load.elapsed, 1), roll_s=round(roll_s, 1),
           per_replica=replica_counts(gw, served), playbook_rc=proc.returncode,
           first_errors=[r[4] for r in failures[:5]])
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert load.failures() == []
    assert sorted(served) == sorted('%s-autoglm' % gw['names'][r] for r in ('r1', 'r2', 'r3')), served
    # every replica restarted with the new setting, back UP in the gateway
    for r in ('r1', 'r2', 'r3'):
        env = run(['docker', 'exec', gw['names'][r], 'cat', '/etc/openautoglm/autoglm.env']).stdout
        assert 'AUTOGLM_LOG_LEVEL=%s' % AFTER_ROLL['model_service_log_level'] in env
    assert [s[0] for s in server_states(gw).values()] == ['UP', 'UP', 'UP']


def test_killed_replica_loses_at_most_its_requests_in_flight(gw):
    victim = '%s-autoglm' % gw['names']['r2']
    load = Load(ADDR['gw'], clients=4, max_tokens=32).start()
    time.sleep(4)
    killed_at = time.time()
    run(['docker', 'kill', gw['names']['r2']])
    down_after = None
    while time.time() - killed_at < 30:
        if server_states(gw)[victim][0].startswith('DOWN'):
            down_after = time.time() - killed_at
            break
        time.sleep(0.2)
    time.sleep(5)
    run(['docker', 'start', gw['names']['r2']])
    restarted_at = time.time()
    up_after = None
    while time.time() - restarted_at < 240:
        if server_states(gw)[victim][0] == 'UP':
            up_after = time.time() - restarted_at
            break
        time.sleep(1)
    time.sleep(3)
    load.stop()
    failures = load.failures()
    in_flight = [r for r in load.results if r[0] < killed_at < r[1]]
    on_victim = sum(1 for r in in_flight if r[3] in (victim, None))
    down = None if down_after is None else round(down_after, 1)
    up = None if up_after is None else round(up_after, 1)
    record('killed_replica', '%d of %d requests failed after docker kill of r2 (in flight at the kill: %d, on the '
           'victim: %d); marked DOWN after %s s, UP %s s after docker start; served per replica %s'
           % (len(failures), len(load.results), len(in_flight), on_victim, down, up, replica_counts(gw, load.served())),
           requests=len(load.results), failed=len(failures), in_flight_at_kill=len(in_flight),
           in_flight_on_victim=on_victim, marked_down_after_s=down, up_after_restart_s=up,
           per_replica=replica_counts(gw, load.served()), first_errors=[r[4] for r in failures[:5]])
    # failures: only requests that were in flight when the host died (4 clients: at most 4)
    assert all(r[0] < killed_at + 0.5 for r in failures), failures
    assert len(failures) <= 4, failures
    # inter 1 s x fall 2 + check timeout 1 s, plus polling slack
    assert down_after is not None and down_after <= 6, down_after
    assert up_after is not None, server_states(gw)
    after = [r for r in load.results if r[0] > killed_at + 1]
    assert after and all(r[2] for r in after)
    assert any(r[3] == victim for r in load.results if r[0] > restarted_at + up_after)


def test_fleet_report_shows_the_gateway_and_each_replica(gw):
    report_dir = gw['dir'] / 'fleet'
    proc = play(gw, os.path.join(REPO, 'playbooks', 'report.yml'), report_hosts='model_service',
                report_run_preflight=False, report_preflight_dir=str(gw['dir'] / 'preflight'), report_dir=str(report_dir))
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(str(report_dir / 'fleet.json')) as handle:
        gateways = json.load(handle)['gateways']
    assert [g['gateway'] for g in gateways] == [gw['names']['gw']]
    assert [(r['server'], r['status']) for r in gateways[0]['replicas']] == [
        ('%s-autoglm' % gw['names'][r], 'UP') for r in ('r1', 'r2', 'r3')]
    assert all(r['total'] > 0 for r in gateways[0]['replicas'])
    with open(str(report_dir / 'fleet.html')) as handle:
        assert '3 of 3 replicas up' in handle.read()


def test_gateway_overhead(gw):
    """requests/s of the same load (4 clients, 50 short streamed requests each) direct to r1 and
    through the gateway with only r1 ready (r2, r3 drained), then through the gateway with all
    three (on 2 CPU cores three replicas share the cores: no scale-out gain to expect here)."""
    n = 50
    # wait(), not stop(): stop() would end each client after its first request
    for r in ('r1', 'r2', 'r3'):      # warm every replica (the test hosts run without warm-up)
        Load(ADDR[r], clients=4, max_requests=5, max_tokens=4).start().wait()
    direct = Load(ADDR['r1'], clients=4, max_requests=n, max_tokens=4).start().wait()
    for r in ('r2', 'r3'):
        runtime(gw, 'set server model_service/%s-autoglm state drain' % gw['names'][r])
    try:
        via_one = Load(ADDR['gw'], clients=4, max_requests=n, max_tokens=4).start().wait()
    finally:
        for r in ('r2', 'r3'):
            runtime(gw, 'set server model_service/%s-autoglm state ready' % gw['names'][r])
    via_all = Load(ADDR['gw'], clients=4, max_requests=n, max_tokens=4).start().wait()
    rates = [len(x.results) / x.elapsed for x in (direct, via_one, via_all)]
    record('overhead', 'direct to r1 %.2f req/s, through the gateway to r1 alone %.2f req/s (ratio %.3f), through '
           'the gateway to all three %.2f req/s (ratio %.3f); %s requests (4 clients x %d, streamed, 4 tokens) per run'
           % (rates[0], rates[1], rates[1] / rates[0], rates[2], rates[2] / rates[0],
              '/'.join(str(len(x.results)) for x in (direct, via_one, via_all)), n),
           direct_rps=round(rates[0], 2), gateway_one_rps=round(rates[1], 2), ratio=round(rates[1] / rates[0], 3),
           gateway_all_rps=round(rates[2], 2), ratio_all=round(rates[2] / rates[0], 3),
           requests=[len(x.results) for x in (direct, via_one, via_all)],
           seconds=[round(x.elapsed, 1) for x in (direct, via_one, via_all)],
           failed=sum(len(x.failures()) for x in (direct, via_one, via_all)))
    for x in (direct, via_one, via_all):
        assert len(x.results) == 4 * n
        assert x.failures() == []
    assert set(via_one.served()) == {'%s-autoglm' % gw['names']['r1']}
    assert rates[1] / rates[0] > 0.5      # a proxy hop, not a bottleneck


def test_two_replicas_on_one_host_then_back_to_one(gw):
    """model_service_replicas: 2 on r3 (a CPU host: not pinned): a second unit on 8081, its own
    environment file, listed by the gateway and UP; back to 1: the surplus unit is removed."""
    r3 = gw['names']['r3']
    with open(gw['inventory']) as handle:
        inventory = json.load(handle)
    inventory['all']['children']['model_service']['hosts'][r3]['model_service_replicas'] = 2
    two = dict(gw, inventory=str(gw['dir'] / 'hosts-two-replicas.yml'))
    with open(two['inventory'], 'w') as handle:
        json.dump(inventory, handle)
    proc = play(two, SITE, **AFTER_ROLL)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert run(['docker', 'exec', r3, 'systemctl', 'is-active', 'autoglm.service', 'autoglm-1.service']).stdout.split() == [
        'active', 'active']
    env = run(['docker', 'exec', r3, 'cat', '/etc/openautoglm/autoglm-1.env']).stdout
    assert 'AUTOGLM_PORT=8081' in env
    assert 'CUDA_VISIBLE_DEVICES' not in run(['docker', 'exec', r3, 'cat', '/etc/systemd/system/autoglm-1.service']).stdout
    cfg = gw_exec(gw, 'cat', '/etc/haproxy/haproxy.cfg').stdout
    assert 'server %s-autoglm-1 %s:8081 maxconn 2' % (r3, ADDR['r3']) in cfg
    deadline = time.time() + 60
    while time.time() < deadline and server_states(gw).get('%s-autoglm-1' % r3, ('?',))[0] != 'UP':
        time.sleep(1)
    assert server_states(gw)['%s-autoglm-1' % r3][0] == 'UP'
    ok, served, error = chat(ADDR['r3'], port=8081)
    assert ok, error
    # back to one replica: unit and environment file of replica 1 gone, gateway back to three servers
    proc = play(gw, SITE, **AFTER_ROLL)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert run(['docker', 'exec', r3, 'test', '-e', '/etc/systemd/system/autoglm-1.service'], check=False).returncode != 0
    assert run(['docker', 'exec', r3, 'test', '-e', '/etc/openautoglm/autoglm-1.env'], check=False).returncode != 0
    assert sorted(server_states(gw)) == sorted('%s-autoglm' % gw['names'][r] for r in ('r1', 'r2', 'r3'))
