# -*- coding: utf-8 -*-
"""Chat messages -> :class:`Prompt` (token ids, and processor outputs for vision-language models).

Runs on a worker thread (the app never calls it on the event loop): tokenisation, base64
decoding and image preprocessing are CPU work. Messages arrive validated (OpenAI shape):
``{"role": str, "content": str | [{"type": "text", "text": str} |
{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}``.

String content stays a string (as vLLM's ``--chat-template-content-format string``): the
model's own chat template renders it, the way the model was trained. Only list content is
passed to a processor template as parts.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Dict, List, Tuple

from .types import EngineConfig, EngineError, Prompt, PromptTooLongError


class ImageError(EngineError):
    reason = 'invalid_image'


def decode_data_url(url: Any, max_bytes: int, max_pixels: int):
    """A PIL RGB image from a ``data:image/...;base64,`` URL, within the byte and pixel limits."""
    if not isinstance(url, str) or not url.startswith('data:') or ',' not in url:
        raise ImageError('image_url must be a data: URL with base64 content (remote URLs are not fetched)',
                         param='image_url')
    header, payload = url.split(',', 1)
    if ';base64' not in header:
        raise ImageError('image_url data: URL must be base64-encoded', param='image_url')
    if len(payload) > (max_bytes * 4) // 3 + 4:
        raise ImageError('image is larger than %d bytes (max_image_bytes)' % max_bytes, param='image_url')
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageError('image_url is not valid base64: %s' % exc, param='image_url')
    try:
        from PIL import Image
    except ImportError:
        raise EngineError('the server has no Pillow installed to decode images', status=500)
    try:
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the client's bad image
        raise ImageError('image_url could not be decoded as an image: %s' % exc, param='image_url')
    if w * h > max_pixels:
        raise ImageError('image is %dx%d = %d pixels; the limit is %d (max_image_pixels)'
                         % (w, h, w * h, max_pixels), param='image_url')
    try:
        img.load()
        return img.convert('RGB')
    except Exception as exc:  # noqa: BLE001
        raise ImageError('image_url could not be decoded as an image: %s' % exc, param='image_url')


def _text_of(content) -> str:
    if content is None or isinstance(content, str):
        return content or ''
    return ''.join(p.get('text', '') for p in content if p.get('type') == 'text')


def _image_url(part) -> Any:
    url = part.get('image_url')
    return url.get('url') if isinstance(url, dict) else url


class PromptEncoder:
    """Encodes chats and plain text for one loaded model (tokenizer, optional processor)."""

    def __init__(self, config: EngineConfig, tokenizer, processor=None, image_device=None):
        self.config = config
        self.tokenizer = tokenizer
        self.processor = processor
        # Resize, normalise and cut patches on the GPU where the image processor is torchvision's
        # (transformers' default when torchvision imports; the PIL one runs on the CPU only): on a
        # 1080x2400 screenshot 27 ms of CPU become ~6 ms, and the pixel values (58 MB of float32)
        # are not copied from pageable memory before the vision tower (another 10 ms).
        ip = getattr(processor, 'image_processor', None)
        self.image_device = image_device if ip is not None and 'Pil' not in type(ip).__name__ else None
        # No token stands for more bytes than the longest vocabulary entry (x2 for safety): a text
        # of more than limit x that many bytes is too long before it is tokenised at all.
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, 'get_vocab') else {}
        self.max_token_bytes = 2 * max((len(t.encode('utf-8', 'replace')) for t in vocab), default=64)

    def _refuse_long_text(self, texts):
        n_bytes = sum(len(t.encode('utf-8', 'replace')) for t in texts if t)
        at_least = n_bytes // self.max_token_bytes
        if at_least > self.config.max_model_len - 1:
            raise PromptTooLongError('prompt text is %d bytes, at least %d tokens; the limit is %d tokens '
                                     '(max_model_len %d minus at least one generated token)'
                                     % (n_bytes, at_least, self.config.max_model_len - 1, self.config.max_model_len))

    # ------------------------------------------------------------------ public
    def chat(self, messages: List[Dict[str, Any]]) -> Prompt:
        n_images = sum(1 for m in messages if isinstance(m.get('content'), list)
                       for p in m['content'] if p.get('type') == 'image_url')
        if n_images and self.processor is None:
            raise EngineError('this model does not accept images (the request has %d)' % n_images,
                              reason='images_not_supported', param='messages')
        if n_images > self.config.max_images:
            raise EngineError('the request has %d images; the limit is %d (max_images)'
                              % (n_images, self.config.max_images), reason='too_many_images', param='messages')
        self._refuse_long_text([_text_of(m.get('content')) for m in messages])
        if self.processor is not None:
            prompt = self._with_processor(messages)
        else:
            prompt = Prompt(ids=self._with_tokenizer(messages))
        return self.check_length(prompt)

    def text(self, text: str) -> Prompt:
        self._refuse_long_text([text])
        return self.check_length(Prompt(ids=self.tokenizer(text, add_special_tokens=True)['input_ids']))

    def check_length(self, prompt: Prompt) -> Prompt:
        limit = self.config.max_model_len - 1
        if len(prompt.ids) > limit:
            raise PromptTooLongError('prompt is %d tokens; the limit is %d tokens (max_model_len %d minus at least '
                                     'one generated token)' % (len(prompt.ids), limit, self.config.max_model_len))
        if not prompt.ids:
            raise EngineError('prompt is empty', param='messages')
        return prompt

    # ------------------------------------------------------------------ encoders
    def _with_tokenizer(self, messages) -> List[int]:
        flat = [{'role': m['role'], 'content': _text_of(m.get('content'))} for m in messages]
        if getattr(self.tokenizer, 'chat_template', None):
            text = self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)
        else:
            text = ''.join('%s: %s\n' % (m['role'], m['content']) for m in flat) + 'assistant: '
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _with_processor(self, messages) -> Prompt:
        conv, images = self._conversation(messages)
        text = self.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        kwargs = {'images_kwargs': {'device': self.image_device}} if images and self.image_device else {}
        inputs = self.processor(text=[text], images=images or None, return_tensors='pt', **kwargs)
        ids = inputs['input_ids'][0].tolist()
        extra = {k: v for k, v in dict(inputs).items() if k not in ('input_ids', 'attention_mask')}
        return Prompt(ids=ids, inputs=extra if images else None, images=len(images))

    def _conversation(self, messages) -> Tuple[list, list]:
        cfg = self.config
        conv, images = [], []
        for m in messages:
            content = m.get('content')
            if not isinstance(content, list):
                conv.append({'role': m['role'], 'content': content or ''})
                continue
            parts = []
            for p in content:
                if p.get('type') == 'image_url':
                    images.append(decode_data_url(_image_url(p), cfg.max_image_bytes, cfg.max_image_pixels))
                    parts.append({'type': 'image'})
                else:
                    parts.append({'type': 'text', 'text': p.get('text', '')})
            conv.append({'role': m['role'], 'content': parts})
        return conv, images
