# -*- coding: utf-8 -*-
"""A stand-in for :class:`autoglm_service.engine.Engine` with the same interface and no model.

For tests of the HTTP layer alone (limits, timeouts, errors, settings): it "tokenises" by
characters and "generates" the prompt's characters back, one token per step, on a
scheduler thread, emitting the engine's events. The acceptance tests use the real engine.
"""

import contextlib
import threading
import time

from autoglm_service.types import (EngineConfig, EngineError, NotReadyError, Prompt, PromptTooLongError,
                                   QueueFullError)


class FakeEngine:
    backend_name = 'fake'

    def __init__(self, config=None, step_s=0.001):
        self.config = config or EngineConfig(model_path='/fake', served_model_name='tiny', max_model_len=256,
                                             max_new_tokens=32, default_max_new_tokens=8)
        self.state = 'ready'
        self.error = None
        self.step_s = step_s
        self._cv = threading.Condition()
        self._waiting, self._running = [], []
        self._paused = 0
        self._admit = True
        self._observers = []
        self._stop = False
        self._thread = None

    # lifecycle
    @property
    def started(self):
        return self._thread is not None

    def start(self, background=True):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def wait_ready(self, timeout=None):
        return True

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread:
            self._thread.join(5)
        self.state = 'stopped'

    def drain(self, timeout):
        self._admit = False
        deadline = time.monotonic() + timeout
        while self.num_running + self.num_waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.num_running + self.num_waiting == 0

    @property
    def ready(self):
        return self.state == 'ready'

    @property
    def served_names(self):
        return self.config.served_names

    @property
    def model_name(self):
        return self.served_names[0]

    @property
    def num_running(self):
        return len(self._running)

    @property
    def num_waiting(self):
        return len(self._waiting)

    def add_step_observer(self, fn):
        self._observers.append(fn)

    def remove_step_observer(self, fn):
        self._observers.remove(fn)

    @contextlib.contextmanager
    def paused(self):
        with self._cv:
            self._paused += 1
        try:
            yield
        finally:
            with self._cv:
                self._paused -= 1
                self._cv.notify_all()

    # requests
    def encode_text(self, text):
        ids = [ord(c) % 256 for c in text]
        if len(ids) + 1 > self.config.max_model_len:
            raise PromptTooLongError('prompt is %d tokens; the limit is %d tokens' % (len(ids), self.config.max_model_len))
        return Prompt(ids=ids)

    def encode_chat(self, messages):
        parts, images = [], 0
        for m in messages:
            content = m['content']
            if isinstance(content, str):
                parts.append(content)
                continue
            for p in content:
                if p['type'] == 'text':
                    parts.append(p['text'])
                else:
                    images += 1
        if images:
            raise EngineError('this model does not accept images')
        return self.encode_text(''.join(parts))

    def submit(self, req):
        if not self.ready or not self._admit:
            raise NotReadyError('model is %s' % self.state)
        if len(req.prompt.ids) + req.params.max_new_tokens > self.config.max_model_len:
            raise PromptTooLongError('prompt too long')
        with self._cv:
            if len(self._waiting) >= self.config.max_queue:
                raise QueueFullError('queue is full (max_queue %d)' % self.config.max_queue)
            req.enqueued_at = time.monotonic()
            self._waiting.append(req)
            self._cv.notify_all()
        return req

    def _loop(self):
        while True:
            with self._cv:
                while not self._stop and (self._paused or not (self._waiting or self._running)):
                    self._cv.wait(0.1)
                if self._stop:
                    return
                while self._waiting and len(self._running) < self.config.max_batch_size:
                    req = self._waiting.pop(0)
                    req._out = []
                    self._running.append(req)
                batch = list(self._running)
            for fn in self._observers:
                fn(len(batch))
            for req in batch:
                self._step(req)
            time.sleep(self.step_s)

    def _step(self, req):
        ids = req.prompt.ids
        done = None
        if req.cancelled:
            done = {'type': 'error', 'status': 499, 'message': 'cancelled'}
        else:
            tok = ids[len(req._out) % len(ids)] if ids else 32
            req._out.append(tok)
            text = chr(tok)
            req.emit({'type': 'delta', 'text': text, 'tokens': 1})
            full = ''.join(map(chr, req._out))
            if any(s in full for s in req.params.stop):
                done = self._done(req, 'stop', full)
            elif len(req._out) >= req.params.max_new_tokens:
                done = self._done(req, 'length', full)
        if done is not None:
            with self._cv:
                self._running.remove(req)
                req.finished = True
            if done['type'] == 'done' or not req.cancelled:
                req.emit(done)

    def _done(self, req, reason, text):
        for s in req.params.stop:
            if s in text:
                text = text[:text.find(s)]
        return {'type': 'done', 'finish_reason': reason, 'text': text, 'prompt_tokens': len(req.prompt.ids),
                'completion_tokens': len(req._out)}
