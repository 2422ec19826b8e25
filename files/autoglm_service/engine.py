# -*- coding: utf-8 -*-
"""Generation engine: model loading, a scheduler thread and continuous batching.

No HTTP here. The app submits :class:`GenRequest` objects; the scheduler thread emits
events back through each request's ``emit`` callback:

* ``{"type": "delta", "text": str, "tokens": int}`` for each piece of new text,
* ``{"type": "done", "finish_reason": "stop"|"length", "text": str,
  "prompt_tokens": int, "completion_tokens": int}`` once,
* ``{"type": "error", "status": int, "message": str}`` once, instead of ``done``.

Continuous batching (text models)
---------------------------------
One static KV cache holds ``max_batch_size`` slots (rows) x ``max_seq_len`` positions.
All rows share one write position ``t`` (the static cache's single write index) and
each sequence is *right-aligned* on it: slot ``s`` occupies ``[start_s, t)``. A new
request is prefilled on its own (batch 1, dynamic cache) and its keys/values are copied
into a free row at ``[t - L, t)``; RoPE positions are per request (``position_ids``), so
where a sequence sits in the cache does not matter, and a 4-D additive attention mask
built from ``start_s`` and ``t`` hides everything outside a row's span. Each decode step
is then one batched forward of shape ``[n, 1]`` over the first ``n`` rows (finished rows
are compacted away by moving the last row into the hole). When ``t`` reaches the end of
the cache, or a new prompt is longer than ``t``, all rows are rolled along the sequence
axis (one copy, between steps).

Every tensor a decode step touches has a fixed address and shape per batch bucket
(1, 2, 4, ... max_batch_size): the step (mask build, forward, position increment) is
captured as one CUDA graph per bucket at start-up when running on a single CUDA device
(``cuda_graphs``), and runs eagerly on CPU. Sampling runs after the graph, vectorised
over the batch with per-request temperature and top-p.

Models with a processor (vision-language models such as GLM-4.1V) or transformers
versions without the static-layer cache API use the sequential backend
(``model.generate`` per request, streamed).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import inspect
import io
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import sys

import torch

from .fastpath import FastDecoder, smallest_bucket, unsupported_reason

LOG = logging.getLogger('autoglm_service.engine')

# Fast-path defaults (chosen on an H100 with tests/benchmarks/service_bench.py's tune phase).
DEFAULT_DECODE_ATTENTION = 'matmul'
DEFAULT_MIN_BUCKET = 1

PROCESSOR_FILES = ('preprocessor_config.json', 'processor_config.json')


class EngineError(Exception):
    """A request the engine refuses; ``status`` is the HTTP status to answer with."""

    status = 400
    reason = 'invalid'

    def __init__(self, message, status=None, reason=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class QueueFullError(EngineError):
    status = 429
    reason = 'queue_full'


class NotReadyError(EngineError):
    status = 503
    reason = 'not_ready'


class PromptTooLongError(EngineError):
    status = 413
    reason = 'prompt_too_long'


def oom_error_types():
    types = []
    for cls in (getattr(torch.cuda, 'OutOfMemoryError', None), getattr(torch, 'OutOfMemoryError', None)):
        if cls is not None and cls not in types:
            types.append(cls)
    return tuple(types) or (MemoryError,)


OOM_ERRORS = oom_error_types()


@dataclass
class EngineConfig:
    model_path: str
    dtype: str = 'auto'                # bfloat16 | float16 | float32 | auto
    device: str = 'auto'               # auto | cpu | cuda
    max_batch_size: int = 8
    max_queue: int = 64
    max_prompt_tokens: int = 4096
    max_new_tokens: int = 1024         # upper limit a request may ask for
    default_max_new_tokens: int = 256
    max_seq_len: Optional[int] = None  # static cache length; default prompt + new limits
    cuda_graphs: str = 'auto'          # auto | on | off
    backend: str = 'auto'              # auto | batched | sequential
    warmup: bool = True
    model_name: Optional[str] = None
    fast_path: str = 'auto'            # auto | off: own lean decode step for Llama-like models
    compile: str = 'auto'              # auto | on | off: torch.compile the fast path's layer pieces
    max_prefill_tokens: int = 8192     # padded prompt tokens prefilled together in one batch
    decode_attention: str = 'auto'     # auto | sdpa | matmul (fast path decode attention)
    min_batch_bucket: int = 0          # 0 = auto; 1 or 2: smallest decode batch bucket (fast path)


@dataclass
class GenRequest:
    prompt_ids: List[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: List[str] = field(default_factory=list)
    emit: Callable[[Dict[str, Any]], None] = lambda ev: None
    inputs: Optional[Dict[str, Any]] = None    # processor outputs (VLM); prompt_ids is informative
    id: int = 0
    cancelled: bool = False
    # filled by the engine
    generated: List[int] = field(default_factory=list)
    text: str = ''
    emitted: int = 0
    prefix_offset: int = 0
    read_offset: int = 0
    finished: bool = False
    enqueued_at: float = 0.0
    first_token_at: Optional[float] = None

    def cancel(self):
        self.cancelled = True


def resolve_dtype(name, device):
    name = (name or 'auto').lower()
    if name == 'auto':
        if device.startswith('cuda'):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    aliases = {'bf16': 'bfloat16', 'fp16': 'float16', 'half': 'float16', 'fp32': 'float32'}
    return getattr(torch, aliases.get(name, name))


def decode_data_url(url):
    """Return a PIL image from a ``data:image/...;base64,`` URL."""
    if not isinstance(url, str) or not url.startswith('data:') or ',' not in url:
        raise EngineError('image_url must be a data: URL with base64 content (remote URLs are not fetched)')
    header, payload = url.split(',', 1)
    if ';base64' not in header:
        raise EngineError('image_url data: URL must be base64-encoded')
    try:
        raw = base64.b64decode(payload, validate=False)
        from PIL import Image  # noqa: WPS433 (optional dependency, only for VLMs)
        img = Image.open(io.BytesIO(raw))
        img.load()
        return img.convert('RGB')
    except ImportError:
        raise EngineError('the server has no Pillow installed to decode images', status=500)
    except Exception as exc:  # noqa: BLE001
        raise EngineError('image_url could not be decoded as an image: %s' % exc)


def cache_kwarg(model):
    """Name of the KV-cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return 'cache' if 'cache' in params else 'past_key_values'


class _Sampler:
    """Vectorised sampling with per-row temperature (0 = greedy) and top-p."""

    @staticmethod
    def sample(logits, temps, top_ps, all_greedy, any_top_p):
        logits = logits.float()
        greedy_tok = torch.argmax(logits, dim=-1)
        if all_greedy:
            return greedy_tok
        t = temps.clamp(min=1e-5).unsqueeze(-1)
        probs = torch.softmax(logits / t, dim=-1)
        if any_top_p:
            sp, si = torch.sort(probs, dim=-1, descending=True)
            cum = torch.cumsum(sp, dim=-1)
            sp = sp.masked_fill((cum - sp) > top_ps.unsqueeze(-1), 0.0)
            pick = torch.multinomial(sp, 1)
            sampled = torch.gather(si, -1, pick).squeeze(-1)
        else:
            sampled = torch.multinomial(probs, 1).squeeze(-1)
        return torch.where(temps <= 0, greedy_tok, sampled)


class BatchedDecoder:
    """Static KV cache with ``max_batch`` rows, bucketed decode steps, optional CUDA graphs."""

    def __init__(self, model, max_batch, max_len, device, dtype, use_graphs):
        from transformers import StaticCache
        self.model = model
        self.max_batch = max_batch
        self.max_len = max_len
        self.device = device
        self.dtype = dtype
        self.use_graphs = use_graphs
        self.buckets = sorted({min(2 ** i, max_batch) for i in range(0, max_batch.bit_length() + 1)})
        cfg = model.config
        self.master = StaticCache(config=cfg, max_cache_len=max_len)
        params = inspect.signature(model.forward).parameters
        self._accepts_cache_position = 'cache_position' in params
        self.cache_kw = cache_kwarg(model)
        dev = device
        self.ids = torch.zeros((max_batch, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((max_batch, 1), dtype=torch.long, device=dev)
        self.start = torch.zeros((max_batch,), dtype=torch.long, device=dev)
        self.t = torch.zeros((1,), dtype=torch.long, device=dev)
        self.arange = torch.arange(max_len, device=dev)
        self.neg = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=dev)
        self.zero = torch.tensor(0.0, dtype=dtype, device=dev)
        self.temps = torch.zeros((max_batch,), dtype=torch.float32, device=dev)
        self.top_ps = torch.ones((max_batch,), dtype=torch.float32, device=dev)
        self.graphs = {}
        self.graph_out = {}
        # Initialise the static layers with one full-width step, then share their storage.
        self._raw_step(self.master, max_batch)
        if not hasattr(self.master, 'layers') or not all(
                getattr(layer, 'is_initialized', False) for layer in self.master.layers):
            raise RuntimeError('this transformers version has no static-layer cache API')
        self.caches = {max_batch: self.master}
        for b in self.buckets:
            if b == max_batch:
                continue
            c = StaticCache(config=cfg, max_cache_len=max_len)
            for lay, ml in zip(c.layers, self.master.layers):
                for attr in ('device', 'num_heads', 'k_head_dim', 'v_head_dim', 'max_cache_len'):
                    if hasattr(ml, attr):
                        setattr(lay, attr, getattr(ml, attr))
                lay.batch_size = b
                lay.keys = ml.keys[:b]
                lay.values = ml.values[:b]
                if hasattr(ml, 'cumulative_length'):
                    lay.cumulative_length = ml.cumulative_length
                lay.is_initialized = True
            self.caches[b] = c
        self.set_t(0)

    def bucket(self, n):
        return smallest_bucket(self.buckets, n, self.max_batch)

    def set_t(self, t):
        self.t.fill_(t)
        for layer in self.master.layers:
            if hasattr(layer, 'cumulative_length'):
                layer.cumulative_length.fill_(t)

    def _raw_step(self, cache, b):
        allowed = (self.arange.unsqueeze(0) >= self.start[:b].unsqueeze(1)) & (self.arange.unsqueeze(0) <= self.t)
        mask = torch.where(allowed, self.zero, self.neg)[:, None, None, :]
        kwargs = dict(input_ids=self.ids[:b], position_ids=self.pos[:b], attention_mask=mask,
                      use_cache=True, logits_to_keep=1)
        kwargs[self.cache_kw] = cache
        if self._accepts_cache_position:
            kwargs['cache_position'] = self.t
        out = self.model(**kwargs)
        self.pos[:b].add_(1)
        self.t.add_(1)
        return out.logits[:, -1, :]

    def capture(self):
        """Capture one CUDA graph per batch bucket (the cache content is scratch here)."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        for b in reversed(self.buckets):
            cache = self.caches[b]
            with torch.cuda.stream(stream):
                for _round in range(2):
                    self.set_t(0)
                    self._raw_step(cache, b)
            torch.cuda.current_stream().wait_stream(stream)
            self.set_t(0)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                out = self._raw_step(cache, b)
            self.graphs[b] = g
            self.graph_out[b] = out
        torch.cuda.synchronize()
        self.pos.zero_()
        self.set_t(0)

    def step(self, n):
        """One decode step over rows ``[0, n)``; returns logits ``[n, vocab]``."""
        b = self.bucket(n)
        if b in self.graphs:
            self.graphs[b].replay()
            return self.graph_out[b][:n]
        return self._raw_step(self.caches[b], b)[:n]

    # --- row management (between steps, eager) ---
    def write_prefill(self, row, prefill_cache, t, length):
        for ml, pl in zip(self.master.layers, prefill_cache.layers):
            ml.keys[row, :, t - length:t].copy_(pl.keys[0, :, -length:])
            ml.values[row, :, t - length:t].copy_(pl.values[0, :, -length:])

    def move_row(self, src, dst):
        for ml in self.master.layers:
            ml.keys[dst].copy_(ml.keys[src])
            ml.values[dst].copy_(ml.values[src])
        for buf in (self.ids, self.pos, self.start, self.temps, self.top_ps):
            buf[dst] = buf[src]

    def roll(self, n, delta):
        """Shift rows ``[0, n)`` by ``delta`` positions along the sequence axis."""
        if n and delta:
            for ml in self.master.layers:
                ml.keys[:n].copy_(torch.roll(ml.keys[:n], shifts=delta, dims=2))
                ml.values[:n].copy_(torch.roll(ml.values[:n], shifts=delta, dims=2))
            self.start[:n].add_(delta)


class Engine:
    """Loads the model in a background thread, then runs the scheduler loop."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.state = 'loading'          # loading | warming | ready | failed | stopped
        self.error: Optional[str] = None
        self.model = None
        self.tokenizer = None
        self.processor = None
        self.device = 'cpu'
        self.dtype = torch.float32
        self.backend = None
        self.decoder: Optional[BatchedDecoder] = None
        self.fast = False                  # FastDecoder in use (see fastpath.py)
        self._pending = None               # fast path: decode step launched, tokens not read yet
        self._lens: List[int] = []         # fast path: cache length (next write position) per row
        self.model_name = config.model_name or os.path.basename(os.path.normpath(config.model_path))
        self.max_seq_len = config.max_seq_len or (config.max_prompt_tokens + config.max_new_tokens)
        self._waiting = collections.deque()
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self.paused = threading.Event()    # set: admit nothing new (tests, drain)
        self._thread: Optional[threading.Thread] = None
        self._slots: List[GenRequest] = []
        self._t = 0
        self.eos_ids = set()
        # statistics and hooks
        self.stats = collections.Counter()
        self.batch_sizes = collections.Counter()
        self.step_hooks: List[Callable[[int], None]] = []   # called with the batch size of each step

    # ------------------------------------------------------------------ public API
    @property
    def ready(self):
        return self.state == 'ready'

    @property
    def num_waiting(self):
        return len(self._waiting)

    @property
    def num_running(self):
        return len(self._slots) + self.stats.get('_inflight', 0)

    @property
    def accepts_images(self):
        return self.processor is not None

    def start(self, background=True):
        self._thread = threading.Thread(target=self._run, name='autoglm-engine', daemon=True)
        self._thread.start()
        if not background:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state in ('loading', 'warming'):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError('engine not ready after %ss' % timeout)
            time.sleep(0.02)
        if self.state != 'ready':
            raise RuntimeError('engine failed: %s' % self.error)

    def stop(self):
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def encode_chat(self, messages):
        """Messages (OpenAI shape, content already validated) -> (prompt_ids, inputs or None)."""
        has_images = any(isinstance(m.get('content'), list) and any(
            p.get('type') == 'image_url' for p in m['content']) for m in messages)
        if has_images and self.processor is None:
            raise EngineError('model does not accept images')
        if self.processor is not None:
            return self._encode_with_processor(messages)
        flat = []
        for m in messages:
            content = m.get('content')
            if isinstance(content, list):
                content = ''.join(p.get('text', '') for p in content if p.get('type') == 'text')
            flat.append({'role': m['role'], 'content': content or ''})
        if getattr(self.tokenizer, 'chat_template', None):
            text = self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)
        else:
            text = ''.join('%s: %s\n' % (m['role'], m['content']) for m in flat) + 'assistant: '
        return self.tokenizer(text, add_special_tokens=False)['input_ids'], None

    def _encode_with_processor(self, messages):
        conv, images = [], []
        for m in messages:
            content = m.get('content')
            if isinstance(content, str):
                conv.append({'role': m['role'], 'content': [{'type': 'text', 'text': content}]})
                continue
            parts = []
            for p in content or []:
                if p.get('type') == 'image_url':
                    url = p.get('image_url')
                    url = url.get('url') if isinstance(url, dict) else url
                    images.append(decode_data_url(url))
                    parts.append({'type': 'image'})
                else:
                    parts.append({'type': 'text', 'text': p.get('text', '')})
            conv.append({'role': m['role'], 'content': parts})
        text = self.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=images or None, return_tensors='pt')
        return inputs['input_ids'][0].tolist(), dict(inputs)

    def encode_text(self, text):
        return self.tokenizer(text, add_special_tokens=True)['input_ids']

    def check_limits(self, n_prompt, max_new_tokens):
        cfg = self.config
        if max_new_tokens is None or max_new_tokens <= 0 or max_new_tokens > cfg.max_new_tokens:
            raise EngineError('max_tokens must be between 1 and %d (got %s)' % (cfg.max_new_tokens, max_new_tokens),
                              reason='bad_max_tokens')
        if n_prompt > cfg.max_prompt_tokens:
            raise PromptTooLongError('prompt is %d tokens; the limit is %d tokens (max_prompt_tokens)'
                                     % (n_prompt, cfg.max_prompt_tokens))
        if n_prompt == 0:
            raise EngineError('prompt is empty')

    def submit(self, req: GenRequest) -> GenRequest:
        if self.state != 'ready':
            raise NotReadyError('model is %s' % self.state)
        self.check_limits(len(req.prompt_ids), req.max_new_tokens)
        # The static cache must hold the prompt and every generated token but the last.
        if self.backend == 'batched':
            req.max_new_tokens = min(req.max_new_tokens, self.max_seq_len - len(req.prompt_ids))
        with self._lock:
            if len(self._waiting) >= self.config.max_queue:
                raise QueueFullError('server busy: %d requests waiting (max_queue %d); retry later'
                                     % (len(self._waiting), self.config.max_queue))
            req.id = next(self._ids)
            req.enqueued_at = time.monotonic()
            req.read_offset = 0
            self._waiting.append(req)
            self._lock.notify_all()
        return req

    # ------------------------------------------------------------------ loading
    def _run(self):
        try:
            self._load()
            self.state = 'warming'
            if self.config.warmup:
                self._warmup()
            self.state = 'ready'
            LOG.info('engine ready: backend=%s device=%s dtype=%s max_batch=%d max_seq_len=%d graphs=%s',
                     self.backend, self.device, self.dtype, self.config.max_batch_size, self.max_seq_len,
                     bool(self.decoder and self.decoder.graphs))
        except Exception as exc:  # noqa: BLE001
            LOG.exception('model loading failed')
            self.error = '%s: %s' % (type(exc).__name__, exc)
            self.state = 'failed'
            return
        with torch.inference_mode():
            self._loop()

    def _load(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        cfg = self.config
        path = cfg.model_path
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise FileNotFoundError('no config.json in model directory %s' % path)
        device = cfg.device
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.dtype = resolve_dtype(cfg.dtype, device)
        if any(os.path.isfile(os.path.join(path, f)) for f in PROCESSOR_FILES):
            from transformers import AutoProcessor
            self.processor = AutoProcessor.from_pretrained(path)
            self.tokenizer = getattr(self.processor, 'tokenizer', None) or AutoTokenizer.from_pretrained(path)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs = dict(dtype=self.dtype)
        if device.startswith('cuda'):
            kwargs['device_map'] = 'auto'
        model = None
        if self.processor is not None:
            try:
                from transformers import AutoModelForImageTextToText
                model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
            except (ImportError, ValueError, KeyError):
                model = None
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if not device.startswith('cuda'):
            model.to(device)
        model.eval()
        self.model = model
        self.device = str(model.get_input_embeddings().weight.device)
        eos = getattr(model.generation_config, 'eos_token_id', None)
        eos = eos if isinstance(eos, (list, tuple)) else [eos]
        self.eos_ids = {e for e in list(eos) + [self.tokenizer.eos_token_id] if e is not None}
        want = cfg.backend
        if want == 'auto':
            want = 'sequential' if self.processor is not None else 'batched'
        if want == 'batched':
            try:
                with torch.inference_mode():
                    use_graphs = self._want_graphs()
                    reason = 'disabled (fast_path=off)' if cfg.fast_path == 'off' else unsupported_reason(model)
                    if reason is None:
                        compile_mode = cfg.compile
                        if compile_mode == 'auto':
                            compile_mode = 'on' if use_graphs else 'off'
                        attn = cfg.decode_attention if cfg.decode_attention != 'auto' else DEFAULT_DECODE_ATTENTION
                        self.decoder = FastDecoder(model, cfg.max_batch_size, self.max_seq_len, self.device,
                                                   self.dtype, use_graphs, compile_mode, attn=attn,
                                                   min_bucket=cfg.min_batch_bucket or DEFAULT_MIN_BUCKET,
                                                   prefill_graph_max=min(cfg.max_prompt_tokens, 1024))
                        self._init_fast()
                    else:
                        LOG.info('fast path not used: %s; batched decode runs the model forward', reason)
                        self.decoder = BatchedDecoder(model, cfg.max_batch_size, self.max_seq_len,
                                                      self.device, self.dtype, use_graphs)
            except Exception as exc:  # noqa: BLE001
                if cfg.backend == 'batched':
                    raise
                LOG.warning('batched backend unavailable (%s); using sequential generate', exc)
                want = 'sequential'
                self.decoder = None
        self.backend = want

    def _want_graphs(self):
        mode = self.config.cuda_graphs
        if mode == 'off' or not self.device.startswith('cuda'):
            if mode == 'on' and not self.device.startswith('cuda'):
                LOG.warning('cuda_graphs=on ignored: not running on CUDA')
            return False
        devices = set(str(p.device) for p in self.model.parameters())
        if len(devices) > 1:
            LOG.warning('model spread over %s: decode runs eagerly (no CUDA graphs)', sorted(devices))
            return False
        return True

    def _warmup(self):
        """Exercise prefill, sampling and every decode bucket; capture graphs on CUDA."""
        t0 = time.monotonic()
        with torch.inference_mode():
            if self.fast:
                self._warmup_fast()
            elif self.backend == 'batched':
                d = self.decoder
                prompt = self.encode_text('warm up')[: max(1, self.config.max_prompt_tokens)]
                self._prefill(GenRequest(prompt_ids=prompt, max_new_tokens=1, temperature=0.7, top_p=0.9))
                for b in d.buckets:
                    d.set_t(0)
                    d.step(b)
                if d.use_graphs:
                    d.capture()
                    for b in d.buckets:
                        d.step(b)
                    torch.cuda.synchronize()
                d.pos.zero_()
                d.start.zero_()
                d.set_t(0)
            else:
                ids = torch.tensor([self.encode_text('warm up')], device=self.device)
                self.model.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
        LOG.info('warm-up done in %.1fs', time.monotonic() - t0)

    # ------------------------------------------------------------------ scheduler
    def _next_waiting(self):
        with self._lock:
            while not self._waiting or self.paused.is_set():
                if self._stop.is_set():
                    return None
                if self._slots and not self._waiting:
                    return None
                if self._slots and self.paused.is_set():
                    return None
                self._lock.wait(timeout=0.1)
            return self._waiting.popleft()

    def _loop(self):
        while not self._stop.is_set():
            try:
                if self.fast:
                    self._fast_iteration()
                elif self.backend == 'batched':
                    self._batched_iteration()
                else:
                    req = self._next_waiting()
                    if req is not None:
                        self._run_sequential(req)
            except Exception:  # noqa: BLE001 - the loop must survive anything
                LOG.exception('scheduler iteration failed')
                for req in list(self._slots):
                    self._fail(req, 500, 'internal error during generation')
                self._slots = []
                self._lens = []
                self._pending = None
                self._t = 0
        for req in list(self._slots) + list(self._waiting):
            self._fail(req, 503, 'server shutting down')

    def _batched_iteration(self):
        d = self.decoder
        # Admit new requests into free rows (each is prefilled on its own).
        while len(self._slots) < self.config.max_batch_size:
            if self._slots:
                with self._lock:
                    if not self._waiting or self.paused.is_set():
                        break
                    req = self._waiting.popleft()
            else:
                req = self._next_waiting()
                if req is None:
                    return
            if req.cancelled:
                self._fail(req, 499, 'cancelled')
                continue
            self._admit(req)
        n = len(self._slots)
        if n == 0:
            return
        if self._t >= self.max_seq_len:
            longest = max(self._t - int(d.start[i]) for i in range(n))
            d.roll(n, longest - self._t)
            self.stats['rolls'] += 1
            self._t = longest
            d.set_t(self._t)
        while True:
            try:
                logits = d.step(n)
                tokens = _Sampler.sample(logits, d.temps[:n], d.top_ps[:n], self._all_greedy, self._any_top_p)
                break
            except OOM_ERRORS:
                LOG.warning('CUDA out of memory in a decode step of %d sequences; dropping the newest', n)
                self._free_cuda()
                d.set_t(self._t)
                victim = self._slots[-1]
                self._remove_row(n - 1)
                self._fail(victim, 503, 'out of GPU memory; retry later or with a shorter prompt')
                n -= 1
                if n == 0:
                    return
        self._t += 1
        d.ids[:n, 0].copy_(tokens)
        token_list = tokens.tolist()
        self.stats['steps'] += 1
        self.stats['max_batch'] = max(self.stats['max_batch'], n)
        self.batch_sizes[n] += 1
        for hook in self.step_hooks:
            hook(n)
        for i in range(n - 1, -1, -1):
            req = self._slots[i]
            self._append_token(req, token_list[i])
            if req.finished or req.cancelled:
                if req.cancelled and not req.finished:
                    self._fail(req, 499, 'cancelled')
                self._remove_row(i)

    # ------------------------------------------------------------------ fast path (fastpath.FastDecoder)
    def _init_fast(self):
        d = self.decoder
        self.fast = True
        pin = self.device.startswith('cuda')
        self._host_tokens = torch.zeros((2, d.max_batch), dtype=torch.long, pin_memory=pin)
        self._events = [torch.cuda.Event() for _i in range(2)] if pin else [None, None]
        self._step_no = 0
        if pin:
            # The scheduler thread must get the GIL back quickly from the HTTP thread between steps.
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))

    def _warmup_fast(self):
        d = self.decoder
        prompt = self.encode_text('warm up')[: max(1, self.config.max_prompt_tokens)]

        def run_all():
            # prefill shapes (B=1 and B=2 so that compiled pieces go dynamic once, here)
            d.prefill(0, [prompt])
            if d.max_batch > 1:
                d.prefill(0, [prompt, prompt + prompt])
            for b in d.buckets:
                d.pos.zero_()
                d.step(b, 1)
            for lb in d.len_buckets:
                d.pos.zero_()
                d.step(1, lb)
            if self.device.startswith('cuda'):
                torch.cuda.synchronize()

        t0 = time.monotonic()
        try:
            run_all()
        except Exception as exc:  # noqa: BLE001
            if not d.compiled:
                raise
            LOG.warning('compiled fast path failed in warm-up (%s: %s); running the layers eagerly',
                        type(exc).__name__, exc)
            d.disable_compile()
            run_all()
        LOG.info('fast path warm-up (compile=%s) in %.1fs', d.compiled, time.monotonic() - t0)
        if d.use_graphs:
            try:
                d.capture()
            except Exception as exc:  # noqa: BLE001
                LOG.warning('CUDA graph capture failed (%s: %s); decode steps run eagerly', type(exc).__name__, exc)
                d.graphs.clear()
                d.graph_out.clear()
                torch.cuda.synchronize()
            try:
                d.capture_prefill()
            except Exception as exc:  # noqa: BLE001
                LOG.warning('prefill graph capture failed (%s: %s); prefill runs eagerly', type(exc).__name__, exc)
                d.pf_graphs.clear()
                d.pf_out.clear()
                torch.cuda.synchronize()
        d.pos.zero_()
        d.ids.zero_()

    def _fast_iteration(self):
        d = self.decoder
        self._fast_admit()
        n = len(self._slots)
        if n == 0:
            return
        cur = None
        if any(1 + r._steps < r.max_new_tokens for r in self._slots if not (r.finished or r.cancelled)):
            cur = self._fast_launch()
            n = len(self._slots)
        if self._pending is not None:
            self._fast_consume(self._pending)
        self._pending = cur
        with self._lock:
            arrivals = bool(self._waiting) and not self.paused.is_set()
        dead = any(r.finished or r.cancelled for r in self._slots)
        if cur is None or dead or (arrivals and n < d.max_batch):
            if self._pending is not None:
                self._fast_consume(self._pending)
                self._pending = None
            self._fast_remove_dead()

    def _fast_launch(self):
        """Launch one decode step over all rows; returns the pending record (tokens not read yet)."""
        d = self.decoder
        while True:
            n = len(self._slots)
            try:
                logits = d.step(n, max(self._lens) + 1)
                if not self._all_greedy:
                    tokens = _Sampler.sample(logits, d.temps[:n], d.top_ps[:n], False, self._any_top_p)
                    d.ids[:n].copy_(tokens)
                break
            except OOM_ERRORS:
                LOG.warning('CUDA out of memory in a decode step of %d sequences; dropping the newest', n)
                self._free_cuda()
                if self._pending is not None:
                    self._fast_consume(self._pending)
                    self._pending = None
                victim = self._slots[-1]
                self._fail(victim, 503, 'out of GPU memory; retry later or with a shorter prompt')
                self._fast_remove_dead()
                if not self._slots:
                    return None
        k = self._step_no % 2
        self._step_no += 1
        self._host_tokens[k, :n].copy_(d.ids[:n], non_blocking=True)
        ev = self._events[k]
        if ev is not None:
            ev.record()
        for r in self._slots:
            r._steps += 1
        self._lens = [x + 1 for x in self._lens]
        return (k, n, ev)

    def _fast_consume(self, pending):
        k, n, ev = pending
        if ev is not None:
            ev.synchronize()
        toks = self._host_tokens[k, :n].tolist()
        self.stats['steps'] += 1
        self.stats['max_batch'] = max(self.stats['max_batch'], n)
        self.batch_sizes[n] += 1
        for hook in self.step_hooks:
            hook(n)
        for i in range(min(n, len(self._slots))):
            req = self._slots[i]
            if not (req.finished or req.cancelled):
                self._append_token(req, toks[i])

    def _fast_remove_dead(self):
        d = self.decoder
        changed = False
        for i in range(len(self._slots) - 1, -1, -1):
            req = self._slots[i]
            if not (req.finished or req.cancelled):
                continue
            if req.cancelled and not req.finished:
                self._fail(req, 499, 'cancelled')
            last = len(self._slots) - 1
            if i != last:
                d.move_row(last, i, self._lens[last])
                self._slots[i] = self._slots[last]
                self._lens[i] = self._lens[last]
            self._slots.pop()
            self._lens.pop()
            changed = True
        if changed:
            self._refresh_sampling_flags()

    def _fast_take_waiting(self, free):
        """Pop up to ``free`` waiting requests whose padded prefill fits max_prefill_tokens."""
        batch = []
        if free <= 0:
            return batch
        budget = max(1, self.config.max_prefill_tokens)
        if not self._slots and self._pending is None:
            req = self._next_waiting()          # idle: block until a request comes
            if req is None:
                return batch
            batch.append(req)
        with self._lock:
            while self._waiting and len(batch) < free and not self.paused.is_set():
                nxt = self._waiting[0]
                longest = max([len(r.prompt_ids) for r in batch] + [len(nxt.prompt_ids)])
                if batch and (len(batch) + 1) * (-(-longest // 16) * 16) > budget:
                    break
                batch.append(self._waiting.popleft())
        live = []
        for req in batch:
            if req.cancelled:
                self._fail(req, 499, 'cancelled')
            else:
                live.append(req)
        return live

    def _fast_admit(self):
        d = self.decoder
        batch = self._fast_take_waiting(d.max_batch - len(self._slots))
        if not batch:
            return
        if self._pending is not None:
            self._fast_consume(self._pending)
            self._pending = None
        self._fast_remove_dead()
        n = len(self._slots)
        B = len(batch)
        self.stats['_inflight'] = B
        try:
            logits = d.prefill(n, [r.prompt_ids for r in batch])
            temps = torch.tensor([float(r.temperature) for r in batch], dtype=torch.float32, device=self.device)
            top_ps = torch.tensor([float(r.top_p) for r in batch], dtype=torch.float32, device=self.device)
            tokens = _Sampler.sample(logits, temps, top_ps, all(r.temperature <= 0 for r in batch),
                                     any(r.top_p < 1.0 for r in batch))
            d.ids[n:n + B].copy_(tokens)
            d.pos[n:n + B].copy_(torch.tensor([len(r.prompt_ids) for r in batch], device=self.device))
            d.temps[n:n + B].copy_(temps)
            d.top_ps[n:n + B].copy_(top_ps)
            first = tokens.tolist()
        except OOM_ERRORS:
            LOG.warning('CUDA out of memory in prefill of %d prompts (%d tokens)', B,
                        sum(len(r.prompt_ids) for r in batch))
            self._free_cuda()
            for req in batch:
                self._fail(req, 503, 'out of GPU memory; retry later or with a shorter prompt')
            return
        except EngineError as exc:
            for req in batch:
                self._fail(req, exc.status, exc.message)
            return
        finally:
            self.stats['_inflight'] = 0
        self.stats['prefill_batches'] += 1
        self.stats['prefills'] += B
        for req, tok in zip(batch, first):
            req._steps = 0
            self._slots.append(req)
            self._lens.append(len(req.prompt_ids))
            self._append_token(req, tok)
        self._fast_remove_dead()
        self._refresh_sampling_flags()

    def _refresh_sampling_flags(self):
        self._all_greedy = all(r.temperature <= 0 for r in self._slots)
        self._any_top_p = any(r.top_p < 1.0 for r in self._slots)

    def _admit(self, req):
        d = self.decoder
        self.stats['_inflight'] = 1
        try:
            first, cache = self._prefill(req)
        except OOM_ERRORS:
            LOG.warning('CUDA out of memory in prefill of a %d-token prompt', len(req.prompt_ids))
            self._free_cuda()
            self._fail(req, 503, 'out of GPU memory; retry later or with a shorter prompt')
            return
        except EngineError as exc:
            self._fail(req, exc.status, exc.message)
            return
        finally:
            self.stats['_inflight'] = 0
        self._append_token(req, first)
        if req.finished or req.cancelled:
            return
        L = len(req.prompt_ids)
        n = len(self._slots)
        if n == 0:
            self._t = L
            d.set_t(L)
        elif self._t < L:
            d.roll(n, L - self._t)
            self.stats['rolls'] += 1
            self._t = L
            d.set_t(L)
        d.write_prefill(n, cache, self._t, L)
        d.start[n] = self._t - L
        d.pos[n, 0] = L
        d.ids[n, 0] = first
        d.temps[n] = float(req.temperature)
        d.top_ps[n] = float(req.top_p)
        self._slots.append(req)
        self._refresh_sampling_flags()

    def _prefill(self, req):
        from transformers import DynamicCache
        d = self.decoder
        ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self.device)
        cache = DynamicCache()
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_kwarg(self.model): cache})
        temps = torch.tensor([float(req.temperature)], device=self.device)
        top_ps = torch.tensor([float(req.top_p)], device=self.device)
        tok = _Sampler.sample(out.logits[:, -1, :], temps, top_ps, req.temperature <= 0, req.top_p < 1.0)
        return int(tok.item()), cache

    def _remove_row(self, i):
        last = len(self._slots) - 1
        if i != last:
            self.decoder.move_row(last, i)
            self._slots[i] = self._slots[last]
        self._slots.pop()
        if not self._slots:
            self._t = 0
        self._refresh_sampling_flags()

    @staticmethod
    def _free_cuda():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ tokens -> text
    def _append_token(self, req, token):
        now = time.monotonic()
        if req.first_token_at is None:
            req.first_token_at = now
        finish = None
        if token in self.eos_ids:
            finish = 'stop'
        else:
            req.generated.append(token)
            self._detok(req)
            if req.stop:
                hit = [req.text.find(s) for s in req.stop if s and s in req.text]
                if hit:
                    req.text = req.text[:min(hit)]
                    finish = 'stop'
        if finish is None and len(req.generated) >= req.max_new_tokens:
            finish = 'length'
        if finish and not req.stop:
            self._detok(req, final=True)
        hold = 0 if finish else max((len(s) for s in req.stop), default=1) - 1
        upto = max(req.emitted, len(req.text) - hold)
        if upto > req.emitted:
            delta = req.text[req.emitted:upto]
            req.emitted = upto
            req.emit({'type': 'delta', 'text': delta, 'tokens': len(req.generated)})
        if finish:
            req.finished = True
            self.stats['completed'] += 1
            req.emit({'type': 'done', 'finish_reason': finish, 'text': req.text,
                      'prompt_tokens': len(req.prompt_ids), 'completion_tokens': len(req.generated)})

    def _detok(self, req, final=False):
        ids = req.generated
        if final and req.read_offset == len(ids):
            return
        prefix = self.tokenizer.decode(ids[req.prefix_offset:req.read_offset], skip_special_tokens=True)
        full = self.tokenizer.decode(ids[req.prefix_offset:], skip_special_tokens=True)
        if len(full) > len(prefix) and (final or not full.endswith('\ufffd')):
            req.text += full[len(prefix):]
            req.prefix_offset = req.read_offset
            req.read_offset = len(ids)

    def _fail(self, req, status, message):
        if req.finished:
            return
        req.finished = True
        self.stats['failed_%d' % status] += 1
        req.emit({'type': 'error', 'status': status, 'message': message})

    # ------------------------------------------------------------------ sequential backend
    def _run_sequential(self, req):
        """One request at a time through ``model.generate`` (VLMs, old transformers)."""
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        engine = self
        self._slots = [req]
        self._refresh_sampling_flags()

        class _Streamer(BaseStreamer):
            def __init__(self):
                self.skip_prompt = True

            def put(self, value):
                if self.skip_prompt:
                    self.skip_prompt = False
                    return
                for tok in value.reshape(-1).tolist():
                    if not req.finished:
                        engine._append_token(req, int(tok))
                        engine.stats['steps'] += 1
                        engine.batch_sizes[1] += 1
                        for hook in engine.step_hooks:
                            hook(1)

            def end(self):
                pass

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return bool(req.finished or req.cancelled)

        try:
            if req.inputs is not None:
                inputs = {k: (v.to(self.device) if hasattr(v, 'to') else v) for k, v in req.inputs.items()}
                if 'pixel_values' in inputs and inputs['pixel_values'] is not None:
                    inputs['pixel_values'] = inputs['pixel_values'].to(self.dtype)
            else:
                inputs = {'input_ids': torch.tensor([req.prompt_ids], device=self.device)}
            sample = req.temperature > 0
            gen_kwargs = dict(max_new_tokens=req.max_new_tokens, do_sample=sample,
                              streamer=_Streamer(), stopping_criteria=StoppingCriteriaList([_Stop()]),
                              pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            if sample:
                gen_kwargs.update(temperature=req.temperature, top_p=req.top_p)
            self.model.generate(**inputs, **gen_kwargs)
            if not req.finished:
                req.max_new_tokens = len(req.generated)
                self._append_token(req, next(iter(self.eos_ids)) if self.eos_ids else -1)
        except OOM_ERRORS:
            self._free_cuda()
            self._fail(req, 503, 'out of GPU memory; retry later or with a shorter prompt')
        except EngineError as exc:
            self._fail(req, exc.status, exc.message)
        finally:
            self._slots = []


@contextlib.contextmanager
def paused(engine):
    """Hold the scheduler's admissions (tests, maintenance)."""
    engine.paused.set()
    try:
        yield engine
    finally:
        engine.paused.clear()
        with engine._lock:
            engine._lock.notify_all()
