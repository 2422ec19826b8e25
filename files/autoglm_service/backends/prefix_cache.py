# -*- coding: utf-8 -*-
"""Automatic prefix caching for the fast backend (the idea of vLLM's and SGLang's).

The phone agent resends the same system prompt and a growing text history every step, with
one new screenshot at the end. Keys and values of a prompt's leading text are the same
whenever its tokens are the same (positions start at 0, no image before them), so they are
kept in a pool of fixed-size blocks and copied into a new request's row instead of being
recomputed; only the rest of the prompt is prefilled.

* A block holds ``block`` consecutive positions of every layer; its key is a hash chained over
  all tokens up to its end (a block is reused only after the very same prefix).
* Only text before the first image placeholder is cached (image placeholder ids are the same
  for every picture) and never a prompt's last token (its logits are needed).
* The pool has ``capacity`` tokens; the least recently used blocks are evicted first.
"""

from __future__ import annotations

import collections
from typing import List, Optional, Sequence

import torch


class PrefixCache:
    def __init__(self, n_layers, kv_heads, head_dim, capacity_tokens, block, device, dtype, stop_ids=()):
        self.block = block
        self.blocks = max(1, capacity_tokens // block)
        shape = (n_layers, self.blocks, kv_heads, block, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.index = collections.OrderedDict()       # chain hash -> block slot (LRU order)
        self.free = list(range(self.blocks))
        self.stop_ids = set(stop_ids)                # image placeholders: nothing cached past them
        self.hits = 0
        self.hit_tokens = 0
        self.stored_tokens = 0

    def _cacheable(self, ids: Sequence[int]) -> int:
        n = len(ids) - 1
        for i, t in enumerate(ids[:n]):
            if t in self.stop_ids:
                return i
        return n

    def _hashes(self, ids: Sequence[int]) -> List[int]:
        out, h = [], 0
        full = self._cacheable(ids) // self.block
        for b in range(full):
            h = hash((h, tuple(ids[b * self.block:(b + 1) * self.block])))
            out.append(h)
        return out

    def match(self, ids: Sequence[int]):
        """(tokens reusable, their block slots) for the longest cached prefix of ``ids``."""
        slots, hit = [], []
        for h in self._hashes(ids):
            slot = self.index.get(h)
            if slot is None:
                break
            hit.append(h)
            slots.append(slot)
        self._touch(hit)
        return len(slots) * self.block, slots

    def _touch(self, hashes):
        # the head of a chain is used most recently: evicting from the tail keeps chains whole
        for h in reversed(hashes):
            self.index.move_to_end(h)

    def load(self, k_cache, v_cache, row, slots):
        """Copy cached blocks into positions ``[0, len(slots) * block)`` of ``row``."""
        if not slots:
            return 0
        idx = torch.tensor(slots, device=self.k.device)
        n = len(slots) * self.block
        # [L, nb, H, blk, D] -> [L, H, nb * blk, D]
        k = self.k.index_select(1, idx).permute(0, 2, 1, 3, 4).reshape(k_cache.shape[0], k_cache.shape[2], n, -1)
        v = self.v.index_select(1, idx).permute(0, 2, 1, 3, 4).reshape(v_cache.shape[0], v_cache.shape[2], n, -1)
        k_cache[:, row, :, :n].copy_(k)
        v_cache[:, row, :, :n].copy_(v)
        self.hits += 1
        self.hit_tokens += n
        return n

    def store(self, k_cache, v_cache, row, ids: Sequence[int]):
        """Keep the cacheable full blocks of a freshly prefilled ``row`` (``ids`` its prompt)."""
        hashes = self._hashes(ids)
        for b, h in enumerate(hashes):
            if h in self.index:
                continue
            slot = self._slot()
            if slot is None:
                break
            sl = slice(b * self.block, (b + 1) * self.block)
            self.k[:, slot].copy_(k_cache[:, row, :, sl])
            self.v[:, slot].copy_(v_cache[:, row, :, sl])
            self.index[h] = slot
            self.stored_tokens += self.block
        self._touch([h for h in hashes if h in self.index])

    def _slot(self) -> Optional[int]:
        if self.free:
            return self.free.pop()
        if not self.index:
            return None
        _h, slot = self.index.popitem(last=False)     # least recently used
        return slot
