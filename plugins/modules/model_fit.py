#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_fit
short_description: Check that a model fits in GPU memory, from its config.json alone
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Computes the GPU memory a Transformers decoder model needs from its C(config.json), before
    any weights are downloaded or a server is started, and compares it with the GPU memory of
    the host.
  - "needed = weights + KV cache + overhead, where weights = parameters x bytes per parameter at
    O(dtype); KV cache = 2 (K and V) x layers x KV heads x head dim x bytes x O(max_context_tokens)
    x O(max_concurrency); overhead = O(overhead_bytes) per GPU + O(overhead_fraction) x (weights + KV cache)."
  - The parameter count comes from the shape in C(config.json) (layers, hidden size, intermediate
    size, vocabulary, tied embeddings, grouped-query KV heads, a VLM's vision tower), understanding
    Llama-style names (C(num_key_value_heads), C(intermediate_size), C(head_dim)), THUDM GLM names
    (C(multi_query_group_num), C(kv_channels), C(ffn_hidden_size), C(padded_vocab_size),
    C(num_layers)) and VLM configs that nest the language model under C(text_config) (GLM-4.1V,
    Qwen2-VL). When the directory of C(config.json) holds C(model.safetensors.index.json), the
    stored size it records wins.
  - "When the model does not fit, fails (unless O(fail_on_no_fit=false)) with the numbers and the
    largest concurrency and context that would fit, for example
    C(needs 31.4 GB at bf16 with 8 x 25,480-token contexts; GPU has 24 GB; does not fit: lower
    max_concurrency to 1 or context to 4,096)."
  - Without GPU memory (neither O(gpu_memory_bytes) nor O(gpu_facts)) only computes the need.
  - The same computation backs the model server's C(python -m autoglm_service.fit) command.
notes:
  - Sizes are bytes; GB figures are decimal (10^9 bytes). NVML reports an H100 80GB as
    85520809984 bytes, so O(gpu_facts) counts what the driver makes usable.
  - Mixture-of-experts layers are not modelled; the count from the config is that of a dense model.
  - Supports check mode; never changes anything.
extends_documentation_fragment:
  - openautoglm.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  config_path:
    description:
      - Path on the managed host of the model's C(config.json), or of a directory holding it.
      - Exactly one of O(config_path), O(model_path) and O(config) is required.
    type: path
  model_path:
    description:
      - Model directory on the managed host holding C(config.json) (and, when present,
        C(model.safetensors.index.json), which gives the exact stored weight size).
    type: path
  config:
    description:
      - The parsed C(config.json) itself, for a check before the weights are downloaded (what
        M(openautoglm.deploy.model_weights) returns with C(config_only=true)).
    type: dict
  weights_bytes:
    description:
      - Total size of the stored weight files (C(*.safetensors)); the parameter count is then derived
        from it and the config's C(torch_dtype), like from a safetensors index. Without it the count
        comes from the config's shape.
    type: int
  dtype:
    description:
      - Data type the weights are served in. C(int8) is weight-only 8-bit quantisation.
    type: str
    default: bfloat16
    choices: [bfloat16, bf16, float16, fp16, float32, fp32, int8]
  kv_cache_dtype:
    description:
      - Data type of the KV cache. C(auto) is O(dtype), or C(bf16) when O(dtype=int8).
    type: str
    default: auto
    choices: [auto, bfloat16, bf16, float16, fp16, float32, fp32, int8]
  max_context_tokens:
    description:
      - Tokens per sequence (prompt plus generated) the server will hold.
      - Defaults to the model's C(max_position_embeddings) (C(seq_length) for GLM configs).
    type: int
  max_concurrency:
    description: Sequences held in the KV cache at once (the server's batch size).
    type: int
    default: 1
  gpu_memory_bytes:
    description:
      - Memory of the host's GPUs in bytes, one number per GPU (a single number is one GPU).
      - Mutually exclusive with O(gpu_facts).
    type: list
    elements: int
  gpu_facts:
    description:
      - The C(openautoglm_gpu) fact from M(openautoglm.deploy.gpu_facts) (or a dict holding it
        under C(openautoglm_gpu)); the memory of each of its C(devices) is used.
      - Mutually exclusive with O(gpu_memory_bytes).
    type: dict
  tensor_parallel:
    description:
      - GPUs the model is split over. C(1) uses the largest single GPU. C(N) uses the N largest
        GPUs, each counted at the size of the smallest of them (the split is even), and pays
        O(overhead_bytes) on each.
      - With one figure in O(gpu_memory_bytes), means N GPUs of that size.
    type: int
    default: 1
    aliases: [num_gpus]
  overhead_bytes:
    description: Fixed runtime overhead per GPU in bytes (CUDA context, allocator slack, activations).
    type: int
    default: 1500000000
  overhead_fraction:
    description: Runtime overhead as a fraction of weights plus KV cache, from 0 to below 10.
    type: float
    default: 0.1
  fail_on_no_fit:
    description:
      - Fail the task when the model does not fit. With C(false), return RV(fits=false) and the
        message instead.
    type: bool
    default: true
seealso:
  - module: openautoglm.deploy.gpu_facts
  - module: openautoglm.deploy.model_weights
"""

EXAMPLES = r"""
- name: Gather GPU facts
  openautoglm.deploy.gpu_facts:

- name: Check that GLM-4-9B fits with 8 concurrent 8k contexts (fails early with the numbers if not)
  openautoglm.deploy.model_fit:
    config_path: /data/models/glm-4-9b-chat/config.json
    dtype: bf16
    max_context_tokens: 8192
    max_concurrency: 8
    gpu_facts: "{{ ansible_facts.openautoglm_gpu }}"

- name: What would a 70B model need on four 80 GB GPUs? (report only)
  openautoglm.deploy.model_fit:
    model_path: /data/models/llama-3-70b
    dtype: fp16
    max_context_tokens: 4096
    max_concurrency: 16
    gpu_memory_bytes: [80000000000, 80000000000, 80000000000, 80000000000]
    tensor_parallel: 4
    fail_on_no_fit: false
  register: fit

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ fit.msg }} (headroom {{ (fit.headroom_bytes / 1e9) | round(1) }} GB)"
"""

RETURN = r"""
msg:
  description: The verdict in words, with the figures and, when it does not fit, what to lower.
  returned: always
  type: str
  sample: "needs 31.4 GB at bf16 with 8 x 25,480-token contexts; GPU has 24 GB; does not fit: lower max_concurrency to 1 or context to 4,096"
fits:
  description: Whether the model fits; null when no GPU memory was given.
  returned: always
  type: bool
  sample: false
config_path:
  description: The C(config.json) that was read; null when O(config) was given.
  returned: always
  type: str
  sample: /data/models/glm-4-9b-chat/config.json
params:
  description: Parameter count.
  returned: always
  type: int
  sample: 9399951360
params_source:
  description: C(config) (counted from the shape), C(safetensors index) (stored size) or C(stored weight size) (O(weights_bytes)).
  returned: always
  type: str
  sample: config
dtype:
  description: Serving dtype, short name (C(bf16), C(fp16), C(fp32), C(int8)).
  returned: always
  type: str
  sample: bf16
kv_cache_dtype:
  description: KV cache dtype, short name.
  returned: always
  type: str
  sample: bf16
bytes_per_param:
  description: Bytes per parameter at O(dtype).
  returned: always
  type: int
  sample: 2
weights_bytes:
  description: Weights at O(dtype), bytes.
  returned: always
  type: int
  sample: 18799902720
weights_gb:
  description: Weights at O(dtype), decimal GB.
  returned: always
  type: float
  sample: 18.8
kv_cache_bytes_per_token:
  description: KV cache bytes of one token (2 x layers x KV heads x head dim x bytes).
  returned: always
  type: int
  sample: 40960
kv_cache_bytes:
  description: KV cache for O(max_concurrency) sequences of O(max_context_tokens), bytes.
  returned: always
  type: int
  sample: 8349286400
kv_cache_gb:
  description: KV cache, decimal GB.
  returned: always
  type: float
  sample: 8.3
overhead_total_bytes:
  description: Runtime overhead, bytes (O(overhead_bytes) per GPU plus O(overhead_fraction) of weights and KV cache).
  returned: always
  type: int
  sample: 4214918912
overhead_total_gb:
  description: Runtime overhead, decimal GB.
  returned: always
  type: float
  sample: 4.2
needed_bytes:
  description: Total GPU memory needed, bytes.
  returned: always
  type: int
  sample: 31364108032
needed_gb:
  description: Total GPU memory needed, decimal GB.
  returned: always
  type: float
  sample: 31.4
context_tokens:
  description: Tokens per sequence used (O(max_context_tokens) or the model's maximum).
  returned: always
  type: int
  sample: 25480
concurrency:
  description: Sequences used (O(max_concurrency)).
  returned: always
  type: int
  sample: 8
gpu_count:
  description: GPUs the model is split over (O(tensor_parallel)).
  returned: always
  type: int
  sample: 1
per_gpu_memory_bytes:
  description: Memory counted for each GPU used, bytes; null without GPU memory.
  returned: always
  type: int
  sample: 24000000000
gpu_memory_bytes:
  description: Memory of all GPUs used together, bytes; null without GPU memory.
  returned: always
  type: int
  sample: 24000000000
gpu_memory_gb:
  description: Memory of all GPUs used together, decimal GB; null without GPU memory.
  returned: always
  type: float
  sample: 24.0
headroom_bytes:
  description: GPU memory left over, bytes (negative when it does not fit); null without GPU memory.
  returned: always
  type: int
  sample: -7364108032
max_concurrency_that_fits:
  description: Largest O(max_concurrency) that fits at this context length; null without GPU memory.
  returned: always
  type: int
  sample: 2
max_context_tokens_that_fits:
  description:
    - Largest O(max_context_tokens) that fits at this concurrency, a multiple of 1,024 and at
      most the model's maximum; null without GPU memory.
  returned: always
  type: int
  sample: 8192
shape:
  description: The decoder shape read from the config.
  returned: always
  type: dict
  contains:
    hidden_size:
      description: Hidden size.
      type: int
      sample: 4096
    layers:
      description: Decoder layers.
      type: int
      sample: 40
    heads:
      description: Attention (query) heads.
      type: int
      sample: 32
    kv_heads:
      description: Key/value heads (grouped-query attention).
      type: int
      sample: 2
    head_dim:
      description: Dimension of one head.
      type: int
      sample: 128
    intermediate_size:
      description: MLP intermediate size.
      type: int
      sample: 13696
    vocab_size:
      description: Vocabulary size (padded where the config says so).
      type: int
      sample: 151552
    tied_embeddings:
      description: Input and output embeddings share weights.
      type: bool
    qkv_bias:
      description: The attention projections have biases.
      type: bool
    max_context:
      description: The model's maximum context; null when the config does not say.
      type: int
      sample: 131072
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_fit

DTYPES = ['bfloat16', 'bf16', 'float16', 'fp16', 'float32', 'fp32', 'int8']


def module_result(res, config_path):
    """The core's estimate under the module's documented return keys."""
    return {
        'msg': res['msg'], 'fits': res['fits'], 'config_path': config_path,
        'params': res['params'], 'params_source': res['params_source'],
        'dtype': res['dtype'], 'kv_cache_dtype': res['kv_dtype'], 'bytes_per_param': res['bytes_per_param'],
        'weights_bytes': res['weights_bytes'], 'weights_gb': res['weights_gb'],
        'kv_cache_bytes_per_token': res['kv_bytes_per_token'],
        'kv_cache_bytes': res['kv_cache_bytes'], 'kv_cache_gb': res['kv_cache_gb'],
        'overhead_total_bytes': res['overhead_bytes'], 'overhead_total_gb': res['overhead_gb'],
        'needed_bytes': res['needed_bytes'], 'needed_gb': res['needed_gb'],
        'context_tokens': res['context'], 'concurrency': res['concurrency'], 'gpu_count': res['gpus'],
        'per_gpu_memory_bytes': res.get('per_gpu_bytes'),
        'gpu_memory_bytes': res.get('gpu_bytes'), 'gpu_memory_gb': res.get('gpu_gb'),
        'headroom_bytes': res.get('headroom_bytes'),
        'max_concurrency_that_fits': res.get('max_concurrency'),
        'max_context_tokens_that_fits': res.get('max_context'),
        'shape': res['shape'],
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_path=dict(type='path'),
            model_path=dict(type='path'),
            config=dict(type='dict'),
            weights_bytes=dict(type='int'),
            dtype=dict(type='str', default='bfloat16', choices=DTYPES),
            kv_cache_dtype=dict(type='str', default='auto', choices=['auto'] + DTYPES),
            max_context_tokens=dict(type='int', no_log=False),
            max_concurrency=dict(type='int', default=1),
            gpu_memory_bytes=dict(type='list', elements='int'),
            gpu_facts=dict(type='dict'),
            tensor_parallel=dict(type='int', default=1, aliases=['num_gpus']),
            overhead_bytes=dict(type='int', default=1500000000),
            overhead_fraction=dict(type='float', default=0.1),
            fail_on_no_fit=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('config_path', 'model_path', 'config'), ('gpu_memory_bytes', 'gpu_facts')],
        required_one_of=[('config_path', 'model_path', 'config')],
        supports_check_mode=True,
    )
    p = module.params

    for name in ('max_concurrency', 'tensor_parallel', 'max_context_tokens'):
        if p[name] is not None and p[name] < 1:
            module.fail_json(msg='%s must be a positive integer (got %d)' % (name, p[name]))
    if p['overhead_bytes'] < 0:
        module.fail_json(msg='overhead_bytes must be 0 or more (got %d)' % p['overhead_bytes'])
    if not 0 <= p['overhead_fraction'] < 10:
        module.fail_json(msg='overhead_fraction must be from 0 to below 10 (got %s)' % p['overhead_fraction'])

    if p['weights_bytes'] is not None and p['weights_bytes'] < 1:
        module.fail_json(msg='weights_bytes must be a positive integer (got %d)' % p['weights_bytes'])
    config_path = None
    if p['config'] is None:
        source = p['config_path'] or p['model_path']
        config_path = os.path.join(source, 'config.json') if os.path.isdir(source) else source
        if not os.path.isfile(config_path):
            module.fail_json(msg='%s does not exist on this host: %s must name a config.json or a model directory holding one'
                             % (config_path, 'config_path' if p['config_path'] else 'model_path'))
    gpu_memory = p['gpu_memory_bytes']
    if gpu_memory == []:
        module.fail_json(msg='gpu_memory_bytes is empty: give one figure per GPU, or leave it out to only compute the need')
    if p['gpu_facts'] is not None:
        try:
            gpu_memory = model_fit.gpu_memory_from_facts(p['gpu_facts'])
        except model_fit.FitError as exc:
            module.fail_json(msg=str(exc))
    try:
        res = model_fit.estimate(
            p['config'] if config_path is None else model_fit.load_config(config_path), dtype=p['dtype'],
            kv_dtype=p['kv_cache_dtype'], context=p['max_context_tokens'], concurrency=p['max_concurrency'],
            overhead_bytes=p['overhead_bytes'], overhead_fraction=p['overhead_fraction'],
            model_dir=os.path.dirname(config_path) if config_path else None,
            gpu_memory_bytes=gpu_memory, gpus=p['tensor_parallel'], stored_weights_bytes=p['weights_bytes'])
    except (model_fit.FitError, ValueError, OSError) as exc:
        module.fail_json(msg='cannot compute the memory %s needs: %s' % (config_path or 'the given config', exc))

    result = module_result(res, config_path)
    if res['fits'] is False and p['fail_on_no_fit']:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
