# -*- coding: utf-8 -*-
"""Per-row sampling state on the device (TGI's ``HeterogeneousNextTokenChooser`` is the model).

One :class:`RowSampler` holds, for every KV-cache row, the row's :class:`SamplingParams` as
device tensors (temperature, top-p, top-k, the three penalties), the token counts the
penalties need, and a seeded generator where the request gave a seed. ``set_rows`` fills
rows at admission, ``move_row`` follows the scheduler's compaction, ``sample`` turns the
logits of rows ``[0, n)`` into tokens in one vectorised pass, ``observe`` counts the tokens
just chosen. A new parameter is one tensor here and one processor in ``penalize`` (or ``sample``).

Penalties follow OpenAI's definitions (over the tokens generated so far):
``logit -= frequency_penalty * count + presence_penalty * (count > 0)``; and vLLM's
``repetition_penalty`` over prompt and output: a seen token's logit is divided by the
penalty when positive, multiplied when negative.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from .types import SamplingParams


class RowSampler:
    def __init__(self, rows: int, vocab: int, device):
        self.rows, self.vocab, self.device = rows, vocab, device
        f32 = dict(dtype=torch.float32, device=device)
        self.temp = torch.zeros(rows, **f32)
        self.top_p = torch.ones(rows, **f32)
        self.top_k = torch.zeros(rows, dtype=torch.long, device=device)
        self.freq = torch.zeros(rows, **f32)
        self.pres = torch.zeros(rows, **f32)
        self.rep = torch.ones(rows, **f32)
        self.params: List[Optional[SamplingParams]] = [None] * rows
        self.generators: List[Optional[torch.Generator]] = [None] * rows
        self._counts = None     # [rows, vocab] output token counts, allocated on first penalty
        self._seen = None       # [rows, vocab] prompt or output token seen (repetition penalty)
        self._refresh(0)

    # ------------------------------------------------------------------ rows
    def set_rows(self, row0: int, params: Sequence[SamplingParams], prompts: Sequence[Sequence[int]], n_after: int):
        """Rows ``row0 ...`` take these requests; ``n_after`` rows are live afterwards."""
        for i, (p, ids) in enumerate(zip(params, prompts)):
            r = row0 + i
            self.params[r] = p
            self.temp[r] = float(p.temperature)
            self.top_p[r] = float(p.top_p)
            self.top_k[r] = int(p.top_k)
            self.freq[r] = float(p.frequency_penalty)
            self.pres[r] = float(p.presence_penalty)
            self.rep[r] = float(p.repetition_penalty)
            gen = None
            if p.seed is not None and not p.greedy:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(int(p.seed))
            self.generators[r] = gen
            if p.has_penalties:
                self._alloc()
            if self._counts is not None:
                self._counts[r].zero_()
                self._seen[r].zero_()
                if p.repetition_penalty != 1.0 and ids:
                    idx = torch.tensor(list(ids), dtype=torch.long, device=self.device).clamp_(0, self.vocab - 1)
                    self._seen[r, idx] = True
        self._refresh(n_after)

    def move_row(self, src: int, dst: int, n_after: int):
        for buf in (self.temp, self.top_p, self.top_k, self.freq, self.pres, self.rep):
            buf[dst] = buf[src]
        if self._counts is not None:
            self._counts[dst].copy_(self._counts[src])
            self._seen[dst].copy_(self._seen[src])
        self.params[dst] = self.params[src]
        self.generators[dst] = self.generators[src]
        self.params[src] = None
        self.generators[src] = None
        self._refresh(n_after)

    def truncate(self, n_after: int):
        for r in range(n_after, self.rows):
            self.params[r] = None
            self.generators[r] = None
        self._refresh(n_after)

    def _alloc(self):
        if self._counts is None:
            self._counts = torch.zeros((self.rows, self.vocab), dtype=torch.float32, device=self.device)
            self._seen = torch.zeros((self.rows, self.vocab), dtype=torch.bool, device=self.device)
            self._true = torch.ones((self.rows,), dtype=torch.bool, device=self.device)

    def enable_in_step(self):
        """A backend applies :meth:`penalize` inside its decode step (captured in its graphs):
        the buffers it reads exist from now on, whatever the requests ask."""
        self._alloc()

    def _refresh(self, n):
        live = [p for p in self.params[:n] if p is not None]
        self.n = n
        self.all_plain_greedy = all(p.plain_greedy for p in live)
        self.any_penalty = any(p.has_penalties for p in live)
        self.any_top_p = any(p.top_p < 1.0 and not p.greedy for p in live)
        self.any_top_k = any(p.top_k > 0 and not p.greedy for p in live)
        self.any_sampled = any(not p.greedy for p in live)
        self.any_seeded = any(g is not None for g in self.generators[:n])

    # ------------------------------------------------------------------ sampling
    def observe(self, tokens: torch.Tensor, row0: int = 0):
        """Count tokens just chosen for rows ``[row0, row0 + len(tokens))`` (penalties)."""
        if self._counts is None or not self.any_penalty:
            return
        n = tokens.shape[0]
        rows = torch.arange(row0, row0 + n, device=self.device)
        tok = tokens.clamp(0, self.vocab - 1)
        self._counts.index_put_((rows, tok), torch.ones_like(tok, dtype=torch.float32), accumulate=True)
        # a device tensor of True, not the Python scalar: that one is copied from pageable host
        # memory, which waits for the stream (a host sync in every decode step)
        self._seen.index_put_((rows, tok), self._true[:n])

    def penalize(self, logits: torch.Tensor, row0: int = 0) -> torch.Tensor:
        """Float logits of rows ``[row0, row0 + n)`` with each row's penalties applied.

        Tensor operations only (no host decisions), so a decode step can run it inside its CUDA
        graph; rows without penalties (frequency/presence 0, repetition 1) come out bit for bit."""
        sl = slice(row0, row0 + logits.shape[0])
        counts = self._counts[sl, :logits.shape[-1]]
        seen = self._seen[sl, :logits.shape[-1]]
        rep = self.rep[sl].unsqueeze(-1)
        logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
        return logits - self.freq[sl].unsqueeze(-1) * counts - self.pres[sl].unsqueeze(-1) * (counts > 0)

    def sample(self, logits: torch.Tensor, row0: int = 0, penalized: bool = False) -> torch.Tensor:
        """Tokens for rows ``[row0, row0 + n)`` from their logits ``[n, vocab]`` (``penalized``:
        the backend's step applied :meth:`penalize` already)."""
        n = logits.shape[0]
        logits = logits.float()
        if self.any_penalty and not penalized:
            logits = self.penalize(logits, row0)
        greedy_tok = torch.argmax(logits, dim=-1)
        if not self.any_sampled:
            return greedy_tok
        sl = slice(row0, row0 + n)
        temp = self.temp[sl]
        scaled = logits / temp.clamp(min=1e-5).unsqueeze(-1)
        if self.any_top_k or self.any_top_p:
            sorted_l, order = torch.sort(scaled, dim=-1, descending=True)
            drop = torch.zeros_like(sorted_l, dtype=torch.bool)
            if self.any_top_k:
                k = self.top_k[sl]
                rank = torch.arange(sorted_l.shape[-1], device=logits.device).unsqueeze(0)
                drop |= (k.unsqueeze(-1) > 0) & (rank >= k.unsqueeze(-1))
            if self.any_top_p:
                probs = torch.softmax(sorted_l.masked_fill(drop, float('-inf')), dim=-1)
                cum = torch.cumsum(probs, dim=-1)
                drop |= (cum - probs) > self.top_p[sl].unsqueeze(-1)
            sorted_l = sorted_l.masked_fill(drop, float('-inf'))
            scaled = torch.full_like(scaled, float('-inf')).scatter_(-1, order, sorted_l)
        probs = torch.softmax(scaled, dim=-1)
        # Exponential-race sampling: argmax(p / E) with E ~ Exp(1) draws from p; a seeded row
        # fills its own noise from its generator, so its choices do not depend on its neighbours.
        noise = torch.empty_like(probs).exponential_()
        if self.any_seeded:
            for i in range(n):
                gen = self.generators[row0 + i]
                if gen is not None:
                    noise[i] = torch.empty(probs.shape[-1], device=probs.device).exponential_(generator=gen)
        sampled = torch.argmax(probs / noise, dim=-1)
        return torch.where(temp <= 0, greedy_tok, sampled)
