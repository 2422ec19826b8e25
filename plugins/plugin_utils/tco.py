# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of ownership of GPU servers (controller side; shared by the tco filters and fleet_report).

cost = hardware + energy + maintenance, over ``years`` (default 3):

* power (W): ``power_watts`` when given (a measured or quoted wall figure), otherwise the
  sum of the GPUs' power limits from gpu_facts plus ``rest_of_system_watts`` (CPU, RAM,
  disks, fans, PSU losses);
* energy (kWh) = power / 1000 x hours_per_day x days_per_year x years x pue;
* electricity = energy x electricity_price (currency per kWh);
* maintenance = maintenance_per_year x years, or maintenance_total as given (one of them).

Every figure is in the caller's currency; nothing here converts currencies.
See docs/cost-of-ownership.md for a worked example.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import numbers

DEFAULTS = dict(
    years=3,
    hours_per_day=24.0,
    days_per_year=365.0,
    electricity_price=None,
    rest_of_system_watts=300.0,
    pue=1.0,
    maintenance_per_year=None,
    maintenance_total=None,
    power_watts=None,
    hardware_price=None,
    currency='',
)


class TcoError(ValueError):
    """Invalid or missing cost parameters (the message names the parameter)."""


def _number(name, value, allow_none=False, minimum=0.0, strictly_positive=False):
    if value is None or value == '':
        if allow_none:
            return None
        raise TcoError('%s: required, got nothing' % name)
    if isinstance(value, bool):
        raise TcoError('%s: must be a number, got %r' % (name, value))
    if not isinstance(value, numbers.Number):
        try:
            value = float(str(value).replace(',', '').replace('_', '').strip())
        except ValueError:
            raise TcoError('%s: must be a number, got %r' % (name, value))
    value = float(value)
    if not math.isfinite(value):
        raise TcoError('%s: must be a finite number, got %r' % (name, value))
    if strictly_positive and value <= 0:
        raise TcoError('%s: must be > 0, got %s' % (name, value))
    if value < minimum:
        raise TcoError('%s: must be >= %s, got %s' % (name, minimum, value))
    return value


def gpu_power_watts(hardware):
    """Sum of the GPUs' power limits (W) and the GPU count, from a report, hardware dict or gpu facts.

    Accepts a preflight report (``{"hardware": {"gpu": ...}}``), the hardware dict
    (``{"gpu": ...}``) or the ``openautoglm_gpu`` fact itself (``{"devices": [...]}``).
    Returns ``(watts or None, gpu_count)``; watts is None when a GPU's limit is unknown
    (PCI sysfs fallback without NVML) - the caller must then be given power_watts.
    """
    if not hardware:
        return None, 0
    gpu = hardware
    if 'hardware' in gpu and isinstance(gpu['hardware'], dict):
        gpu = gpu['hardware']
    if 'gpu' in gpu and isinstance(gpu['gpu'], dict):
        gpu = gpu['gpu']
    devices = gpu.get('devices')
    if devices is None:
        return None, 0
    total = 0.0
    for device in devices:
        limit = device.get('power_limit_watts')
        if limit is None:
            return None, len(devices)
        total += float(limit)
    return total, len(devices)


def host_tco(hardware=None, **params):
    """Cost of ownership of one host. ``hardware`` as for gpu_power_watts (may be None).

    Returns a dict with every input and intermediate figure (rounded to cents / 0.01 kWh).
    Raises TcoError naming the parameter that is missing or invalid.
    """
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise TcoError('unknown parameter(s) %s; allowed: %s' % (', '.join(unknown), ', '.join(sorted(DEFAULTS))))
    p = dict(DEFAULTS)
    p.update(dict((k, v) for k, v in params.items() if v is not None))

    years = _number('years', p['years'], strictly_positive=True)
    hours = _number('hours_per_day', p['hours_per_day'])
    if hours > 24:
        raise TcoError('hours_per_day: must be <= 24, got %s' % hours)
    days = _number('days_per_year', p['days_per_year'])
    if days > 366:
        raise TcoError('days_per_year: must be <= 366, got %s' % days)
    price = _number('electricity_price', p['electricity_price'])
    pue = _number('pue', p['pue'], minimum=1.0)
    hardware_price = _number('hardware_price', p['hardware_price'])
    rest = _number('rest_of_system_watts', p['rest_of_system_watts'])

    if p['maintenance_per_year'] is not None and p['maintenance_total'] is not None:
        raise TcoError('maintenance_per_year and maintenance_total are mutually exclusive; give one')
    if p['maintenance_total'] is not None:
        maintenance = _number('maintenance_total', p['maintenance_total'])
        maintenance_basis = 'total'
    else:
        maintenance = _number('maintenance_per_year', p['maintenance_per_year'] or 0) * years
        maintenance_basis = 'per_year'

    gpu_watts, gpu_count = gpu_power_watts(hardware)
    if p['power_watts'] is not None:
        power = _number('power_watts', p['power_watts'])
        power_source = 'configured'
    elif gpu_watts is not None:
        power = gpu_watts + rest
        power_source = 'gpu_power_limit+rest_of_system'
    else:
        raise TcoError('power_watts: required when the GPU power limits are unknown '
                       '(no gpu facts, or a GPU without an NVML power limit)')

    kwh_per_year = power / 1000.0 * hours * days * pue
    energy_kwh = kwh_per_year * years
    electricity = energy_kwh * price
    total = hardware_price + electricity + maintenance
    return dict(
        years=years if years != int(years) else int(years),
        currency=p['currency'],
        hardware_price=round(hardware_price, 2),
        power_watts=round(power, 2),
        power_source=power_source,
        gpu_count=gpu_count,
        gpu_power_watts=None if gpu_watts is None else round(gpu_watts, 2),
        rest_of_system_watts=None if power_source == 'configured' else round(rest, 2),
        hours_per_day=hours,
        days_per_year=days,
        pue=pue,
        energy_kwh_per_year=round(kwh_per_year, 2),
        energy_kwh=round(energy_kwh, 2),
        electricity_price=price,
        electricity=round(electricity, 2),
        maintenance=round(maintenance, 2),
        maintenance_basis=maintenance_basis,
        total=round(total, 2),
        per_year=round(total / years, 2),
    )


def fleet_tco(host_costs):
    """Sum per-host results of host_tco (a list, or a dict host -> result; None entries skipped)."""
    items = list(host_costs.values()) if isinstance(host_costs, dict) else list(host_costs or [])
    items = [item for item in items if item]
    keys = ('hardware_price', 'electricity', 'maintenance', 'total', 'energy_kwh', 'power_watts')
    sums = dict((key, round(sum(float(item[key]) for item in items), 2)) for key in keys)
    years = sorted(set(item['years'] for item in items))
    currencies = sorted(set(item.get('currency', '') for item in items))
    if len(years) > 1:
        raise TcoError('hosts were costed over different periods (%s years); use one years value' % years)
    if len(currencies) > 1:
        raise TcoError('hosts were costed in different currencies (%s)' % ', '.join(currencies))
    sums.update(
        hosts=len(items),
        years=years[0] if years else None,
        currency=currencies[0] if currencies else '',
        per_year=round(sums['total'] / years[0], 2) if years else 0.0,
    )
    return sums
