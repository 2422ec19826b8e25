# -*- coding: utf-8 -*-
"""HTTP routes over :class:`autoglm_service.engine.Engine` (FastAPI).

Endpoints: ``POST /v1/chat/completions`` (OpenAI-compatible, SSE streaming), ``POST /predict``,
``GET /v1/models``, ``GET /health``, ``GET /metrics``, ``GET /openapi.json``.

The routes are thin: a body is parsed and validated from bytes by the pydantic models of
:mod:`autoglm_service.protocol` (off the event loop when large), tokenisation and image
decoding run in a worker thread (``engine.encode_chat``), and generation events come back
from the scheduler thread through ``loop.call_soon_threadsafe``. Every error, whichever layer
raises it (validation, engine, routing, middleware), is answered in OpenAI's shape
``{"error": {"message", "type", "code", "param"}}``. Limits, timeouts, authentication and
metrics are ASGI middleware (:mod:`autoglm_service.server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .protocol import (REQUEST_MODELS, ApiError, ChatCompletionRequest, ChatCompletionResponse, ErrorResponse,
                       Health, ModelList, PredictRequest, PredictResponse, parse_body)
from .server import ApiKeyMiddleware, GuardMiddleware, Metrics, MetricsMiddleware
from .types import EngineError, GenRequest, SamplingParams, ServerConfig

LOG = logging.getLogger('autoglm_service.app')

PARSE_INLINE_BYTES = 64 * 1024      # larger bodies are parsed in a worker thread
ERROR_TYPES = {401: 'authentication_error', 429: 'rate_limit_error'}
CHAT = '/v1/chat/completions'


def api_error(exc: EngineError, retry_after: int) -> ApiError:
    status = exc.status
    type_ = ERROR_TYPES.get(status) or ('server_error' if status >= 500 else 'invalid_request_error')
    headers = {'Retry-After': str(retry_after)} if status in (429, 503) else None
    return ApiError(status, exc.message, type_, exc.reason, getattr(exc, 'param', None), headers)


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class Service:
    """What the routes do, over one engine; the routes only call these methods."""

    def __init__(self, engine, server: ServerConfig, metrics: Metrics):
        self.engine = engine
        self.server = server
        self.metrics = metrics

    # ---------------------------------------------------------------- checks
    async def parse(self, request: Request, model):
        raw = await request.body()
        if len(raw) <= PARSE_INLINE_BYTES:
            return parse_body(model, raw)
        return await run_in_threadpool(parse_body, model, raw)

    def model_name(self, name: Optional[str]) -> str:
        served = self.engine.served_names
        if name in (None, '', 'default'):
            return served[0]
        if name not in served:
            raise ApiError(404, 'model %r not found; this server serves %s' % (name, ', '.join(map(repr, served))),
                           code='model_not_found', param='model')
        return name

    def check_ready(self):
        if not self.engine.ready:
            raise ApiError(503, 'model is %s; retry later' % self.engine.state, 'server_error', 'model_not_ready',
                           headers={'Retry-After': str(self.server.retry_after)})

    def sampling(self, body, max_keys) -> SamplingParams:
        cfg = self.engine.config
        max_new = next((getattr(body, k) for k in max_keys if getattr(body, k) is not None), None)
        if max_new is None:         # the upper bound (--max-new-tokens) is the engine's check
            max_new = min(cfg.default_max_new_tokens, cfg.max_new_tokens)
        stop = body.stop if isinstance(body.stop, list) else [body.stop] if body.stop else []
        return SamplingParams(
            max_new_tokens=max_new,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(body.top_k or 0, 0),
            frequency_penalty=body.frequency_penalty or 0.0,
            presence_penalty=body.presence_penalty or 0.0,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            seed=body.seed, stop=tuple(s for s in stop if s))

    # ---------------------------------------------------------------- generation
    def submit(self, prompt, params):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(ev):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:            # the loop is closed: nobody is waiting any more
                pass
        req = self.engine.submit(GenRequest(prompt=prompt, params=params, emit=emit))
        return req, queue

    async def events(self, req, queue, endpoint, t0, request: Optional[Request] = None):
        """The request's events until done/error; cancels it if the client goes away."""
        gone = asyncio.ensure_future(_disconnected(request)) if request is not None else None
        first = True
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                if gone is not None:
                    await asyncio.wait((get, gone), return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        get.cancel()
                        raise ClientGone()
                ev = await get
                if first and ev['type'] in ('delta', 'done'):
                    first = False
                    now = time.monotonic()
                    self.metrics.ttft.labels(endpoint).observe(now - t0)
                    if req.prefill_started_at:
                        self.metrics.queue_time.labels(endpoint).observe(
                            max(0.0, req.prefill_started_at - req.enqueued_at))
                        self.metrics.prefill.labels(endpoint).observe(now - req.prefill_started_at)
                if ev['type'] == 'done':
                    self.metrics.prompt.inc(ev['prompt_tokens'])
                    self.metrics.generated.inc(ev['completion_tokens'])
                yield ev
                if ev['type'] in ('done', 'error'):
                    return
        finally:
            if gone is not None:
                gone.cancel()
            if not req.finished:
                req.cancel()

    async def generate(self, req, queue, endpoint, t0, request):
        async for ev in self.events(req, queue, endpoint, t0, request):
            if ev['type'] == 'done':
                return ev
            if ev['type'] == 'error':
                raise self.generation_error(ev)

    def generation_error(self, ev):
        status = ev['status']
        return ApiError(status, ev['message'], 'server_error' if status >= 500 else 'invalid_request_error',
                        'generation_failed',
                        headers={'Retry-After': str(self.server.retry_after)} if status in (429, 503) else None)

    # ---------------------------------------------------------------- endpoints
    async def chat(self, request: Request):
        t0 = time.monotonic()
        body = await self.parse(request, ChatCompletionRequest)
        name = self.model_name(body.model)
        self.check_ready()
        params = self.sampling(body, ('max_tokens', 'max_completion_tokens'))
        messages = [{'role': 'system' if m.role == 'developer' else m.role,
                     'content': m.content if isinstance(m.content, str) else
                     [p.model_dump(exclude_none=True) for p in m.content]} for m in body.messages]
        t_enc = time.monotonic()
        prompt = await run_in_threadpool(self.engine.encode_chat, messages)
        self.metrics.encode.labels(CHAT).observe(time.monotonic() - t_enc)
        req, queue = self.submit(prompt, params)
        cid = 'chatcmpl-' + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(self.sse(req, queue, t0, cid, created, name, include_usage),
                                     media_type='text/event-stream',
                                     headers={'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'})
        try:
            done = await self.generate(req, queue, CHAT, t0, request)
        except ClientGone:
            return Response(status_code=499)
        return {'id': cid, 'object': 'chat.completion', 'created': created, 'model': name,
                'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': done['text']},
                             'finish_reason': done['finish_reason']}],
                'usage': _usage(done)}

    async def sse(self, req, queue, t0, cid, created, name, include_usage):
        def chunk(choices, **extra):
            obj = {'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': name,
                   'choices': choices}
            obj.update(extra)
            return 'data: %s\n\n' % json.dumps(obj, ensure_ascii=False)

        def choice(delta, finish=None):
            return [{'index': 0, 'delta': delta, 'finish_reason': finish}]

        yield chunk(choice({'role': 'assistant', 'content': ''}))
        async for ev in self.events(req, queue, CHAT, t0):
            if ev['type'] == 'delta':
                yield chunk(choice({'content': ev['text']}))
            elif ev['type'] == 'done':
                yield chunk(choice({}, ev['finish_reason']), usage=_usage(ev))
                if include_usage:
                    yield chunk([], usage=_usage(ev))
            else:
                yield 'data: %s\n\n' % json.dumps(self.generation_error(ev).body())
        yield 'data: [DONE]\n\n'

    async def predict(self, request: Request):
        t0 = time.monotonic()
        body = await self.parse(request, PredictRequest)
        text = body.prompt if body.prompt is not None else body.text
        if not text:
            raise ApiError(400, "'prompt': required, a non-empty string (or 'text')", code='missing_prompt',
                           param='prompt')
        self.check_ready()
        params = self.sampling(body, ('max_new_tokens', 'max_completion_tokens', 'max_tokens'))
        prompt = await run_in_threadpool(self.engine.encode_text, text)
        req, queue = self.submit(prompt, params)
        try:
            done = await self.generate(req, queue, '/predict', t0, request)
        except ClientGone:
            return Response(status_code=499)
        return {'generated_text': done['text'], 'model': self.engine.model_name,
                'finish_reason': done['finish_reason'], 'prompt_tokens': done['prompt_tokens'],
                'completion_tokens': done['completion_tokens']}

    def health(self):
        engine = self.engine
        if engine.ready:
            return {'status': 'ok', 'model': engine.model_name, 'backend': engine.backend_name}
        body = {'status': engine.state}
        if engine.error:
            body['error'] = engine.error
        return JSONResponse(body, status_code=500 if engine.state == 'failed' else 503,
                            headers={'Retry-After': str(self.server.retry_after)})


def _usage(done):
    return {'prompt_tokens': done['prompt_tokens'], 'completion_tokens': done['completion_tokens'],
            'total_tokens': done['prompt_tokens'] + done['completion_tokens']}


async def _disconnected(request: Request):
    while (await request.receive())['type'] != 'http.disconnect':
        pass


def _body(name):
    return {'requestBody': {'required': True, 'content': {
        'application/json': {'schema': {'$ref': '#/components/schemas/%s' % name}}}}}


ERRORS = {s: {'model': ErrorResponse} for s in (400, 401, 404, 408, 413, 429, 503)}


def create_app(engine=None, config=None, server: Optional[ServerConfig] = None, api_key: Optional[str] = None,
               stop_engine_on_shutdown=True) -> FastAPI:
    """The app over ``engine`` (or a new Engine of ``config``, started loading in the background)."""
    if engine is None:
        from .engine import Engine
        engine = Engine(config)
    if not getattr(engine, 'started', True):
        engine.start(background=True)       # loads in the background; /health is 503 until ready
    server = server or ServerConfig()
    metrics = Metrics(engine)
    svc = Service(engine, server, metrics)

    engine.add_step_observer(metrics.batch.observe)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            engine.remove_step_observer(metrics.batch.observe)
            if stop_engine_on_shutdown:
                await run_in_threadpool(engine.stop)

    app = FastAPI(title='AutoGLM model service', version='1.0.0', lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.engine, app.state.metrics, app.state.service = engine, metrics, svc
    # add_middleware wraps: the last added runs first
    if api_key:
        app.add_middleware(ApiKeyMiddleware, metrics=metrics, api_key=api_key)
    app.add_middleware(GuardMiddleware, metrics=metrics, max_body_bytes=server.max_body_bytes,
                       body_timeout=server.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        if exc.code != 'generation_failed':
            metrics.rejected.labels(exc.code or 'invalid_request').inc()
        return error_response(exc)

    @app.exception_handler(EngineError)
    async def _engine_error(_request, exc: EngineError):
        metrics.rejected.labels(exc.reason).inc()
        return error_response(api_error(exc, server.retry_after))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException):
        code = {404: 'not_found', 405: 'method_not_allowed'}.get(exc.status_code, 'http_error')
        return error_response(ApiError(exc.status_code, str(exc.detail), code=code, headers=exc.headers))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        param = '.'.join(str(p) for p in first.get('loc', ()) if p not in ('body', 'query', 'path'))
        metrics.rejected.labels('invalid_request').inc()
        return error_response(ApiError(400, "'%s': %s" % (param, first.get('msg', 'invalid')),
                                       code='invalid_request', param=param or None))

    @app.exception_handler(Exception)
    async def _internal_error(_request, exc: Exception):
        LOG.exception('internal error')
        return error_response(ApiError(500, 'internal error: %s' % type(exc).__name__, 'server_error',
                                       'internal_error'))

    @app.get('/health', response_model=Health, response_model_exclude_none=True,
             responses={500: {'model': Health}, 503: {'model': Health}})
    async def health():
        return svc.health()

    @app.get('/metrics', response_class=Response)
    async def metrics_endpoint():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get('/v1/models', response_model=ModelList, responses={401: ERRORS[401]})
    async def models():
        return {'object': 'list', 'data': [{'id': n, 'object': 'model', 'created': 0, 'owned_by': 'openautoglm'}
                                           for n in engine.served_names]}

    @app.post(CHAT, response_model=ChatCompletionResponse, responses=ERRORS,
              openapi_extra=_body('ChatCompletionRequest'))
    async def chat_completions(request: Request):
        return await svc.chat(request)

    @app.post('/predict', response_model=PredictResponse, responses=ERRORS, openapi_extra=_body('PredictRequest'))
    async def predict(request: Request):
        return await svc.predict(request)

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault('components', {}).setdefault('schemas', {})
            for name, model in REQUEST_MODELS.items():
                js = model.model_json_schema(ref_template='#/components/schemas/{model}')
                components.update(js.pop('$defs', {}))
                components[name] = js
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi
    return app
