# -*- coding: utf-8 -*-
"""``python -m autoglm_service``: serve a local model directory over HTTP.

Every setting is a field of :class:`~autoglm_service.types.EngineConfig` or
:class:`~autoglm_service.types.ServerConfig`; the flags, the ``AUTOGLM_*`` environment
variables and the settings table of docs/model-service.md (``--print-settings-markdown``)
are derived from those fields. ``--max-batch-size`` is also ``AUTOGLM_MAX_BATCH_SIZE``; a
flag on the command line wins; a boolean is ``--warmup``/``--no-warmup`` and
``AUTOGLM_WARMUP=true|false``. The API key comes from ``--api-key-file`` or
``AUTOGLM_API_KEY`` and is never logged.

Bad settings (a value out of range or not among the choices, a port that cannot be bound,
a missing or empty key file, a model directory that cannot be read) end the process with
one line on stderr and exit status 2, before the model loads. SIGTERM stops accepting
connections, lets running requests finish (``--drain-timeout``) and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import sys
import typing
from typing import Dict, List, Optional, Tuple

from .types import ConfigError, EngineConfig, ServerConfig, validate_settings

PROG = 'python -m autoglm_service'
ENV_PREFIX = 'AUTOGLM_'
EXTRA_ENV = ('AUTOGLM_API_KEY',)      # read directly (a secret: not a flag)
TRUE, FALSE = ('1', 'true', 'yes', 'on'), ('0', 'false', 'no', 'off')
KIND = {int: 'an integer', float: 'a number', str: 'a string'}


class Setting(typing.NamedTuple):
    cls: type
    field: dataclasses.Field
    type: type

    @property
    def name(self):
        return self.field.name

    @property
    def flag(self):
        return '--' + self.name.replace('_', '-')

    @property
    def env(self):
        return ENV_PREFIX + self.name.upper()

    @property
    def meta(self):
        return self.field.metadata

    def convert(self, text: str):
        """An environment value as the field's type; ValueError says what was expected."""
        if self.type is bool:
            low = text.strip().lower()
            if low in TRUE or low in FALSE:
                return low in TRUE
            raise ValueError('is not a boolean (true or false)')
        try:
            return self.type(text)
        except ValueError:
            raise ValueError('is not %s' % KIND.get(self.type, 'a ' + self.type.__name__)) from None


def settings() -> List[Setting]:
    """Every server setting, engine ones first, in declaration order."""
    out = []
    for cls in (EngineConfig, ServerConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata.get('cli', False):
                continue
            typ = hints[f.name]
            args = [a for a in typing.get_args(typ) if a is not type(None)]
            out.append(Setting(cls, f, args[0] if args else typ))
    return out


def env_names() -> List[str]:
    return [s.env for s in settings()] + list(EXTRA_ENV)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        fail(message)


def fail(message):
    """One line on stderr, exit status 2 (bad settings)."""
    sys.stderr.write('%s: error: %s\n' % (PROG, ' '.join(str(message).split())))
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in settings():
        help_ = s.meta['help']
        if 'choices' in s.meta:
            help_ += ' {%s}' % ','.join(map(str, s.meta['choices']))
        help_ += ' (default: %s) [env %s]' % (s.field.default, s.env)
        if s.type is bool:
            p.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_.replace('%', '%%'))
        else:
            p.add_argument(s.flag, dest=s.name, type=s.type, default=None, metavar=s.name.upper(),
                           help=help_.replace('%', '%%'))
    p.add_argument('--print-settings-markdown', action='store_true',
                   help='print the settings table of docs/model-service.md and exit')
    return p


def parse_args(argv=None, environ=None) -> Tuple[EngineConfig, ServerConfig, argparse.Namespace]:
    """Flags over ``AUTOGLM_*`` variables over the declared defaults; validated (ConfigError)."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: Dict[type, dict] = {EngineConfig: {}, ServerConfig: {}}
    errors = []
    for s in settings():
        value = getattr(args, s.name)
        if value is None and environ.get(s.env, '') != '':
            try:
                value = s.convert(environ[s.env])
            except ValueError as exc:
                errors.append('%s=%r %s' % (s.env, environ[s.env], exc))
                continue
        if value is not None:
            values[s.cls][s.name] = value
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in env_names())
    if errors:
        raise ConfigError('; '.join(errors))
    engine, server = EngineConfig(**values[EngineConfig]), ServerConfig(**values[ServerConfig])
    if args.print_settings_markdown:
        return engine, server, args
    problems = []
    for cfg in (engine, server):
        try:
            validate_settings(cfg)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError('; '.join(problems))
    for name in unknown:
        logging.getLogger('autoglm_service').warning('ignoring %s: not a setting (see --help)', name)
    return engine, server, args


def read_api_key(server: ServerConfig, environ=None) -> Optional[str]:
    environ = os.environ if environ is None else environ
    if server.api_key_file:
        try:
            with open(server.api_key_file) as fh:
                key = fh.read().strip()
        except OSError as exc:
            raise ConfigError('--api-key-file: cannot read %s: %s' % (server.api_key_file, exc.strerror or exc))
        if not key:
            raise ConfigError('--api-key-file: %s is empty' % server.api_key_file)
        return key
    return environ.get('AUTOGLM_API_KEY') or None


def check_model_dir(path: str):
    config = os.path.join(path, 'config.json')
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError('--model-path: %s is not a readable directory' % path)
    if not os.access(config, os.R_OK):
        raise ConfigError('--model-path: %s has no readable config.json' % path)


def settings_markdown() -> str:
    """The settings table of docs/model-service.md."""
    rows = ['| Flag | Environment | Default | Allowed | Meaning |', '| --- | --- | --- | --- | --- |']
    for s in settings():
        meta = s.meta
        if 'choices' in meta:
            allowed = ', '.join('`%s`' % c for c in meta['choices'])
        elif 'min' in meta or 'max' in meta:
            allowed = '%s to %s' % (meta.get('min', ''), meta.get('max', ''))
        elif s.type is bool:
            allowed = '`true`, `false`'
        else:
            allowed = s.type.__name__
        default = s.field.default
        default = '(none)' if default is None else '`%s`' % (str(default).lower() if s.type is bool else default)
        flag = '`%s`' % s.flag if s.type is not bool else '`%s` / `--no-%s`' % (s.flag, s.flag[2:])
        rows.append('| %s | `%s` | %s | %s | %s |' % (flag, s.env, default, allowed, meta['help'].replace('|', '/')))
    return '\n'.join(rows) + '\n'


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads (so a taken port fails at once)."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def main(argv=None):
    try:
        engine_cfg, server_cfg, args = parse_args(argv)
        if args.print_settings_markdown:
            sys.stdout.write(settings_markdown())
            return 0
        api_key = read_api_key(server_cfg)
        check_model_dir(engine_cfg.model_path)
        try:
            sock = bind(server_cfg.host, server_cfg.port)
        except OSError as exc:
            raise ConfigError('--host/--port: cannot listen on %s:%d: %s'
                              % (server_cfg.host, server_cfg.port, exc.strerror or exc))
    except ConfigError as exc:
        fail(exc)
    logging.basicConfig(level=server_cfg.log_level.upper(), format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    from .app import create_app
    from .engine import Engine
    from .server import Server, uvicorn_config
    log = logging.getLogger('autoglm_service')
    log.info('serving %s as %s on %s:%d (api key %s)', engine_cfg.model_path, ', '.join(engine_cfg.served_names),
             server_cfg.host, sock.getsockname()[1], 'required' if api_key else 'not required')
    engine = Engine(engine_cfg)
    engine.start(background=True)
    app = create_app(engine=engine, server=server_cfg, api_key=api_key, stop_engine_on_shutdown=False)
    server = Server(uvicorn_config(app, server_cfg, log_level=server_cfg.log_level), engine=engine,
                    drain_timeout=server_cfg.drain_timeout)
    try:
        server.run(sockets=[sock])
    finally:
        engine.stop()
    if server.drained is False:
        return 1
    log.info('stopped cleanly')
    return 0


if __name__ == '__main__':
    sys.exit(main())
