# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet report: statuses, stale and broken reports, summary, CSV/JSON/HTML content."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import json
import os
import re
import shutil

import pytest

from ansible_collections.openautoglm.deploy.plugins.plugin_utils import fleet_report as fr

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'fleet', 'preflight')
HOSTS = ['gpu-h100-01', 'gpu-h100-02', 'gpu-h100-03', 'gpu-a100-01', 'gpu-a100-02', 'gpu-a100-03',
         'gpu-l4-01', 'gpu-new-01', 'gpu-spare-01']
TCO = dict(hardware_price=22300, electricity_price=1.0, hours_per_day=8, maintenance_total=1500, currency='CNY')


@pytest.fixture
def document():
    return fr.build(FIXTURES, hosts=HOSTS, unreachable=['gpu-h100-03'],
                    failed={'gpu-a100-03': 'MODULE FAILURE: /usr/bin/python3: not found'},
                    tco=TCO, tco_by_host={'gpu-h100-01': {'hardware_price': 310000}},
                    generated_at='2026-11-27T09:05:00Z')


def rows_by_host(document):
    return dict((row['host'], row) for row in document['hosts'])


def test_every_targeted_host_gets_a_row_with_its_status(document):
    rows = rows_by_host(document)
    assert sorted(rows) == sorted(HOSTS)
    expected = {
        'gpu-h100-01': 'passed', 'gpu-h100-02': 'passed', 'gpu-a100-01': 'passed', 'gpu-new-01': 'passed',
        'gpu-a100-02': 'below_baseline', 'gpu-l4-01': 'below_baseline',
        'gpu-h100-03': 'unreachable', 'gpu-a100-03': 'failed', 'gpu-spare-01': 'no_report',
    }
    assert dict((h, r['status']) for h, r in rows.items()) == expected
    # worst first
    assert [r['status'] for r in document['hosts']][:3] == ['unreachable', 'failed', 'no_report']


def test_rows_carry_the_hardware_columns(document):
    rows = rows_by_host(document)
    h100 = rows['gpu-h100-01']
    assert h100['gpu_count'] == 8
    assert h100['gpu_models'] == ['8 x NVIDIA H100 80GB HBM3']
    assert h100['vram_gb_per_gpu'] == [85.5]
    assert h100['vram_gb_total'] == 684.2
    assert h100['driver_version'] == '535.216.03'
    assert h100['cuda_version'] == '12.2'
    assert h100['ram_installed_gb'] == 2199.0          # 2048 GiB, decimal GB
    assert h100['nvme_tb'] == 7.68
    assert h100['verdict'] == 'pass'
    a100 = rows['gpu-a100-02']
    assert a100['verdict'] == 'FAIL: 2 shortfalls'
    assert a100['failed_checks'] == ['ram', 'nvme']
    assert a100['shortfalls'] == ['RAM: 68.7 GB installed, need >= 128 GB', 'NVMe: none found, need >= 1 TB NVMe']
    assert rows['gpu-a100-01']['verdict'] == 'pass (1 warning)'
    fresh = rows['gpu-new-01']
    assert fresh['driver_version'] is None and fresh['gpu_count'] == 2


def test_unreachable_host_keeps_its_old_report_marked_stale(document):
    row = rows_by_host(document)['gpu-h100-03']
    assert row['report_stale'] is True
    assert row['collected_at'] == '2026-11-20T08:15:00Z'
    # stale hardware is not counted in the fleet's GPUs
    assert document['summary']['gpus'] == 8 + 8 + 4 + 4 + 2 + 2
    assert document['summary']['unreachable_hosts'] == ['gpu-h100-03']


def test_summary_counts_and_cost(document):
    summary = document['summary']
    assert summary['counts'] == {'passed': 4, 'below_baseline': 2, 'unreachable': 1, 'failed': 1, 'no_report': 1}
    assert summary['hosts'] == 9 and summary['reachable'] == 8
    assert summary['failed_checks'] == {'ram': 1, 'nvme': 1, 'gpu': 1}
    assert summary['gpu_models']['NVIDIA H100 80GB HBM3'] == 16
    rows = rows_by_host(document)
    # power from the fixtures' NVML power limits + the default 300 W rest of system
    assert rows['gpu-h100-02']['tco']['power_watts'] == 8 * 700 + 300
    assert rows['gpu-h100-01']['tco']['hardware_price'] == 310000.0     # per-host override
    assert rows['gpu-new-01']['tco'] is None                            # PCI-only GPUs: no power limit
    assert 'power_watts: required' in rows['gpu-new-01']['tco_error']
    costed = [r['tco']['total'] for r in document['hosts'] if r['tco']]
    assert summary['tco']['hosts'] == 6
    assert summary['tco']['total'] == round(sum(costed), 2)
    assert summary['tco_missing_hosts'] == ['gpu-a100-03', 'gpu-new-01', 'gpu-spare-01']


def test_without_hosts_every_report_in_the_directory_is_used():
    document = fr.build(FIXTURES)
    assert len(document['hosts']) == 7
    assert 'tco' not in document['summary']


def test_a_broken_report_makes_the_host_failed_not_the_report(tmp_path):
    shutil.copy(os.path.join(FIXTURES, 'gpu-h100-01.json'), str(tmp_path))
    (tmp_path / 'broken.json').write_text('{"host": ')
    document = fr.build(str(tmp_path))
    rows = rows_by_host(document)
    assert rows['broken']['status'] == 'failed'
    assert 'unreadable report' in rows['broken']['error']
    assert rows['gpu-h100-01']['status'] == 'passed'


def test_missing_directory():
    with pytest.raises(fr.FleetReportError, match='does not exist'):
        fr.build('/nonexistent/reports')
    # with an explicit host list, a missing directory means "no reports" for everyone
    document = fr.build('/nonexistent/reports', hosts=['a'], unreachable=['b'])
    assert [(r['host'], r['status']) for r in document['hosts']] == [('b', 'unreachable'), ('a', 'no_report')]


def test_csv_has_one_line_per_host_and_the_header(document):
    rows = list(csv.DictReader(io.StringIO(fr.to_csv(document))))
    assert len(rows) == len(HOSTS)
    assert tuple(rows[0].keys()) == fr.CSV_FIELDS
    by_host = dict((r['host'], r) for r in rows)
    assert by_host['gpu-a100-02']['shortfalls'] == ('RAM: 68.7 GB installed, need >= 128 GB; '
                                                    'NVMe: none found, need >= 1 TB NVMe')
    assert by_host['gpu-h100-03']['status'] == 'unreachable'
    assert by_host['gpu-h100-03']['report_stale'] == 'yes'
    assert float(by_host['gpu-h100-02']['tco_total']) == rows_by_host(document)['gpu-h100-02']['tco']['total']


def test_json_round_trips(document):
    assert json.loads(fr.to_json(document))['summary']['counts']['passed'] == 4


def test_html_is_self_contained_and_shows_every_host(document):
    page = fr.to_html(document)
    for host in HOSTS:
        assert '>%s<' % host in page
    assert page.count('<svg ') == 5                         # verdicts, models, checks, drivers, cost
    assert '<script' not in page.lower()
    assert not re.search(r'\b(src|href)\s*=', page)         # nothing loaded from anywhere
    assert 'url(' not in page and '@import' not in page
    assert re.findall(r'https?://[^"\s<]+', page) == ['http://www.w3.org/2000/svg'] * 5   # SVG namespace only
    assert 'RAM: 68.7 GB installed, need &gt;= 128 GB' in page
    assert 'last report 2026-11-20T08:15:00Z (not from this run)' in page


def test_html_escapes_host_names_and_messages(tmp_path):
    document = fr.build(str(tmp_path), hosts=['<script>alert(1)</script>'],
                        failed={'<script>alert(1)</script>': '<img onerror=x>'})
    page = fr.to_html(document)
    assert '<script>' not in page and '<img' not in page
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in page


def test_nvswitch_hosts_and_fabric_manager_in_rows_csv_and_html(document):
    rows = rows_by_host(document)
    assert (rows['gpu-h100-01']['nvswitch_count'], rows['gpu-h100-01']['fabric_manager']) == (4, 'enabled')
    assert (rows['gpu-h100-02']['nvswitch_count'], rows['gpu-h100-02']['fabric_manager']) == (4, 'not enabled')
    assert (rows['gpu-a100-01']['nvswitch_count'], rows['gpu-a100-01']['fabric_manager']) == (0, None)
    summary = document['summary']
    assert summary['nvswitch_hosts'] == ['gpu-h100-01', 'gpu-h100-02']     # h100-03 is stale: not counted
    assert summary['fabric_manager_missing_hosts'] == ['gpu-h100-02']
    by_host = dict((r['host'], r) for r in csv.DictReader(io.StringIO(fr.to_csv(document))))
    assert (by_host['gpu-h100-02']['nvswitch_count'], by_host['gpu-h100-02']['fabric_manager']) == ('4', 'not enabled')
    page = fr.to_html(document)
    assert '4 NVSwitch, Fabric Manager enabled' in page
    assert '<div class="nvs warn">4 NVSwitch, Fabric Manager not enabled</div>' in page
    assert 'without an enabled Fabric Manager (CUDA will not start):</b> gpu-h100-02' in page


def test_reports_from_before_nvswitch_detection_still_load(tmp_path):
    with open(os.path.join(FIXTURES, 'gpu-a100-01.json')) as handle:
        old = json.load(handle)
    for key in ('nvswitch_count', 'nvswitches', 'fabric_manager'):
        old['hardware']['gpu'].pop(key)
    (tmp_path / 'old-host.json').write_text(json.dumps(old))
    row = fr.build(str(tmp_path), hosts=['old-host'])['hosts'][0]
    assert row['status'] == 'passed' and row['nvswitch_count'] == 0 and row['fabric_manager'] is None


def test_gateway_and_replica_states_in_json_and_html():
    gateways = {
        'gw1': [{'server': 'h2-autoglm', 'status': 'DRAIN', 'sessions': '1', 'queued': '0', 'total': '7'},
                {'server': 'h1-autoglm', 'status': 'UP', 'sessions': 2, 'queued': 0, 'total': 40}],
        'gw2': {'error': 'socat: No such file or directory'},
    }
    doc = fr.build(FIXTURES, hosts=[], gateways=gateways, generated_at='2026-12-01T00:00:00Z')
    assert doc['gateways'] == [
        dict(gateway='gw1', error=None, up=1, replicas=[
            dict(server='h1-autoglm', status='UP', sessions=2, queued=0, total=40),
            dict(server='h2-autoglm', status='DRAIN', sessions=1, queued=0, total=7)]),
        dict(gateway='gw2', error='socat: No such file or directory', replicas=[])]
    html = fr.to_html(doc)
    assert '<h2>Gateway gw1</h2>' in html and '1 of 2 replicas up' in html
    assert re.search(r'h2-autoglm</td><td><span class="badge"[^>]*>DRAIN</span>', html)
    assert 'runtime API not readable: socat: No such file or directory' in html
    assert json.loads(fr.to_json(doc))['gateways'][0]['replicas'][1]['status'] == 'DRAIN'


def test_no_gateway_no_section(document):
    assert document['gateways'] == []
    assert '<h2>Gateway' not in fr.to_html(document)
