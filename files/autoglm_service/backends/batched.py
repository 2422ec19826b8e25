# -*- coding: utf-8 -*-
"""Batched backend: the model's own ``forward`` over a transformers ``StaticCache``.

For text models without a fast-path :class:`~autoglm_service.backends.archs.Arch` row. All
rows share one write position ``t`` (the static cache's single write index) and each sequence
is *right-aligned* on it: row ``s`` occupies ``[start_s, t)``. A new prompt is prefilled on its
own (batch 1, dynamic cache) and its keys/values are copied into its row at ``[t - L, t)``;
RoPE positions are per row (``position_ids``), and a 4-D additive mask built from ``start_s``
and ``t`` hides everything outside a row's span. When ``t`` reaches the end of the cache, or a
new prompt is longer than ``t``, all rows are rolled along the sequence axis (one copy).

Every tensor a decode step touches has a fixed address per batch bucket, so on one CUDA
device the step is captured as one CUDA graph per bucket.
"""

from __future__ import annotations

import inspect

import torch

from .base import Backend, power_of_two_buckets, smallest_bucket


def cache_kwarg(model):
    """Name of the KV-cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return 'cache' if 'cache' in params else 'past_key_values'


class BatchedBackend(Backend):
    name = 'batched'

    def __init__(self, model, rows, max_len, device, dtype, use_graphs):
        from transformers import StaticCache
        super().__init__(model, rows, max_len, device, dtype)
        self.use_graphs = use_graphs
        self.buckets = power_of_two_buckets(rows)
        cfg = model.config
        self.master = StaticCache(config=cfg, max_cache_len=max_len)
        self._accepts_cache_position = 'cache_position' in inspect.signature(model.forward).parameters
        self.cache_kw = cache_kwarg(model)
        dev = device
        self.pos = torch.zeros((rows, 1), dtype=torch.long, device=dev)
        self.start = torch.zeros((rows,), dtype=torch.long, device=dev)
        self.t_dev = torch.zeros((1,), dtype=torch.long, device=dev)
        self.t = 0
        self.n = 0                      # live rows (rolls move rows [0, n))
        self.rolls = 0
        self.arange = torch.arange(max_len, device=dev)
        self.neg = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=dev)
        self.zero = torch.tensor(0.0, dtype=dtype, device=dev)
        self.graphs, self.graph_out = {}, {}
        # Initialise the static layers with one full-width step, then share their storage.
        self._raw_step(self.master, rows)
        if not hasattr(self.master, 'layers') or not all(
                getattr(layer, 'is_initialized', False) for layer in self.master.layers):
            raise RuntimeError('this transformers version has no static-layer cache API')
        self.caches = {rows: self.master}
        for b in self.buckets:
            if b != rows:
                self.caches[b] = self._view_cache(b)
        self._set_t(0)

    def _view_cache(self, b):
        from transformers import StaticCache
        c = StaticCache(config=self.model.config, max_cache_len=self.max_len)
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
        return c

    def _set_t(self, t):
        self.t = t
        self.t_dev.fill_(t)
        for layer in self.master.layers:
            if hasattr(layer, 'cumulative_length'):
                layer.cumulative_length.fill_(t)

    def _raw_step(self, cache, b):
        allowed = (self.arange.unsqueeze(0) >= self.start[:b].unsqueeze(1)) & (self.arange.unsqueeze(0) <= self.t_dev)
        mask = torch.where(allowed, self.zero, self.neg)[:, None, None, :]
        kwargs = dict(input_ids=self.ids[:b, None], position_ids=self.pos[:b], attention_mask=mask,
                      use_cache=True, logits_to_keep=1)
        kwargs[self.cache_kw] = cache
        if self._accepts_cache_position:
            kwargs['cache_position'] = self.t_dev
        out = self.model(**kwargs)
        self.pos[:b].add_(1)
        self.t_dev.add_(1)
        logits = out.logits[:, -1, :]
        self.ids[:b].copy_(torch.argmax(logits, dim=-1))
        return logits

    def _roll(self, delta):
        if self.n and delta:
            n = self.n
            for ml in self.master.layers:
                ml.keys[:n].copy_(torch.roll(ml.keys[:n], shifts=delta, dims=2))
                ml.values[:n].copy_(torch.roll(ml.values[:n], shifts=delta, dims=2))
            self.start[:n].add_(delta)
            self.rolls += 1

    # ------------------------------------------------------------------ interface
    def prefill(self, row0, prompts):
        from transformers import DynamicCache
        (prompt,) = prompts
        L = len(prompt.ids)
        ids = torch.tensor([prompt.ids], dtype=torch.long, device=self.device)
        cache = DynamicCache()
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.cache_kw: cache})
        self.n = row0
        if row0 == 0:
            self._set_t(L)
        elif self.t < L:
            self._roll(L - self.t)
            self._set_t(L)
        t = self.t
        for ml, pl in zip(self.master.layers, cache.layers):
            ml.keys[row0, :, t - L:t].copy_(pl.keys[0, :, -L:])
            ml.values[row0, :, t - L:t].copy_(pl.values[0, :, -L:])
        self.start[row0] = t - L
        self.pos[row0, 0] = L
        self.lens[row0] = L
        self.n = row0 + 1
        return out.logits[:, -1, :]

    def decode(self, n):
        self.n = n
        if self.t >= self.max_len:
            longest = max(self.lens[:n])
            self._roll(longest - self.t)
            self._set_t(longest)
        b = smallest_bucket(self.buckets, n, self.rows)
        for i in range(n):
            self.lens[i] += 1
        self.t += 1
        if b in self.graphs:
            self.graphs[b].replay()
            return self.graph_out[b][:n]
        return self._raw_step(self.caches[b], b)[:n]

    def move_row(self, src, dst):
        for ml in self.master.layers:
            ml.keys[dst].copy_(ml.keys[src])
            ml.values[dst].copy_(ml.values[src])
        for buf in (self.pos, self.start):
            buf[dst] = buf[src]
        self.move_meta(src, dst)

    def warmup(self, prompt_ids, image_prompt=None):
        from ..types import Prompt
        self.prefill(0, [Prompt(ids=list(prompt_ids))])
        for b in self.buckets:
            self._set_t(0)
            self._raw_step(self.caches[b], b)
        if self.use_graphs:
            self._capture()
        self.pos.zero_()
        self.start.zero_()
        self._set_t(0)
        self.n = 0
        self.lens = [0] * self.rows

    def _capture(self):
        """One CUDA graph per batch bucket (the cache content is scratch here)."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        for b in reversed(self.buckets):
            cache = self.caches[b]
            with torch.cuda.stream(stream):
                for _round in range(2):
                    self._set_t(0)
                    self._raw_step(cache, b)
            torch.cuda.current_stream().wait_stream(stream)
            self._set_t(0)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                out = self._raw_step(cache, b)
            self.graphs[b] = g
            self.graph_out[b] = out
        torch.cuda.synchronize()
