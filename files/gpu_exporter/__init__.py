# -*- coding: utf-8 -*-
"""openautoglm GPU exporter: per-GPU NVML metrics for Prometheus.

``python -m gpu_exporter --listen-address :9445`` serves ``/metrics``. Needs
``prometheus_client`` and ``nvidia-ml-py`` (``pynvml``); without NVML (no driver, no GPU,
bindings missing) it still answers, with ``nvidia_gpu_nvml_up 0`` and ``nvidia_gpu_count 0``.
"""

__version__ = '1.0.0'
