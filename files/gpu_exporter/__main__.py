# -*- coding: utf-8 -*-
"""``python -m gpu_exporter``: serve per-GPU NVML metrics on /metrics.

    python -m gpu_exporter --listen-address :9445 [--expected-gpus 8] [--no-xid-events]

Every flag can also come from the environment as ``GPU_EXPORTER_<FLAG>``
(``--listen-address`` -> ``GPU_EXPORTER_LISTEN_ADDRESS``); the command line wins.
"""

import argparse
import logging
import os
import signal
import sys
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import MetricsHandler

from gpu_exporter import __version__
from gpu_exporter.collector import GpuCollector, LOG


def _env(name, default):
    return os.environ.get('GPU_EXPORTER_' + name.upper().replace('-', '_'), default)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='gpu_exporter', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--listen-address', default=_env('listen-address', ':9445'),
                        help='host:port to listen on; an empty host means every IPv4 address (default :9445)')
    parser.add_argument('--expected-gpus', type=int, default=_env('expected-gpus', None),
                        help='GPUs this host should have, exported as nvidia_gpu_expected_count')
    parser.add_argument('--no-xid-events', action='store_true',
                        default=_env('no-xid-events', '').lower() in ('1', 'true', 'yes'),
                        help='do not watch NVML XID error events')
    parser.add_argument('--nvml-retry-seconds', type=float, default=float(_env('nvml-retry-seconds', 30)),
                        help='how often to retry NVML initialisation while it fails (default 30)')
    parser.add_argument('--log-level', default=_env('log-level', 'info'),
                        choices=['debug', 'info', 'warning', 'error'])
    parser.add_argument('--version', action='version', version='%(prog)s ' + __version__)
    args = parser.parse_args(argv)
    host, sep, port = args.listen_address.rpartition(':')
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error('--listen-address must be host:port or :port, got %r' % args.listen_address)
    args.host, args.port = host.strip('[]') or '0.0.0.0', int(port)
    if args.expected_gpus is not None:
        args.expected_gpus = int(args.expected_gpus)
        if args.expected_gpus < 0:
            parser.error('--expected-gpus must be >= 0')
    return args


def build_registry(collector):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def make_server(registry, host, port):
    handler = MetricsHandler.factory(registry)
    return ThreadingHTTPServer((host, port), handler)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format='%(levelname)s %(name)s: %(message)s',
                        stream=sys.stderr)
    collector = GpuCollector(expected_gpus=args.expected_gpus, retry_seconds=args.nvml_retry_seconds,
                             xid_events=not args.no_xid_events)
    registry = build_registry(collector)
    try:
        server = make_server(registry, args.host, args.port)
    except OSError as exc:
        LOG.error('cannot listen on %s:%d: %s', args.host, args.port, exc)
        return 2
    server.daemon_threads = True
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    list(registry.collect())  # initialise NVML now, not on the first scrape
    LOG.info('gpu_exporter %s listening on %s:%d (NVML %s, %d GPU(s))', __version__, args.host, args.port,
             'up' if collector.initialised else 'down: %s' % collector.init_error, len(collector.gpus))
    try:
        server.serve_forever()
    finally:
        server.server_close()
        collector.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
