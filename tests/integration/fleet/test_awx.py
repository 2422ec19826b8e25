# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""AWX / Automation Controller: EE build context, job templates and surveys as code, runner runs.

* ansible-builder create on execution-environment.yml with the collection tarball built from
  this checkout: the build context must carry the tarball, the Python and system deps.
* playbooks/awx/configure.yml and the four job-template playbooks pass --syntax-check; every
  survey is valid for AWX and every survey variable is one the playbook (or its role) reads.
* The playbooks run the way AWX runs them: ansible-runner with a project directory, an
  inventory and the survey answers as AWX sends them (strings for multiple choice, newline
  joined multiselect defaults), against four container hosts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import shutil
import tarfile

import pytest
import yaml

from conftest import REPO, VENV_BIN, Containers, ansible_env, run

AWX_DIR = os.path.join(REPO, 'playbooks', 'awx')
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def test_ansible_builder_creates_a_build_context(tmp_path):
    work = tmp_path / 'ee'
    (work / 'meta').mkdir(parents=True)
    shutil.copy(os.path.join(REPO, 'execution-environment.yml'), str(work))
    for name in ('ee-requirements.txt', 'ee-bindep.txt', 'ee-galaxy-requirements.yml'):
        shutil.copy(os.path.join(REPO, 'meta', name), str(work / 'meta'))
    run(['ansible-galaxy', 'collection', 'build', '--force', '--output-path', str(work / 'build' / 'ee' / 'collections'),
         REPO], env=ansible_env())
    context = tmp_path / 'context'
    run([os.path.join(VENV_BIN, 'ansible-builder'), 'create', '-f', str(work / 'execution-environment.yml'),
         '--context', str(context)], env=ansible_env())
    containerfile = [p for p in (context / 'Containerfile', context / 'Dockerfile') if p.exists()]
    assert containerfile, os.listdir(str(context))
    text = containerfile[0].read_text()
    assert 'ansible-core==2.19.14' in text and 'ansible-runner==2.4.3' in text
    assert 'COPY _build/collections/ /tmp/openautoglm-collections/' in text
    assert 'RUN mv /tmp/openautoglm-collections/openautoglm-deploy-*.tar.gz' in text
    assert 'docker>=7.0' in (context / '_build' / 'requirements.txt').read_text()
    assert 'openssh-client [platform:dpkg]' in (context / '_build' / 'bindep.txt').read_text()
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    names = [c['name'] for c in galaxy['collections']]
    assert '/tmp/openautoglm-collections/openautoglm-deploy.tar.gz' in names     # no version to keep in step
    version = load(os.path.join(REPO, 'galaxy.yml'))['version']
    tarball = context / '_build' / 'collections' / ('openautoglm-deploy-%s.tar.gz' % version)
    with tarfile.open(str(tarball)) as archive:
        members = set(archive.getnames())
    # the collection as built carries the plugins, playbooks and its own EE metadata
    for member in ('plugins/action/fleet_report.py', 'plugins/filter/tco.py', 'playbooks/report.yml',
                   'playbooks/upgrade.yml', 'meta/execution-environment.yml', 'meta/ee-requirements.txt'):
        assert member in members, member
    assert not any(m.startswith(('.venv', 'build/', 'reports/')) for m in members)


@pytest.mark.parametrize('playbook', ['awx/configure.yml', 'preflight.yml', 'site.yml', 'upgrade.yml', 'report.yml'])
def test_playbooks_pass_syntax_check(playbook):
    run(['ansible-playbook', '--syntax-check', '-i', 'localhost,', os.path.join(REPO, 'playbooks', playbook)],
        env=ansible_env(), cwd=REPO)


def test_job_templates_and_surveys_are_valid_and_wired_to_real_variables():
    settings = load(os.path.join(AWX_DIR, 'vars', 'main.yml'))
    templates = settings['awx_job_templates']
    assert sorted(t['playbook'] for t in templates) == sorted(
        'playbooks/%s.yml' % n for n in ('preflight', 'site', 'upgrade', 'report'))
    role_defaults = ''.join(open(p).read() for p in glob.glob(os.path.join(REPO, 'roles', '*', 'defaults', 'main.yml')))
    for template in templates:
        playbook_text = open(os.path.join(REPO, template['playbook'])).read()
        survey = load(os.path.join(AWX_DIR, 'surveys', template['survey'] + '.yml'))
        assert survey['name'] and survey['spec'], template['name']
        variables = [q['variable'] for q in survey['spec']]
        assert len(variables) == len(set(variables)), 'duplicate survey variable in %s' % template['survey']
        for question in survey['spec']:
            assert question['type'] in SURVEY_TYPES, question
            assert isinstance(question['required'], bool), question
            assert question['question_name'], question
            if question['type'] in ('multiplechoice', 'multiselect'):
                assert question['choices'], question
                defaults = [d for d in str(question.get('default', '')).split('\n') if d]
                assert set(defaults) <= set(question['choices']), question
            if question['type'] in ('integer', 'float'):
                assert question['min'] <= question['default'] <= question['max'], question
            # the answer must reach something that reads it: the playbook or a role default
            assert question['variable'] in playbook_text or (question['variable'] + ':') in role_defaults, (
                'survey variable %s of %s is read by neither %s nor a role' % (
                    question['variable'], template['survey'], template['playbook']))


@pytest.fixture(scope='module')
def hosts(require_docker, tmp_path_factory):
    containers = Containers('awx')
    try:
        names = containers.start(4)
        inventory = tmp_path_factory.mktemp('awx-inventory') / 'hosts.yml'
        inventory.write_text(json.dumps({'all': {'children': {'gpu_nodes': {
            'hosts': dict((name, {'preflight_preset': 'reference'} if i == 3 else {}) for i, name in enumerate(names)),
            'vars': {'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3',
                     'preflight_preset': 'development'}}}}}))
        yield dict(names=names, inventory=str(inventory))
    finally:
        containers.remove()


def runner(tmp_path, monkeypatch, playbook, inventory, extravars):
    import ansible_runner
    monkeypatch.setenv('PATH', VENV_BIN + os.pathsep + os.environ.get('PATH', ''))
    env = ansible_env()
    (tmp_path / 'runner').mkdir(parents=True)
    result = ansible_runner.run(
        private_data_dir=str(tmp_path / 'runner'), project_dir=REPO, playbook=playbook, inventory=inventory,
        extravars=extravars, quiet=True,
        envvars=dict((k, env[k]) for k in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_NOCOLOR')))
    events = list(result.events)
    return result, events


def test_preflight_job_through_ansible_runner(hosts, tmp_path, monkeypatch):
    report_dir = tmp_path / 'preflight'
    survey = {'preflight_hosts': 'gpu_nodes', 'preflight_preset': 'development', 'preflight_fail_on_shortfall': 'false'}
    # the job template's extra variables (not a survey question): where reports go
    result, events = runner(tmp_path, monkeypatch, 'playbooks/preflight.yml', hosts['inventory'],
                            dict(survey, preflight_report_dir=str(report_dir)))
    assert result.status == 'successful' and result.rc == 0, result.stdout.read()[-3000:]
    judged = set(e['event_data']['host'] for e in events if e['event'] == 'runner_on_ok'
                 and e['event_data'].get('task_action') == 'openautoglm.deploy.hardware_baseline')
    assert judged == set(hosts['names'])
    reports = dict((n, json.load(open(str(report_dir / (n + '.json'))))) for n in hosts['names'])
    # survey answer wins over the inventory's per-host preset (extra vars), so all pass
    assert all(r['preset'] == 'development' and r['passed'] for r in reports.values())


def test_report_job_through_ansible_runner(hosts, tmp_path, monkeypatch):
    survey = {'report_hosts': 'gpu_nodes', 'report_run_preflight': 'true', 'report_fail_on': 'unreachable\nfailed, no_report',
              'report_hardware_price': 22300.0, 'report_electricity_price': 1.0, 'report_hours_per_day': 8.0,
              'report_maintenance_per_year': 500.0, 'report_currency': 'CNY'}
    extra = dict(survey, report_dir=str(tmp_path / 'fleet'), report_preflight_dir=str(tmp_path / 'preflight'))
    result, events = runner(tmp_path, monkeypatch, 'playbooks/report.yml', hosts['inventory'], extra)
    assert result.status == 'successful' and result.rc == 0, result.stdout.read()[-3000:]
    document = json.load(open(str(tmp_path / 'fleet' / 'fleet.json')))
    summary = document['summary']
    # the inventory's reference preset on the fourth host applies here (no survey preset)
    assert summary['counts'] == {'passed': 3, 'below_baseline': 1, 'unreachable': 0, 'failed': 0, 'no_report': 0}
    assert summary['below_baseline_hosts'] == [hosts['names'][3]]
    # cost from the flat survey answers: 4 GPU-less hosts at 300 W rest-of-system, 8 h/day
    assert summary['tco']['hosts'] == 4 and summary['tco']['currency'] == 'CNY'
    one = 22300 + 0.3 * 8 * 365 * 3 * 1.0 + 500 * 3
    assert summary['tco']['total'] == pytest.approx(4 * one, abs=0.05)
    # a failing status in report_fail_on fails the job, after the report is written
    extra['report_fail_on'] = 'failed\nbelow_baseline'      # multiselect as a newline-joined string
    result, events = runner(tmp_path / 'again', monkeypatch, 'playbooks/report.yml', hosts['inventory'], extra)
    assert result.status == 'failed'
    failed = [e for e in events if e['event'] == 'runner_on_failed']
    assert failed and 'failed=0 below_baseline=1' in failed[-1]['event_data']['res']['msg']
