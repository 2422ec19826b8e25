# -*- coding: utf-8 -*-
"""Settings: flags and AUTOGLM_* variables derived from the dataclasses, one-line CLI errors, docs
and role templates checked against the declarations; the tiny model builder.

Pure Python except test_tiny_model_dir: runs in the Ansible venv too (`make units`).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import FILES
from autoglm_service import __main__ as cli
from autoglm_service.types import ConfigError, EngineConfig, ServerConfig

ROOT = os.path.dirname(FILES)


def test_every_field_is_a_flag_and_a_variable():
    names = {s.name for s in cli.settings()}
    assert names == set(EngineConfig.__dataclass_fields__) | set(ServerConfig.__dataclass_fields__)
    assert cli.settings()[0].flag == '--model-path'
    by_name = {s.name: s for s in cli.settings()}
    assert by_name['max_batch_size'].env == 'AUTOGLM_MAX_BATCH_SIZE'
    assert by_name['max_batch_size'].flag == '--max-batch-size'


def test_flags_from_env_and_cli_wins():
    env = {'AUTOGLM_MODEL_PATH': '/m', 'AUTOGLM_MAX_BATCH_SIZE': '16', 'AUTOGLM_PORT': '9000',
           'AUTOGLM_DTYPE': 'float16', 'AUTOGLM_BODY_TIMEOUT': '2.5', 'AUTOGLM_WARMUP': 'false'}
    engine, server, _args = cli.parse_args(['--port', '8081'], environ=env)
    assert (engine.model_path, engine.max_batch_size, engine.dtype, engine.warmup) == ('/m', 16, 'float16', False)
    assert (server.port, server.host, server.body_timeout) == (8081, '0.0.0.0', 2.5)
    engine = cli.parse_args(['--warmup'], environ=env)[0]
    assert engine.warmup is True
    engine, server, _args = cli.parse_args(['--model-path', '/x'], environ={})
    assert (engine.max_batch_size, server.port) == (EngineConfig().max_batch_size, ServerConfig().port)


@pytest.mark.parametrize('argv, env, needle', [
    ([], {}, '--model-path: required'),
    (['--model-path', '/m', '--port', '70000'], {}, '--port: 70000 is above the maximum 65535'),
    (['--model-path', '/m', '--dtype', 'int3'], {}, "--dtype: 'int3' is not one of auto"),
    (['--model-path', '/m', '--max-batch-size', '0'], {}, '--max-batch-size: 0 is below the minimum 1'),
    (['--model-path', '/m', '--body-timeout', 'nan'], {}, '--body-timeout: must be a finite number'),
    (['--model-path', '/m'], {'AUTOGLM_MAX_QUEUE': 'many'}, "AUTOGLM_MAX_QUEUE='many' is not an integer"),
    (['--model-path', '/m'], {'AUTOGLM_WARMUP': 'maybe'}, "AUTOGLM_WARMUP='maybe' is not a boolean"),
    (['--model-path', '/m'], {'AUTOGLM_PORT': '0'}, '--port: 0 is below the minimum 1'),
])
def test_bad_settings(argv, env, needle):
    with pytest.raises(ConfigError) as exc:
        cli.parse_args(argv, environ=env)
    assert needle in str(exc.value)


def test_api_key_from_file_or_env(tmp_path):
    key = tmp_path / 'key'
    key.write_text('abc123\n')
    server = cli.parse_args(['--model-path', '/m', '--api-key-file', str(key)], environ={})[1]
    assert cli.read_api_key(server, environ={'AUTOGLM_API_KEY': 'other'}) == 'abc123'
    server = cli.parse_args(['--model-path', '/m'], environ={})[1]
    assert cli.read_api_key(server, environ={'AUTOGLM_API_KEY': 'other'}) == 'other'
    assert cli.read_api_key(server, environ={}) is None


def run_cli(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith('AUTOGLM_')}
    environ.update(env or {}, PYTHONPATH=FILES)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, '-m', 'autoglm_service'] + list(args), env=environ,
                          capture_output=True, text=True, timeout=60, check=False)
    return proc, time.monotonic() - t0


@pytest.fixture
def model_dir(tmp_path):
    """A directory that passes the start-up check (the process must exit before loading it)."""
    path = tmp_path / 'model'
    path.mkdir()
    (path / 'config.json').write_text(json.dumps({'model_type': 'llama'}))
    return str(path)


def test_cli_errors_are_one_line_exit_2_before_loading(model_dir, tmp_path):
    empty = tmp_path / 'empty.key'
    empty.write_text('\n')
    (tmp_path / 'no-config').mkdir()
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        cases = [
            (['--port', '70000'], '--port: 70000 is above the maximum 65535'),
            (['--api-key-file', str(tmp_path / 'absent.key')], '--api-key-file: cannot read %s' % (tmp_path / 'absent.key')),
            (['--api-key-file', str(empty)], '--api-key-file: %s is empty' % empty),
            (['--model-path', str(tmp_path / 'nothing-here')], 'is not a readable directory'),
            (['--model-path', str(tmp_path / 'no-config')], 'has no readable config.json'),
            (['--device', 'tpu'], "--device: 'tpu' is not one of"),
            (['--port', 'http'], "argument --port: invalid int value: 'http'"),
            (['--host', '127.0.0.1', '--port', str(busy.getsockname()[1])], 'cannot listen on 127.0.0.1:'),
        ]
        for argv, needle in cases:
            proc, took = run_cli('--model-path', model_dir, *argv)
            assert proc.returncode == 2, (argv, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and needle in lines[0], (argv, proc.stderr)
            assert lines[0].startswith('python -m autoglm_service: error: ')
            assert proc.stdout == ''
            assert took < 20, took      # nothing was loaded (torch is not even imported on this path)


def test_unknown_variable_is_reported(caplog):
    cli.parse_args(['--model-path', '/m'], environ={'AUTOGLM_MAX_PROMPT_TOKENS': '10'})
    assert 'ignoring AUTOGLM_MAX_PROMPT_TOKENS: not a setting' in caplog.text


# ---------------------------------------------------------------------- derived documents
DOC = os.path.join(ROOT, 'docs', 'model-service.md')
BEGIN = '<!-- settings table: generated'
END = '<!-- end of settings table -->'


def split_doc(text):
    """(before the table, the table, after it) of docs/model-service.md."""
    assert BEGIN in text and END in text, 'docs/model-service.md lost its settings-table markers'
    head, rest = text.split(BEGIN, 1)
    comment, rest = rest.split('-->\n', 1)
    table, tail = rest.split(END, 1)
    return head + BEGIN + comment + '-->\n', table, END + tail


def test_docs_settings_table_is_current():
    with open(DOC) as fh:
        table = split_doc(fh.read())[1]
    assert table == cli.settings_markdown(), (
        'docs/model-service.md settings table is stale: regenerate it with '
        '`PYTHONPATH=files python tests/unit/service/test_cli.py --update-docs`')


def test_print_settings_markdown():
    proc = run_cli('--print-settings-markdown')[0]
    assert proc.returncode == 0 and proc.stdout == cli.settings_markdown()
    for s in cli.settings():
        assert '`%s`' % s.env in proc.stdout


ROLE = os.path.join(ROOT, 'roles', 'model_service')


def test_role_uses_only_declared_settings():
    known = set(cli.env_names())
    used = {}
    for rel in ('templates/service.env.j2', 'defaults/main.yml', 'meta/argument_specs.yml', 'README.md'):
        path = os.path.join(ROLE, rel)
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            for name in re.findall(r'\bAUTOGLM_[A-Z0-9_]*[A-Z0-9]\b', fh.read()):
                used.setdefault(name, rel)
    assert used, 'the role names no AUTOGLM_* setting at all?'
    unknown = {n: rel for n, rel in used.items() if n not in known}
    assert not unknown, 'roles/model_service names settings the server does not have: %s' % unknown
    with open(os.path.join(ROLE, 'templates', 'service.env.j2')) as fh:
        assigned = set(re.findall(r'^(AUTOGLM_[A-Z0-9_]+)=', fh.read(), re.M))
    assert {'AUTOGLM_MODEL_PATH', 'AUTOGLM_PORT', 'AUTOGLM_MAX_BATCH_SIZE'} <= assigned


def test_role_defaults_within_declared_bounds():
    """The role's defaults that map 1:1 onto a setting respect its bounds and choices."""
    yaml = pytest.importorskip('yaml')
    with open(os.path.join(ROLE, 'defaults', 'main.yml')) as fh:
        defaults = yaml.safe_load(fh)
    by_name = {s.name: s for s in cli.settings()}
    checked = 0
    for key, value in defaults.items():
        name = key[len('model_service_'):]
        s = by_name.get(name)
        if s is None or not isinstance(value, (int, float, str)) or (isinstance(value, str) and '{{' in value):
            continue
        checked += 1
        meta = s.meta
        if 'choices' in meta:
            assert value in meta['choices'], (key, value, meta['choices'])
        if 'min' in meta:
            assert meta['min'] <= value <= meta['max'], (key, value)
    assert checked >= 5


# The role's server defaults are copies of the dataclass defaults only where they must be
# (the fit check and the gateway's maxconn read them on the controller): they may not drift.
# Where the role deliberately serves other values, it says so here.
ROLE_DEVIATIONS = {
    'host': 'the role listens where model_service_host says (same default)',
    'served_model_name': 'the role names the Open-AutoGLM client\'s model, autoglm-phone-9b',
}


def test_role_defaults_equal_the_server_defaults():
    yaml = pytest.importorskip('yaml')
    with open(os.path.join(ROLE, 'defaults', 'main.yml')) as fh:
        defaults = yaml.safe_load(fh)
    by_name = {s.name: s for s in cli.settings()}
    compared = []
    for key, value in defaults.items():
        name = key[len('model_service_'):]
        s = by_name.get(name)
        if s is None or name in ROLE_DEVIATIONS or (isinstance(value, str) and '{{' in value):
            continue
        assert value == s.field.default, '%s: role default %r, server default %r (types.py)' % (key, value, s.field.default)
        compared.append(name)
    assert {'max_batch_size', 'max_queue', 'max_model_len', 'max_new_tokens', 'default_max_new_tokens'} <= set(compared)
    assert defaults['model_service_served_model_name'] == 'autoglm-phone-9b'


# ---------------------------------------------------------------------- tiny model
def test_tiny_model_dir(request):
    pytest.importorskip('transformers')
    tiny_model_dir = request.getfixturevalue('tiny_model_dir')
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


if __name__ == '__main__' and sys.argv[1:] == ['--update-docs']:
    with open(DOC) as fh:
        before, _table, after = split_doc(fh.read())
    with open(DOC, 'w') as fh:
        fh.write(before + cli.settings_markdown() + after)
    print('updated', DOC)
