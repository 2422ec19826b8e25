# -*- coding: utf-8 -*-
"""CLI/env parsing and the tiny model builder."""

import json
import os

import pytest

from autoglm_service.__main__ import engine_config, env_name, parse_args, read_api_key


def test_flags_from_env_and_cli_wins():
    env = {'AUTOGLM_MODEL_PATH': '/m', 'AUTOGLM_MAX_BATCH_SIZE': '16', 'AUTOGLM_PORT': '9000',
           'AUTOGLM_DTYPE': 'float16'}
    a = parse_args(['--port', '8081'], environ=env)
    assert (a.model_path, a.max_batch_size, a.port, a.dtype, a.host) == ('/m', 16, 8081, 'float16', '0.0.0.0')
    cfg = engine_config(a)
    assert cfg.max_batch_size == 16 and cfg.dtype == 'float16'
    assert env_name('--max-prompt-tokens') == 'AUTOGLM_MAX_PROMPT_TOKENS'


def test_model_path_required():
    with pytest.raises(SystemExit):
        parse_args([], environ={})


def test_bad_int_env():
    with pytest.raises(SystemExit):
        parse_args([], environ={'AUTOGLM_MODEL_PATH': '/m', 'AUTOGLM_MAX_QUEUE': 'many'})


def test_api_key_from_file_or_env(tmp_path):
    key = tmp_path / 'key'
    key.write_text('abc123\n')
    a = parse_args(['--model-path', '/m', '--api-key-file', str(key)], environ={})
    assert read_api_key(a, environ={'AUTOGLM_API_KEY': 'other'}) == 'abc123'
    b = parse_args(['--model-path', '/m'], environ={})
    assert read_api_key(b, environ={'AUTOGLM_API_KEY': 'other'}) == 'other'
    assert read_api_key(b, environ={}) is None


def test_tiny_model_dir(tiny_model_dir):
    from transformers import AutoConfig, AutoTokenizer
    names = set(os.listdir(tiny_model_dir))
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'} <= names
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert cfg.vocab_size == len(tok) and cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    assert tok.eos_token == '</s>' and tok.pad_token == '<pad>'
    text = tok.apply_chat_template([{'role': 'user', 'content': 'hi'}], tokenize=False, add_generation_prompt=True)
    assert text == '<|user|>hi<|assistant|>'
    ids = tok('Any text, even unseen: 你好')['input_ids']
    assert tok.unk_token_id not in ids          # byte-level: nothing is unknown
    with open(os.path.join(tiny_model_dir, 'config.json')) as fh:
        assert json.load(fh)['model_type'] == 'llama'
