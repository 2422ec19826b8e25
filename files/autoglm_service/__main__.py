# -*- coding: utf-8 -*-
"""``python -m autoglm_service``: serve a local model directory over HTTP.

Every flag can also come from the environment as ``AUTOGLM_<FLAG>`` (``--max-batch-size``
-> ``AUTOGLM_MAX_BATCH_SIZE``); a flag on the command line wins. The API key comes from
``--api-key-file`` / ``AUTOGLM_API_KEY_FILE`` or ``AUTOGLM_API_KEY`` and is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

OPTIONS = [
    # flag, type, default, help
    ('--model-path', str, None, 'local model directory (config.json, weights, tokenizer)'),
    ('--model-name', str, None, 'name served in /v1/models (default: directory name)'),
    ('--host', str, '0.0.0.0', 'address to listen on'),
    ('--port', int, 8080, 'port to listen on'),
    ('--dtype', str, 'auto', 'bfloat16 | float16 | float32 | auto (bf16 on CUDA, fp32 on CPU)'),
    ('--device', str, 'auto', 'auto | cuda | cpu'),
    ('--max-batch-size', int, 8, 'sequences decoded together (static KV cache slots)'),
    ('--max-queue', int, 64, 'requests waiting for a slot before 429'),
    ('--max-prompt-tokens', int, 4096, 'longest prompt accepted (413 above)'),
    ('--max-new-tokens', int, 1024, 'largest max_tokens a request may ask for (400 above)'),
    ('--default-max-new-tokens', int, 256, 'max_tokens when a request gives none'),
    ('--max-seq-len', int, None, 'KV cache length per slot (default: prompt + new token limits)'),
    ('--cuda-graphs', str, 'auto', 'auto | on | off: capture decode steps as CUDA graphs'),
    ('--backend', str, 'auto', 'auto | batched | sequential'),
    ('--fast-path', str, 'auto', 'auto | off: lean fused decode step for Llama/GLM/Qwen2-like models'),
    ('--compile', str, 'auto', 'auto | on | off: torch.compile the fast path (auto: on with CUDA graphs)'),
    ('--max-prefill-tokens', int, 8192, 'padded prompt tokens prefilled together in one batch'),
    ('--decode-attention', str, 'auto', 'auto | sdpa | matmul: attention kernel of fast-path decode steps'),
    ('--min-batch-bucket', int, 0, 'smallest decode batch bucket, 1 or 2 (0: the default)'),
    ('--api-key-file', str, None, 'file holding the bearer token clients must send'),
    ('--log-level', str, 'info', 'debug | info | warning | error'),
]


def env_name(flag):
    return 'AUTOGLM_' + flag.lstrip('-').upper().replace('-', '_')


def parse_args(argv=None, environ=None):
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog='python -m autoglm_service', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, typ, default, help_ in OPTIONS:
        env = env_name(flag)
        value = environ.get(env, default)
        if value is not None and value != '' and typ is int:
            try:
                value = int(value)
            except ValueError:
                p.error('%s=%r is not an integer' % (env, value))
        p.add_argument(flag, type=typ, default=value, help='%s [env %s]' % (help_, env))
    p.add_argument('--no-warmup', action='store_true',
                   default=environ.get('AUTOGLM_NO_WARMUP', '').lower() in ('1', 'true', 'yes'),
                   help='skip the start-up warm-up [env AUTOGLM_NO_WARMUP]')
    args = p.parse_args(argv)
    if not args.model_path:
        p.error('--model-path (or AUTOGLM_MODEL_PATH) is required')
    return args


def read_api_key(args, environ=None):
    environ = os.environ if environ is None else environ
    if args.api_key_file:
        with open(args.api_key_file) as fh:
            key = fh.read().strip()
        if not key:
            raise SystemExit('API key file %s is empty' % args.api_key_file)
        return key
    return environ.get('AUTOGLM_API_KEY') or None


def engine_config(args):
    from .engine import EngineConfig
    return EngineConfig(model_path=args.model_path, model_name=args.model_name, dtype=args.dtype,
                        device=args.device, max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                        max_prompt_tokens=args.max_prompt_tokens, max_new_tokens=args.max_new_tokens,
                        default_max_new_tokens=args.default_max_new_tokens, max_seq_len=args.max_seq_len,
                        cuda_graphs=args.cuda_graphs, backend=args.backend, warmup=not args.no_warmup,
                        fast_path=args.fast_path, compile=args.compile, max_prefill_tokens=args.max_prefill_tokens,
                        decode_attention=args.decode_attention, min_batch_bucket=args.min_batch_bucket)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    api_key = read_api_key(args)
    import uvicorn
    from .app import create_app
    logging.getLogger('autoglm_service').info(
        'serving %s on %s:%d (api key %s)', args.model_path, args.host, args.port,
        'required' if api_key else 'not required')
    app = create_app(config=engine_config(args), api_key=api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
