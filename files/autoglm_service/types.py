# -*- coding: utf-8 -*-
"""Shared types of the model server: settings, requests, sampling parameters, errors.

Every server setting is declared once, here, as a dataclass field with its help text
(``metadata['help']``) and, where it has a fixed set of values, ``metadata['choices']``.
The command line (``--max-batch-size``), the environment (``AUTOGLM_MAX_BATCH_SIZE``),
the docs table and the role's checks are derived from these declarations
(:func:`autoglm_service.__main__.settings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple


def setting(default, help_, choices=None, lo=None, hi=None, cli=True):
    """A dataclass field that is also a server setting (CLI flag + AUTOGLM_* variable)."""
    meta = {'help': help_, 'cli': cli}
    if choices is not None:
        meta['choices'] = tuple(choices)
    if lo is not None:
        meta['min'] = lo
    if hi is not None:
        meta['max'] = hi
    # a field() built here and assigned in the class body is what dataclasses expect
    return field(default=default, metadata=meta)  # pylint: disable=invalid-field-call


@dataclass
class EngineConfig:
    """What the engine loads and how it schedules; the HTTP settings are in :class:`ServerConfig`."""

    model_path: str = setting(None, 'local model directory (config.json, weights, tokenizer)')
    served_model_name: Optional[str] = setting(
        None, 'names served in /v1/models and accepted as "model", comma-separated; the first is '
              'the main one (default: the directory name and its lower-case form, so a directory '
              'AutoGLM-Phone-9B serves the name the Open-AutoGLM client sends, autoglm-phone-9b)')
    dtype: str = setting('auto', 'weights and activations dtype (auto: bf16 on CUDA, fp32 on CPU)',
                         choices=('auto', 'bfloat16', 'float16', 'float32', 'bf16', 'fp16', 'fp32'))
    device: str = setting('auto', 'where the model runs', choices=('auto', 'cuda', 'cpu'))
    max_batch_size: int = setting(8, 'sequences decoded together (KV cache rows)', lo=1, hi=1024)
    max_queue: int = setting(64, 'requests waiting for a row before 429', lo=1, hi=100000)
    max_model_len: int = setting(25480, 'context length per request: prompt + generated tokens '
                                        '(KV cache length per row)', lo=16, hi=1048576)
    max_new_tokens: int = setting(3000, 'largest max_tokens a request may ask for (400 above)',
                                  lo=1, hi=1048576)
    default_max_new_tokens: int = setting(256, 'max_tokens when a request gives none', lo=1, hi=1048576)
    max_images: int = setting(10, 'images accepted in one request (400 above)', lo=0, hi=256)
    mm_max_pixels: int = setting(5000000, 'the image processor resizes larger images down to this many pixels '
                                          '(as vLLM --mm_processor_kwargs max_pixels)', lo=3136, hi=200000000)
    max_image_pixels: int = setting(50000000, 'pixels (width x height) of one image as sent (400 above: '
                                              'decompression bombs)', lo=1, hi=1000000000)
    max_image_bytes: int = setting(20 * 1024 * 1024, 'bytes of one encoded image (400 above)',
                                   lo=1, hi=1 << 30)
    backend: str = setting('auto', 'decode backend (auto: fast when the architecture has an adapter, '
                                   'else batched, else sequential)',
                           choices=('auto', 'fast', 'batched', 'sequential'))
    cuda_graphs: str = setting('auto', 'capture decode steps as CUDA graphs', choices=('auto', 'on', 'off'))
    compile: str = setting('auto', 'torch.compile the fast path pieces (auto: on with CUDA graphs)',
                           choices=('auto', 'on', 'off'))
    max_prefill_tokens: int = setting(2048, 'prompt tokens prefilled per scheduler step: text prompts batched '
                                            'up to it, longer ones and screenshots prefilled in pieces of it',
                                      lo=16, hi=1048576)
    decode_attention: str = setting('auto', 'attention kernel of fast-path decode steps (auto: triton on CUDA '
                                            'where it serves the head size, else matmul)',
                                    choices=('auto', 'triton', 'matmul', 'sdpa'))
    decode_products: str = setting('auto', 'kernel of the decode steps\' weight products (auto: triton on CUDA '
                                           'when installed, else torch: cuBLAS)',
                                   choices=('auto', 'triton', 'torch'))
    min_batch_bucket: int = setting(1, 'smallest decode batch bucket of the fast path', choices=(1, 2))
    prefix_cache_tokens: int = setting(32768, 'KV positions kept for automatic prefix reuse (0: off)',
                                       lo=0, hi=1 << 30)
    warmup: bool = setting(True, 'exercise every shape (and capture graphs) before /health is 200')

    @property
    def served_names(self) -> List[str]:
        import os
        names = [n.strip() for n in (self.served_model_name or '').split(',') if n.strip()]
        if not names:
            base = os.path.basename(os.path.normpath(self.model_path or 'model'))
            names = [base] + ([base.lower()] if base.lower() != base else [])
        return list(dict.fromkeys(names))

    def validate(self):
        """Every setting against its declaration; raises ConfigError naming all bad ones."""
        return validate_settings(self)


@dataclass
class ServerConfig:
    """HTTP-side settings: listening, limits on what a client may send, authentication."""

    host: str = setting('0.0.0.0', 'address to listen on')
    port: int = setting(8080, 'port to listen on', lo=1, hi=65535)
    api_key_file: Optional[str] = setting(None, 'file holding the bearer token clients must send '
                                                '(AUTOGLM_API_KEY also works; never logged)')
    max_body_bytes: int = setting(64 * 1024 * 1024, 'largest request body (413 above, before it is read whole)',
                                  lo=1024, hi=1 << 31)
    header_timeout: float = setting(10.0, 'seconds a client has to send the request head (then 408/closed)',
                                    lo=0.1, hi=3600)
    body_timeout: float = setting(30.0, 'seconds a client has to send the whole body (then 408)', lo=0.1, hi=3600)
    max_connections: int = setting(512, 'open connections before new ones get 503', lo=1, hi=1000000)
    keep_alive_timeout: float = setting(5.0, 'idle keep-alive connection lifetime (seconds)', lo=0.1, hi=3600)
    drain_timeout: float = setting(30.0, 'seconds SIGTERM waits for running requests before exit', lo=0, hi=3600)
    retry_after: int = setting(1, 'Retry-After seconds sent with 429/503', lo=0, hi=3600)
    log_level: str = setting('info', 'log level', choices=('debug', 'info', 'warning', 'error'))


class ConfigError(ValueError):
    """Bad settings; the message names every bad field and its allowed values."""


def validate_settings(obj):
    errors = []
    for f in fields(obj):
        meta = f.metadata
        val = getattr(obj, f.name)
        if val is None:
            continue
        flag = '--' + f.name.replace('_', '-')
        if 'choices' in meta and val not in meta['choices']:
            errors.append('%s: %r is not one of %s' % (flag, val, ', '.join(map(str, meta['choices']))))
        if isinstance(val, float) and not math.isfinite(val):
            errors.append('%s: must be a finite number (got %r)' % (flag, val))
            continue
        if 'min' in meta and isinstance(val, (int, float)) and not isinstance(val, bool) and val < meta['min']:
            errors.append('%s: %s is below the minimum %s' % (flag, val, meta['min']))
        if 'max' in meta and isinstance(val, (int, float)) and not isinstance(val, bool) and val > meta['max']:
            errors.append('%s: %s is above the maximum %s' % (flag, val, meta['max']))
    if isinstance(obj, EngineConfig):
        if not obj.model_path:
            errors.append('--model-path: required (or AUTOGLM_MODEL_PATH)')
        if obj.default_max_new_tokens > obj.max_new_tokens:
            errors.append('--default-max-new-tokens: %d is above --max-new-tokens %d'
                          % (obj.default_max_new_tokens, obj.max_new_tokens))
        if obj.max_new_tokens >= obj.max_model_len:
            errors.append('--max-new-tokens: %d leaves no room for a prompt in --max-model-len %d'
                          % (obj.max_new_tokens, obj.max_model_len))
    if errors:
        raise ConfigError('; '.join(errors))
    return obj


@dataclass(frozen=True)
class SamplingParams:
    """One request's decoding parameters (OpenAI's names and meanings; vLLM's extras)."""

    max_new_tokens: int = 256
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0                # (0, 1]
    top_k: int = 0                    # 0 = off
    frequency_penalty: float = 0.0    # [-2, 2], subtracted x count of the token in the output so far
    presence_penalty: float = 0.0     # [-2, 2], subtracted once a token appeared in the output
    repetition_penalty: float = 1.0   # (0, 2], CTRL-style over prompt + output (vLLM's extra)
    seed: Optional[int] = None
    stop: Tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @property
    def has_penalties(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty or self.repetition_penalty != 1.0)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with no logit processing: the token can be taken inside the decode graph."""
        return self.greedy and not self.has_penalties


@dataclass
class Prompt:
    """A tokenised prompt; ``inputs`` holds processor outputs (pixel values, grids) of a VLM."""

    ids: List[int]
    inputs: Optional[Dict[str, Any]] = None
    images: int = 0
    positions: Any = None       # computed at encode time by the backend (M-RoPE positions and delta)


@dataclass(eq=False)
class GenRequest:
    """What the engine generates for; ``emit`` receives the events (see output.py)."""

    prompt: Prompt
    params: SamplingParams
    emit: Callable[[Dict[str, Any]], None] = lambda ev: None
    id: int = 0
    cancelled: bool = False
    finished: bool = False
    enqueued_at: float = 0.0
    prefill_started_at: float = 0.0     # the scheduler began its prefill (vision tower included)

    @property
    def prompt_ids(self) -> List[int]:
        return self.prompt.ids

    def cancel(self):
        self.cancelled = True


# ---------------------------------------------------------------------- errors
class EngineError(Exception):
    """A request the engine refuses; ``status`` is the HTTP status to answer with."""

    status = 400
    reason = 'invalid'

    def __init__(self, message, status=None, reason=None, param=None):
        super().__init__(message)
        self.message = message
        self.param = param
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
