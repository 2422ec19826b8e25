# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report in a real browser: the action plugin writes it, headless Chromium renders it.

Needs Debian's `chromium` package (CI installs it). The DOM Chromium builds must hold the
table and the five SVG plots; the screenshot must show the status colours of the plots and
badges. FLEET_SCREENSHOT_UPDATE=1 copies the screenshot to docs/images/fleet-report.png.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import struct
import zlib

import pytest

from conftest import REPO, ansible_env, run

FIXTURES = os.path.join(REPO, 'tests', 'unit', 'fixtures', 'fleet', 'preflight')
HOSTS = ['gpu-h100-01', 'gpu-h100-02', 'gpu-h100-03', 'gpu-a100-01', 'gpu-a100-02', 'gpu-a100-03',
         'gpu-l4-01', 'gpu-new-01', 'gpu-spare-01']
WIDTH, HEIGHT = 1400, 1500


def chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail('no chromium on PATH: apt-get install -y chromium (Debian) - the fleet report must be checked in a browser')


def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, header = 8, b'', None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', chunk)
        elif kind == b'IDAT':
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, interlace = header[0], header[1], header[2], header[3], header[6]
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xff
            elif kind == 2:
                line[x] = (line[x] + b) & 0xff
            elif kind == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 0xff
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 0xff
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp('fleet-report')
    playbook = out / 'build.yml'
    playbook.write_text('''---
- name: Build the example fleet report with the action plugin
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write the fleet report
      openautoglm.deploy.fleet_report:
        preflight_dir: %s
        dest: %s
        hosts: %s
        unreachable: [gpu-h100-03]
        failed: {gpu-a100-03: "MODULE FAILURE: /usr/bin/python3: not found"}
        title: Fleet preflight report - example fleet
        tco: {hardware_price: 22300, electricity_price: 1.0, hours_per_day: 24, maintenance_per_year: 1500, currency: CNY}
        tco_by_host:
          gpu-h100-01: {hardware_price: 310000}
          gpu-h100-02: {hardware_price: 310000}
          gpu-h100-03: {hardware_price: 310000}
      register: fleet
    - name: Check the returned summary
      ansible.builtin.assert:
        that:
          - fleet is changed
          - fleet.summary.counts.unreachable == 1
          - fleet.summary.hosts == 9
''' % (FIXTURES, out, json.dumps(HOSTS)))
    run(['ansible-playbook', '-i', 'localhost,', str(playbook)], env=ansible_env(), cwd=REPO)
    second = run(['ansible-playbook', '-i', 'localhost,', str(playbook)], env=ansible_env(), cwd=REPO, check=False)
    html = out / 'fleet.html'
    png = out / 'fleet.png'
    browser = chromium()
    common = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
              '--window-size=%d,%d' % (WIDTH, HEIGHT)]
    dom = run(common + ['--dump-dom', html.as_uri()], timeout=120).stdout
    run(common + ['--screenshot=%s' % png, html.as_uri()], timeout=120)
    if os.environ.get('FLEET_SCREENSHOT_UPDATE'):
        shutil.copy(str(png), os.path.join(REPO, 'docs', 'images', 'fleet-report.png'))
    return dict(dir=out, dom=dom, png=str(png), second=second)


def test_second_run_with_same_data_is_not_changed(rendered):
    # the second run's assert 'fleet is changed' fails: identical data leave the files alone
    assert rendered['second'].returncode != 0
    assert 'fleet is changed' in rendered['second'].stdout


def test_all_three_files_written(rendered):
    names = sorted(os.listdir(str(rendered['dir'])))
    assert {'fleet.json', 'fleet.csv', 'fleet.html'} <= set(names)
    document = json.loads((rendered['dir'] / 'fleet.json').read_text())
    assert document['summary']['counts'] == {'passed': 4, 'below_baseline': 2, 'unreachable': 1,
                                             'failed': 1, 'no_report': 1}
    assert len((rendered['dir'] / 'fleet.csv').read_text().splitlines()) == 1 + len(HOSTS)


def test_browser_dom_has_table_and_plots(rendered):
    dom = rendered['dom']
    assert dom.count('<svg') == 5
    assert len(re.findall(r'<tr class="s-', dom)) == len(HOSTS)
    for host in HOSTS:
        assert host in dom
    assert 'Hosts by verdict' in dom and 'Fleet 3-year cost of ownership (CNY)' in dom


def test_screenshot_shows_the_status_colours(rendered):
    width, height, rows = png_pixels(rendered['png'])
    assert (width, height) == (WIDTH, HEIGHT)
    counts = {}
    for row in rows:
        for pixel in row:
            counts[pixel] = counts.get(pixel, 0) + 1
    green, red, purple, orange = (0x2e, 0x7d, 0x32), (0xc6, 0x28, 0x28), (0x6a, 0x1b, 0x9a), (0xef, 0x6c, 0x00)
    # donut arcs + badges + bars: thousands of pixels of each status colour when the SVG rendered
    assert counts.get(green, 0) > 3000, counts.get(green)
    assert counts.get(red, 0) > 3000, counts.get(red)
    assert counts.get(purple, 0) > 500, counts.get(purple)
    assert counts.get(orange, 0) > 500, counts.get(orange)
    # and the page is not blank: the most common colour (background) is less than 90 %
    assert max(counts.values()) < 0.9 * width * height
