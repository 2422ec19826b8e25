# -*- coding: utf-8 -*-
"""Load a model directory's multimodal processor, with or without torchvision.

transformers 5.x builds GLM-4.1V's ``Glm4vProcessor`` from three parts: the image processor (a
PIL backend exists, ``Glm4vImageProcessorPil``), the tokenizer, and the video processor, which
exists only as a torchvision backend. Without torchvision ``AutoProcessor.from_pretrained``
raises ImportError for every GLM-4.1V checkout, images or not. ``load_processor`` gives the
same processor minus its video part then (images and text work the same; videos are refused
with a message), and defers to AutoProcessor for everything else.
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)

GLM4V_TYPES = ('glm4v',)
TORCHVISION_HINT = ('videos need the torchvision video processor: install torchvision built for '
                    'this torch (e.g. torch==2.14.1 with torchvision==0.29.1)')


def model_type(path):
    """``model_type`` from ``path``/config.json, or None when there is none."""
    try:
        with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
            return json.load(f).get('model_type')
    except (OSError, ValueError):
        return None


def _torchvision_available():
    from transformers.utils import is_torchvision_available
    return is_torchvision_available()


def load_processor(path, min_pixels=None, max_pixels=None, **kwargs):
    """The processor for the model at ``path``.

    GLM-4.1V: ``Glm4vProcessor`` through AutoProcessor when torchvision imports, else
    ``Glm4vImageTextProcessor`` (same class minus the video processor). Others: AutoProcessor.
    ``min_pixels`` / ``max_pixels`` override the image processor's pixel bounds (GLM-4.1V and
    the Qwen2-VL family: ``size = {shortest_edge: min_pixels, longest_edge: max_pixels}``).
    """
    from transformers import AutoProcessor
    glm4v = model_type(path) in GLM4V_TYPES
    processor = None
    if not glm4v or _torchvision_available():
        try:
            processor = AutoProcessor.from_pretrained(path, **kwargs)
        except ImportError as exc:
            if not glm4v:
                raise
            log.warning('AutoProcessor failed for %s (%s); using the image-and-text processor', path, exc)
    if processor is None:
        processor = load_glm4v_image_text_processor(path, **kwargs)
    if min_pixels is not None or max_pixels is not None:
        set_pixel_bounds(processor.image_processor, min_pixels, max_pixels)
    return processor


def set_pixel_bounds(image_processor, min_pixels=None, max_pixels=None):
    """Set ``size.shortest_edge`` / ``size.longest_edge`` (the pixel bounds) of a dynamic-resolution
    image processor; an error names the bound that is wrong."""
    size = dict(getattr(image_processor, 'size', None) or {})
    size = {k: v for k, v in size.items() if v is not None}
    if min_pixels is not None:
        size['shortest_edge'] = int(min_pixels)
    if max_pixels is not None:
        size['longest_edge'] = int(max_pixels)
    for key, name in (('shortest_edge', 'min_pixels'), ('longest_edge', 'max_pixels')):
        if size.get(key) is not None and size[key] <= 0:
            raise ValueError('%s must be a positive number of pixels, got %r' % (name, size[key]))
    if size.get('shortest_edge') and size.get('longest_edge') and size['shortest_edge'] > size['longest_edge']:
        raise ValueError('min_pixels (%d) must not exceed max_pixels (%d)'
                         % (size['shortest_edge'], size['longest_edge']))
    image_processor.size = type(image_processor.size)(**size) if not isinstance(
        image_processor.size, dict) else size
    return image_processor


def _read_chat_template(path):
    jinja = os.path.join(path, 'chat_template.jinja')
    if os.path.exists(jinja):
        with open(jinja, encoding='utf-8') as f:
            return f.read()
    legacy = os.path.join(path, 'chat_template.json')
    if os.path.exists(legacy):
        with open(legacy, encoding='utf-8') as f:
            return json.load(f).get('chat_template')
    return None


def load_glm4v_image_text_processor(path, **kwargs):
    """GLM-4.1V's processor without the video processor (no torchvision needed)."""
    from transformers import AutoImageProcessor, AutoTokenizer
    image_processor = AutoImageProcessor.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    chat_template = _read_chat_template(path) or getattr(tokenizer, 'chat_template', None)
    return glm4v_image_text_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                              chat_template=chat_template)


_CLASS = None


def glm4v_image_text_processor_class():
    """``Glm4vImageTextProcessor``: Glm4vProcessor whose only sub-processors are image + tokenizer.

    ProcessorMixin takes its sub-processors from the ``__init__`` signature, so the subclass
    leaves ``video_processor`` out of it; the rest (placeholder expansion from image_grid_thw,
    mm_token_type_ids, chat template) is Glm4vProcessor's own code.
    """
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from transformers import Glm4vProcessor
    from transformers.processing_utils import ProcessorMixin

    class Glm4vImageTextProcessor(Glm4vProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # Glm4vProcessor.__init__, minus the video processor argument.
            self.image_token = getattr(tokenizer, 'image_token', None) or '<|image|>'
            self.video_token = getattr(tokenizer, 'video_token', None) or '<|video|>'
            self.image_token_id = (getattr(tokenizer, 'image_token_id', None)
                                   or tokenizer.convert_tokens_to_ids(self.image_token))
            self.video_token_id = (getattr(tokenizer, 'video_token_id', None)
                                   or tokenizer.convert_tokens_to_ids(self.video_token))
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
            self.video_start_id = tokenizer.convert_tokens_to_ids('<|begin_of_video|>')
            self.video_end_id = tokenizer.convert_tokens_to_ids('<|end_of_video|>')

        def __call__(self, images=None, text=None, videos=None, **kwargs):
            if videos is not None:
                raise ValueError('videos: not supported by this processor; ' + TORCHVISION_HINT)
            return super().__call__(images=images, text=text, **kwargs)

    _CLASS = Glm4vImageTextProcessor
    return _CLASS
