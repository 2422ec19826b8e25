# -*- coding: utf-8 -*-
"""GPU exporter collector against a fake NVML (real pynvml error classes)."""

import re
import statistics
import threading
import time
import urllib.request

import pynvml
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_exporter.__main__ import build_registry, make_server, parse_args
from gpu_exporter.collector import GpuCollector, XidWatcher

GIB = 1024 ** 3
UUID0 = 'GPU-00000000-0000-0000-0000-000000000000'
UUID1 = 'GPU-00000001-0000-0000-0000-000000000000'
H100 = 'NVIDIA H100 80GB HBM3'


def gpu_labels(index=0, uuid=UUID0, model=H100, **extra):
    labels = {'gpu': str(index), 'uuid': uuid, 'model': model}
    labels.update(extra)
    return labels


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def scrape(collector):
    """A fresh registry per call is not needed: the collector keeps its own state."""
    registry = build_registry(collector)
    return registry, generate_latest(registry).decode()


def families(text):
    return dict((f.name, f) for f in text_string_to_metric_families(text))


def test_one_gpu_all_metrics_in_base_units(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0)])
    collector = GpuCollector(lib=lib, expected_gpus=1, xid_events=False)
    registry, text = scrape(collector)
    v = registry.get_sample_value
    g = gpu_labels()
    assert v('nvidia_gpu_nvml_up') == 1
    assert v('nvidia_gpu_count') == 1
    assert v('nvidia_gpu_expected_count') == 1
    assert v('nvidia_gpu_driver_info', {'driver_version': '550.54.15', 'cuda_driver_version': '12.4'}) == 1
    assert v('nvidia_gpu_up', g) == 1
    assert v('nvidia_gpu_scrape_errors', g) == 0
    assert v('nvidia_gpu_utilization_ratio', g) == pytest.approx(0.87)
    assert v('nvidia_gpu_memory_utilization_ratio', g) == pytest.approx(0.41)
    assert v('nvidia_gpu_memory_used_bytes', g) == 12 * GIB
    assert v('nvidia_gpu_memory_total_bytes', g) == 80 * GIB
    assert v('nvidia_gpu_temperature_celsius', g) == 64
    assert v('nvidia_gpu_power_draw_watts', g) == pytest.approx(412.345)
    assert v('nvidia_gpu_power_limit_watts', g) == pytest.approx(700.0)
    assert v('nvidia_gpu_energy_consumed_joules_total', g) == pytest.approx(123456.789)
    assert v('nvidia_gpu_sm_clock_hertz', g) == 1980e6
    assert v('nvidia_gpu_memory_clock_hertz', g) == 2619e6
    assert v('nvidia_gpu_throttle_reason_active', gpu_labels(reason='sw_power_cap')) == 1
    assert v('nvidia_gpu_throttle_reason_active', gpu_labels(reason='hw_thermal_slowdown')) == 1
    assert v('nvidia_gpu_throttle_reason_active', gpu_labels(reason='gpu_idle')) == 0
    assert v('nvidia_gpu_throttle_reason_active', gpu_labels(reason='hw_power_brake_slowdown')) == 0
    assert v('nvidia_gpu_ecc_corrected_errors_volatile_total', g) == 3
    assert v('nvidia_gpu_ecc_uncorrected_errors_volatile_total', g) == 0
    assert v('nvidia_gpu_ecc_corrected_errors_aggregate_total', g) == 17
    assert v('nvidia_gpu_ecc_uncorrected_errors_aggregate_total', g) == 2
    assert v('nvidia_gpu_remapped_rows_corrected', g) == 1
    assert v('nvidia_gpu_remapped_rows_uncorrected', g) == 0
    assert v('nvidia_gpu_remapped_rows_pending', g) == 0
    assert v('nvidia_gpu_remapped_rows_failure', g) == 0
    assert v('nvidia_gpu_pcie_link_generation', g) == 5
    assert v('nvidia_gpu_pcie_link_width', g) == 16
    assert v('nvidia_gpu_pcie_link_generation_max', g) == 5
    assert v('nvidia_gpu_pcie_link_width_max', g) == 16
    assert v('nvidia_gpu_xid_events_supported', g) == 0
    # Hopper answers "not supported" for retired pages: left out, not an error.
    assert 'nvidia_gpu_retired_pages' not in text
    assert v('nvidia_gpu_exporter_nvml_errors_total') == 0
    assert v('nvidia_gpu_exporter_collect_duration_seconds') >= 0


def test_labels_are_gpu_uuid_model_only_and_names_follow_conventions(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0), fake_gpu(1, name='NVIDIA A100-SXM4-80GB')])
    dummy, text = scrape(GpuCollector(lib=lib, xid_events=False))
    per_gpu = 0
    for family in text_string_to_metric_families(text):
        if family.type == 'counter':
            assert all(s.name.endswith(('_total', '_created')) for s in family.samples), family.name
        for sample in family.samples:
            if 'gpu' in sample.labels:
                per_gpu += 1
                allowed = {'gpu', 'uuid', 'model'} | ({'reason'} if family.name.endswith('throttle_reason_active')
                                                      else set())
                assert set(sample.labels) == allowed, (sample.name, sample.labels)
        if family.name.startswith('nvidia_gpu_') and family.type == 'gauge':
            assert re.search(r'(_bytes|_celsius|_watts|_hertz|_ratio|_seconds|_up|_count|_info|_errors|_active|'
                             r'_supported|_xid|_pending|_failure|_corrected|_uncorrected|_ecc|_generation|'
                             r'_generation_max|_width|_width_max)$', family.name), family.name
    assert per_gpu > 2 * 25


def test_no_nvml_bindings_answers_with_nvml_down_and_zero_gpus():
    collector = GpuCollector(lib=None)
    registry, text = scrape(collector)
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 0
    assert registry.get_sample_value('nvidia_gpu_count') == 0
    assert 'nvidia_gpu_up{' not in text
    assert 'pynvml' in collector.init_error


def test_driver_not_loaded_retries_init_rate_limited_and_recovers(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0)], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    clock = Clock()
    collector = GpuCollector(lib=lib, retry_seconds=30, xid_events=False, clock=clock)
    registry = build_registry(collector)
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 0
    assert registry.get_sample_value('nvidia_gpu_count') == 0
    assert lib.init_calls == 1
    assert 'Driver Not Loaded' in collector.init_error
    clock.now += 10
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 0
    assert lib.init_calls == 1            # within the retry interval: no new nvmlInit
    lib.init_error = None                 # the driver gets loaded
    clock.now += 25
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 1
    assert lib.init_calls == 2
    assert registry.get_sample_value('nvidia_gpu_up', gpu_labels()) == 1


def test_zero_gpus_with_nvml(fake_nvml):
    collector = GpuCollector(lib=fake_nvml([]), expected_gpus=0)
    registry, text = scrape(collector)
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 1
    assert registry.get_sample_value('nvidia_gpu_count') == 0
    assert registry.get_sample_value('nvidia_gpu_expected_count') == 0
    assert 'nvidia_gpu_up{' not in text
    assert collector.xid is None


def test_nvml_error_mid_scrape_counts_and_keeps_other_metrics(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0), fake_gpu(1)])
    collector = GpuCollector(lib=lib, xid_events=False)
    registry = build_registry(collector)
    lib.errors[('nvmlDeviceGetPowerUsage', 0)] = pynvml.NVML_ERROR_UNKNOWN
    lib.errors[('nvmlDeviceGetTotalEccErrors', 0)] = pynvml.NVML_ERROR_TIMEOUT
    text = generate_latest(registry).decode()
    v = registry.get_sample_value
    g0, g1 = gpu_labels(), gpu_labels(1, UUID1)
    assert v('nvidia_gpu_scrape_errors', g0) == 5   # power + four ECC counters
    assert v('nvidia_gpu_scrape_errors', g1) == 0
    assert v('nvidia_gpu_up', g0) == 1
    assert v('nvidia_gpu_power_draw_watts', g0) is None
    assert v('nvidia_gpu_power_draw_watts', g1) == pytest.approx(412.345)
    assert v('nvidia_gpu_temperature_celsius', g0) == 64
    assert v('nvidia_gpu_ecc_corrected_errors_volatile_total', g0) is None
    assert v('nvidia_gpu_exporter_nvml_errors_total') >= 5
    assert 'nvidia_gpu_power_draw_watts{gpu="1"' in text
    # The errors go away: the next scrape is clean again.
    lib.errors.clear()
    assert v('nvidia_gpu_scrape_errors', g0) == 0
    assert v('nvidia_gpu_power_draw_watts', g0) == pytest.approx(412.345)


def test_gpu_lost_mid_scrape_marks_it_down_and_stops_querying_it(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0), fake_gpu(1)])
    collector = GpuCollector(lib=lib, xid_events=False)
    registry = build_registry(collector)
    assert registry.get_sample_value('nvidia_gpu_up', gpu_labels(1, UUID1)) == 1
    lib.errors[('nvmlDeviceGetUtilizationRates', 1)] = pynvml.NVML_ERROR_GPU_IS_LOST
    lib.calls.clear()
    list(registry.collect())
    gpu1_calls = [name for name, index in lib.calls if index == 1]
    assert gpu1_calls == ['nvmlDeviceGetMemoryInfo', 'nvmlDeviceGetUtilizationRates']   # nothing after the loss
    v = registry.get_sample_value
    g1 = gpu_labels(1, UUID1)
    assert v('nvidia_gpu_up', g1) == 0
    assert v('nvidia_gpu_scrape_errors', g1) == 0   # later scrapes no longer ask the lost GPU
    assert v('nvidia_gpu_memory_total_bytes', g1) is None
    assert v('nvidia_gpu_up', gpu_labels()) == 1
    assert v('nvidia_gpu_temperature_celsius', gpu_labels()) == 64
    assert v('nvidia_gpu_count') == 2
    assert v('nvidia_gpu_exporter_nvml_errors_total') == 1


def test_unsupported_queries_are_left_out_without_errors(fake_nvml, fake_gpu, raise_):
    ns = raise_(pynvml.NVML_ERROR_NOT_SUPPORTED)
    gone = raise_(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    gpu = fake_gpu(0, name='NVIDIA GeForce RTX 4090', nvmlDeviceGetTotalEccErrors=ns, nvmlDeviceGetRemappedRows=ns,
                   nvmlDeviceGetCurrentClocksEventReasons=gone, nvmlDeviceGetCurrentClocksThrottleReasons=0x1,
                   nvmlDeviceGetEnforcedPowerLimit=ns)
    registry, text = scrape(GpuCollector(lib=fake_nvml([gpu]), xid_events=False))
    g = gpu_labels(model='NVIDIA GeForce RTX 4090')
    assert registry.get_sample_value('nvidia_gpu_scrape_errors', g) == 0
    assert registry.get_sample_value('nvidia_gpu_up', g) == 1
    assert 'ecc_' not in text and 'remapped_rows' not in text and 'power_limit' not in text
    # the pre-535 throttle-reason call is the fallback
    assert registry.get_sample_value('nvidia_gpu_throttle_reason_active', dict(g, reason='gpu_idle')) == 1


def test_retired_pages_on_pre_ampere_gpus(fake_nvml, fake_gpu, raise_):
    gpu = fake_gpu(0, name='Tesla V100-SXM2-32GB',
                   nvmlDeviceGetRetiredPages={0: [0x1000, 0x2000], 1: [0x3000]},
                   nvmlDeviceGetRetiredPagesPendingStatus=1,
                   nvmlDeviceGetRemappedRows=raise_(pynvml.NVML_ERROR_NOT_SUPPORTED))
    registry, text = scrape(GpuCollector(lib=fake_nvml([gpu]), xid_events=False))
    g = gpu_labels(model='Tesla V100-SXM2-32GB')
    assert registry.get_sample_value('nvidia_gpu_retired_pages_single_bit_ecc', g) == 2
    assert registry.get_sample_value('nvidia_gpu_retired_pages_double_bit_ecc', g) == 1
    assert registry.get_sample_value('nvidia_gpu_retired_pages_pending', g) == 1
    assert 'remapped_rows' not in text


def test_nvml_gone_mid_scrape_answers_and_reinitialises(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0)])
    clock = Clock()
    collector = GpuCollector(lib=lib, retry_seconds=5, xid_events=False, clock=clock)
    registry = build_registry(collector)
    assert registry.get_sample_value('nvidia_gpu_count') == 1
    lib.count_error = pynvml.NVML_ERROR_UNINITIALIZED   # driver unloaded under us
    clock.now += 1
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 0
    assert registry.get_sample_value('nvidia_gpu_count') == 0
    assert registry.get_sample_value('nvidia_gpu_exporter_nvml_errors_total') == 1
    assert 'nvmlShutdown' in lib.calls
    lib.count_error = None
    clock.now += 10
    assert registry.get_sample_value('nvidia_gpu_nvml_up') == 1
    assert registry.get_sample_value('nvidia_gpu_up', gpu_labels()) == 1


def test_xid_events_are_counted_per_gpu(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0), fake_gpu(1)])
    watcher = XidWatcher(lib, [], wait_ms=1)
    assert not watcher.active
    collector = GpuCollector(lib=lib, xid_events=True)
    collector._initialise()
    collector.xid.stop()   # drive it by hand: no timing in the test
    lib.events.extend([(1, 79), (1, 48), (0, 13)])
    assert collector.xid.poll_once() and collector.xid.poll_once() and collector.xid.poll_once()
    assert not collector.xid.poll_once()   # timeout: nothing counted
    registry = build_registry(collector)
    v = registry.get_sample_value
    assert v('nvidia_gpu_xid_events_supported', gpu_labels()) == 1
    assert v('nvidia_gpu_xid_errors_total', gpu_labels(1, UUID1)) == 2
    assert v('nvidia_gpu_last_xid', gpu_labels(1, UUID1)) == 48
    assert v('nvidia_gpu_xid_errors_total', gpu_labels()) == 1
    assert v('nvidia_gpu_last_xid', gpu_labels()) == 13


def test_xid_watcher_thread_runs_and_stops(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0)])
    lib.events.append((0, 94))
    collector = GpuCollector(lib=lib, xid_events=True)
    collector._initialise()
    deadline = time.monotonic() + 5
    while collector.xid.snapshot(UUID0)[1] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert collector.xid.snapshot(UUID0) == (True, 1, 94)
    collector.close()
    assert 'nvmlEventSetFree' in lib.calls and 'nvmlShutdown' in lib.calls


def test_xid_registration_unsupported(fake_nvml, fake_gpu):
    lib = fake_nvml([fake_gpu(0)])
    lib.event_registration_error = pynvml.NVML_ERROR_NOT_SUPPORTED
    registry, text = scrape(GpuCollector(lib=lib, xid_events=True))
    assert registry.get_sample_value('nvidia_gpu_xid_events_supported', gpu_labels()) == 0
    assert 'nvidia_gpu_xid_errors_total' not in text


def test_http_server_answers_and_scrapes_are_cheap(fake_nvml, fake_gpu):
    collector = GpuCollector(lib=fake_nvml([fake_gpu(0)]), xid_events=False)
    server = make_server(build_registry(collector), '127.0.0.1', 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = 'http://127.0.0.1:%d/metrics' % server.server_address[1]
        times = []
        for dummy in range(20):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
                assert response.status == 200
            times.append(time.perf_counter() - t0)
        fams = families(body)
        assert fams['nvidia_gpu_temperature_celsius'].samples[0].value == 64
        assert 'process_resident_memory_bytes' in body
        # exporter-side overhead only (NVML itself is faked); the device script measures real NVML
        assert statistics.median(times) < 0.05, times
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize('argv, host, port', [
    ([], '0.0.0.0', 9445),
    (['--listen-address', '127.0.0.1:9500'], '127.0.0.1', 9500),
    (['--listen-address', '[::1]:9500'], '::1', 9500),
])
def test_listen_address(argv, host, port):
    args = parse_args(argv)
    assert (args.host, args.port) == (host, port)


@pytest.mark.parametrize('argv', [['--listen-address', '9445'], ['--listen-address', ':http'],
                                  ['--listen-address', ':70000'], ['--expected-gpus', '-1']])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert 'must be' in capsys.readouterr().err
