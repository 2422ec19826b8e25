# -*- coding: utf-8 -*-
"""'Will it fit?' against known public configs (pure Python: runs in every venv)."""

import json
import os
import subprocess
import sys

import pytest

from autoglm_service import fit

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def cfg(name):
    with open(os.path.join(FIXTURES, name)) as fh:
        return json.load(fh)


@pytest.mark.parametrize('name, params_b, gb_bf16', [
    ('glm-4-9b-chat.config.json', 9.40, 18.8),     # THUDM chatglm format
    ('glm-4-9b-hf.config.json', 9.40, 18.8),       # transformers GlmForCausalLM format
    ('llama-3-8b.config.json', 8.03, 16.06),
    ('llama-80b.config.json', 79.96, 159.9),
])
def test_param_count_and_weights(name, params_b, gb_bf16):
    res = fit.estimate(cfg(name), dtype='bf16', context=1024, concurrency=1)
    assert res['params'] / 1e9 == pytest.approx(params_b, abs=0.01)
    assert res['weights_bytes'] / 1e9 == pytest.approx(gb_bf16, abs=0.05)


def test_glm4_shape_from_chatglm_keys():
    s = fit.shape(cfg('glm-4-9b-chat.config.json'))
    assert (s['layers'], s['kv_heads'], s['head_dim'], s['vocab_size']) == (40, 2, 128, 151552)
    # 2 x 40 layers x 2 KV heads x 128 x 2 bytes = 40 KiB per token
    assert fit.kv_bytes_per_token(cfg('glm-4-9b-chat.config.json'), 'bf16') == 40960


def test_llama3_kv_cache():
    res = fit.estimate(cfg('llama-3-8b.config.json'), dtype='bf16', context=8192, concurrency=4)
    # 2 x 32 x 8 x 128 x 2 bytes = 128 KiB per token
    assert res['kv_bytes_per_token'] == 131072
    assert res['kv_cache_bytes'] == 131072 * 8192 * 4


def test_80b_needs_160gb_fp16_and_does_not_fit_on_80gb():
    res = fit.estimate(cfg('llama-80b.config.json'), gpu_memory_gb=80, dtype='fp16', context=4096, concurrency=1)
    assert res['weights_bytes'] / 1e9 == pytest.approx(160, abs=0.5)
    assert res['fits'] is False
    assert res['max_concurrency'] == 0
    assert 'does not fit' in res['msg'] and 'weights alone need 159.9 GB at fp16' in res['msg']
    assert 'GPU has 80 GB' in res['msg']
    # two 80 GB GPUs pooled are still not enough once KV and overhead are added
    assert fit.estimate(cfg('llama-80b.config.json'), gpu_memory_gb=80, gpus=2, dtype='fp16',
                        context=4096)['fits'] is False
    assert fit.estimate(cfg('llama-80b.config.json'), gpu_memory_gb=80, gpus=4, dtype='fp16',
                        context=4096)['fits'] is True


def test_glm4_9b_on_24gb_suggests_lower_concurrency_and_context():
    res = fit.estimate(cfg('glm-4-9b-chat.config.json'), gpu_memory_gb=24, dtype='bf16',
                       context=25480, concurrency=8)
    assert res['fits'] is False
    assert res['needed_gb'] == pytest.approx(31.5, abs=0.3)
    assert res['msg'].startswith('needs %.1f GB at bf16 with 8 x 25,480-token contexts; GPU has 24 GB'
                                 % res['needed_gb'])
    # the suggestions must themselves fit, and one more must not
    c, ctx = res['max_concurrency'], res['max_context']
    assert c >= 1 and 'max_concurrency to %d' % c in res['msg']
    assert 'context to {:,}'.format(ctx) in res['msg'] and ctx % 1024 == 0
    assert fit.estimate(cfg('glm-4-9b-chat.config.json'), gpu_memory_gb=24, context=25480, concurrency=c)['fits']
    assert not fit.estimate(cfg('glm-4-9b-chat.config.json'), gpu_memory_gb=24, context=25480,
                            concurrency=c + 1)['fits']
    assert fit.estimate(cfg('glm-4-9b-chat.config.json'), gpu_memory_gb=24, context=ctx, concurrency=8)['fits']


def test_glm4_9b_fits_on_h100():
    res = fit.estimate(cfg('glm-4-9b-hf.config.json'), gpu_memory_gb=80, dtype='bf16', context=8192,
                       concurrency=32)
    assert res['fits'] is True and 'fits' in res['msg']
    assert res['max_concurrency'] >= 32


def test_safetensors_index_total_size_wins(tmp_path):
    c = cfg('llama-3-8b.config.json')
    (tmp_path / 'config.json').write_text(json.dumps(c))
    (tmp_path / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {'total_size': 2 * 7_000_000_000}}))
    res = fit.estimate(str(tmp_path), dtype='fp32', context=1024)
    assert res['params_source'] == 'safetensors index' and res['params'] == 7_000_000_000
    assert res['weights_bytes'] == 28_000_000_000


def test_vlm_text_config_and_vision_tower_counted():
    c = {'model_type': 'glm4v', 'text_config': cfg('glm-4-9b-hf.config.json'),
         'vision_config': {'hidden_size': 1536, 'depth': 24, 'intermediate_size': 13696}}
    base = fit.count_params(cfg('glm-4-9b-hf.config.json'))
    assert fit.count_params(c) > base + 1e9


@pytest.mark.parametrize('bad', [{}, {'hidden_size': 64}])
def test_bad_configs_raise_fit_error(bad):
    with pytest.raises(fit.FitError):
        fit.estimate(bad)


def test_unknown_dtype():
    with pytest.raises(fit.FitError, match='unknown dtype'):
        fit.estimate(cfg('llama-3-8b.config.json'), dtype='fp7')


def test_cli_json_and_exit_codes():
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
    base = [sys.executable, '-m', 'autoglm_service.fit', '--config',
            os.path.join(FIXTURES, 'glm-4-9b-chat.config.json'), '--dtype', 'bf16', '--context', '8192']
    ok = subprocess.run(base + ['--gpu-memory-gb', '80', '--concurrency', '8', '--json'],
                        capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)['fits'] is True
    no = subprocess.run(base + ['--gpu-memory-gb', '16', '--concurrency', '8'], capture_output=True, text=True,
                        env=env, check=False)
    assert no.returncode == 1 and 'does not fit' in no.stdout
    bad = subprocess.run(base + ['--gpu-memory-gb', '16', '--concurrency', '0'], capture_output=True, text=True,
                         env=env, check=False)
    assert bad.returncode == 2 and 'error:' in bad.stderr


def test_fit_module_does_not_import_torch():
    code = 'import sys; import autoglm_service.fit; assert "torch" not in sys.modules'
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), '..', '..', '..', 'files'))
    subprocess.run([sys.executable, '-c', code], check=True, env=env)
