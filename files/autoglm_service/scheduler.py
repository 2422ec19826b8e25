# -*- coding: utf-8 -*-
"""The scheduler: queue, admission, continuous batching, cancellation, draining.

It runs on one thread and drives any :class:`~autoglm_service.backends.base.Backend`. Live
sequences sit in rows ``[0, n)``; each iteration

1. admits waiting requests into free rows (prefill calls grouped as the backend allows, under
   the ``max_prefill_tokens`` budget per iteration), samples their first tokens. On a chunked
   backend a prompt with images, a long one or one with a cached prefix is prefilled in pieces
   of at most ``max_prefill_tokens`` in the LAST row, one piece per iteration, so running rows
   keep decoding between pieces (with no row decoding, the rest goes in one piece); when
   complete it moves into the next live row;
2. launches one decode step over all rows and samples where rows do not take the greedy token
   the step already chose (:class:`~autoglm_service.sampling.RowSampler`);
3. reads the *previous* step's tokens (the device copy to pinned memory runs behind the next
   step on CUDA, so the GPU never waits for Python) and turns them into text and events;
4. compacts finished, cancelled and failed rows away (last row moves into the hole).

A failure in prefill fails only that prefill's requests; a failure in a decode step fails the
running requests and resets the rows. A CUDA out-of-memory drops the newest request with 503
and the others go on. No request ever leaves a row or a queue entry behind.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from typing import Callable, List

import torch

from .output import OutputStream, fail
from .sampling import RowSampler
from .types import EngineError, GenRequest, NotReadyError, QueueFullError

LOG = logging.getLogger('autoglm_service.scheduler')
OOM_MESSAGE = 'out of GPU memory; retry later or with a shorter prompt'


def oom_error_types():
    types = []
    for cls in (getattr(torch.cuda, 'OutOfMemoryError', None), getattr(torch, 'OutOfMemoryError', None)):
        if cls is not None and cls not in types:
            types.append(cls)
    return tuple(types) or (MemoryError,)


OOM_ERRORS = oom_error_types()


def free_cuda():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Scheduler:
    def __init__(self, backend, sampler: RowSampler, tokenizer, eos_ids, config):
        self.backend = backend
        self.sampler = sampler
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.config = config
        self.rows: List[OutputStream] = []
        self.admitting: List[GenRequest] = []
        self.partial = None              # (request, backend state): chunked prefill in the last row
        self.waiting = collections.deque()
        self.cond = threading.Condition()
        self.stats = collections.Counter()
        self.batch_sizes = collections.Counter()
        self.observers: List[Callable[[int], None]] = []
        self._ids = itertools.count(1)
        self._pauses = 0
        self.draining = False
        self._pending = None
        cuda = str(backend.device).startswith('cuda')
        self._host = torch.zeros((2, backend.rows), dtype=torch.long, pin_memory=cuda)
        self._events = [torch.cuda.Event() for _i in range(2)] if cuda else [None, None]
        self._step_no = 0

    # ------------------------------------------------------------------ any thread
    @property
    def num_running(self):
        return len(self.rows) + len(self.admitting) + (1 if self.partial else 0)

    @property
    def num_waiting(self):
        return len(self.waiting)

    def submit(self, req: GenRequest):
        if self.draining:
            raise NotReadyError('server is draining (shutting down); retry on another replica')
        if not self.backend.accepts(req.prompt):
            raise EngineError('the %s backend cannot take prompts with images' % self.backend.name,
                              reason='images_not_supported', param='messages')
        with self.cond:
            if len(self.waiting) >= self.config.max_queue:
                raise QueueFullError('server busy: %d requests waiting (max_queue %d); retry later'
                                     % (len(self.waiting), self.config.max_queue))
            req.id = next(self._ids)
            req.enqueued_at = time.monotonic()
            self.waiting.append(req)
            self.cond.notify_all()
        return req

    @contextlib.contextmanager
    def paused(self):
        """Admit nothing new while inside (tests, maintenance); running rows go on."""
        with self.cond:
            self._pauses += 1
        try:
            yield self
        finally:
            with self.cond:
                self._pauses -= 1
                self.cond.notify_all()

    def wake(self):
        with self.cond:
            self.cond.notify_all()

    # ------------------------------------------------------------------ scheduler thread
    def run(self, stop: threading.Event):
        while not stop.is_set():
            try:
                self.iteration(stop)
            except Exception:  # noqa: BLE001 - the loop must survive anything
                LOG.exception('decode step failed; failing the %d running requests', len(self.rows))
                self._reset(500, 'internal error during generation')
        self._reset(503, 'server shutting down')
        with self.cond:
            while self.waiting:
                fail(self.waiting.popleft(), 503, 'server shutting down')

    def _reset(self, status, message):
        for s in self.rows:
            self._fail(s.req, status, message)
        for req in self.admitting + ([self.partial[0]] if self.partial else []):
            self._fail(req, status, message)
        self.rows, self.admitting, self._pending, self.partial = [], [], None, None
        self.sampler.truncate(0)

    def _fail(self, req, status, message):
        if fail(req, status, message):
            self.stats['failed_%d' % status] += 1

    def iteration(self, stop):
        self._admit(stop)
        if not self.rows:
            return
        cur = self._launch() if any(s.wants_more for s in self.rows) else None
        if self._pending is not None:
            self._consume(self._pending)
        self._pending = cur
        with self.cond:
            arrivals = bool(self.waiting) and not self._pauses
        dead = any(s.req.finished or s.req.cancelled for s in self.rows)
        if cur is None or dead or self.partial is not None or (arrivals and len(self.rows) < self.backend.rows):
            self._flush()
            self._remove_dead()

    def _flush(self):
        if self._pending is not None:
            self._consume(self._pending)
            self._pending = None

    # ------------------------------------------------------------------ admission
    def _take(self, stop) -> List[GenRequest]:
        """Pop requests for the free rows, within the prefill budget; block while idle."""
        free = self.backend.rows - len(self.rows) - (1 if self.partial else 0)
        budget = self.config.max_prefill_tokens
        out, tokens = [], 0
        with self.cond:
            while not self.rows and not self.partial and (not self.waiting or self._pauses):
                if stop.is_set():
                    return out
                self.cond.wait(timeout=0.1)
            while self.waiting and len(out) < free and not self._pauses:
                n = len(self.waiting[0].prompt.ids)
                if out and tokens + n > budget:
                    break
                req = self.waiting.popleft()
                if req.cancelled:
                    self._fail(req, 499, 'cancelled')
                    continue
                out.append(req)
                tokens += n
            self.admitting = list(out)
        return out

    def _admit(self, stop):
        if self.partial is not None:
            self._flush()
            self._remove_dead()
            t0 = time.perf_counter()
            self._continue_partial()
            self.stats['prefill_host_s'] += time.perf_counter() - t0
        batch = self._take(stop)
        if not batch:
            return
        self._flush()
        self._remove_dead()
        t0 = time.perf_counter()
        try:
            self._admit_batch(batch)
        finally:
            self.stats['prefill_host_s'] += time.perf_counter() - t0

    def _admit_batch(self, batch):
        be, budget = self.backend, self.config.max_prefill_tokens
        pieces = [r for r in batch if be.chunked and be.wants_chunks(r.prompt, budget)]
        batch = [r for r in batch if r not in pieces]
        try:
            while batch:
                k = max(1, be.prefill_groups([r.prompt for r in batch], budget))
                group, batch = batch[:k], batch[k:]
                self._prefill(group)
            # after the short prompts (they decode while this one is prefilled in pieces)
            if pieces and self.partial is None:
                self._start_partial(pieces.pop(0))
        finally:
            self.admitting = []
            with self.cond:
                self.waiting.extendleft(reversed(pieces))
        self._remove_dead()

    def _prefill_failed(self, group, exc, row0):
        """A prefill failed: only its own requests fail; the running rows are untouched."""
        self.sampler.truncate(row0)
        if isinstance(exc, OOM_ERRORS):
            LOG.warning('CUDA out of memory in prefill of %d prompts (%d tokens)', len(group),
                        sum(len(r.prompt.ids) for r in group))
            free_cuda()
            status, message = 503, OOM_MESSAGE
        elif isinstance(exc, EngineError):
            status, message = exc.status, exc.message
        else:
            LOG.exception('prefill of %d prompts failed', len(group))
            status, message = 500, 'internal error during prefill (%s)' % type(exc).__name__
        for req in group:
            self._fail(req, status, message)

    def _start_partial(self, req):
        row = self.backend.rows - 1
        req.prefill_started_at = time.monotonic()
        try:
            state = self.backend.begin_prefill(row, req.prompt)
        except Exception as exc:  # noqa: BLE001
            self._prefill_failed([req], exc, len(self.rows))
            return
        self.partial = (req, state)
        self.stats['chunked_prefills'] += 1
        self._continue_partial()

    def _continue_partial(self):
        req, state = self.partial
        if req.cancelled:
            self.partial = None
            self._fail(req, 499, 'cancelled')
            return
        row0, last = len(self.rows), self.backend.rows - 1
        # Pieces only while other rows decode: an idle server prefills the rest in one go.
        budget = self.config.max_prefill_tokens if self.rows else state.total
        try:
            logits = self.backend.prefill_next(last, state, budget)
            self.stats['prefill_chunks'] += 1
            if logits is None:
                return
            if last != row0:
                self.backend.move_row(last, row0)
            self._first_tokens([req], logits, row0)
        except Exception as exc:  # noqa: BLE001
            self._prefill_failed([req], exc, row0)
        self.partial = None

    def _prefill(self, group: List[GenRequest]):
        row0 = len(self.rows)
        now = time.monotonic()
        for req in group:
            req.prefill_started_at = now
        try:
            logits = self.backend.prefill(row0, [r.prompt for r in group])
            self._first_tokens(group, logits, row0)
        except Exception as exc:  # noqa: BLE001
            self._prefill_failed(group, exc, row0)

    def _first_tokens(self, group, logits, row0):
        B = len(group)
        self.sampler.set_rows(row0, [r.params for r in group], [r.prompt.ids for r in group], row0 + B)
        tokens = self.sampler.sample(logits, row0)
        self.sampler.observe(tokens, row0)
        self.backend.ids[row0:row0 + B].copy_(tokens)
        first = tokens.tolist()
        self.stats['prefill_batches'] += 1
        self.stats['prefills'] += B
        for req, tok in zip(group, first):
            limit = min(req.params.max_new_tokens, self.backend.max_len - len(req.prompt.ids))
            stream = OutputStream(req, self.tokenizer, self.eos_ids, max(1, limit))
            self.rows.append(stream)
            if req in self.admitting:
                self.admitting.remove(req)
            stream.append(tok)

    # ------------------------------------------------------------------ decode
    def _launch(self):
        """One decode step over all rows; returns the pending record (tokens not read yet)."""
        be, sm = self.backend, self.sampler
        while True:
            n = len(self.rows)
            try:
                logits = be.decode(n)
                if not sm.all_plain_greedy:
                    if sm.any_sampled or (sm.any_penalty and not be.penalized):
                        be.ids[:n].copy_(sm.sample(logits, penalized=be.penalized))
                    sm.observe(be.ids[:n])
                break
            except OOM_ERRORS:
                LOG.warning('CUDA out of memory in a decode step of %d sequences; dropping the newest', n)
                free_cuda()
                for i in range(n):
                    be.lens[i] -= 1
                self._flush()
                self._fail(self.rows[-1].req, 503, OOM_MESSAGE)
                self._remove_dead()
                if not self.rows:
                    return None
        k = self._step_no % 2
        self._step_no += 1
        self._host[k, :n].copy_(be.ids[:n], non_blocking=True)
        ev = self._events[k]
        if ev is not None:
            ev.record()
        for s in self.rows:
            s.inflight += 1
        return k, n, ev

    def _consume(self, pending):
        k, n, ev = pending
        if ev is not None:
            t0 = time.perf_counter()
            ev.synchronize()
            self.stats['decode_wait_s'] += time.perf_counter() - t0
        toks = self._host[k, :n].tolist()
        self.stats['steps'] += 1
        self.stats['max_batch'] = max(self.stats['max_batch'], n)
        self.batch_sizes[n] += 1
        for fn in list(self.observers):
            fn(n)
        for s, tok in zip(self.rows, toks):
            s.inflight -= 1
            s.append(tok)

    def _remove_dead(self):
        changed = False
        for i in range(len(self.rows) - 1, -1, -1):
            s = self.rows[i]
            if not (s.req.finished or s.req.cancelled):
                continue
            if s.req.cancelled and not s.req.finished:
                self._fail(s.req, 499, 'cancelled')
            elif s.req.finished:
                self.stats['completed'] += 1
            last = len(self.rows) - 1
            if i != last:
                self.backend.move_row(last, i)
                self.sampler.move_row(last, i, last)
                self.rows[i] = self.rows[last]
            self.rows.pop()
            changed = True
        if changed:
            self.sampler.truncate(len(self.rows))
