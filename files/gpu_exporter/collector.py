# -*- coding: utf-8 -*-
"""Prometheus collector over NVML, built for cheap scrapes and partial failure.

* NVML is initialised once and device handles are kept between scrapes; a scrape costs one
  ``nvmlDeviceGetCount`` plus about twenty field queries per GPU (no process spawn, no
  nvidia-smi).
* A query NVML answers "not supported" for (ECC on a GeForce, retired pages on Hopper,
  clocks in some VMs) leaves that metric out for that GPU. Any other failure during a scrape
  (GPU fallen off the bus, driver timeout) is counted in ``nvidia_gpu_scrape_errors`` and
  ``nvidia_gpu_exporter_nvml_errors_total``; the scrape still answers with everything else.
* Without NVML (bindings missing, no driver, zero GPUs) the scrape answers with
  ``nvidia_gpu_nvml_up 0`` / ``nvidia_gpu_count 0``; initialisation is retried at most every
  ``retry_seconds`` so a driver loaded later is picked up without a restart.
* XID errors come from an NVML event set watched by a background thread
  (:class:`XidWatcher`); the thread blocks inside NVML with the GIL released.

Labels: ``gpu`` (NVML index), ``uuid``, ``model`` (product name) on every per-GPU metric;
``reason`` (a fixed set of nine values) on ``nvidia_gpu_throttle_reason_active`` only.
"""

import logging
import threading
import time

try:
    import pynvml
except ImportError:  # the exporter still answers: nvidia_gpu_nvml_up 0
    pynvml = None

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LOG = logging.getLogger('gpu_exporter')

# nvmlReturn_t values (stable across NVML versions).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
# "This device/driver cannot answer that": the metric is left out, not counted as an error.
UNSUPPORTED = frozenset((NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND))
# NVML itself has gone away: re-initialise on the next scrape.
NVML_GONE = frozenset((NVML_ERROR_UNINITIALIZED, NVML_ERROR_DRIVER_NOT_LOADED))

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x8

# nvmlClocksEventReasons / nvmlClocksThrottleReasons bits.
THROTTLE_REASONS = (
    (0x1, 'gpu_idle'),
    (0x2, 'applications_clocks_setting'),
    (0x4, 'sw_power_cap'),
    (0x8, 'hw_slowdown'),
    (0x10, 'sync_boost'),
    (0x20, 'sw_thermal_slowdown'),
    (0x40, 'hw_thermal_slowdown'),
    (0x80, 'hw_power_brake_slowdown'),
    (0x100, 'display_clock_setting'),
)

GPU_LABELS = ['gpu', 'uuid', 'model']
PREFIX = 'nvidia_gpu_'

# name (without prefix), help, type ('gauge' | 'counter'), extra label names
FAMILIES = (
    ('up', '1 when NVML answers for this GPU, 0 when it is lost or stops answering', 'gauge', ()),
    ('scrape_errors', 'NVML queries for this GPU that failed in this scrape (unsupported ones not counted)',
     'gauge', ()),
    ('utilization_ratio', 'Fraction of the last sample period in which a kernel ran (0-1)', 'gauge', ()),
    ('memory_utilization_ratio', 'Fraction of the last sample period in which device memory was read or written',
     'gauge', ()),
    ('memory_used_bytes', 'Device memory in use', 'gauge', ()),
    ('memory_total_bytes', 'Device memory in total', 'gauge', ()),
    ('temperature_celsius', 'GPU core temperature', 'gauge', ()),
    ('power_draw_watts', 'Power drawn by the board', 'gauge', ()),
    ('power_limit_watts', 'Power limit the driver enforces', 'gauge', ()),
    ('energy_consumed_joules', 'Energy consumed since the driver was loaded', 'counter', ()),
    ('sm_clock_hertz', 'Current SM clock', 'gauge', ()),
    ('memory_clock_hertz', 'Current memory clock', 'gauge', ()),
    ('throttle_reason_active', '1 while the clocks are held down for this reason', 'gauge', ('reason',)),
    ('ecc_corrected_errors_volatile', 'Corrected ECC errors since the driver was loaded', 'counter', ()),
    ('ecc_uncorrected_errors_volatile', 'Uncorrected ECC errors since the driver was loaded', 'counter', ()),
    ('ecc_corrected_errors_aggregate', 'Corrected ECC errors over the life of the GPU', 'counter', ()),
    ('ecc_uncorrected_errors_aggregate', 'Uncorrected ECC errors over the life of the GPU', 'counter', ()),
    ('retired_pages_single_bit_ecc', 'Pages retired after multiple single-bit ECC errors (pre-Ampere)',
     'gauge', ()),
    ('retired_pages_double_bit_ecc', 'Pages retired after a double-bit ECC error (pre-Ampere)', 'gauge', ()),
    ('retired_pages_pending', '1 when a page retirement waits for the next driver reload', 'gauge', ()),
    ('remapped_rows_corrected', 'Rows remapped after correctable errors (Ampere and later)', 'gauge', ()),
    ('remapped_rows_uncorrected', 'Rows remapped after uncorrectable errors (Ampere and later)', 'gauge', ()),
    ('remapped_rows_pending', '1 when a row remap waits for the next GPU reset', 'gauge', ()),
    ('remapped_rows_failure', '1 when a row remap failed (the GPU needs service)', 'gauge', ()),
    ('pcie_link_generation', 'Current PCIe link generation', 'gauge', ()),
    ('pcie_link_width', 'Current PCIe link width (lanes)', 'gauge', ()),
    ('pcie_link_generation_max', 'Maximum PCIe link generation of GPU and slot', 'gauge', ()),
    ('pcie_link_width_max', 'Maximum PCIe link width of GPU and slot (lanes)', 'gauge', ()),
    ('xid_events_supported', '1 when XID error events are watched for this GPU', 'gauge', ()),
    ('xid_errors', 'Critical XID errors reported by NVML events since the exporter started', 'counter', ()),
    ('last_xid', 'Code of the last critical XID error seen (0: none since the exporter started)', 'gauge', ()),
)


def _code(exc):
    """nvmlReturn_t of an NVMLError (None for anything else)."""
    return getattr(exc, 'value', None)


def _text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


class Gpu(object):
    """A device handle with the identity labels read once at start."""

    def __init__(self, index, handle, uuid, model):
        self.index = index
        self.handle = handle
        self.uuid = uuid
        self.model = model
        self.lost = False

    @property
    def labels(self):
        return [str(self.index), self.uuid, self.model]


class XidWatcher(object):
    """Counts critical XID events per GPU from an NVML event set, in a daemon thread."""

    def __init__(self, lib, gpus, wait_ms=1000):
        self.lib = lib
        self.wait_ms = wait_ms
        self.counts = {}
        self.last = {}
        self.supported = {}
        self.errors = 0
        self._by_uuid = dict((gpu.uuid, gpu) for gpu in gpus)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._set = None
        try:
            self._set = lib.nvmlEventSetCreate()
        except Exception as exc:  # NVMLError, or a pynvml without event support
            LOG.info('XID events not available: %s', exc)
            for gpu in gpus:
                self.supported[gpu.uuid] = False
            return
        for gpu in gpus:
            try:
                lib.nvmlDeviceRegisterEvents(gpu.handle, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, self._set)
                self.supported[gpu.uuid] = True
                self.counts[gpu.uuid] = 0
                self.last[gpu.uuid] = 0
            except Exception as exc:
                LOG.info('XID events not available for GPU %s: %s', gpu.index, exc)
                self.supported[gpu.uuid] = False

    @property
    def active(self):
        return any(self.supported.values())

    def start(self):
        if self.active and self._thread is None:
            self._thread = threading.Thread(target=self._run, name='xid-events', daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._set is not None:
            try:
                self.lib.nvmlEventSetFree(self._set)
            except Exception:
                pass
            self._set = None

    def poll_once(self):
        """Wait up to wait_ms for one event; True when one was counted."""
        wait = getattr(self.lib, 'nvmlEventSetWait_v2', None) or self.lib.nvmlEventSetWait
        try:
            data = wait(self._set, self.wait_ms)
        except Exception as exc:
            if _code(exc) == NVML_ERROR_TIMEOUT:
                return False
            with self._lock:
                self.errors += 1
            LOG.warning('waiting for NVML events failed: %s', exc)
            self._stop.wait(1.0)
            return False
        if not getattr(data, 'eventType', 0) & NVML_EVENT_TYPE_XID_CRITICAL_ERROR:
            return False
        try:
            uuid = _text(self.lib.nvmlDeviceGetUUID(data.device))
        except Exception:
            uuid = None
        if uuid not in self._by_uuid:
            LOG.warning('XID %s from an unknown device', getattr(data, 'eventData', '?'))
            return False
        with self._lock:
            self.counts[uuid] = self.counts.get(uuid, 0) + 1
            self.last[uuid] = int(getattr(data, 'eventData', 0) or 0)
        LOG.warning('XID %s on GPU %s (%s)', self.last[uuid], self._by_uuid[uuid].index, uuid)
        return True

    def _run(self):
        while not self._stop.is_set():
            self.poll_once()

    def snapshot(self, uuid):
        """(supported, count, last code) for a GPU."""
        with self._lock:
            return self.supported.get(uuid, False), self.counts.get(uuid, 0), self.last.get(uuid, 0)


class GpuCollector(object):
    """prometheus_client custom collector; register it on a CollectorRegistry."""

    def __init__(self, lib=pynvml, expected_gpus=None, retry_seconds=30.0, xid_events=True,
                 clock=time.monotonic):
        self.lib = lib
        self.expected_gpus = expected_gpus
        self.retry_seconds = retry_seconds
        self.xid_events = xid_events
        self.clock = clock
        self.gpus = []
        self.initialised = False
        self.init_error = None if lib is not None else 'nvidia-ml-py (pynvml) is not installed'
        self.driver_version = ''
        self.cuda_driver_version = ''
        self.nvml_errors_total = 0
        self.xid = None
        self._last_try = None
        self._lock = threading.Lock()

    # -- NVML session -------------------------------------------------------------------
    def _initialise(self):
        now = self.clock()
        if self.lib is None or (self._last_try is not None and now - self._last_try < self.retry_seconds):
            return
        self._last_try = now
        try:
            self.lib.nvmlInit()
        except Exception as exc:
            self.init_error = str(exc) or exc.__class__.__name__
            LOG.info('NVML not available: %s', self.init_error)
            return
        self.initialised = True
        self.init_error = None
        try:
            self.driver_version = _text(self.lib.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver_version = ''
        try:
            cuda = int(self.lib.nvmlSystemGetCudaDriverVersion())
            self.cuda_driver_version = '%d.%d' % (cuda // 1000, (cuda % 1000) // 10)
        except Exception:
            self.cuda_driver_version = ''
        self._enumerate()

    def _enumerate(self):
        self.gpus = []
        count = self.lib.nvmlDeviceGetCount()
        for index in range(count):
            try:
                handle = self.lib.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                LOG.warning('GPU %d: no handle: %s', index, exc)
                gpu = Gpu(index, None, '', '')
                gpu.lost = True
                self.gpus.append(gpu)
                continue
            uuid = self._identity(handle, 'nvmlDeviceGetUUID')
            model = self._identity(handle, 'nvmlDeviceGetName')
            self.gpus.append(Gpu(index, handle, uuid, model))
        if self.xid is not None:
            self.xid.stop()
            self.xid = None
        if self.xid_events and self.gpus:
            self.xid = XidWatcher(self.lib, [g for g in self.gpus if g.handle is not None]).start()

    def _identity(self, handle, func):
        try:
            return _text(getattr(self.lib, func)(handle)) or ''
        except Exception:
            return ''

    def _reset(self):
        if self.xid is not None:
            self.xid.stop()
            self.xid = None
        try:
            self.lib.nvmlShutdown()
        except Exception:
            pass
        self.initialised = False
        self.gpus = []

    def close(self):
        if self.initialised:
            self._reset()

    # -- scrape -------------------------------------------------------------------------
    def describe(self):
        return []  # families depend on what NVML supports; don't let registration call collect()

    def collect(self):
        start = time.perf_counter()
        with self._lock:
            families = self._collect()
        duration = GaugeMetricFamily(PREFIX + 'exporter_collect_duration_seconds',
                                     'Time spent querying NVML for this scrape')
        duration.add_metric([], time.perf_counter() - start)
        families.append(duration)
        return families

    def _collect(self):
        if not self.initialised:
            self._initialise()
        count = None
        if self.initialised:
            try:
                count = self.lib.nvmlDeviceGetCount()
            except Exception as exc:
                self.nvml_errors_total += 1
                self.init_error = str(exc) or exc.__class__.__name__
                LOG.warning('NVML stopped answering: %s', self.init_error)
                self._reset()
            else:
                if count != len(self.gpus):
                    self._enumerate()

        fam = {}
        for name, doc, kind, extra in FAMILIES:
            cls = CounterMetricFamily if kind == 'counter' else GaugeMetricFamily
            fam[name] = cls(PREFIX + name, doc, labels=GPU_LABELS + list(extra))

        nvml_up = GaugeMetricFamily(PREFIX + 'nvml_up', '1 when NVML is initialised and answers')
        nvml_up.add_metric([], 1 if self.initialised else 0)
        gpu_count = GaugeMetricFamily(PREFIX + 'count', 'GPUs NVML reports (0 without NVML)')
        gpu_count.add_metric([], count if self.initialised and count is not None else 0)
        out = [nvml_up, gpu_count]
        if self.expected_gpus is not None:
            expected = GaugeMetricFamily(PREFIX + 'expected_count', 'GPUs this host is expected to have')
            expected.add_metric([], self.expected_gpus)
            out.append(expected)
        if self.initialised:
            info = GaugeMetricFamily(PREFIX + 'driver_info', 'NVIDIA driver and CUDA driver API versions',
                                     labels=['driver_version', 'cuda_driver_version'])
            info.add_metric([self.driver_version, self.cuda_driver_version], 1)
            out.append(info)
            for gpu in self.gpus:
                self._collect_gpu(gpu, fam)
        errors = CounterMetricFamily(PREFIX + 'exporter_nvml_errors',
                                     'NVML calls that failed since the exporter started (unsupported ones not counted)')
        errors.add_metric([], self.nvml_errors_total + (self.xid.errors if self.xid is not None else 0))
        out.append(errors)
        out.extend(f for f in fam.values() if f.samples)
        return out

    def _collect_gpu(self, gpu, fam):
        lib = self.lib
        labels = gpu.labels
        state = {'errors': 0}

        def q(func, *args):
            """pynvml.<func>(handle, *args); None when unsupported or failing."""
            if gpu.lost:
                return None
            try:
                return getattr(lib, func)(gpu.handle, *args)
            except Exception as exc:
                code = _code(exc)
                if code in UNSUPPORTED or isinstance(exc, AttributeError):
                    return None
                state['errors'] += 1
                self.nvml_errors_total += 1
                if code == NVML_ERROR_GPU_IS_LOST:
                    gpu.lost = True
                LOG.debug('GPU %s: %s failed: %s', gpu.index, func, exc)
                return None

        def put(name, value, scale=1, extra=()):
            if value is not None:
                fam[name].add_metric(labels + list(extra), value * scale)

        memory = q('nvmlDeviceGetMemoryInfo')
        if memory is not None:
            put('memory_used_bytes', memory.used)
            put('memory_total_bytes', memory.total)
        util = q('nvmlDeviceGetUtilizationRates')
        if util is not None:
            put('utilization_ratio', util.gpu, 0.01)
            put('memory_utilization_ratio', util.memory, 0.01)
        put('temperature_celsius', q('nvmlDeviceGetTemperature', NVML_TEMPERATURE_GPU))
        put('power_draw_watts', q('nvmlDeviceGetPowerUsage'), 0.001)
        put('power_limit_watts', q('nvmlDeviceGetEnforcedPowerLimit'), 0.001)
        put('energy_consumed_joules', q('nvmlDeviceGetTotalEnergyConsumption'), 0.001)
        put('sm_clock_hertz', q('nvmlDeviceGetClockInfo', NVML_CLOCK_SM), 1e6)
        put('memory_clock_hertz', q('nvmlDeviceGetClockInfo', NVML_CLOCK_MEM), 1e6)

        reasons = q('nvmlDeviceGetCurrentClocksEventReasons')  # driver >= 535; older: the throttle name
        if reasons is None:
            reasons = q('nvmlDeviceGetCurrentClocksThrottleReasons')
        if reasons is not None:
            for bit, reason in THROTTLE_REASONS:
                put('throttle_reason_active', 1 if int(reasons) & bit else 0, extra=(reason,))

        for name, error_type, counter in (
                ('ecc_corrected_errors_volatile', NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_VOLATILE_ECC),
                ('ecc_uncorrected_errors_volatile', NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC),
                ('ecc_corrected_errors_aggregate', NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_AGGREGATE_ECC),
                ('ecc_uncorrected_errors_aggregate', NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC)):
            put(name, q('nvmlDeviceGetTotalEccErrors', error_type, counter))

        single = q('nvmlDeviceGetRetiredPages', NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
        if single is not None:
            put('retired_pages_single_bit_ecc', len(single))
            put('retired_pages_double_bit_ecc',
                _len(q('nvmlDeviceGetRetiredPages', NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)))
            pending = q('nvmlDeviceGetRetiredPagesPendingStatus')
            put('retired_pages_pending', None if pending is None else int(bool(pending)))
        remap = q('nvmlDeviceGetRemappedRows')
        if remap is not None:
            corrected, uncorrected, pending, failure = remap
            put('remapped_rows_corrected', corrected)
            put('remapped_rows_uncorrected', uncorrected)
            put('remapped_rows_pending', int(bool(pending)))
            put('remapped_rows_failure', int(bool(failure)))

        put('pcie_link_generation', q('nvmlDeviceGetCurrPcieLinkGeneration'))
        put('pcie_link_width', q('nvmlDeviceGetCurrPcieLinkWidth'))
        put('pcie_link_generation_max', q('nvmlDeviceGetMaxPcieLinkGeneration'))
        put('pcie_link_width_max', q('nvmlDeviceGetMaxPcieLinkWidth'))

        if self.xid is not None and gpu.handle is not None:
            supported, xid_count, last = self.xid.snapshot(gpu.uuid)
        else:
            supported, xid_count, last = False, 0, 0
        put('xid_events_supported', int(supported))
        if supported:
            put('xid_errors', xid_count)
            put('last_xid', last)

        put('up', 0 if gpu.lost or memory is None else 1)
        put('scrape_errors', state['errors'])


def _len(value):
    return None if value is None else len(value)
