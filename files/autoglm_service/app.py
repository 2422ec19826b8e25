# -*- coding: utf-8 -*-
"""HTTP layer: FastAPI app over :class:`autoglm_service.engine.Engine`.

Endpoints: ``POST /predict``, ``POST /v1/chat/completions`` (OpenAI-compatible, SSE
streaming), ``GET /v1/models``, ``GET /health``, ``GET /metrics``.
Errors use the OpenAI shape ``{"error": {"message", "type", "code", "param"}}``.
``/health`` and ``/metrics`` need no API key; everything else does when one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .engine import Engine, EngineConfig, EngineError, GenRequest, QueueFullError

LOG = logging.getLogger('autoglm_service.app')

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OPEN_PATHS = ('/health', '/metrics')


class ApiError(Exception):
    def __init__(self, status, message, type_='invalid_request_error', code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self):
        return {'error': {'message': self.message, 'type': self.type, 'code': self.code, 'param': self.param}}

    def response(self):
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _from_engine_error(exc: EngineError):
    headers = {'Retry-After': '1'} if exc.status in (429, 503) else None
    types = {429: 'rate_limit_error', 503: 'server_error', 500: 'server_error'}
    type_ = types.get(exc.status, 'invalid_request_error')
    return ApiError(exc.status, exc.message, type_, exc.reason, headers=headers)


class Metrics:
    def __init__(self, engine: Engine):
        self.registry = r = CollectorRegistry()
        self.duration = Histogram('request_duration_seconds', 'HTTP request duration (until the last byte)',
                                  ['method', 'endpoint', 'status'], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram('time_to_first_token_seconds', 'Time from request arrival to the first generated token',
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
    """Pure ASGI: times each request until its last body chunk (streams included)."""

    def __init__(self, app, metrics_getter):
        self.app = app
        self.metrics_getter = metrics_getter

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {'code': 500}
        done = {'v': False}

        def observe():
            if done['v']:
                return
            done['v'] = True
            route = scope.get('route')
            endpoint = getattr(route, 'path', None) or 'unmatched'
            self.metrics_getter().duration.labels(scope['method'], endpoint, str(status['code'])).observe(
                time.perf_counter() - start)

        async def wrapped_send(message):
            if message['type'] == 'http.response.start':
                status['code'] = message['status']
            await send(message)
            if message['type'] == 'http.response.body' and not message.get('more_body', False):
                observe()

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            observe()


def _num(body, key, default, kind, lo=None, hi=None):
    val = body.get(key, default)
    if val is None:
        return default
    if isinstance(val, bool) or not isinstance(val, (int, float)) or (kind is int and not float(val).is_integer()):
        raise ApiError(400, '%s must be %s' % (key, 'an integer' if kind is int else 'a number'), param=key,
                       code='invalid_type')
    val = kind(val)
    if (lo is not None and val < lo) or (hi is not None and val > hi):
        raise ApiError(400, '%s must be between %s and %s (got %s)' % (key, lo, hi, val), param=key,
                       code='invalid_value')
    return val


def _stop_list(body):
    stop = body.get('stop')
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
        raise ApiError(400, 'stop must be a string or a list of at most 8 strings', param='stop')
    return [s for s in stop if s]


def _validate_messages(messages):
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", param='messages',
                       code='missing_messages' if messages is None else 'invalid_messages')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get('role'), str):
            raise ApiError(400, 'messages[%d] must be an object with a string role' % i, param='messages')
        if m['role'] not in ('system', 'user', 'assistant', 'tool', 'developer'):
            raise ApiError(400, 'messages[%d].role %r is not one of system, user, assistant, tool' % (i, m['role']),
                           param='messages')
        content = m.get('content')
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ApiError(400, 'messages[%d].content must be a string or a list of parts' % i, param='messages')
        for j, part in enumerate(content):
            kind = part.get('type') if isinstance(part, dict) else None
            if kind == 'text' and isinstance(part.get('text'), str):
                continue
            if kind == 'image_url' and part.get('image_url'):
                continue
            raise ApiError(400, 'messages[%d].content[%d] must be {"type": "text", "text": ...} or '
                                '{"type": "image_url", "image_url": {"url": ...}}' % (i, j), param='messages')


def create_app(engine: Optional[Engine] = None, config: Optional[EngineConfig] = None,
               api_key: Optional[str] = None, retry_after: int = 1, stop_engine_on_shutdown=True) -> FastAPI:
    """Build the app; starts the engine (model loading in a background thread) if needed."""
    if engine is None:
        engine = Engine(config)
    if engine._thread is None:
        engine.start(background=True)
    metrics = Metrics(engine)
    engine.step_hooks.append(metrics.batch.observe)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        engine.step_hooks.remove(metrics.batch.observe)
        if stop_engine_on_shutdown:
            engine.stop()

    app = FastAPI(title='AutoGLM model service', version='1.0.0', lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics_getter=lambda: app.state.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return exc.response()

    @app.middleware('http')
    async def _auth(request: Request, call_next):
        if api_key and request.url.path not in OPEN_PATHS:
            header = request.headers.get('authorization', '')
            given = header[7:].strip() if header.lower().startswith('bearer ') else request.headers.get('x-api-key', '')
            if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
                metrics.rejected.labels('unauthorized').inc()
                return ApiError(401, 'missing or invalid API key (send "Authorization: Bearer <key>")',
                                'authentication_error', 'invalid_api_key',
                                headers={'WWW-Authenticate': 'Bearer'}).response()
        return await call_next(request)

    def reject(err: ApiError, reason):
        metrics.rejected.labels(reason).inc()
        return err

    async def read_json(request):
        raw = await request.body()
        try:
            body = json.loads(raw or b'null')
        except (ValueError, UnicodeDecodeError) as exc:
            raise reject(ApiError(400, 'request body is not valid JSON: %s' % exc, code='invalid_json'),
                         'invalid_json')
        if not isinstance(body, dict):
            raise reject(ApiError(400, 'request body must be a JSON object', code='invalid_json'), 'invalid_json')
        return body

    def check_ready():
        if not engine.ready:
            raise reject(ApiError(503, 'model is %s; retry later' % engine.state, 'server_error', 'model_not_ready',
                                  headers={'Retry-After': str(retry_after)}), 'not_ready')

    def submit(req):
        try:
            engine.submit(req)
        except QueueFullError as exc:
            err = _from_engine_error(exc)
            err.headers['Retry-After'] = str(retry_after)
            raise reject(err, exc.reason)
        except EngineError as exc:
            raise reject(_from_engine_error(exc), exc.reason)

    def bridge():
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(ev):
            loop.call_soon_threadsafe(queue.put_nowait, ev)
        return queue, emit

    async def run_to_end(req, queue, endpoint, t0):
        """Collect events until done; returns the done event or raises ApiError."""
        while True:
            ev = await queue.get()
            if ev['type'] == 'delta' and req.first_token_at is not None and not getattr(req, '_ttft', False):
                req._ttft = True
                metrics.ttft.labels(endpoint).observe(time.monotonic() - t0)
            elif ev['type'] == 'done':
                if not getattr(req, '_ttft', False):
                    metrics.ttft.labels(endpoint).observe(time.monotonic() - t0)
                account(ev)
                return ev
            elif ev['type'] == 'error':
                raise ApiError(ev['status'], ev['message'], 'server_error' if ev['status'] >= 500 else
                               'invalid_request_error', 'generation_failed',
                               headers={'Retry-After': str(retry_after)} if ev['status'] == 503 else None)

    def account(done):
        metrics.prompt.inc(done['prompt_tokens'])
        metrics.generated.inc(done['completion_tokens'])

    # ------------------------------------------------------------------ routes
    @app.get('/health')
    async def health():
        if engine.ready:
            return {'status': 'ok', 'model': engine.model_name, 'backend': engine.backend}
        code = 500 if engine.state == 'failed' else 503
        body: Dict[str, Any] = {'status': engine.state}
        if engine.error:
            body['error'] = engine.error
        return JSONResponse(body, status_code=code, headers={'Retry-After': str(retry_after)})

    @app.get('/metrics')
    async def metrics_endpoint():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get('/v1/models')
    async def models():
        return {'object': 'list', 'data': [{'id': engine.model_name, 'object': 'model',
                                            'created': 0, 'owned_by': 'openautoglm'}]}

    @app.post('/predict')
    async def predict(request: Request):
        t0 = time.monotonic()
        body = await read_json(request)
        prompt = body.get('prompt', body.get('text'))
        if not isinstance(prompt, str) or not prompt:
            raise reject(ApiError(400, "field 'prompt' (or 'text') is required and must be a non-empty string",
                                  param='prompt', code='missing_prompt'), 'invalid_request')
        check_ready()
        params = sampling(body, 'max_new_tokens')
        ids = engine.encode_text(prompt)
        queue, emit = bridge()
        req = GenRequest(prompt_ids=ids, emit=emit, **params)
        submit(req)
        done = await run_to_end(req, queue, '/predict', t0)
        return {'generated_text': done['text'], 'model': engine.model_name,
                'finish_reason': done['finish_reason'], 'prompt_tokens': done['prompt_tokens'],
                'completion_tokens': done['completion_tokens']}

    def sampling(body, max_key):
        limit = engine.config.max_new_tokens
        max_new = body.get(max_key, body.get('max_completion_tokens', body.get('max_tokens')))
        if max_new is None:
            max_new = min(engine.config.default_max_new_tokens, limit)
        try:
            max_new = _num({max_key: max_new}, max_key, None, int, 1, limit)
            temperature = _num(body, 'temperature', 1.0, float, 0.0, 2.0)
            top_p = _num(body, 'top_p', 1.0, float, 0.0, 1.0)
            stop = _stop_list(body)
        except ApiError as err:
            raise reject(err, 'invalid_request')
        if top_p <= 0:
            temperature = 0.0
        return dict(max_new_tokens=max_new, temperature=temperature, top_p=top_p, stop=stop)

    @app.post('/v1/chat/completions')
    async def chat(request: Request):
        t0 = time.monotonic()
        body = await read_json(request)
        name = body.get('model')
        if name is not None and name not in (engine.model_name, 'default', ''):
            raise reject(ApiError(404, 'model %r not found; this server serves %r' % (name, engine.model_name),
                                  code='model_not_found', param='model'), 'model_not_found')
        try:
            _validate_messages(body.get('messages'))
        except ApiError as err:
            raise reject(err, 'invalid_request')
        if body.get('n', 1) not in (1, None):
            raise reject(ApiError(400, 'only n=1 is supported', param='n'), 'invalid_request')
        check_ready()
        params = sampling(body, 'max_tokens')
        stream = bool(body.get('stream', False))
        include_usage = bool((body.get('stream_options') or {}).get('include_usage'))
        try:
            ids, inputs = await asyncio.get_running_loop().run_in_executor(None, engine.encode_chat,
                                                                           body['messages'])
        except EngineError as exc:
            raise reject(_from_engine_error(exc), exc.reason)
        queue, emit = bridge()
        req = GenRequest(prompt_ids=ids, inputs=inputs, emit=emit, **params)
        submit(req)
        cid = 'chatcmpl-' + uuid.uuid4().hex[:24]
        created = int(time.time())
        if not stream:
            try:
                done = await run_to_end(req, queue, '/v1/chat/completions', t0)
            except asyncio.CancelledError:
                req.cancel()
                raise
            return {'id': cid, 'object': 'chat.completion', 'created': created, 'model': engine.model_name,
                    'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': done['text']},
                                 'finish_reason': done['finish_reason']}],
                    'usage': usage(done)}
        return StreamingResponse(sse(req, queue, cid, created, t0, include_usage), media_type='text/event-stream',
                                 headers={'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'})

    def usage(done):
        return {'prompt_tokens': done['prompt_tokens'], 'completion_tokens': done['completion_tokens'],
                'total_tokens': done['prompt_tokens'] + done['completion_tokens']}

    async def sse(req, queue, cid, created, t0, include_usage):
        def chunk(delta, finish=None, extra=None):
            obj = {'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': engine.model_name,
                   'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]}
            if extra:
                obj.update(extra)
            return 'data: %s\n\n' % json.dumps(obj, ensure_ascii=False)
        try:
            yield chunk({'role': 'assistant', 'content': ''})
            while True:
                ev = await queue.get()
                if ev['type'] == 'delta':
                    if not getattr(req, '_ttft', False):
                        req._ttft = True
                        metrics.ttft.labels('/v1/chat/completions').observe(time.monotonic() - t0)
                    yield chunk({'content': ev['text']})
                elif ev['type'] == 'done':
                    account(ev)
                    yield chunk({}, ev['finish_reason'], {'usage': usage(ev)})
                    if include_usage:
                        yield 'data: %s\n\n' % json.dumps({'id': cid, 'object': 'chat.completion.chunk',
                                                           'created': created, 'model': engine.model_name,
                                                           'choices': [], 'usage': usage(ev)})
                    break
                else:
                    err = ApiError(ev['status'], ev['message'], 'server_error', 'generation_failed')
                    yield 'data: %s\n\n' % json.dumps(err.body())
                    break
            yield 'data: [DONE]\n\n'
        finally:
            if not req.finished:
                req.cancel()

    return app
