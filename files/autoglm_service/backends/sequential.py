# -*- coding: utf-8 -*-
"""Sequential backend: one row, the model's own ``forward`` over a ``DynamicCache``.

Runs any model transformers can run (the fallback for architectures neither the fast nor
the batched backend takes, and for prompts with images on models without a fast-path image
adapter). Positions, M-RoPE deltas and image features are the model's business, exactly as
in ``model.generate``.
"""

from __future__ import annotations

import torch

from .base import Backend
from .batched import cache_kwarg


class SequentialBackend(Backend):
    name = 'sequential'
    supports_images = True

    def __init__(self, model, max_len, device, dtype):
        super().__init__(model, 1, max_len, device, dtype)
        self.cache_kw = cache_kwarg(model)
        self.cache = None

    def prefill(self, row0, prompts):
        from transformers import DynamicCache
        (prompt,) = prompts
        assert row0 == 0, 'the sequential backend has one row'
        kwargs = {'input_ids': torch.tensor([prompt.ids], dtype=torch.long, device=self.device)}
        for key, val in (prompt.inputs or {}).items():
            val = val.to(self.device) if hasattr(val, 'to') else val
            kwargs[key] = val.to(self.dtype) if key.startswith('pixel_values') else val
        kwargs['attention_mask'] = torch.ones_like(kwargs['input_ids'])
        if hasattr(self.model, 'model') and hasattr(self.model.model, 'rope_deltas'):
            self.model.model.rope_deltas = None        # M-RoPE models cache the last prompt's delta
        self.cache = DynamicCache()
        out = self.model(use_cache=True, logits_to_keep=1, **{self.cache_kw: self.cache}, **kwargs)
        self.lens[0] = len(prompt.ids)
        logits = out.logits[:, -1, :]
        self.ids[:1].copy_(torch.argmax(logits, dim=-1))
        return logits

    def decode(self, n):
        out = self.model(input_ids=self.ids[:1, None], use_cache=True, **{self.cache_kw: self.cache})
        self.lens[0] += 1
        logits = out.logits[:, -1, :]
        self.ids[:1].copy_(torch.argmax(logits, dim=-1))
        return logits

    def move_row(self, src, dst):
        raise AssertionError('the sequential backend has one row')

    def release(self):
        self.cache = None
