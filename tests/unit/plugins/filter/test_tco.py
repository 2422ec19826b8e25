# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of ownership: the documented reference example, power from gpu facts, errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.openautoglm.deploy.plugins.filter import tco as tco_filter
from ansible_collections.openautoglm.deploy.plugins.plugin_utils import tco

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
H100_REPORT = os.path.join(REPO, 'docs', 'evidence', 'h100', 'preflight_report_localhost.json')
REFERENCE = dict(hardware_price=22300, power_watts=650, hours_per_day=8, electricity_price=1.0)


def test_reference_example_with_maintenance_total():
    """docs/cost-of-ownership.md, example 1: 22,300 + 650 W x 8 h x 365 d x 3 y x 1.00/kWh + 1,500."""
    result = tco.host_tco(None, maintenance_total=1500, **REFERENCE)
    assert result['energy_kwh_per_year'] == 1898.0          # 0.65 kW x 8 h x 365 d
    assert result['energy_kwh'] == 5694.0                   # x 3 years
    assert result['electricity'] == 5694.0                  # x 1.00 per kWh
    assert result['maintenance'] == 1500.0
    assert result['maintenance_basis'] == 'total'
    assert result['total'] == 29494.0
    assert result['per_year'] == 9831.33
    assert result['power_source'] == 'configured'
    assert result['years'] == 3


def test_reference_example_with_maintenance_per_year():
    """docs/cost-of-ownership.md, example 2: maintenance 1,500 per year -> 4,500 over 3 years."""
    result = tco.host_tco(None, maintenance_per_year=1500, **REFERENCE)
    assert result['maintenance'] == 4500.0
    assert result['maintenance_basis'] == 'per_year'
    assert result['total'] == 32494.0


@pytest.mark.parametrize('price, expected_total', [(0.0, 23800.0), (0.6, 27216.4), (1.2, 30632.8)])
def test_electricity_price_is_linear(price, expected_total):
    result = tco.host_tco(None, hardware_price=22300, power_watts=650, hours_per_day=8,
                          electricity_price=price, maintenance_total=1500)
    assert result['total'] == expected_total


def test_power_from_measured_gpu_power_limit_plus_rest_of_system():
    with open(H100_REPORT) as handle:
        report = json.load(handle)
    # the report, its hardware dict and the gpu fact are all accepted
    for data in (report, report['hardware'], report['hardware']['gpu']):
        result = tco.host_tco(data, hardware_price=30000, electricity_price=0.5, rest_of_system_watts=350)
        assert result['gpu_power_watts'] == 700.0            # the H100's NVML power limit
        assert result['gpu_count'] == 1
        assert result['power_watts'] == 1050.0
        assert result['power_source'] == 'gpu_power_limit+rest_of_system'
        # 1.05 kW x 24 h x 365 d x 3 y = 27,594 kWh; x 0.5 = 13,797
        assert result['energy_kwh'] == 27594.0
        assert result['electricity'] == 13797.0
        assert result['total'] == 43797.0


def test_configured_power_overrides_gpu_facts_and_pue_scales_energy():
    gpu = {'devices': [{'power_limit_watts': 700.0}] * 8}
    result = tco.host_tco(gpu, hardware_price=0, electricity_price=1, power_watts=1000, hours_per_day=24,
                          years=1, pue=1.5)
    assert result['power_watts'] == 1000.0
    assert result['gpu_power_watts'] == 5600.0
    assert result['energy_kwh'] == 1.0 * 24 * 365 * 1.5
    assert result['rest_of_system_watts'] is None


def test_gpu_less_host_costs_the_rest_of_the_system():
    result = tco.host_tco({'gpu': {'devices': []}}, hardware_price=1000, electricity_price=1,
                          rest_of_system_watts=100, hours_per_day=10, years=1)
    assert result['power_watts'] == 100.0
    assert result['electricity'] == 365.0


@pytest.mark.parametrize('hardware, params, message', [
    (None, dict(hardware_price=1, electricity_price=1), 'power_watts: required'),
    ({'devices': [{'power_limit_watts': None}]}, dict(hardware_price=1, electricity_price=1), 'power_watts: required'),
    (None, dict(hardware_price=1, power_watts=650), 'electricity_price: required'),
    (None, dict(electricity_price=1, power_watts=650), 'hardware_price: required'),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=650, hours_per_day=25), 'hours_per_day: must be <= 24'),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=-5), 'power_watts: must be >= 0'),
    (None, dict(hardware_price='lots', electricity_price=1, power_watts=5), "hardware_price: must be a number"),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=5, years=0), 'years: must be > 0'),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=5, pue=0.5), 'pue: must be >= 1.0'),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=5, maintenance_total=1, maintenance_per_year=1),
     'mutually exclusive'),
    (None, dict(hardware_price=1, electricity_price=1, power_watts=5, watts=3), 'unknown parameter(s) watts'),
])
def test_invalid_input_names_the_parameter(hardware, params, message):
    with pytest.raises(tco.TcoError) as exc:
        tco.host_tco(hardware, **params)
    assert message in str(exc.value)


def test_numbers_given_as_strings_with_separators():
    result = tco.host_tco(None, hardware_price='22,300', power_watts='650', hours_per_day='8',
                          electricity_price='1.0', maintenance_total='1_500')
    assert result['total'] == 29494.0


def test_fleet_sums_hosts_and_rejects_mixed_periods_or_currencies():
    one = tco.host_tco(None, maintenance_total=1500, currency='CNY', **REFERENCE)
    two = tco.host_tco(None, maintenance_per_year=1500, currency='CNY', **REFERENCE)
    fleet = tco.fleet_tco({'a': one, 'b': two, 'c': None})
    assert fleet['hosts'] == 2
    assert fleet['total'] == 29494.0 + 32494.0
    assert fleet['maintenance'] == 6000.0
    assert fleet['per_year'] == round((29494.0 + 32494.0) / 3, 2)
    assert fleet['currency'] == 'CNY'
    assert tco.fleet_tco([])['hosts'] == 0
    with pytest.raises(tco.TcoError, match='different periods'):
        tco.fleet_tco([one, tco.host_tco(None, years=5, maintenance_total=1, currency='CNY', **REFERENCE)])
    with pytest.raises(tco.TcoError, match='different currencies'):
        tco.fleet_tco([one, tco.host_tco(None, maintenance_total=1, currency='EUR', **REFERENCE)])


def test_filters_are_registered_and_raise_filter_errors():
    filters = tco_filter.FilterModule().filters()
    assert set(filters) == {'tco', 'tco_fleet'}
    assert filters['tco'](None, maintenance_total=1500, **REFERENCE)['total'] == 29494.0
    with pytest.raises(AnsibleFilterError, match='openautoglm.deploy.tco: electricity_price'):
        filters['tco'](None, hardware_price=1, power_watts=1)
    with pytest.raises(AnsibleFilterError, match='tco_fleet: input must be results'):
        filters['tco_fleet']([{'total': 1}])
