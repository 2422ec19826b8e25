# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet report from per-host preflight reports: rows, summary, and JSON / CSV / HTML output.

Controller-side code shared by the openautoglm.deploy.fleet_report action plugin and the
tests. The HTML page is self-contained: inline CSS and inline SVG plots, no script, no
fonts or assets from the network.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import datetime
import html
import io
import json
import math
import os

from ansible_collections.openautoglm.deploy.plugins.plugin_utils import tco as tco_utils

SCHEMA_VERSION = 1
# Host status, worst first (the order of the summary and of the table).
STATUSES = ('unreachable', 'failed', 'no_report', 'below_baseline', 'passed')
STATUS_LABELS = {
    'passed': 'meets baseline',
    'below_baseline': 'below baseline',
    'unreachable': 'unreachable',
    'failed': 'failed (no verdict)',
    'no_report': 'no report',
}
STATUS_COLORS = {
    'passed': '#2e7d32',
    'below_baseline': '#c62828',
    'unreachable': '#6a1b9a',
    'failed': '#ef6c00',
    'no_report': '#757575',
}
CHECK_LABELS = {
    'gpu': 'GPU', 'gpu_mig': 'GPU MIG', 'cpu_cores': 'CPU cores', 'ram': 'RAM',
    'ram_ecc': 'RAM ECC', 'nvme': 'NVMe', 'model_path_nvme': 'Model path on NVMe',
}
CSV_FIELDS = (
    'host', 'status', 'verdict', 'preset', 'gpu_count', 'gpu_models', 'vram_gb_per_gpu',
    'vram_gb_total', 'driver_version', 'cuda_version', 'nvswitch_count', 'fabric_manager',
    'cpu_physical_cores', 'ram_installed_gb',
    'ram_ecc', 'nvme_count', 'nvme_tb', 'model_path_on_nvme', 'shortfalls', 'warnings', 'error',
    'collected_at', 'report_stale', 'power_watts', 'tco_total', 'tco_per_year',
)


class FleetReportError(ValueError):
    """Unreadable input; the message names the file or parameter."""


def _gb(value):
    return None if value is None else round(float(value) / 1e9, 1)


def _tb(value):
    return None if value is None else round(float(value) / 1e12, 2)


def load_reports(directory, hosts=None):
    """host -> parsed report for every <host>.json in *directory* (only *hosts* when given).

    A file that is not valid JSON is returned as ``{"_error": "..."}`` so the host shows up
    as failed instead of aborting the whole report.
    """
    reports = {}
    if not os.path.isdir(directory):
        if hosts is None:
            raise FleetReportError('preflight report directory %s does not exist' % directory)
        return reports
    names = sorted(os.listdir(directory))
    wanted = None if hosts is None else set(hosts)
    for name in names:
        if not name.endswith('.json') or name.startswith('.'):
            continue
        host = name[:-len('.json')]
        if wanted is not None and host not in wanted:
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                data = json.load(handle)
            if not isinstance(data, dict):
                raise ValueError('top level is not an object')
        except (IOError, OSError, ValueError) as exc:
            data = {'_error': 'unreadable report %s: %s' % (path, exc)}
        reports[host] = data
    return reports


def _gpu_summary(gpu):
    devices = gpu.get('devices') or []
    models = {}
    for device in devices:
        name = device.get('name') or 'unknown GPU'
        models[name] = models.get(name, 0) + 1
    per_gpu = sorted(set(_gb(d.get('memory_total_bytes')) for d in devices if d.get('memory_total_bytes')))
    return dict(
        gpu_count=len(devices),
        gpu_models=['%d x %s' % (count, name) for name, count in sorted(models.items())],
        gpu_model_counts=models,
        vram_gb_per_gpu=per_gpu,
        vram_gb_total=_gb(sum(d.get('memory_total_bytes') or 0 for d in devices)) if devices else 0.0,
        driver_version=gpu.get('driver_version'),
        cuda_version=gpu.get('cuda_driver_version'),
        gpu_pci_devices=gpu.get('pci_device_count'),
        gpu_source=gpu.get('source'),
        nvswitch_count=gpu.get('nvswitch_count') or 0,
        fabric_manager=_fabric_manager_state(gpu),
    )


def _fabric_manager_state(gpu):
    """'enabled' / 'not enabled' / 'missing' on NVSwitch hosts, None elsewhere (and in older reports)."""
    if not gpu.get('nvswitch_count'):
        return None
    fm = gpu.get('fabric_manager') or {}
    return 'enabled' if fm.get('enabled') else 'not enabled' if fm.get('installed') else 'missing'


def host_row(host, report, status=None, error=None, tco_params=None):
    """One table row (a flat-ish dict) for *host* from its preflight *report* (may be None)."""
    row = dict((field, None) for field in CSV_FIELDS)
    row.update(host=host, shortfalls=[], warnings=[], failed_checks=[], gpu_models=[],
               gpu_model_counts={}, vram_gb_per_gpu=[], report_stale=False, tco=None, tco_error=None)
    report = report or {}
    if report.get('_error'):
        error = error or report['_error']
        report = {}
    hardware = report.get('hardware') or {}
    if report:
        row.update(_gpu_summary(hardware.get('gpu') or {}))
        memory = hardware.get('memory') or {}
        nvme = hardware.get('nvme') or {}
        cpu = hardware.get('cpu') or {}
        path = nvme.get('path') or {}
        row.update(
            preset=report.get('preset'),
            collected_at=report.get('collected_at'),
            cpu_physical_cores=cpu.get('physical_cores'),
            ram_installed_gb=_gb(memory.get('installed_bytes')),
            ram_ecc=memory.get('ecc'),
            nvme_count=nvme.get('count'),
            nvme_tb=_tb(nvme.get('total_bytes')),
            model_path_on_nvme=path.get('on_nvme'),
            shortfalls=list(report.get('shortfalls') or []),
            warnings=list(report.get('warnings') or []),
            failed_checks=[c.get('name') for c in report.get('checks') or [] if c.get('status') == 'fail'],
        )
    if status is None:
        if error:
            status = 'failed'
        elif not report:
            status = 'no_report'
        else:
            status = 'passed' if report.get('passed') else 'below_baseline'
    elif status in ('unreachable', 'failed') and report:
        row['report_stale'] = True   # a report from an earlier run: shown, but not a verdict of this run
    row['status'] = status
    row['error'] = error
    if status == 'passed':
        row['verdict'] = 'pass' + (' (%d warning%s)' % (len(row['warnings']), 's' if len(row['warnings']) > 1 else '')
                                   if row['warnings'] else '')
    elif status == 'below_baseline':
        row['verdict'] = 'FAIL: %d shortfall%s' % (len(row['shortfalls']), '' if len(row['shortfalls']) == 1 else 's')
    else:
        row['verdict'] = STATUS_LABELS[status]
    if tco_params:
        try:
            row['tco'] = tco_utils.host_tco(hardware or None, **tco_params)
            row['power_watts'] = row['tco']['power_watts']
            row['tco_total'] = row['tco']['total']
            row['tco_per_year'] = row['tco']['per_year']
        except tco_utils.TcoError as exc:
            row['tco_error'] = str(exc)
    return row


def gateway_rows(gateways):
    """Gateway host -> replica states (``show stat`` rows or ``{"error": ...}``), normalised and sorted."""
    out = []
    for gateway in sorted(gateways or {}):
        servers = gateways[gateway]
        if isinstance(servers, dict):
            out.append(dict(gateway=gateway, error=str(servers.get('error') or 'no answer'), replicas=[]))
            continue
        replicas = []
        for srv in servers or []:
            replicas.append(dict(server=str(srv.get('server')), status=str(srv.get('status') or 'unknown'),
                                 sessions=int(srv.get('sessions') or 0), queued=int(srv.get('queued') or 0),
                                 total=int(srv.get('total') or 0)))
        replicas.sort(key=lambda r: r['server'])
        out.append(dict(gateway=gateway, error=None, replicas=replicas,
                        up=sum(1 for r in replicas if r['status'].startswith('UP'))))
    return out


def build(preflight_dir, hosts=None, unreachable=None, failed=None, tco=None, tco_by_host=None,
          title='Fleet preflight report', generated_at=None, gateways=None):
    """The whole fleet document: ``{"summary": ..., "hosts": [rows]}``.

    hosts: the hosts the run targeted (every one gets a row, report or not); None = every
    report in *preflight_dir*. unreachable: hosts the run could not reach. failed: host ->
    error for hosts that failed without producing a verdict. tco: cost parameters for every
    host (see plugin_utils/tco.py; empty = no cost); tco_by_host: host -> overrides.
    gateways: gateway host -> replica states (see gateway_rows); empty = no gateway section.
    """
    unreachable = set(unreachable or [])
    failed = dict(failed or {})
    tco_by_host = dict(tco_by_host or {})
    reports = load_reports(preflight_dir, None if hosts is None else list(hosts) + sorted(unreachable) + sorted(failed))
    names = list(hosts) if hosts is not None else sorted(reports)
    for extra in sorted(unreachable | set(failed)):
        if extra not in names:
            names.append(extra)
    rows = []
    for host in names:
        status = 'unreachable' if host in unreachable else ('failed' if host in failed else None)
        params = None
        if tco or tco_by_host.get(host):
            params = dict(tco or {})
            params.update(tco_by_host.get(host) or {})
        rows.append(host_row(host, reports.get(host), status=status, error=failed.get(host), tco_params=params))
    order = dict((s, i) for i, s in enumerate(STATUSES))
    rows.sort(key=lambda r: (order[r['status']], r['host']))
    return dict(
        schema_version=SCHEMA_VERSION,
        title=title,
        generated_at=generated_at or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        preflight_dir=preflight_dir,
        summary=summarise(rows, with_cost=bool(tco or tco_by_host)),
        hosts=rows,
        gateways=gateway_rows(gateways),
    )


def summarise(rows, with_cost=False):
    counts = dict((s, 0) for s in STATUSES)
    gpu_models = {}
    shortfall_checks = {}
    drivers = {}
    for row in rows:
        counts[row['status']] += 1
        if row['report_stale']:
            continue
        for name, count in (row.get('gpu_model_counts') or {}).items():
            gpu_models[name] = gpu_models.get(name, 0) + count
        for check in row['failed_checks']:
            shortfall_checks[check] = shortfall_checks.get(check, 0) + 1
        if row['status'] in ('passed', 'below_baseline'):
            key = row['driver_version'] or 'none'
            drivers[key] = drivers.get(key, 0) + 1
    fresh = [r for r in rows if not r['report_stale'] and r['status'] in ('passed', 'below_baseline')]
    summary = dict(
        hosts=len(rows),
        counts=counts,
        reachable=len(rows) - counts['unreachable'],
        gpus=sum(r['gpu_count'] or 0 for r in fresh),
        vram_gb_total=round(sum(r['vram_gb_total'] or 0 for r in fresh), 1),
        ram_gb_total=round(sum(r['ram_installed_gb'] or 0 for r in fresh), 1),
        nvme_tb_total=round(sum(r['nvme_tb'] or 0 for r in fresh), 2),
        gpu_models=gpu_models,
        failed_checks=shortfall_checks,
        driver_versions=drivers,
        nvswitch_hosts=sorted(r['host'] for r in fresh if r.get('nvswitch_count')),
        fabric_manager_missing_hosts=sorted(r['host'] for r in fresh if r.get('fabric_manager') not in (None, 'enabled')),
        unreachable_hosts=sorted(r['host'] for r in rows if r['status'] == 'unreachable'),
        failed_hosts=sorted(r['host'] for r in rows if r['status'] == 'failed'),
        below_baseline_hosts=sorted(r['host'] for r in rows if r['status'] == 'below_baseline'),
    )
    if with_cost:
        costed = [r['tco'] for r in rows if r['tco']]
        summary['tco'] = tco_utils.fleet_tco(costed) if costed else None
        summary['tco_missing_hosts'] = sorted(r['host'] for r in rows if not r['tco'])
    return summary


# ---------------------------------------------------------------- JSON / CSV

def to_json(document):
    return json.dumps(document, indent=2, sort_keys=True, default=str) + '\n'


def _cell(value):
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (list, tuple)):
        return '; '.join(str(v) for v in value)
    return str(value)


def to_csv(document):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(CSV_FIELDS)
    for row in document['hosts']:
        writer.writerow([_cell(row.get(field)) for field in CSV_FIELDS])
    return out.getvalue()


# ---------------------------------------------------------------- HTML

def _e(value):
    return html.escape('' if value is None else str(value), quote=True)


def _money(value, currency=''):
    if value is None:
        return ''
    text = '{:,.0f}'.format(value)
    return ('%s %s' % (text, currency)).strip()


def svg_bars(items, title, width=420, bar_height=22, label_width=170, color='#1565c0'):
    """Horizontal bar chart: items = [(label, value) or (label, value, color)]."""
    items = [i for i in items if i[1]]
    height = 30 + max(1, len(items)) * (bar_height + 6)
    top = max([i[1] for i in items] or [1])
    plot = width - label_width - 90   # room for the value label
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s" width="%d" height="%d" '
             'viewBox="0 0 %d %d">' % (_e(title), width, height, width, height),
             '<title>%s</title>' % _e(title),
             '<text x="0" y="16" class="ct">%s</text>' % _e(title)]
    if not items:
        parts.append('<text x="0" y="44" class="cl">nothing to show</text>')
    for n, item in enumerate(items):
        label, value = item[0], item[1]
        fill = item[2] if len(item) > 2 else color
        y = 28 + n * (bar_height + 6)
        w = max(2.0, plot * float(value) / top)
        short = label if len(label) <= 26 else label[:25] + '\u2026'
        parts.append('<text x="%d" y="%.1f" class="cl" text-anchor="end"><title>%s</title>%s</text>'
                     % (label_width - 6, y + bar_height * 0.7, _e(label), _e(short)))
        parts.append('<rect x="%d" y="%d" width="%.1f" height="%d" rx="3" fill="%s"/>' % (label_width, y, w, bar_height, fill))
        parts.append('<text x="%.1f" y="%.1f" class="cv">%s</text>'
                     % (label_width + w + 5, y + bar_height * 0.7, _e('{:,}'.format(value) if isinstance(value, int) else value)))
    parts.append('</svg>')
    return ''.join(parts)


def svg_donut(items, title, size=180):
    """Donut chart of (label, count, color); the total in the middle."""
    total = sum(i[1] for i in items)
    r, stroke = size / 2.0 - 18, 26
    c = 2 * math.pi * r
    cx = cy = size / 2.0
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s" width="%d" height="%d" '
             'viewBox="0 0 %d %d">' % (_e(title), size, size, size, size), '<title>%s</title>' % _e(title),
             '<circle cx="%.1f" cy="%.1f" r="%.1f" fill="none" stroke="#eeeeee" stroke-width="%d"/>' % (cx, cy, r, stroke)]
    offset = 0.0
    for label, count, color in items:
        if not count or not total:
            continue
        length = c * count / total
        parts.append('<circle cx="%.1f" cy="%.1f" r="%.1f" fill="none" stroke="%s" stroke-width="%d" '
                     'stroke-dasharray="%.2f %.2f" stroke-dashoffset="%.2f" transform="rotate(-90 %.1f %.1f)">'
                     '<title>%s: %d</title></circle>'
                     % (cx, cy, r, color, stroke, length, c - length, -offset, cx, cy, _e(label), count))
        offset += length
    parts.append('<text x="%.1f" y="%.1f" text-anchor="middle" class="big">%d</text>' % (cx, cy + 4, total))
    parts.append('<text x="%.1f" y="%.1f" text-anchor="middle" class="cl">hosts</text>' % (cx, cy + 22))
    parts.append('</svg>')
    return ''.join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#212121;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px}
.meta{color:#616161;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 14px;min-width:120px}
.card .n{font-size:24px;font-weight:600} .card .l{font-size:12px;color:#616161}
.plots{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.plot{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px}
.donut{display:flex;gap:14px;align-items:center}
.legend{font-size:12px} .legend span{display:block;margin:3px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
svg .ct{font-size:13px;font-weight:600;fill:#212121} svg .cl{font-size:12px;fill:#424242}
svg .cv{font-size:12px;fill:#212121} svg .big{font-size:28px;font-weight:600;fill:#212121}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border:1px solid #e0e0e0;padding:5px 7px;text-align:left;vertical-align:top}
th{background:#eceff1;position:sticky;top:0} td.num{text-align:right;white-space:nowrap}
td.host{white-space:nowrap} td.sf{min-width:220px} td.gpu{min-width:130px} td.na{white-space:normal;text-align:left}
tr.s-unreachable td{background:#f3e5f5} tr.s-below_baseline td{background:#ffebee}
tr.s-failed td{background:#fff3e0} tr.s-no_report td{background:#f5f5f5}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;color:#fff;font-size:12px;white-space:nowrap}
ul.sf{margin:0;padding-left:16px} .stale{color:#757575;font-style:italic} .warn{color:#8d6e63}
"""


def _list(items, cls='sf'):
    if not items:
        return ''
    return '<ul class="%s">%s</ul>' % (cls, ''.join('<li>%s</li>' % _e(i) for i in items))


def to_html(document):
    summary = document['summary']
    counts = summary['counts']
    cost = summary.get('tco')
    currency = (cost or {}).get('currency', '')
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<title>%s</title><style>%s</style></head><body>' % (_e(document['title']), _CSS),
           '<h1>%s</h1>' % _e(document['title']),
           '<div class="meta">generated %s from %s</div>' % (_e(document['generated_at']), _e(document['preflight_dir']))]
    cards = [('hosts', summary['hosts']), ('meet baseline', counts['passed']),
             ('below baseline', counts['below_baseline']), ('unreachable', counts['unreachable']),
             ('failed / no report', counts['failed'] + counts['no_report']), ('GPUs', summary['gpus']),
             ('GPU memory', '%s GB' % '{:,.0f}'.format(summary['vram_gb_total']))]
    if cost:
        cards.append(('%s-year cost (%d hosts)' % (cost['years'], cost['hosts']), _money(cost['total'], currency)))
    out.append('<div class="cards">%s</div>' % ''.join(
        '<div class="card"><div class="n">%s</div><div class="l">%s</div></div>' % (_e(v), _e(k)) for k, v in cards))

    out.append('<h2>Summary</h2><div class="plots">')
    donut_items = [(STATUS_LABELS[s], counts[s], STATUS_COLORS[s]) for s in reversed(STATUSES)]
    out.append('<div class="plot donut">%s<div class="legend">%s</div></div>' % (
        svg_donut(donut_items, 'Hosts by verdict'),
        ''.join('<span><i class="sw" style="background:%s"></i>%s %d</span>' % (c, _e(l), n)
                for l, n, c in donut_items if n)))
    out.append('<div class="plot">%s</div>' % svg_bars(
        sorted(summary['gpu_models'].items(), key=lambda i: (-i[1], i[0])), 'GPUs by model'))
    out.append('<div class="plot">%s</div>' % svg_bars(
        [(CHECK_LABELS.get(k, k), v, '#c62828') for k, v in sorted(summary['failed_checks'].items(), key=lambda i: (-i[1], i[0]))],
        'Hosts failing each check'))
    out.append('<div class="plot">%s</div>' % svg_bars(
        sorted(summary['driver_versions'].items(), key=lambda i: (-i[1], i[0])), 'Hosts by NVIDIA driver', color='#00838f'))
    if cost:
        out.append('<div class="plot">%s</div>' % svg_bars(
            [('hardware', int(round(cost['hardware_price'])), '#5d4037'), ('electricity', int(round(cost['electricity'])), '#f9a825'),
             ('maintenance', int(round(cost['maintenance'])), '#546e7a')],
            'Fleet %s-year cost of ownership%s' % (cost['years'], (' (%s)' % currency) if currency else '')))
    out.append('</div>')
    if summary['unreachable_hosts']:
        out.append('<p><b>Unreachable:</b> %s</p>' % _e(', '.join(summary['unreachable_hosts'])))
    if summary.get('fabric_manager_missing_hosts'):
        out.append('<p class="warn"><b>NVSwitch hosts without an enabled Fabric Manager (CUDA will not start):</b> %s</p>'
                   % _e(', '.join(summary['fabric_manager_missing_hosts'])))

    with_cost = 'tco' in summary
    head = ['Host', 'Verdict', 'GPU', 'VRAM / GPU', 'Driver', 'CUDA', 'CPU cores', 'RAM', 'NVMe', 'Shortfalls']
    if with_cost:
        head += ['Power', '%s-yr cost' % (cost['years'] if cost else 3)]
    out.append('<h2>Hosts</h2><table><thead><tr>%s</tr></thead><tbody>' % ''.join('<th>%s</th>' % _e(h) for h in head))
    for row in document['hosts']:
        stale = row['report_stale']
        badge = '<span class="badge" style="background:%s">%s</span>' % (STATUS_COLORS[row['status']], _e(row['verdict']))
        notes = []
        if row['error']:
            notes.append('<div class="warn">%s</div>' % _e(row['error']))
        if stale:
            notes.append('<div class="stale">last report %s (not from this run)</div>' % _e(row['collected_at']))
        has_data = row['collected_at'] is not None
        gpu = (_e(', '.join(row['gpu_models'])) or 'none') if has_data else ''
        if row.get('nvswitch_count'):
            gpu += '<div class="nvs%s">%d NVSwitch, Fabric Manager %s</div>' % (
                '' if row['fabric_manager'] == 'enabled' else ' warn', row['nvswitch_count'], _e(row['fabric_manager']))
        cells = [
            '<td class="host"><b>%s</b></td>' % _e(row['host']),
            '<td>%s%s</td>' % (badge, ''.join(notes)),
            '<td class="gpu%s">%s</td>' % (' stale' if stale else '', gpu),
            '<td class="num">%s</td>' % _e(', '.join('%s GB' % v for v in row['vram_gb_per_gpu'])),
            '<td>%s</td>' % _e(row['driver_version'] or ('none' if has_data else '')),
            '<td>%s</td>' % _e(row['cuda_version'] or ('none' if has_data else '')),
            '<td class="num">%s</td>' % _e(row['cpu_physical_cores']),
            '<td class="num">%s</td>' % (_e('{:,.0f} GB{}'.format(row['ram_installed_gb'], ' ECC' if row['ram_ecc'] == 'enabled' else ''))
                                         if row['ram_installed_gb'] is not None else ''),
            '<td class="num">%s</td>' % (_e('%s TB (%s)' % (row['nvme_tb'], row['nvme_count'])) if row['nvme_count'] else
                                         ('none' if has_data else '')),
            '<td class="sf">%s%s</td>' % (_list(row['shortfalls']), _list(row['warnings'], 'sf warn')),
        ]
        if with_cost:
            t = row['tco']
            cells.append('<td class="num">%s</td>' % (_e('%s W' % '{:,.0f}'.format(t['power_watts'])) if t else ''))
            if t:
                cost_cell = _e(_money(t['total'], t['currency']))
            elif has_data and row['tco_error']:
                cost_cell = '<span class="stale" title="%s">n/a: no power figure</span>' % _e(row['tco_error'])
            else:
                cost_cell = '<span class="stale">n/a</span>'
            cells.append('<td class="num%s">%s</td>' % ('' if t else ' na', cost_cell))
        out.append('<tr class="s-%s">%s</tr>' % (row['status'], ''.join(cells)))
    out.append('</tbody></table>')
    for gw in document.get('gateways') or []:
        out.append('<h2>Gateway %s</h2>' % _e(gw['gateway']))
        if gw['error']:
            out.append('<p class="warn">runtime API not readable: %s</p>' % _e(gw['error']))
            continue
        out.append('<p class="meta">%d of %d replicas up</p>' % (gw['up'], len(gw['replicas'])))
        out.append('<table class="gateway"><thead><tr>%s</tr></thead><tbody>' % ''.join(
            '<th>%s</th>' % h for h in ('Replica', 'State', 'In flight', 'Queued', 'Served')))
        for rep in gw['replicas']:
            colour = '#2e7d32' if rep['status'].startswith('UP') else ('#ef6c00' if rep['status'] in ('DRAIN', 'MAINT', 'NOLB') else '#c62828')
            out.append('<tr><td class="host">%s</td><td><span class="badge" style="background:%s">%s</span></td>'
                       '<td class="num">%d</td><td class="num">%d</td><td class="num">%d</td></tr>'
                       % (_e(rep['server']), colour, _e(rep['status']), rep['sessions'], rep['queued'], rep['total']))
        out.append('</tbody></table>')
    if cost:
        out.append('<p class="meta">Cost of ownership over %s years: hardware + electricity + maintenance '
                   '(docs/cost-of-ownership.md). Hosts without a cost: %s.</p>'
                   % (_e(cost['years']), _e(', '.join(summary['tco_missing_hosts']) or 'none')))
    out.append('</body></html>\n')
    return ''.join(out)


RENDERERS = {'json': to_json, 'csv': to_csv, 'html': to_html}
