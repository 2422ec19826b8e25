# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Thin, failure-tolerant wrapper over NVML (the ``pynvml`` module of nvidia-ml-py).

The import happens once, here. Callers check ``HAS_PYNVML``; when it is False the
message ``MISSING_PYNVML_MSG`` tells the user which package to install, and the GPU
collector falls back to the PCI sysfs scan instead of failing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

try:
    import pynvml
    HAS_PYNVML = True
    PYNVML_IMPORT_ERROR = None
except ImportError:
    pynvml = None
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR = traceback.format_exc()

MISSING_PYNVML_MSG = (
    'Python NVML bindings not importable by %s: install nvidia-ml-py '
    '(pip install nvidia-ml-py, or the distribution package python3-pynvml); '
    'GPU facts come from the PCI sysfs scan instead')

# The kernel module and user-space library disagree: the driver was upgraded and the host
# has not been rebooted (or the module reloaded). nvidia-smi words it DRIVER_MISMATCH_TEXT;
# pynvml raises NVMLError_LibRmVersionMismatch (code 18), whose text is
# "RM has detected an NVML/RM version mismatch.".
DRIVER_MISMATCH_TEXT = 'Driver/library version mismatch'
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_MISMATCH_TEXTS = (DRIVER_MISMATCH_TEXT.lower(), 'nvml/rm version mismatch')


class NvmlUnavailable(Exception):
    """NVML could not be initialised; ``str(exc)`` says why (driver not loaded, ...).

    ``driver_mismatch`` is True when the cause is a driver/library version mismatch.
    """

    def __init__(self, message, driver_mismatch=False):
        super(NvmlUnavailable, self).__init__(message)
        self.driver_mismatch = driver_mismatch


def is_driver_mismatch(exc):
    """Whether an nvmlInit exception means driver/library version mismatch."""
    if getattr(exc, 'value', None) == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _MISMATCH_TEXTS)


def _text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


def normalize_bus_id(bus_id):
    """``'00000000:3B:00.0'`` (NVML) -> ``'0000:3b:00.0'`` (sysfs)."""
    bus_id = _text(bus_id or '').strip().lower()
    if ':' not in bus_id:
        return bus_id
    domain, rest = bus_id.split(':', 1)
    return '%04x:%s' % (int(domain, 16), rest)


class Nvml(object):
    """Context manager around nvmlInit/nvmlShutdown with tolerant per-field queries."""

    def __init__(self, lib=None):
        self.lib = lib if lib is not None else pynvml

    def __enter__(self):
        if self.lib is None:
            raise NvmlUnavailable('nvidia-ml-py (pynvml) is not installed')
        try:
            self.lib.nvmlInit()
        except Exception as exc:  # NVMLError subclasses, OSError from a missing library
            raise NvmlUnavailable(str(exc) or exc.__class__.__name__, is_driver_mismatch(exc))
        return self

    def __exit__(self, *exc_info):
        try:
            self.lib.nvmlShutdown()
        except Exception:
            pass
        return False

    def query(self, func_name, *args):
        """Call ``pynvml.<func_name>(*args)``; None when unsupported or failing."""
        func = getattr(self.lib, func_name, None)
        if func is None:
            return None
        try:
            return _text(func(*args))
        except Exception:
            return None

    def system(self):
        cuda = self.query('nvmlSystemGetCudaDriverVersion')
        return {
            'driver_version': self.query('nvmlSystemGetDriverVersion'),
            'cuda_driver_version': ('%d.%d' % (cuda // 1000, (cuda % 1000) // 10)) if cuda else None,
            'nvml_version': self.query('nvmlSystemGetNVMLVersion'),
        }

    def devices(self):
        count = self.query('nvmlDeviceGetCount') or 0
        return [self.device(index) for index in range(count)]

    def device(self, index):
        q = self.query
        handle = q('nvmlDeviceGetHandleByIndex', index)
        pci = q('nvmlDeviceGetPciInfo', handle)
        memory = q('nvmlDeviceGetMemoryInfo', handle)
        cc = q('nvmlDeviceGetCudaComputeCapability', handle)
        ecc = q('nvmlDeviceGetEccMode', handle)
        mig = q('nvmlDeviceGetMigMode', handle)
        persistence = q('nvmlDeviceGetPersistenceMode', handle)
        power_mw = q('nvmlDeviceGetPowerManagementLimit', handle)
        return {
            'index': index,
            'name': q('nvmlDeviceGetName', handle),
            'uuid': q('nvmlDeviceGetUUID', handle),
            'serial': q('nvmlDeviceGetSerial', handle),
            'memory_total_bytes': int(memory.total) if memory is not None else None,
            'compute_capability': ('%d.%d' % tuple(cc)) if cc else None,
            'cc_major': cc[0] if cc else None,
            'pci_bus_id': normalize_bus_id(pci.busId) if pci is not None else None,
            'pci_device_id': ((pci.pciDeviceId >> 16) & 0xffff) if pci is not None else None,
            'pcie': {
                'current_gen': q('nvmlDeviceGetCurrPcieLinkGeneration', handle),
                'max_gen': q('nvmlDeviceGetMaxPcieLinkGeneration', handle),
                'current_width': q('nvmlDeviceGetCurrPcieLinkWidth', handle),
                'max_width': q('nvmlDeviceGetMaxPcieLinkWidth', handle),
            },
            'ecc_mode': _mode(ecc[0]) if ecc else 'unsupported',
            'ecc_mode_pending': _mode(ecc[1]) if ecc else 'unsupported',
            'mig_mode': _mode(mig[0]) if mig else 'unsupported',
            'mig_mode_pending': _mode(mig[1]) if mig else 'unsupported',
            'persistence_mode': _mode(persistence) if persistence is not None else 'unsupported',
            'power_limit_watts': round(power_mw / 1000.0, 1) if power_mw else None,
            'vbios_version': q('nvmlDeviceGetVbiosVersion', handle),
        }


def _mode(value):
    return 'enabled' if value else 'disabled'
