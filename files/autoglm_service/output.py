# -*- coding: utf-8 -*-
"""From token ids to the events a request's ``emit`` receives.

* ``{"type": "delta", "text": str, "tokens": int}`` for each piece of new text,
* ``{"type": "done", "finish_reason": "stop"|"length", "text": str, "prompt_tokens": int,
  "completion_tokens": int, "token_ids": [int]}`` once,
* ``{"type": "error", "status": int, "message": str}`` once, instead of ``done``.

Detokenisation is incremental (the prefix/read offsets of vLLM's and TGI's detokenizers): a
token that ends inside a multi-byte character is held until the character is complete. Text
that could still become a stop string is held back, never streamed and then taken back.
"""

from __future__ import annotations

import time
from typing import List, Optional

from .types import GenRequest


class OutputStream:
    """The output side of one request: generated ids, text, what was emitted."""

    __slots__ = ('req', 'tokenizer', 'eos_ids', 'limit', 'generated', 'text', 'emitted',
                 'prefix_offset', 'read_offset', 'first_token_at', 'hold', 'inflight')

    def __init__(self, req: GenRequest, tokenizer, eos_ids, limit: int):
        self.req = req
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.limit = limit                  # max new tokens after clamping to the context
        self.generated: List[int] = []
        self.text = ''
        self.emitted = 0
        self.prefix_offset = 0
        self.read_offset = 0
        self.first_token_at: Optional[float] = None
        self.hold = max((len(s) for s in req.params.stop), default=1) - 1
        self.inflight = 0                   # decode steps launched whose token is not read yet

    @property
    def done(self):
        return self.req.finished

    @property
    def wants_more(self):
        """Another decode step is useful for this request."""
        return not (self.req.finished or self.req.cancelled) and len(self.generated) + self.inflight < self.limit

    def append(self, token: int) -> Optional[str]:
        """Take one generated token; emits deltas and the final event. Returns the finish reason."""
        req = self.req
        if req.finished:
            return None
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        finish = None
        stop = req.params.stop
        if token in self.eos_ids:
            finish = 'stop'
        else:
            self.generated.append(token)
            self._detok()
            if stop:
                hits = [self.text.find(s) for s in stop if s in self.text]
                if hits:
                    self.text = self.text[:min(hits)]
                    finish = 'stop'
        if finish is None and len(self.generated) >= self.limit:
            finish = 'length'
        if finish and not stop:
            self._detok(final=True)
        upto = max(self.emitted, len(self.text) - (0 if finish else self.hold))
        if upto > self.emitted:
            delta = self.text[self.emitted:upto]
            self.emitted = upto
            req.emit({'type': 'delta', 'text': delta, 'tokens': len(self.generated)})
        if finish:
            req.finished = True
            req.emit({'type': 'done', 'finish_reason': finish, 'text': self.text,
                      'prompt_tokens': len(req.prompt.ids), 'completion_tokens': len(self.generated),
                      'token_ids': list(self.generated)})
        return finish

    def _detok(self, final=False):
        ids = self.generated
        if final and self.read_offset == len(ids):
            return
        dec = self.tokenizer.decode
        prefix = dec(ids[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        full = dec(ids[self.prefix_offset:], skip_special_tokens=True)
        if len(full) > len(prefix) and (final or not full.endswith('\ufffd')):
            self.text += full[len(prefix):]
            self.prefix_offset = self.read_offset
            self.read_offset = len(ids)


def fail(req: GenRequest, status: int, message: str) -> bool:
    """End ``req`` with an error event (once). Returns False when it had already ended."""
    if req.finished:
        return False
    req.finished = True
    req.emit({'type': 'error', 'status': status, 'message': message})
    return True
