# -*- coding: utf-8 -*-
"""The HTTP protocol: pydantic models of every request and response body, and their errors.

Requests use OpenAI's field names and types (``/v1/chat/completions``) and are validated in
strict mode: a wrong type is refused (``"stream": "no"`` is not true, ``"max_tokens": "8"`` is
not 8), numbers must be finite (``NaN``, ``Infinity``, ``1e400`` are refused), integers are
bounded (``1`` followed by 400 zeros is a 400, not an ``OverflowError``), and fields this
server does not know are ignored, as OpenAI does. Bodies are parsed from bytes by
pydantic's JSON parser (:func:`parse_body`), whose nesting limit turns a 50,000-deep array
into a 400 instead of a ``RecursionError``.

A validation error becomes one :class:`ApiError` (:func:`api_error_from_validation`) in
OpenAI's shape ``{"error": {"message", "type", "code", "param"}}``, ``param`` naming the
field as a client writes it (``messages[0].content``) and the message saying what is
allowed (each field's ``description``, which the OpenAPI schema shows too).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, Type, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

ROLES = ('system', 'user', 'assistant', 'tool', 'developer')
MAX_STOP = 8
INT32 = 2 ** 31 - 1
INT64 = 2 ** 63 - 1


class ApiError(Exception):
    """An error answered in OpenAI's shape; ``code`` is also the ``requests_rejected`` reason."""

    def __init__(self, status, message, type_='invalid_request_error', code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = dict(headers or {})

    def body(self):
        return {'error': {'message': self.message, 'type': self.type, 'code': self.code, 'param': self.param}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra='ignore')


def _num(desc, lo=None, hi=None, gt=None):
    """An optional finite number with bounds; ``desc`` (what is allowed) goes into errors and the schema."""
    return Annotated[Optional[Annotated[float, Field(ge=lo, le=hi, gt=gt, allow_inf_nan=False)]],
                     Field(description=desc)]


def _int(desc, lo, hi):
    return Annotated[Optional[Annotated[int, Field(ge=lo, le=hi)]], Field(description=desc)]


# ------------------------------------------------------------------ requests
class TextPart(_Strict):
    type: Literal['text']
    text: str = Field(description='a string')


class ImageURL(_Strict):
    url: str = Field(description='a data: URL (data:image/png;base64,...)')
    detail: Optional[Literal['auto', 'low', 'high']] = None


class ImagePart(_Strict):
    type: Literal['image_url']
    image_url: ImageURL = Field(description='an object {"url": "data:image/...;base64,..."}')


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator='type')]
CONTENT = ('a string or a non-empty list of parts {"type": "text", "text": ...} / '
           '{"type": "image_url", "image_url": {"url": ...}}')


class ChatMessage(_Strict):
    role: Literal[ROLES] = Field(description='one of ' + ', '.join(ROLES))
    # null content is OpenAI's for assistant messages with tool_calls; this server has no tools
    content: Union[str, Annotated[List[ContentPart], Field(min_length=1)]] = Field(description=CONTENT)
    name: Optional[str] = Field(None, description='a string')


class StreamOptions(_Strict):
    include_usage: Optional[StrictBool] = Field(None, description='true or false')


# field types: what is allowed is the description (errors and the schema show it)
TokenCount = _int('an integer from 1 to the server limit (--max-new-tokens)', 1, INT32)
Temperature = _num('a number from 0 to 2 (0: greedy)', 0, 2)
TopP = _num('a number above 0 and at most 1', hi=1, gt=0)
TopK = _int('an integer >= -1 (-1 or 0: off)', -1, INT32)
Penalty = _num('a number from -2 to 2', -2, 2)
RepetitionPenalty = _num('a number above 0 and at most 2 (1: off)', hi=2, gt=0)
Seed = _int('a 64-bit signed integer', -INT64 - 1, INT64)
N = _int('only 1', 1, 1)


class SamplingFields(_Strict):
    """Decoding parameters shared by ``/v1/chat/completions`` and ``/predict``."""

    max_tokens: TokenCount = None
    max_completion_tokens: TokenCount = None
    temperature: Temperature = None
    top_p: TopP = None
    top_k: TopK = None
    frequency_penalty: Penalty = None
    presence_penalty: Penalty = None
    repetition_penalty: RepetitionPenalty = None
    seed: Seed = None
    stop: Optional[Union[str, Annotated[List[str], Field(max_length=MAX_STOP)]]] = Field(
        None, description='a string or a list of at most %d strings' % MAX_STOP)


class ChatCompletionRequest(SamplingFields):
    model: Optional[str] = Field(None, description='a name from /v1/models (or "default")')
    messages: Annotated[List[ChatMessage], Field(min_length=1)] = Field(
        description='a non-empty list of {"role", "content"} objects')
    stream: StrictBool = Field(False, description='true or false')
    stream_options: Optional[StreamOptions] = Field(None, description='an object {"include_usage": true|false}')
    n: N = None


class PredictRequest(SamplingFields):
    prompt: Optional[str] = Field(None, description='a non-empty string')
    text: Optional[str] = Field(None, description='a non-empty string (the same as prompt)')
    max_new_tokens: TokenCount = None


# ------------------------------------------------------------------ responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal['assistant'] = 'assistant'
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal['stop', 'length']


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal['chat.completion'] = 'chat.completion'
    created: int
    model: str
    choices: List[Choice]
    usage: Usage


class PredictResponse(BaseModel):
    generated_text: str
    model: str
    finish_reason: Literal['stop', 'length']
    prompt_tokens: int
    completion_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal['model'] = 'model'
    created: int = 0
    owned_by: str = 'openautoglm'


class ModelList(BaseModel):
    object: Literal['list'] = 'list'
    data: List[ModelCard]


class Health(BaseModel):
    status: str = Field(description='ok, or the engine state (loading, warming, failed, stopped)')
    model: Optional[str] = None
    backend: Optional[str] = None
    error: Optional[str] = None


class ErrorBody(BaseModel):
    message: str
    type: str
    code: Optional[str] = None
    param: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# ------------------------------------------------------------------ parsing and errors
def parse_body(model: Type[BaseModel], raw: bytes) -> BaseModel:
    """Validate raw JSON bytes; raises :class:`ApiError` (400) naming the first bad field."""
    try:
        return model.model_validate_json(raw or b'null')
    except ValidationError as exc:
        raise api_error_from_validation(exc, model) from None


def api_error_from_validation(exc: ValidationError, model: Optional[Type[BaseModel]] = None) -> ApiError:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return ApiError(400, 'invalid request', code='invalid_request')
    first = errors[0]
    if first['type'] == 'json_invalid':
        return ApiError(400, 'request body is not valid JSON: %s' % first.get('ctx', {}).get('error', first['msg']),
                        code='invalid_json')
    if not first['loc'] and first['type'] in ('model_type', 'model_attributes_type', 'dict_type'):
        return ApiError(400, 'request body must be a JSON object', code='invalid_json')
    described = [(field_path(e['loc'], model), e) for e in errors]
    # the most specific error; of a union's branches the deepest one says the most
    (param, desc), err = max(described, key=lambda d: len(d[0][0]))
    msg = "'%s': %s" % (param or 'body', err['msg'])
    if desc:
        msg += ' (allowed: %s)' % desc
    return ApiError(400, msg, code='invalid_request', param=param or None)


def field_path(loc: Tuple[Any, ...], model: Optional[Type[BaseModel]]) -> Tuple[str, str]:
    """``('messages', 0, 'content', 'list[...]', 0)`` -> ``('messages[0].content[0]', description)``.

    Walks the model's fields along ``loc``, dropping the entries pydantic adds for union
    branches and discriminator tags; the description is that of the last field reached.
    """
    out, desc = '', ''
    models = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int):
            out += '[%d]' % part
            continue
        hit = None
        for m in models:
            f = m.model_fields.get(part)
            if f is not None:
                hit = f
                break
        if hit is None:
            tagged = [m for m in models if _tag_of(m) == part]
            if tagged:
                models = tagged
            continue
        out += ('.' if out else '') + part
        desc = hit.description or ''
        models = _models_in(hit.annotation)
    return out, desc


def _tag_of(m):
    f = m.model_fields.get('type')
    args = typing.get_args(f.annotation) if f is not None else ()
    return args[0] if len(args) == 1 else None


def _models_in(annotation) -> List[Type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: List[Type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for m in _models_in(arg):
            if m not in found:
                found.append(m)
    return found


REQUEST_MODELS: Dict[str, Type[BaseModel]] = {
    'ChatCompletionRequest': ChatCompletionRequest,
    'PredictRequest': PredictRequest,
}
