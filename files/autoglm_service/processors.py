# -*- coding: utf-8 -*-
"""Loading a model's processor (vision-language models)."""

from __future__ import annotations


def load_processor(path):
    from transformers import AutoProcessor
    return AutoProcessor.from_pretrained(path)
