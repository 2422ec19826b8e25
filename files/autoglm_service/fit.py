# -*- coding: utf-8 -*-
"""Will it fit? GPU memory needed by a model, computed from its ``config.json`` alone.

This module is the command line only. The computation has one implementation, the
collection's ``plugins/module_utils/model_fit.py`` (pure Python, no torch), which the
``openautoglm.deploy.model_fit`` Ansible module uses too. It is loaded from, in order:

1. ``autoglm_service/_fitcore.py``, the copy of that file a deployment puts beside this
   one when it ships the server package alone (image, venv);
2. the collection source tree this file sits in
   (``files/autoglm_service/`` -> ``plugins/module_utils/model_fit.py``);
3. an installed collection (``ansible_collections.openautoglm.deploy``).

needed = weights at the serving dtype
       + KV cache: 2 (K and V) x layers x kv_heads x head_dim x bytes x context x concurrency
       + runtime overhead: a fixed part per GPU (CUDA context, allocator slack, activations)
         plus a fraction of the above

CLI::

    python -m autoglm_service.fit --config config.json --gpu-memory-gb 80 \\
        --dtype bf16 --context 8192 --concurrency 8 [--json]

Exit status: 0 fits, 1 does not fit, 2 bad input.
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib
import importlib.util
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE_TREE_CORE = os.path.join(_HERE, os.pardir, os.pardir, 'plugins', 'module_utils', 'model_fit.py')
_COLLECTION_CORE = 'ansible_collections.openautoglm.deploy.plugins.module_utils.model_fit'


def _load_core():
    try:
        from . import _fitcore
        return _fitcore
    except ImportError:
        pass
    if os.path.isfile(_SOURCE_TREE_CORE):
        spec = importlib.util.spec_from_file_location('_openautoglm_model_fit', _SOURCE_TREE_CORE)
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)
        return core
    try:
        return importlib.import_module(_COLLECTION_CORE)
    except ImportError:
        raise ImportError('autoglm_service.fit needs the collection file plugins/module_utils/model_fit.py: '
                          'copy it to %s when shipping the server package alone'
                          % os.path.join(_HERE, '_fitcore.py'))


_core = _load_core()
GB = _core.GB
FitError = _core.FitError
DEFAULT_OVERHEAD_FRACTION = _core.DEFAULT_OVERHEAD_FRACTION
DEFAULT_OVERHEAD_GB = _core.DEFAULT_OVERHEAD_BYTES / _core.GB
count_params = _core.count_params
dtype_bytes = _core.dtype_bytes
estimate = _core.estimate
kv_bytes_per_token = _core.kv_bytes_per_token
shape = _core.shape


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m autoglm_service.fit',
                                description='Will a model fit on a GPU? (from config.json)')
    p.add_argument('--config', required=True, help='config.json or a model directory')
    p.add_argument('--gpu-memory-gb', type=float, help='memory of one GPU, decimal GB')
    p.add_argument('--gpus', type=int, default=1, help='GPUs the model is split over (tensor parallel)')
    p.add_argument('--dtype', default='bf16')
    p.add_argument('--context', type=int, help='tokens per sequence (default: model maximum)')
    p.add_argument('--concurrency', type=int, default=1)
    p.add_argument('--overhead-gb', type=float, default=DEFAULT_OVERHEAD_GB, help='fixed overhead per GPU')
    p.add_argument('--overhead-fraction', type=float, default=DEFAULT_OVERHEAD_FRACTION)
    p.add_argument('--json', action='store_true', help='print the result as JSON')
    a = p.parse_args(argv)
    try:
        res = estimate(a.config, gpu_memory_gb=a.gpu_memory_gb, dtype=a.dtype, context=a.context,
                       concurrency=a.concurrency, overhead_bytes=a.overhead_gb * GB,
                       overhead_fraction=a.overhead_fraction, gpus=a.gpus)
    except (FitError, OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2, sort_keys=True) if a.json else res['msg'])
    return 0 if res['fits'] in (True, None) else 1


if __name__ == '__main__':
    sys.exit(main())
