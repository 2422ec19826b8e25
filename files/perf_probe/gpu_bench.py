# -*- coding: utf-8 -*-
"""GPU memory bandwidth and bf16 matmul throughput, measured with torch; prints JSON.

    <venv>/bin/python gpu_bench.py [--matmul-size 8192] [--copy-mib 1024] [--iterations 20]

Runs on every GPU torch sees, in NVML/nvidia-smi order (CUDA_DEVICE_ORDER=PCI_BUS_ID), one
after the other. Output (one JSON document on stdout)::

    {"torch": "2.5.1+cu121", "cuda": "12.1", "device": "cuda", "error": null, "note": null,
     "gpus": [{"index": 0, "uuid": "GPU-...", "name": "NVIDIA H100 80GB HBM3",
               "pci_bus_id": "0000:18:00.0",
               "memory_bandwidth_bytes_per_second": 2.9e12, "bf16_flops_per_second": 7.1e14,
               "copy_bytes": ..., "matmul_size": 8192, "error": null}]}

Memory bandwidth is that of a device-to-device copy (each byte read once and written once,
so 2 x size bytes move per copy), the figure datasheets quote as memory bandwidth. bf16
throughput counts 2 * n^3 operations per n x n x n matmul. Both are timed with CUDA events
after warm-up, best of ``--repeats`` rounds. Judging against datasheet figures happens in
the collection (plugins/module_utils/perf.py), not here.

``--device cpu`` runs the same code on the CPU with small sizes (tests without a GPU).
Exit status 0 whenever JSON was printed, including "no GPU" (``gpus`` empty, ``note`` says why).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('CUDA_DEVICE_ORDER', 'PCI_BUS_ID')  # torch index == NVML index


def _uuid(props, index):
    uuid = getattr(props, 'uuid', None)
    if uuid is not None:
        text = str(uuid)
        return text if text.startswith(('GPU-', 'MIG-')) else 'GPU-' + text
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        value = pynvml.nvmlDeviceGetUUID(handle)
        return value.decode() if isinstance(value, bytes) else value
    except Exception:
        return None


class Timer(object):
    """CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, torch, device):
        self.torch = torch
        self.device = device

    def time(self, fn, iterations):
        torch = self.torch
        if self.device.type == 'cuda':
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
            for dummy in range(iterations):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        for dummy in range(iterations):
            fn()
        return time.perf_counter() - t0


def measure(torch, device, copy_bytes, matmul_size, iterations, repeats):
    timer = Timer(torch, device)
    result = {}
    # memory bandwidth: device-to-device copy
    n = copy_bytes // 4
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    best = min(timer.time(lambda: dst.copy_(src), iterations) for dummy in range(repeats))
    result['copy_bytes'] = n * 4
    result['memory_bandwidth_bytes_per_second'] = 2.0 * n * 4 * iterations / best
    del src, dst
    # bf16 matmul
    a = torch.randn(matmul_size, matmul_size, dtype=torch.bfloat16, device=device)
    b = torch.randn(matmul_size, matmul_size, dtype=torch.bfloat16, device=device)
    c = torch.empty(matmul_size, matmul_size, dtype=torch.bfloat16, device=device)
    torch.matmul(a, b, out=c)  # warm-up (cuBLAS heuristics, clocks)
    timer.time(lambda: torch.matmul(a, b, out=c), max(2, iterations // 4))
    best = min(timer.time(lambda: torch.matmul(a, b, out=c), iterations) for dummy in range(repeats))
    result['matmul_size'] = matmul_size
    result['bf16_flops_per_second'] = 2.0 * matmul_size ** 3 * iterations / best
    del a, b, c
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return result


def run(args):
    out = {'torch': None, 'cuda': None, 'device': args.device, 'error': None, 'note': None, 'gpus': []}
    try:
        import torch
    except ImportError as exc:
        out['error'] = 'torch is not importable by %s: %s' % (sys.executable, exc)
        return out
    out['torch'] = torch.__version__
    out['cuda'] = torch.version.cuda
    if args.device == 'cpu':
        device = torch.device('cpu')
        entry = {'index': 0, 'uuid': None, 'name': 'cpu', 'pci_bus_id': None, 'error': None}
        try:
            entry.update(measure(torch, device, args.copy_mib * 1024 * 1024, args.matmul_size, args.iterations,
                                 args.repeats))
        except Exception as exc:
            entry['error'] = '%s: %s' % (exc.__class__.__name__, exc)
        out['gpus'].append(entry)
        return out
    if not torch.cuda.is_available():
        out['note'] = 'torch %s sees no CUDA device (CPU build: %s)' % (torch.__version__, torch.version.cuda is None)
        return out
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        entry = {'index': index, 'uuid': _uuid(props, index), 'name': props.name,
                 'pci_bus_id': '%04x:%02x:%02x.0' % (getattr(props, 'pci_domain_id', 0), getattr(props, 'pci_bus_id', 0),
                                                     getattr(props, 'pci_device_id', 0)),
                 'memory_total_bytes': int(props.total_memory), 'error': None}
        try:
            with torch.cuda.device(index):
                entry.update(measure(torch, torch.device('cuda', index), args.copy_mib * 1024 * 1024,
                                     args.matmul_size, args.iterations, args.repeats))
        except Exception as exc:  # one failing GPU is named, the others still run
            entry['error'] = '%s: %s' % (exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else '')
        out['gpus'].append(entry)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument('--copy-mib', type=int, default=1024, help='size of the copied buffer (MiB)')
    parser.add_argument('--matmul-size', type=int, default=8192, help='n of the n x n x n bf16 matmul')
    parser.add_argument('--iterations', type=int, default=20, help='timed operations per round')
    parser.add_argument('--repeats', type=int, default=3, help='rounds; the best counts')
    args = parser.parse_args(argv)
    if min(args.copy_mib, args.matmul_size, args.iterations, args.repeats) < 1:
        parser.error('sizes, iterations and repeats must be >= 1')
    json.dump(run(args), sys.stdout, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
