# -*- coding: utf-8 -*-
"""The engine: loads the model, chooses a backend, runs the scheduler thread; no HTTP here.

Life cycle: ``loading`` (weights, tokenizer, processor) -> ``warming`` (every shape run once,
CUDA graphs captured) -> ``ready`` -> ``stopped``; or ``failed`` with :attr:`Engine.error`.

Backend choice (``backend=auto``): ``fast`` when the architecture has a row in
:data:`~autoglm_service.backends.archs.ARCHS` (Llama, Qwen2, Mistral, GLM, GLM-4, GLM-4.1V);
else ``batched`` (the model's own forward over a static cache, text models); else
``sequential`` (one request at a time through the model's forward). All three implement
:class:`~autoglm_service.backends.base.Backend` and are driven by the same
:class:`~autoglm_service.scheduler.Scheduler`, so sampling, penalties, stop strings and
streaming behave the same on every backend.

Public API (used by the HTTP layer): :meth:`Engine.encode_chat`, :meth:`Engine.encode_text`
(blocking: call them off the event loop), :meth:`Engine.submit`, :meth:`Engine.paused`,
:meth:`Engine.drain`, :meth:`Engine.add_step_observer`, and the read-only state properties.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable, List, Optional

import torch

from .backends.archs import unsupported_reason
from .prompts import PromptEncoder
from .sampling import RowSampler
from .scheduler import Scheduler
from .types import EngineConfig, EngineError, GenRequest, NotReadyError, Prompt

LOG = logging.getLogger('autoglm_service.engine')

PROCESSOR_FILES = ('preprocessor_config.json', 'processor_config.json')


def resolve_dtype(name, device):
    name = (name or 'auto').lower()
    if name == 'auto':
        if device.startswith('cuda'):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    aliases = {'bf16': 'bfloat16', 'fp16': 'float16', 'half': 'float16', 'fp32': 'float32'}
    return getattr(torch, aliases.get(name, name))


def load_processor(path, max_pixels):
    """The model's processor, its image resizing bounded by ``max_pixels`` (None: text model)."""
    if not any(os.path.isfile(os.path.join(path, f)) for f in PROCESSOR_FILES):
        return None
    from .processors import load_processor as load
    return load(path, max_pixels=max_pixels)


class Engine:
    """Loads the model in a background thread, then runs the scheduler loop."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.state = 'loading'
        self.error: Optional[str] = None
        self.model = None
        self.tokenizer = None
        self.processor = None
        self.encoder: Optional[PromptEncoder] = None
        self.backend = None
        self.scheduler: Optional[Scheduler] = None
        self.device = 'cpu'
        self.dtype = torch.float32
        self.eos_ids = set()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._observers: List[Callable[[int], None]] = []

    # ------------------------------------------------------------------ state
    @property
    def ready(self):
        return self.state == 'ready'

    @property
    def served_names(self) -> List[str]:
        return self.config.served_names

    @property
    def model_name(self) -> str:
        return self.served_names[0]

    @property
    def backend_name(self) -> Optional[str]:
        return self.backend.name if self.backend is not None else None

    @property
    def num_running(self):
        return self.scheduler.num_running if self.scheduler else 0

    @property
    def num_waiting(self):
        return self.scheduler.num_waiting if self.scheduler else 0

    @property
    def stats(self):
        return self.scheduler.stats if self.scheduler else {}

    @property
    def batch_sizes(self):
        return self.scheduler.batch_sizes if self.scheduler else {}

    @property
    def started(self):
        return self._thread is not None

    # ------------------------------------------------------------------ life cycle
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

    def drain(self, timeout: float) -> bool:
        """Refuse new requests (503), wait until none is running or waiting; False on timeout."""
        if self.scheduler is None:
            return True
        self.scheduler.draining = True
        deadline = time.monotonic() + timeout
        while self.num_running or self.num_waiting:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self):
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.state in ('ready', 'loading', 'warming'):
            self.state = 'stopped'

    def paused(self):
        """Context manager: admit nothing new while inside (tests, maintenance)."""
        if self.scheduler is None:
            raise NotReadyError('model is %s' % self.state)
        return self.scheduler.paused()

    def add_step_observer(self, fn: Callable[[int], None]):
        self._observers.append(fn)

    def remove_step_observer(self, fn: Callable[[int], None]):
        if fn in self._observers:
            self._observers.remove(fn)

    # ------------------------------------------------------------------ requests
    def encode_chat(self, messages) -> Prompt:
        self._need_model()
        prompt = self.encoder.chat(messages)
        if prompt.inputs is not None:
            with torch.inference_mode():
                self.backend.prepare(prompt)      # in the caller's (worker) thread, not the engine's
        return prompt

    def encode_text(self, text) -> Prompt:
        self._need_model()
        return self.encoder.text(text)

    def _need_model(self):
        if self.encoder is None:
            raise NotReadyError('model is %s' % self.state)

    def submit(self, req: GenRequest) -> GenRequest:
        if self.state != 'ready':
            raise NotReadyError('model is %s' % self.state)
        cfg = self.config
        n = req.params.max_new_tokens
        if n <= 0 or n > cfg.max_new_tokens:
            raise EngineError('max_tokens must be between 1 and %d (got %s)' % (cfg.max_new_tokens, n),
                              reason='bad_max_tokens', param='max_tokens')
        self.encoder.check_length(req.prompt)
        return self.scheduler.submit(req)

    # ------------------------------------------------------------------ loading
    def _run(self):
        try:
            self._load()
            self.state = 'warming'
            sampler = RowSampler(self.backend.rows, self._vocab(), self.device)
            if hasattr(self.backend, 'attach_sampler'):
                self.backend.attach_sampler(sampler)
            if self.config.warmup:
                t0 = time.monotonic()
                with torch.inference_mode():
                    self.backend.warmup(self.encoder.text('warm up').ids, image_prompt=self._warmup_image_prompt())
                LOG.info('warm-up done in %.1fs', time.monotonic() - t0)
            self.scheduler = Scheduler(self.backend, sampler, self.tokenizer, self.eos_ids, self.config)
            self.scheduler.observers = self._observers
            self.state = 'ready'
            LOG.info('engine ready: backend=%s device=%s dtype=%s rows=%d max_model_len=%d graphs=%d',
                     self.backend.name, self.device, self.dtype, self.backend.rows, self.backend.max_len,
                     len(self.backend.graphs))
        except Exception as exc:  # noqa: BLE001
            LOG.exception('model loading failed')
            self.error = '%s: %s' % (type(exc).__name__, exc)
            self.state = 'failed'
            return
        with torch.inference_mode():
            self.scheduler.run(self._stop)

    def _warmup_image_prompt(self):
        """A one-image chat for the warm-up of backends that compile their image path: a plain
        phone-sized PNG on a GPU (the compiled pieces take any patch count; the first shape they
        see is the one they are tuned for), a small one elsewhere."""
        if not getattr(self.backend, 'supports_images', False) or self.processor is None:
            return None
        import base64
        import io
        from PIL import Image
        buf = io.BytesIO()
        size = (1080, 2400) if self.device.startswith('cuda') else (448, 448)
        Image.new('RGB', size, (200, 220, 240)).save(buf, format='PNG')
        url = 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')
        return self.encoder.chat([{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': url}},
                                                               {'type': 'text', 'text': 'warm up'}]}])

    def _vocab(self):
        emb = self.model.get_output_embeddings()
        return int(emb.weight.shape[0]) if emb is not None else int(self.model.config.get_text_config().vocab_size)

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
        self.processor = load_processor(path, cfg.mm_max_pixels)
        self.tokenizer = getattr(self.processor, 'tokenizer', None) or AutoTokenizer.from_pretrained(path)
        kwargs = dict(dtype=self.dtype)
        if device.startswith('cuda'):
            kwargs['device_map'] = 'auto'
        model = None
        if self.processor is not None:
            from transformers import AutoModelForImageTextToText
            try:
                model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
            except (ValueError, KeyError):
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
        self.encoder = PromptEncoder(cfg, self.tokenizer, self.processor,
                                     image_device=self.device if self.device.startswith('cuda') else None)
        with torch.inference_mode():
            self.backend = self._choose_backend()

    def _choose_backend(self):
        from .backends.batched import BatchedBackend
        from .backends.fast import FastBackend
        from .backends.sequential import SequentialBackend
        cfg, model = self.config, self.model
        want = cfg.backend
        rows, max_len = cfg.max_batch_size, cfg.max_model_len
        graphs = self._want_graphs()
        if want in ('auto', 'fast'):
            reason = unsupported_reason(model)
            if reason is None:
                compile_mode = cfg.compile if cfg.compile != 'auto' else ('on' if graphs else 'off')
                if graphs:
                    # the scheduler thread must get the GIL back quickly from the HTTP thread
                    sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
                mcfg = model.config
                image_ids = [i for i in (getattr(mcfg, 'image_token_id', None), getattr(mcfg, 'video_token_id', None))
                             if i is not None]
                return FastBackend(model, rows, max_len, self.device, self.dtype, graphs, compile_mode,
                                   attn=cfg.decode_attention, min_bucket=cfg.min_batch_bucket,
                                   prefill_graph_max=min(max_len, 1024), prefix_cache_tokens=cfg.prefix_cache_tokens,
                                   image_token_ids=image_ids, products=cfg.decode_products)
            if want == 'fast':
                raise EngineError('backend=fast: %s' % reason)
            LOG.info('fast path not used: %s', reason)
        if want in ('auto', 'batched') and self.processor is None:
            try:
                return BatchedBackend(model, rows, max_len, self.device, self.dtype, graphs)
            except Exception as exc:  # noqa: BLE001
                if want == 'batched':
                    raise
                LOG.warning('batched backend unavailable (%s); using the sequential backend', exc)
        elif want == 'batched':
            raise EngineError('backend=batched takes text models only; this model has a processor')
        return SequentialBackend(model, max_len, self.device, self.dtype)

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
