# -*- coding: utf-8 -*-
"""Fixtures for the GPU exporter tests: a fake NVML library raising real pynvml errors.

The exporter (files/gpu_exporter) runs on the managed host from a venv with
prometheus_client and nvidia-ml-py; both must be importable here too (tests/requirements.txt).
"""

import os
import sys
from types import SimpleNamespace

import pytest

FILES = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
if FILES not in sys.path:
    sys.path.insert(0, FILES)

import pynvml  # noqa: E402  (real error classes: NVMLError(code) -> NVMLError_GpuIsLost, ...)

GIB = 1024 ** 3


def nvml_error(code):
    return pynvml.NVMLError(code)


class Raise(object):
    """A FakeGpu value that makes the query raise NVMLError(code)."""

    def __init__(self, code):
        self.code = code


class FakeGpu(object):
    def __init__(self, index, name='NVIDIA H100 80GB HBM3', **overrides):
        self.index = index
        self.values = dict(
            nvmlDeviceGetUUID='GPU-%08d-0000-0000-0000-000000000000' % index,
            nvmlDeviceGetName=name,
            nvmlDeviceGetMemoryInfo=SimpleNamespace(total=80 * GIB, used=12 * GIB, free=68 * GIB),
            nvmlDeviceGetUtilizationRates=SimpleNamespace(gpu=87, memory=41),
            nvmlDeviceGetTemperature=64,
            nvmlDeviceGetPowerUsage=412345,          # mW
            nvmlDeviceGetEnforcedPowerLimit=700000,  # mW
            nvmlDeviceGetTotalEnergyConsumption=123456789,  # mJ
            nvmlDeviceGetClockInfo={1: 1980, 2: 2619},      # MHz by clock type
            nvmlDeviceGetCurrentClocksEventReasons=0x4 | 0x40,  # sw_power_cap + hw_thermal_slowdown
            nvmlDeviceGetTotalEccErrors={(0, 0): 3, (1, 0): 0, (0, 1): 17, (1, 1): 2},
            nvmlDeviceGetRetiredPages=Raise(pynvml.NVML_ERROR_NOT_SUPPORTED),  # Hopper: rows are remapped instead
            nvmlDeviceGetRetiredPagesPendingStatus=Raise(pynvml.NVML_ERROR_NOT_SUPPORTED),
            nvmlDeviceGetRemappedRows=(1, 0, 0, 0),
            nvmlDeviceGetCurrPcieLinkGeneration=5,
            nvmlDeviceGetCurrPcieLinkWidth=16,
            nvmlDeviceGetMaxPcieLinkGeneration=5,
            nvmlDeviceGetMaxPcieLinkWidth=16,
        )
        self.values.update(overrides)


class FakeNvml(object):
    """Enough of pynvml for the exporter. ``errors[(func, index)] = code`` makes a query raise
    on every call; a ``Raise(code)`` value in ``FakeGpu.values`` does the same per GPU."""

    def __init__(self, gpus=(), init_error=None, driver='550.54.15', cuda=12040):
        self.gpus = list(gpus)
        self.init_error = init_error
        self.driver = driver
        self.cuda = cuda
        self.calls = []
        self.errors = {}          # (func, gpu index) -> NVML error code, raised on each call
        self.count_error = None   # NVML error code for nvmlDeviceGetCount
        self.init_calls = 0
        self.events = []          # queued XID events: (gpu index, xid code)
        self.event_registration_error = None

    # -- library ------------------------------------------------------------------------
    def nvmlInit(self):
        self.init_calls += 1
        if self.init_error is not None:
            raise nvml_error(self.init_error)

    def nvmlShutdown(self):
        self.calls.append('nvmlShutdown')

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        if self.count_error is not None:
            raise nvml_error(self.count_error)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.gpus[index]

    def __getattr__(self, name):
        if not name.startswith('nvmlDevice'):
            raise AttributeError(name)

        def query(gpu, *args):
            self.calls.append((name, gpu.index))
            code = self.errors.get((name, gpu.index))
            if code is not None:
                raise nvml_error(code)
            value = gpu.values[name]
            if isinstance(value, dict):
                value = value[args if len(args) > 1 else args[0]]
            if isinstance(value, Raise):
                raise nvml_error(value.code)
            return value
        return query

    # -- events -------------------------------------------------------------------------
    def nvmlEventSetCreate(self):
        return 'event-set'

    def nvmlEventSetFree(self, event_set):
        self.calls.append('nvmlEventSetFree')

    def nvmlDeviceRegisterEvents(self, gpu, types, event_set):
        if self.event_registration_error is not None:
            raise nvml_error(self.event_registration_error)

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        if not self.events:
            raise nvml_error(pynvml.NVML_ERROR_TIMEOUT)
        index, xid = self.events.pop(0)
        return SimpleNamespace(device=self.gpus[index], eventType=pynvml.nvmlEventTypeXidCriticalError,
                               eventData=xid)


@pytest.fixture
def fake_nvml():
    return FakeNvml


@pytest.fixture
def fake_gpu():
    return FakeGpu


@pytest.fixture
def raise_():
    return Raise
