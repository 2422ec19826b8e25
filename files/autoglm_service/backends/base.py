# -*- coding: utf-8 -*-
"""The one interface every decode backend implements (sequential, batched, fast).

A backend owns the KV cache of ``rows`` sequences and nothing else: no requests, no
sampling, no text. The scheduler keeps live sequences in rows ``[0, n)`` (it compacts by
moving the last row into a hole) and drives the backend with four calls:

* ``prefill(row0, prompts)`` writes the keys/values of ``prompts`` into rows ``row0 ...`` and
  returns the logits of each prompt's last token ``[B, vocab]``;
* ``decode(n)`` feeds ``ids[:n]`` (each row's last token) at each row's next position and
  returns the logits ``[n, vocab]``; afterwards ``ids[:n]`` holds the greedy choice, which the
  scheduler overwrites where a row samples (a backend with ``attach_sampler`` applies the
  rows' penalties in the step: ``penalized``);
* ``move_row(src, dst)`` moves a sequence (cache, position, next token) to another row;
* ``warmup(prompt_ids)`` runs every shape once (and captures graphs) before serving.

``lens[i]`` is the number of positions row ``i`` holds. ``prefill_groups`` tells the scheduler
which prompts may share one prefill call.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from ..types import Prompt


def smallest_bucket(buckets, n, default):
    """The first bucket (ascending) that holds n, else default (the largest size)."""
    for b in buckets:
        if b >= n:
            return b
    return default


def power_of_two_buckets(limit, first=1):
    """first, 2 first, 4 first, ... and ``limit`` itself (sizes a step may be run at)."""
    out, x = [], first
    while x < limit:
        out.append(x)
        x *= 2
    out.append(limit)
    return out


class Backend:
    """Base class: the row bookkeeping shared by every backend."""

    name = 'base'
    chunked = False              # begin_prefill / prefill_next: a prompt prefilled in pieces
    supports_images = False      # prompts with processor inputs (pixel values) can be prefilled
    graphs = {}                  # captured decode graphs (CUDA), by shape
    penalized = False            # decode applies the sampler's penalties itself (attach_sampler)

    def __init__(self, model, rows: int, max_len: int, device, dtype):
        self.model = model
        self.rows = rows
        self.max_len = max_len
        self.device = device
        self.dtype = dtype
        self.ids = torch.zeros((rows,), dtype=torch.long, device=device)
        self.lens: List[int] = [0] * rows

    # ------------------------------------------------------------------ the interface
    def prefill(self, row0: int, prompts: Sequence[Prompt]) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def move_row(self, src: int, dst: int):
        raise NotImplementedError

    def warmup(self, prompt_ids: List[int], image_prompt=None):
        """Run every shape once; the default prefills and decodes one row (``image_prompt``: a
        prompt with an image, for backends that compile their image path)."""
        self.prefill(0, [Prompt(ids=list(prompt_ids))])
        self.decode(1)

    def prepare(self, prompt: Prompt):
        """Host-side work on a new prompt, in the thread that encoded it (before it is queued)."""

    def prefill_groups(self, prompts: Sequence[Prompt], budget: int) -> List[int]:
        """How many of ``prompts`` (a prefix) go into the next prefill call: 1 by default."""
        return 1 if prompts else 0

    def wants_chunks(self, prompt: Prompt, budget: int) -> bool:
        """The prompt goes through begin_prefill / prefill_next (chunked backends only)."""
        return False

    def begin_prefill(self, row: int, prompt: Prompt):
        raise NotImplementedError

    def prefill_next(self, row: int, state, budget: int):
        raise NotImplementedError

    def accepts(self, prompt: Prompt) -> bool:
        return prompt.inputs is None or self.supports_images

    def move_meta(self, src: int, dst: int):
        self.lens[dst] = self.lens[src]
        self.ids[dst] = self.ids[src]
