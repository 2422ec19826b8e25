# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_fit module: known public configs, GPU memory sources, bad arguments."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

import pytest

from ansible_collections.openautoglm.deploy.plugins.modules import model_fit

SERVICE_FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'service', 'fixtures')
GLM_CHAT = os.path.join(SERVICE_FIXTURES, 'glm-4-9b-chat.config.json')
GLM_HF = os.path.join(SERVICE_FIXTURES, 'glm-4-9b-hf.config.json')
LLAMA_8B = os.path.join(SERVICE_FIXTURES, 'llama-3-8b.config.json')
LLAMA_80B = os.path.join(SERVICE_FIXTURES, 'llama-80b.config.json')
H100_NVML_BYTES = 85520809984
GB = 10 ** 9

DOCUMENTED_KEYS = sorted([
    'changed', 'msg', 'fits', 'config_path', 'params', 'params_source', 'dtype', 'kv_cache_dtype',
    'bytes_per_param', 'weights_bytes', 'weights_gb', 'kv_cache_bytes_per_token', 'kv_cache_bytes',
    'kv_cache_gb', 'overhead_total_bytes', 'overhead_total_gb', 'needed_bytes', 'needed_gb',
    'context_tokens', 'concurrency', 'gpu_count', 'per_gpu_memory_bytes', 'gpu_memory_bytes',
    'gpu_memory_gb', 'headroom_bytes', 'max_concurrency_that_fits', 'max_context_tokens_that_fits', 'shape'])


def gpu_fact(*sizes):
    return {'source': 'nvml', 'count': len(sizes), 'devices': [
        {'index': i, 'name': 'GPU %d' % i, 'memory_total_bytes': size} for i, size in enumerate(sizes)]}


@pytest.mark.parametrize('path, params_b, weights_gb, kv_per_token', [
    (GLM_CHAT, 9.40, 18.8, 40960),       # THUDM chatglm names: multi_query_group_num, kv_channels, padded_vocab_size
    (GLM_HF, 9.40, 18.8, 40960),         # transformers GlmForCausalLM names
    (LLAMA_8B, 8.03, 16.1, 131072),      # 2 x 32 layers x 8 KV heads x 128 x 2 bytes
    (LLAMA_80B, 79.96, 159.9, 372736),   # 2 x 91 layers x 8 KV heads x 128 x 2 bytes
])
def test_known_configs_report_every_figure(run_module, path, params_b, weights_gb, kv_per_token):
    status, res = run_module(model_fit.main, {'config_path': path, 'max_context_tokens': 4096})
    assert status == 'exit'
    assert sorted(res) == DOCUMENTED_KEYS
    assert res['changed'] is False and res['fits'] is None
    assert res['params'] / 1e9 == pytest.approx(params_b, abs=0.01)
    assert (res['dtype'], res['bytes_per_param'], res['weights_gb']) == ('bf16', 2, weights_gb)
    assert res['kv_cache_bytes_per_token'] == kv_per_token
    assert res['kv_cache_bytes'] == kv_per_token * 4096
    assert res['needed_bytes'] == res['weights_bytes'] + res['kv_cache_bytes'] + res['overhead_total_bytes']
    assert res['overhead_total_bytes'] == pytest.approx(1.5e9 + 0.1 * (res['weights_bytes'] + res['kv_cache_bytes']), abs=2)
    assert res['gpu_memory_bytes'] is None and res['max_concurrency_that_fits'] is None
    assert res['msg'] == 'needs %.1f GB at bf16 with 1 x 4,096-token contexts' % (res['needed_bytes'] / 1e9)


def test_80b_at_fp16_fails_on_an_80gb_gpu_with_the_numbers(run_module):
    status, res = run_module(model_fit.main, {'config_path': LLAMA_80B, 'dtype': 'fp16', 'max_context_tokens': 4096,
                                              'gpu_memory_bytes': [80 * GB]})
    assert status == 'fail'
    assert res['fits'] is False and res['changed'] is False
    assert res['weights_bytes'] / 1e9 == pytest.approx(160, abs=0.5)
    assert res['msg'].startswith('needs %.1f GB at fp16 with 1 x 4,096-token contexts; GPU has 80 GB; does not fit: '
                                 'the weights alone need 159.9 GB at fp16' % res['needed_gb'])
    assert res['headroom_bytes'] < 0 and res['max_concurrency_that_fits'] == 0


def test_80b_fits_tensor_parallel_over_four_h100s(run_module):
    status, res = run_module(model_fit.main, {'config_path': LLAMA_80B, 'dtype': 'float16', 'max_context_tokens': 4096,
                                              'max_concurrency': 16, 'tensor_parallel': 4,
                                              'gpu_facts': gpu_fact(*[H100_NVML_BYTES] * 8)})
    assert status == 'exit' and res['fits'] is True
    assert (res['gpu_count'], res['per_gpu_memory_bytes']) == (4, H100_NVML_BYTES)
    assert res['gpu_memory_bytes'] == 4 * H100_NVML_BYTES
    # the fixed overhead is paid on each of the four GPUs
    assert res['overhead_total_bytes'] == pytest.approx(4 * 1.5e9 + 0.1 * (res['weights_bytes'] + res['kv_cache_bytes']), abs=2)
    assert res['msg'].startswith('needs %.1f GB at fp16 with 16 x 4,096-token contexts; 4 GPUs have 342.1 GB (85.5 GB each); fits'
                                 % res['needed_gb'])


def test_glm_on_24gb_suggests_values_that_fit(run_module):
    args = {'config_path': GLM_CHAT, 'dtype': 'bf16', 'max_context_tokens': 25480, 'max_concurrency': 8,
            'gpu_memory_bytes': [24 * GB]}
    status, res = run_module(model_fit.main, args)
    assert status == 'fail'
    conc, ctx = res['max_concurrency_that_fits'], res['max_context_tokens_that_fits']
    assert res['msg'] == ('needs %.1f GB at bf16 with 8 x 25,480-token contexts; GPU has 24 GB; does not fit: '
                          'lower max_concurrency to %d or context to %s' % (res['needed_gb'], conc, '{:,}'.format(ctx)))
    assert conc >= 1 and ctx % 1024 == 0
    # each suggestion fits on its own, and one step further does not
    assert run_module(model_fit.main, dict(args, max_concurrency=conc))[1]['fits'] is True
    assert run_module(model_fit.main, dict(args, max_concurrency=conc + 1))[0] == 'fail'
    assert run_module(model_fit.main, dict(args, max_context_tokens=ctx))[1]['fits'] is True
    assert run_module(model_fit.main, dict(args, max_context_tokens=ctx + 1024))[0] == 'fail'


def test_no_fit_can_be_reported_without_failing(run_module):
    status, res = run_module(model_fit.main, {'config_path': GLM_CHAT, 'max_context_tokens': 25480, 'max_concurrency': 8,
                                              'gpu_memory_bytes': 24 * GB, 'fail_on_no_fit': False})
    assert status == 'exit' and res['fits'] is False and 'does not fit' in res['msg']


def test_largest_single_gpu_is_used(run_module):
    status, res = run_module(model_fit.main, {'config_path': LLAMA_8B, 'max_context_tokens': 8192,
                                              'gpu_memory_bytes': [24 * GB, 48 * GB, 16 * GB]})
    assert status == 'exit' and (res['gpu_count'], res['gpu_memory_bytes']) == (1, 48 * GB)


def test_model_dir_and_default_context(run_module, tmp_path):
    shutil.copy(GLM_HF, str(tmp_path / 'config.json'))
    status, res = run_module(model_fit.main, {'model_path': str(tmp_path), 'gpu_facts': {'openautoglm_gpu': gpu_fact(H100_NVML_BYTES)}},
                             check_mode=True)
    assert status == 'exit' and res['config_path'] == str(tmp_path / 'config.json')
    with open(GLM_HF) as fh:
        assert res['context_tokens'] == json.load(fh)['max_position_embeddings']
    assert res['shape']['kv_heads'] == 2 and res['params_source'] == 'config'


def test_int8_weights_keep_a_16_bit_kv_cache(run_module):
    res = run_module(model_fit.main, {'config_path': LLAMA_8B, 'dtype': 'int8', 'max_context_tokens': 1024})[1]
    assert (res['dtype'], res['bytes_per_param'], res['kv_cache_dtype'], res['kv_cache_bytes_per_token']) == ('int8', 1, 'bf16', 131072)
    res = run_module(model_fit.main, {'config_path': LLAMA_8B, 'dtype': 'int8', 'kv_cache_dtype': 'int8', 'max_context_tokens': 1024})[1]
    assert res['kv_cache_bytes_per_token'] == 65536


def test_vlm_text_config(run_module, tmp_path):
    with open(GLM_HF) as fh:
        text = json.load(fh)
    (tmp_path / 'config.json').write_text(json.dumps({
        'model_type': 'glm4v', 'text_config': text,
        'vision_config': {'hidden_size': 1536, 'depth': 24, 'intermediate_size': 13696}}))
    res = run_module(model_fit.main, {'model_path': str(tmp_path), 'max_context_tokens': 1024})[1]
    plain = run_module(model_fit.main, {'config_path': GLM_HF, 'max_context_tokens': 1024})[1]
    assert res['params'] > plain['params'] + 1e9
    assert res['kv_cache_bytes_per_token'] == plain['kv_cache_bytes_per_token']


@pytest.mark.parametrize('args, message', [
    ({'dtype': 'fp8'}, 'value of dtype must be one of: bfloat16, bf16, float16, fp16, float32, fp32, int8, got: fp8'),
    ({'max_concurrency': -1}, 'max_concurrency must be a positive integer (got -1)'),
    ({'max_concurrency': 0}, 'max_concurrency must be a positive integer (got 0)'),
    ({'max_context_tokens': 0}, 'max_context_tokens must be a positive integer (got 0)'),
    ({'tensor_parallel': 0}, 'tensor_parallel must be a positive integer (got 0)'),
    ({'overhead_fraction': -0.1}, 'overhead_fraction must be from 0 to below 10 (got -0.1)'),
    ({'overhead_bytes': -1}, 'overhead_bytes must be 0 or more (got -1)'),
    ({'gpu_memory_bytes': []}, 'gpu_memory_bytes is empty'),
    ({'gpu_memory_bytes': [24 * GB], 'tensor_parallel': 2, 'gpu_facts': gpu_fact(GB)}, 'mutually exclusive: gpu_memory_bytes|gpu_facts'),
    ({'gpu_memory_bytes': [0]}, 'GPU memory must be positive bytes'),
    ({'gpu_memory_bytes': [24 * GB, 24 * GB], 'tensor_parallel': 4}, '4 GPUs requested but the host has 2'),
    ({'gpu_facts': {'count': 0, 'devices': []}}, 'gpu_facts reports no GPU on this host'),
    ({'gpu_facts': {'devices': [{'index': 0, 'name': 'NVIDIA GPU (device 0x9999)', 'memory_total_bytes': None}]}},
     'gpu_facts has no memory figure for GPU 0 (NVIDIA GPU (device 0x9999)); pass gpu_memory_bytes instead'),
])
def test_bad_arguments_fail_clearly(run_module, args, message):
    status, res = run_module(model_fit.main, dict({'config_path': LLAMA_8B}, **args))
    assert status == 'fail'
    assert message in res['msg']


def test_config_path_and_model_path_are_exclusive_and_one_is_required(run_module):
    assert 'one of the following is required: config_path, model_path, config' in run_module(model_fit.main, {})[1]['msg']
    res = run_module(model_fit.main, {'config_path': LLAMA_8B, 'model_path': SERVICE_FIXTURES})[1]
    assert 'mutually exclusive: config_path|model_path|config' in res['msg']


def test_config_given_as_data_before_a_download(run_module):
    # what model_weights config_only returns: the config, and the stored size from the Hub's listing
    with open(LLAMA_80B) as fh:
        cfg = json.load(fh)
    from_file = run_module(model_fit.main, {'config_path': LLAMA_80B, 'dtype': 'fp16', 'max_context_tokens': 4096,
                                            'gpu_memory_bytes': [80 * GB]})
    status, res = run_module(model_fit.main, {'config': cfg, 'dtype': 'fp16', 'max_context_tokens': 4096,
                                              'gpu_memory_bytes': [80 * GB]})
    assert status == 'fail' and res['fits'] is False and res['config_path'] is None
    assert res['needed_bytes'] == from_file[1]['needed_bytes'] and res['params_source'] == 'config'
    # the stored size wins over the shape: 2 bytes per bf16 parameter
    status, res = run_module(model_fit.main, {'config': dict(cfg, torch_dtype='bfloat16'), 'weights_bytes': 20 * GB,
                                              'max_context_tokens': 4096, 'gpu_memory_bytes': [80 * GB]})
    assert status == 'exit' and res['fits'] is True
    assert (res['params'], res['params_source']) == (10 * GB, 'stored weight size')
    assert 'weights_bytes must be a positive integer' in run_module(model_fit.main, {'config': cfg, 'weights_bytes': 0})[1]['msg']


def test_missing_and_broken_configs(run_module, tmp_path):
    status, res = run_module(model_fit.main, {'model_path': str(tmp_path)})
    assert status == 'fail' and res['msg'] == ('%s does not exist on this host: model_path must name a config.json or a model '
                                               'directory holding one' % (tmp_path / 'config.json'))
    (tmp_path / 'config.json').write_text('{"hidden_size": 64')
    status, res = run_module(model_fit.main, {'model_path': str(tmp_path)})
    assert status == 'fail' and 'is not valid JSON' in res['msg']
    (tmp_path / 'config.json').write_text('{"hidden_size": 64}')
    status, res = run_module(model_fit.main, {'model_path': str(tmp_path)})
    assert status == 'fail' and 'config.json has none of num_hidden_layers, num_layers, n_layer' in res['msg']
