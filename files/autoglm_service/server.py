# -*- coding: utf-8 -*-
"""What stands between a socket and the routes: limits, timeouts, authentication, metrics, shutdown.

* :class:`GuardMiddleware` (ASGI): a ``Content-Length`` above ``max_body_bytes`` gets 413
  before a byte of the body is read; a chunked body is counted as it arrives and cut at the
  limit (413); a body not complete ``body_timeout`` seconds after the request head gets 408.
  A response sent before its request body was read closes the connection, so nobody can keep
  trickling bytes into a finished request.
* :class:`ApiKeyMiddleware` (ASGI): ``Authorization: Bearer <key>`` or ``x-api-key``,
  compared in constant time; ``/health`` and ``/metrics`` stay open.
* :class:`Metrics` and :class:`MetricsMiddleware`: Prometheus series whose labels are bounded
  (methods outside :data:`METHODS` are ``other``, paths outside the routes ``unmatched``).
* :class:`H11Protocol`: uvicorn's h11 protocol plus a request-head timeout
  (``header_timeout``): a client that connects and sends no complete head gets 408 and is
  closed (uvicorn itself only times idle keep-alive connections out).
* :class:`Server`: uvicorn's server whose SIGTERM/SIGINT drains the engine (no new requests,
  running ones finish within ``drain_timeout``) and lets the process exit 0 instead of
  re-raising the signal (exit 143).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import time

import h11
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornH11Protocol

from .protocol import ApiError

LOG = logging.getLogger('autoglm_service.server')

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
METHODS = frozenset(('GET', 'POST', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'PATCH'))
OPEN_PATHS = frozenset(('/health', '/metrics'))


async def send_error(send, err: ApiError, close=False):
    """Answer ``err`` as a JSON response from ASGI middleware (no route involved)."""
    body = json.dumps(err.body()).encode()
    headers = [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    if close:
        headers.append((b'connection', b'close'))
    await send({'type': 'http.response.start', 'status': err.status, 'headers': headers})
    await send({'type': 'http.response.body', 'body': body})


# ---------------------------------------------------------------------- metrics
class Metrics:
    """The service's Prometheus series, in a registry of their own (one per app)."""

    def __init__(self, engine):
        self.registry = r = CollectorRegistry()
        self.duration = Histogram('request_duration_seconds', 'HTTP request duration (until the last byte)',
                                  ['method', 'endpoint', 'status'], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram('time_to_first_token_seconds', 'Time from request arrival to the first generated token',
                              ['endpoint'], buckets=LATENCY_BUCKETS, registry=r)
        # where the time to the first token goes (vLLM's request_queue/prefill_time series)
        self.encode = Histogram('prompt_encode_seconds', 'Chat template, tokens and image processing of a prompt',
                                ['endpoint'], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram('request_queue_seconds', 'Time from the engine queue to the start of prefill',
                                    ['endpoint'], buckets=LATENCY_BUCKETS, registry=r)
        self.prefill = Histogram('request_prefill_seconds',
                                 'Time from the start of prefill (vision tower included) to the first token',
                                 ['endpoint'], buckets=LATENCY_BUCKETS, registry=r)
        self.generated = Counter('generated_tokens', 'Tokens generated', registry=r)
        self.prompt = Counter('prompt_tokens', 'Prompt tokens processed', registry=r)
        self.running = Gauge('requests_running', 'Requests being generated', registry=r)
        self.waiting = Gauge('requests_waiting', 'Requests queued for a batch slot', registry=r)
        self.running.set_function(lambda: engine.num_running)
        self.waiting.set_function(lambda: engine.num_waiting)
        self.batch = Histogram('batch_size', 'Sequences decoded together per step', buckets=BATCH_BUCKETS,
                               registry=r)
        self.rejected = Counter('requests_rejected', 'Requests refused before generation', ['reason'], registry=r)
        self.ready = Gauge('model_ready', '1 when the model is loaded and warmed up', registry=r)
        self.ready.set_function(lambda: 1 if engine.ready else 0)


class MetricsMiddleware:
    """Times each request until its last body chunk (streams included)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._static = None

    def endpoint(self, scope):
        """The route template that matched (bounded), else ``unmatched``."""
        route = scope.get('route')
        if route is not None:
            return route.path
        if self._static is None and scope.get('app') is not None:
            self._static = frozenset(getattr(r, 'path', None) for r in scope['app'].routes)
        return scope['path'] if scope['path'] in (self._static or ()) else 'unmatched'

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {'status': 500, 'done': False}

        def observe():
            if state['done']:
                return
            state['done'] = True
            endpoint = self.endpoint(scope)
            method = scope['method'] if scope['method'] in METHODS else 'other'
            self.metrics.duration.labels(method, endpoint, str(state['status'])).observe(time.perf_counter() - start)

        async def wrapped_send(message):
            if message['type'] == 'http.response.start':
                state['status'] = message['status']
            await send(message)
            if message['type'] == 'http.response.body' and not message.get('more_body', False):
                observe()

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            observe()


# ---------------------------------------------------------------------- limits
class GuardMiddleware:
    """Request body size limit and body read timeout (see the module docstring)."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int, body_timeout: float):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    def too_large(self):
        return ApiError(413, 'request body is larger than the limit of %d bytes (--max-body-bytes)'
                        % self.max_body_bytes, code='body_too_large')

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get('headers') or ():
            if name == b'content-length':
                length = int(value) if value.isdigit() else None     # h11 refuses malformed ones
        if length is not None and length > self.max_body_bytes:
            await self.refuse(send, self.too_large())
            return
        # errors raised in guarded_receive reach the app's ApiError handler (it counts them)
        deadline = time.monotonic() + self.body_timeout
        state = {'seen': 0, 'body_done': scope['method'] in ('GET', 'HEAD') and not length, 'started': False}

        async def guarded_receive():
            if state['body_done']:
                return await receive()
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                raise ApiError(408, 'request body not received within %g s (--body-timeout)' % self.body_timeout,
                               code='body_timeout') from None
            if message['type'] == 'http.request':
                state['seen'] += len(message.get('body', b''))
                if state['seen'] > self.max_body_bytes:
                    raise self.too_large()
                if not message.get('more_body', False):
                    state['body_done'] = True
            else:
                state['body_done'] = True
            return message

        async def guarded_send(message):
            if message['type'] == 'http.response.start':
                state['started'] = True
                if not state['body_done']:
                    message = dict(message, headers=list(message.get('headers', [])) + [(b'connection', b'close')])
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except ApiError as err:         # raised outside a route (a route's errors are the app's handler's)
            if state['started']:
                raise
            await self.refuse(send, err)

    async def refuse(self, send, err: ApiError):
        self.metrics.rejected.labels(err.code).inc()
        await send_error(send, err, close=True)


class ApiKeyMiddleware:
    """Refuses requests without the API key (401) except on :data:`OPEN_PATHS`."""

    def __init__(self, app, metrics: Metrics, api_key: str):
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http' or scope['path'] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get('headers') or ())
        auth = headers.get(b'authorization', b'')
        given = auth[7:].strip() if auth[:7].lower() == b'bearer ' else headers.get(b'x-api-key', b'')
        if given and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        self.metrics.rejected.labels('unauthorized').inc()
        await send_error(send, ApiError(401, 'missing or invalid API key (send "Authorization: Bearer <key>")',
                                        'authentication_error', 'invalid_api_key',
                                        headers={'WWW-Authenticate': 'Bearer'}))


# ---------------------------------------------------------------------- uvicorn
_HEAD_TIMEOUT_BODY = b'request head not received in time'
REQUEST_TIMEOUT = (b'HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n'
                   b'connection: close\r\n\r\n%s' % (len(_HEAD_TIMEOUT_BODY), _HEAD_TIMEOUT_BODY))


class H11Protocol(_UvicornH11Protocol):
    """uvicorn's h11 protocol with a timeout on receiving each request head."""

    header_timeout = 10.0

    def connection_made(self, transport):
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def data_received(self, data):
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            # the next request on a keep-alive connection starts now
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        super().data_received(data)
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self):
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.our_state is h11.IDLE:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def protocol_class(header_timeout: float):
    return type('H11Protocol', (H11Protocol,), {'header_timeout': header_timeout})


class Server(uvicorn.Server):
    """uvicorn's server: a signal starts a graceful shutdown that drains the engine, then exit 0."""

    def __init__(self, config, engine=None, drain_timeout: float = 30.0):
        super().__init__(config)
        self.engine = engine
        self.drain_timeout = drain_timeout
        self.drained = None

    def handle_exit(self, sig, frame):
        # as uvicorn, minus recording the signal: uvicorn re-raises it after shutdown (exit 143)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets=None):
        if self.engine is None:             # an engine shared with others (tests): not ours to drain
            await super().shutdown(sockets)
            self.drained = True
            return
        loop = asyncio.get_running_loop()
        LOG.info('shutting down: no new requests; waiting up to %g s for %d running and %d queued',
                 self.drain_timeout, self.engine.num_running, self.engine.num_waiting)
        drain = loop.run_in_executor(None, self.engine.drain, self.drain_timeout)
        await super().shutdown(sockets)
        self.drained = await drain
        if not self.drained:
            LOG.error('drain timed out after %g s (%d running, %d queued)', self.drain_timeout,
                      self.engine.num_running, self.engine.num_waiting)


def uvicorn_config(app, server, log_level='info'):
    """uvicorn's Config from a :class:`~autoglm_service.types.ServerConfig`."""
    return uvicorn.Config(
        app, host=server.host, port=server.port, http=protocol_class(server.header_timeout),
        limit_concurrency=server.max_connections + 1,       # uvicorn counts the new connection too
        timeout_keep_alive=server.keep_alive_timeout, timeout_graceful_shutdown=server.drain_timeout,
        log_level=log_level, access_log=False, lifespan='on', ws='none')
