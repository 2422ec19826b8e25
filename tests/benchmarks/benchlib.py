# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pieces the GPU benchmarks share (service_bench.py: text model, vlm_bench.py: GLM-4.1V).

* the card's ceilings: the collection's datasheet table (plugins/module_utils/perf.py, the
  one perf_probe's datasheet verdict uses) looked up by the device name, and a
  device-to-device copy and a bf16 matmul measured in the same run by perf_probe's own
  gpu_bench.py; :func:`decode_bound` says which of them a bound uses;
* server processes (start, readiness, log tail, stop) and the flags a server accepts;
* percentiles, rounding, a phase runner with a time budget that records a failing phase
  and goes on, JSON/table output;
* the LM-head trick that makes a random-weight model print text: the rows of tokens the
  tokenizer prints are scaled up and all others (specials, eos, ids beyond the tokenizer)
  down, so every generated token is one streamed text chunk and no request ends early.

Nothing here imports torch at module level: the helpers run in the benchmark's client
process, which must not hold GPU memory while a server runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
FILES = os.path.join(REPO, 'files')
PERF_PY = os.path.join(REPO, 'plugins', 'module_utils', 'perf.py')
GPU_BENCH_PY = os.path.join(FILES, 'perf_probe', 'gpu_bench.py')

T0 = time.monotonic()


def log(*a):
    print('[%6.1fs]' % (time.monotonic() - T0), *a, flush=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ms(x):
    return None if x is None else round(1000 * x, 1)


def ratio(a, b):
    return None if not a or not b else round(a / b, 3)


def service_env():
    """Environment of a server process: the service package importable from files/."""
    return {'PYTHONPATH': FILES + os.pathsep + os.environ.get('PYTHONPATH', '')}


# ---------------------------------------------------------------------------- the card
def _load_perf():
    """plugins/module_utils/perf.py (pure Python, no Ansible imports) as a module."""
    spec = importlib.util.spec_from_file_location('openautoglm_perf', PERF_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def datasheet_tb_s(name):
    """The datasheet memory bandwidth (TB/s) of the card called ``name``, else None."""
    sheet = _load_perf().datasheet_for(name)
    return sheet.get('memory_bandwidth_tbps') if sheet else None


def gpu_name():
    """The device name as NVML reports it (torch's name is the same string), else None."""
    try:
        import pynvml
        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else name
    except Exception:  # noqa: BLE001
        pass
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader', '-i', '0'],
                             capture_output=True, text=True, timeout=20, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def card_ceilings(copy_mib=4096, matmul_size=8192, timeout=180):
    """Datasheet and measured ceilings of GPU 0.

    Datasheet: ``datasheet_for(name)`` of the collection's GPU_DATASHEET. Measured: one run of
    files/perf_probe/gpu_bench.py in a child process (so this process keeps no CUDA context),
    a ``copy_mib`` device-to-device copy (2 x bytes per copy) and an n^3 bf16 matmul.
    """
    name = gpu_name()
    sheet = _load_perf().datasheet_for(name)
    out = {'gpu': name, 'datasheet': dict(sheet) if sheet else None,
           'datasheet_source': 'plugins/module_utils/perf.py GPU_DATASHEET',
           'measured': None, 'measured_source': 'files/perf_probe/gpu_bench.py (device-to-device copy, bf16 matmul)'}
    try:
        p = subprocess.run([sys.executable, GPU_BENCH_PY, '--copy-mib', str(copy_mib),
                            '--matmul-size', str(matmul_size), '--iterations', '20', '--repeats', '3'],
                           capture_output=True, text=True, timeout=timeout, check=False)
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        g = (doc.get('gpus') or [{}])[0]
        if g.get('error') or 'memory_bandwidth_bytes_per_second' not in g:
            raise RuntimeError(g.get('error') or doc.get('note') or doc.get('error') or p.stderr[-500:])
        out['measured'] = {'copy_bandwidth_bytes_per_s': g['memory_bandwidth_bytes_per_second'],
                           'bf16_flops_per_s': g['bf16_flops_per_second'], 'copy_bytes': g.get('copy_bytes'),
                           'matmul_size': g.get('matmul_size'), 'name': g.get('name')}
        if not out['gpu']:
            out['gpu'] = g.get('name')
            sheet = _load_perf().datasheet_for(out['gpu'])
            out['datasheet'] = dict(sheet) if sheet else None
    except Exception as exc:  # noqa: BLE001 - a failed probe leaves the datasheet figures
        out['measured_error'] = '%s: %s' % (type(exc).__name__, str(exc)[-500:])
    return out


def decode_bound(ceil, weight_bytes):
    """Decode tokens/s bound = bandwidth / weight bytes read per step, both ways, and which one counts.

    The bound uses the datasheet bandwidth (what the issues' targets are stated against); a card
    without a datasheet entry uses the measured copy bandwidth. Both figures are returned."""
    sheet = (ceil.get('datasheet') or {}).get('memory_bandwidth_tbps')
    meas = (ceil.get('measured') or {}).get('copy_bandwidth_bytes_per_s')
    res = {'weight_bytes': weight_bytes,
           'datasheet_bandwidth_bytes_per_s': sheet * 1e12 if sheet else None,
           'measured_copy_bandwidth_bytes_per_s': meas,
           'datasheet_bound_tok_s': round(sheet * 1e12 / weight_bytes, 1) if sheet else None,
           'measured_bound_tok_s': round(meas / weight_bytes, 1) if meas else None}
    if sheet:
        res.update(uses='datasheet', bound_tok_s=res['datasheet_bound_tok_s'],
                   bandwidth_bytes_per_s=sheet * 1e12)
    elif meas:
        res.update(uses='measured copy', bound_tok_s=res['measured_bound_tok_s'], bandwidth_bytes_per_s=meas)
    else:
        res.update(uses=None, bound_tok_s=None, bandwidth_bytes_per_s=None)
    return res


def describe_bound(b, ceil):
    """One line: both bandwidths and the bound each gives, and which one the bound uses."""
    sheet = ceil.get('datasheet') or {}
    parts = []
    if b.get('datasheet_bound_tok_s'):
        parts.append('datasheet %s %.2f TB/s -> %.1f tok/s' % (
            sheet.get('model'), b['datasheet_bandwidth_bytes_per_s'] / 1e12, b['datasheet_bound_tok_s']))
    else:
        parts.append('no datasheet entry for %r' % ceil.get('gpu'))
    if b.get('measured_bound_tok_s'):
        parts.append('measured copy %.2f TB/s -> %.1f tok/s' % (b['measured_copy_bandwidth_bytes_per_s'] / 1e12,
                                                                b['measured_bound_tok_s']))
    else:
        parts.append('copy not measured (%s)' % ceil.get('measured_error', '?'))
    return ('decode bound = bandwidth / %.2f GB read per step: %s; the bound uses the %s figure'
            % (b['weight_bytes'] / 1e9, '; '.join(parts), b.get('uses')))


def env_info():
    import torch
    import transformers
    return {'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            'torch': torch.__version__, 'transformers': transformers.__version__,
            'python': sys.version.split()[0], 'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


# ---------------------------------------------------------------------------- random weights
def printable_ids(tokenizer):
    """Ids the tokenizer decodes to visible text (no specials, no byte fragments, no blanks)."""
    special = set(tokenizer.all_special_ids)
    out = []
    for i in range(len(tokenizer)):
        if i in special:
            continue
        s = tokenizer.decode([i])
        if s.strip() and '\ufffd' not in s and not (s.startswith('<') and s.endswith('>')):
            out.append(i)
    return out


def scale_lm_head_(weight, keep, up=10.0, down=0.1):
    """In place: rows ``keep`` x up, every other row x down (greedy picks a printable token)."""
    import torch
    with torch.no_grad():
        scale = torch.full((weight.shape[0], 1), down, dtype=weight.dtype, device=weight.device)
        scale[keep] = up
        weight.mul_(scale)


# ---------------------------------------------------------------------------- servers
class Server:
    """One server process on a loopback port, its output in ``out_dir/server_<name>.log``."""

    def __init__(self, name, cmd, port, out_dir, env=None):
        self.name, self.cmd, self.port = name, cmd, port
        self.log_path = os.path.join(out_dir, 'server_%s.log' % name)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.fh = None

    @property
    def base(self):
        return 'http://127.0.0.1:%d' % self.port

    def start(self):
        self.fh = open(self.log_path, 'w')
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=self.fh, stderr=subprocess.STDOUT, env=self.env)
        log('started %s (pid %d): %s' % (self.name, self.proc.pid, ' '.join(self.cmd)))
        return self

    def wait_ready(self, timeout, probe='/health'):
        import httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited with %s; log tail: %s'
                                   % (self.name, self.proc.returncode, self.tail()))
            try:
                r = httpx.get(self.base + probe, timeout=2)
                if r.status_code == 200:
                    return round(time.monotonic() - self.t_start, 1)
                if r.status_code == 500:
                    raise RuntimeError('%s reports failure: %s; log tail: %s' % (self.name, r.text[:500],
                                                                                 self.tail()))
            except RuntimeError:
                raise
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(1)
        raise TimeoutError('%s not ready after %ds; log tail: %s' % (self.name, timeout, self.tail()))

    def tail(self, n=1500):
        try:
            with open(self.log_path, errors='replace') as fh:
                return fh.read()[-n:]
        except OSError:
            return ''

    def log_lines(self, n=6000, keep=('INFO', 'WARN', 'Error', 'error', 'Traceback')):
        return [ln for ln in self.tail(n).splitlines() if any(k in ln for k in keep)][-12:]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def service_flags():
    """The flags ``python -m autoglm_service --help`` lists (the CLI is derived from types.py)."""
    p = subprocess.run([sys.executable, '-m', 'autoglm_service', '--help'], capture_output=True, text=True,
                       env=dict(os.environ, **service_env()), timeout=120, check=False)
    return set(re.findall(r'(--[a-z][a-z0-9-]*)', p.stdout))


def service_cmd(model_dir, port, flags, settings):
    """Server command line from ``settings`` {flag: value}; flags the server lacks are left out
    and returned (so a renamed or missing setting is reported, not fatal)."""
    cmd = [sys.executable, '-m', 'autoglm_service']
    missing = []
    for flag, value in [('--model-path', model_dir), ('--host', '127.0.0.1'), ('--port', port)] + list(settings):
        if flags and flag not in flags:
            missing.append(flag)
            continue
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd, missing


def package_uses(setting, exclude=('types.py', '__main__.py')):
    """Whether a setting is read anywhere in the service package beyond its declaration."""
    root = os.path.join(FILES, 'autoglm_service')
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            if n.endswith('.py') and n not in exclude:
                with open(os.path.join(dirpath, n), encoding='utf-8') as fh:
                    if setting in fh.read():
                        return True
    return False


# ---------------------------------------------------------------------------- phases and output
class Budget:
    def __init__(self, seconds):
        self.seconds = seconds

    def left(self):
        return self.seconds - (time.monotonic() - T0)


def run_phases(R, phases, table, budget, save, min_left=45, after=None):
    """Run ``table[phase](R[phase])`` for each phase while the budget lasts; a phase that raises
    keeps what it measured plus ``error``; ``after(R)`` and ``save()`` follow every phase."""
    for phase in phases:
        if budget.left() < min_left:
            R[phase] = {'error': 'skipped: time budget (%.0fs left)' % budget.left()}
            continue
        R[phase] = {}
        t0 = time.monotonic()
        try:
            log('--- phase', phase, 'remaining %.0fs' % budget.left())
            table[phase](R[phase])
        except Exception as exc:  # noqa: BLE001 - recorded, the other phases still run
            R[phase]['error'] = '%s: %s' % (type(exc).__name__, str(exc)[-1500:])
            log('phase', phase, 'failed:', R[phase]['error'])
        R[phase]['phase_s'] = round(time.monotonic() - t0, 1)
        if after is not None:
            after(R)
        save()


def finish(R, args, name, budget, save, summarize, print_table):
    """The end of a benchmark run: verdict, JSON, the table on stdout and in ``<out>/<name>.txt``,
    the throw-away model removed (unless --keep-model)."""
    import io
    import shutil
    from contextlib import redirect_stdout
    R['verdict'] = summarize(R)
    R['total_s'] = round(budget.seconds - budget.left(), 1)
    save()
    buf = io.StringIO()
    with redirect_stdout(buf):
        print_table(R)
    print(buf.getvalue())
    with open(os.path.join(args.out, name + '.txt'), 'w') as fh:
        fh.write(buf.getvalue())
    if not args.keep_model and args.model_dir.startswith(('/dev/shm/', '/tmp/')):
        shutil.rmtree(args.model_dir, ignore_errors=True)
    return 0


def writer(path):
    def save(R):
        with open(path, 'w') as fh:
            json.dump(R, fh, indent=1, default=str)
    return save


def fmt(v, width):
    if v is None:
        s = '-'
    elif isinstance(v, float):
        s = ('%.3f' % v) if abs(v) < 10 else ('%.1f' % v)
    else:
        s = str(v)
    return s.rjust(width)


def verdict_word(met):
    return {True: 'MET', False: 'NOT MET', None: '?'}[met]


# ---------------------------------------------------------------------------- closed loop
def new_record():
    """One request's timing record: t0, content chunk times, end, token counts, error."""
    return {'t0': time.perf_counter(), 'chunks': [], 'completion_tokens': None, 'prompt_tokens': None,
            'error': None, 't_end': None}


async def closed_loop(workers, window_s, request, warmup_s=0.0):
    """``workers`` clients for ``warmup_s + window_s``, each sending its next request when the
    last one ends; the window (what :func:`window_stats` counts) starts after the warm-up, so
    a steady state is measured, not the burst of every client's first request at once.

    ``request(w, i, recs)`` runs worker ``w``'s ``i``-th request and appends its record (see
    :func:`new_record`) to ``recs`` as soon as it starts. Returns (records, t_start, t_end);
    requests still running at the end of the window are cancelled."""
    import asyncio
    recs = []
    t_start = time.perf_counter() + warmup_s
    t_end = t_start + window_s

    async def worker(w):
        i = 0
        while time.perf_counter() < t_end:
            try:
                await request(w, i, recs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, the worker goes on
                rec = new_record()
                rec['error'] = '%s: %s' % (type(exc).__name__, str(exc)[:300])
                recs.append(rec)
                await asyncio.sleep(0.5)
            i += 1
    tasks = [asyncio.ensure_future(worker(w)) for w in range(workers)]
    await asyncio.sleep(warmup_s + window_s)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return recs, t_start, t_end


def window_stats(recs, t_start, t_end, tokens_per_chunk=None):
    """Aggregate tokens/s inside the window, TTFT and request latency of the requests that
    started in it (after a warm-up: records that started before ``t_start`` give tokens only)."""
    window_s = t_end - t_start
    chunks_in = sum(1 for r in recs for c in r['chunks'] if t_start <= c <= t_end)
    recs = [r for r in recs if r.get('t0') is None or r['t0'] >= t_start - 1e-3]
    done = [r for r in recs if r.get('t_end') and not r['error'] and r['chunks'] and r['t_end'] <= t_end + 1e-3]
    if tokens_per_chunk is None:
        counted = [r for r in done if r['completion_tokens']]
        tokens_per_chunk = (sum(r['completion_tokens'] for r in counted) /
                            max(1, sum(len(r['chunks']) for r in counted))) if counted else 1.0
    ttfts = [r['chunks'][0] - r['t0'] for r in recs if r['chunks'] and r['chunks'][0] <= t_end]
    lat = [r['t_end'] - r['t0'] for r in done]
    errors = [r['error'] for r in recs if r['error']]
    return {'window_s': round(window_s, 2), 'requests_started': len(recs), 'requests_done': len(done),
            'tokens_in_window': round(chunks_in * tokens_per_chunk), 'tokens_per_chunk': round(tokens_per_chunk, 3),
            'agg_tok_s': round(chunks_in * tokens_per_chunk / window_s, 1),
            'ttft_p50_ms': ms(pct(ttfts, 0.5)), 'ttft_p99_ms': ms(pct(ttfts, 0.99)),
            'latency_p50_s': None if not lat else round(pct(lat, 0.5), 2),
            'latency_p99_s': None if not lat else round(pct(lat, 0.99), 2),
            'errors': len(errors), 'error_sample': errors[:2]}


# ---------------------------------------------------------------------------- transformers serve
TS_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HUB_DISABLE_TELEMETRY': '1'}


def transformers_serve_cmd(model_dir, port, cb):
    """``transformers serve`` (Transformers' own OpenAI-compatible server) on ``model_dir``.

    It serves the model it is given under that path and answers a request whose ``model`` is
    any other name with an error, so clients send the path as ``model``."""
    cmd = [sys.executable, '-m', 'transformers.cli.transformers', 'serve', model_dir, '--host', '127.0.0.1',
           '--port', str(port), '--dtype', 'bfloat16', '--log-level', 'warning']
    if cb:
        cmd += ['--continuous-batching', '--cb-use-cuda-graph']
    return cmd
