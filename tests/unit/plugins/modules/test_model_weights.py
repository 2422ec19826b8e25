# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_weights module: local copies into tmp_path, a fake huggingface_hub, an archive over HTTP."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import io
import json
import os
import stat
import tarfile
import threading

from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from ansible.module_utils import basic

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_weights as mw
from ansible_collections.openautoglm.deploy.plugins.modules import model_weights

COMMIT = '0123456789abcdef0123456789abcdef01234567'
TOKEN = 'hf_SeCrEtToKeN1234567890'
FILES = {
    'config.json': b'{"hidden_size": 64, "num_hidden_layers": 2}',
    'model-00001-of-00002.safetensors': b'\x01' * 4096,
    'model-00002-of-00002.safetensors': b'\x02' * 2048,
    'tokenizer/tokenizer.json': b'{"vocab": {}}',
}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_tree(root, files=None):
    for rel, data in (files or FILES).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / 'src')


@pytest.fixture
def dest_root(tmp_path):
    return tmp_path / 'models'


def local_args(src, dest_root, **extra):
    args = {'name': 'tiny', 'source': 'local', 'src': str(src), 'dest_root': str(dest_root)}
    args.update(extra)
    return args


def read_dest(dest_root):
    dest = dest_root / 'tiny'
    return dict((rel, (dest / rel).read_bytes()) for rel in mw.list_files(str(dest)))


def test_local_copy_then_unchanged(run_module, src, dest_root):
    status, res = run_module(model_weights.main, local_args(src, dest_root))
    assert status == 'exit', res['msg'] if status == 'fail' else ''
    assert (res['changed'], res['action'], res['reason']) == (True, 'fetch', 'absent')
    assert res['dest'] == str(dest_root / 'tiny')
    assert (res['file_count'], res['total_bytes']) == (4, sum(len(d) for d in FILES.values()))
    assert read_dest(dest_root) == FILES
    manifest = json.loads((dest_root / 'tiny' / mw.MANIFEST).read_text())
    assert manifest['source'] == {'type': 'local', 'src': str(src)}
    assert dict((rel, e['sha256']) for rel, e in manifest['files'].items()) == dict((rel, sha256(d)) for rel, d in FILES.items())
    # mtimes preserved, no staging left behind
    assert os.stat(str(dest_root / 'tiny' / 'config.json')).st_mtime_ns == os.stat(str(src / 'config.json')).st_mtime_ns
    assert sorted(os.listdir(str(dest_root))) == ['tiny']

    status, res = run_module(model_weights.main, local_args(src, dest_root))
    assert (status, res['changed'], res['action'], res['mismatches']) == ('exit', False, 'none', [])
    assert res['file_count'] == 4
    status, res = run_module(model_weights.main, local_args(src, dest_root, verify='full'))
    assert (status, res['changed']) == ('exit', False)


def test_check_mode_changes_nothing(run_module, src, dest_root):
    status, res = run_module(model_weights.main, local_args(src, dest_root, mode='0640'), check_mode=True)
    assert (status, res['changed'], res['action']) == ('exit', True, 'fetch')
    assert res['total_bytes'] == sum(len(d) for d in FILES.values()) and res['free_bytes'] > 0
    assert not dest_root.exists()

    run_module(model_weights.main, local_args(src, dest_root))
    (src / 'config.json').write_bytes(b'{"hidden_size": 128, "num_hidden_layers": 2}')
    before = read_dest(dest_root)
    status, res = run_module(model_weights.main, local_args(src, dest_root, mode='0600'), check_mode=True)
    assert (status, res['changed'], res['action'], res['reason']) == ('exit', True, 'replace', 'source changed')
    assert read_dest(dest_root) == before
    assert sorted(os.listdir(str(dest_root))) == ['tiny']
    assert stat.S_IMODE(os.stat(str(dest_root / 'tiny' / 'config.json')).st_mode) != 0o600


def test_changed_local_source_is_copied_again(run_module, src, dest_root):
    run_module(model_weights.main, local_args(src, dest_root))
    (src / 'extra.txt').write_bytes(b'new')
    status, res = run_module(model_weights.main, local_args(src, dest_root))
    assert (status, res['changed'], res['action'], res['reason']) == ('exit', True, 'replace', 'source changed')
    assert read_dest(dest_root)['extra.txt'] == b'new'
    assert sorted(os.listdir(str(dest_root))) == ['tiny']


def corrupt_keeping_size_and_mtime(path):
    st = os.stat(str(path))
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(str(path), ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corruption_found_by_full_verify_and_recopied(run_module, src, dest_root):
    run_module(model_weights.main, local_args(src, dest_root))
    corrupt_keeping_size_and_mtime(dest_root / 'tiny' / 'model-00001-of-00002.safetensors')
    # quick verification trusts size + mtime
    assert run_module(model_weights.main, local_args(src, dest_root))[1]['changed'] is False
    status, res = run_module(model_weights.main, local_args(src, dest_root, verify='full'))
    assert (status, res['changed'], res['action'], res['reason']) == ('exit', True, 'replace', 'files do not match')
    assert len(res['mismatches']) == 1 and res['mismatches'][0].startswith(
        'model-00001-of-00002.safetensors has sha256 ')
    assert read_dest(dest_root) == FILES


def test_corruption_fails_with_on_mismatch_fail(run_module, src, dest_root):
    run_module(model_weights.main, local_args(src, dest_root))
    (dest_root / 'tiny' / 'model-00002-of-00002.safetensors').write_bytes(b'short')
    (dest_root / 'tiny' / 'stray.bin').write_bytes(b'x')
    status, res = run_module(model_weights.main, local_args(src, dest_root, on_mismatch='fail'))
    assert status == 'fail' and res['reason'] == 'files do not match'
    assert res['mismatches'] == ['model-00002-of-00002.safetensors has 5 bytes, the manifest says 2048',
                                 'stray.bin is not in the manifest']
    assert 'on_mismatch=fail' in res['msg'] and 'model-00002-of-00002.safetensors has 5 bytes' in res['msg']
    assert (dest_root / 'tiny' / 'stray.bin').exists()


def test_unmanaged_directory(run_module, src, dest_root):
    make_tree(dest_root / 'tiny', {'config.json': b'{}'})
    status, res = run_module(model_weights.main, local_args(src, dest_root, on_mismatch='fail'))
    assert status == 'fail' and 'no readable .openautoglm-manifest.json' in res['msg']
    status, res = run_module(model_weights.main, local_args(src, dest_root))
    assert (status, res['action'], res['reason']) == ('exit', 'replace', 'no manifest')
    assert read_dest(dest_root) == FILES


def test_checksums_verified(run_module, src, dest_root, tmp_path):
    good = {'config.json': sha256(FILES['config.json']), './tokenizer/tokenizer.json': sha256(FILES['tokenizer/tokenizer.json'])}
    status, res = run_module(model_weights.main, local_args(src, dest_root, checksums=good))
    assert (status, res['changed']) == ('exit', True)
    sums = tmp_path / 'SHA256SUMS'
    sums.write_text(''.join('%s  %s\n' % (sha256(d), rel) for rel, d in FILES.items()))
    assert run_module(model_weights.main, local_args(src, dest_root, checksum_file=str(sums)))[1]['changed'] is False


def test_checksum_mismatch_fails_and_leaves_nothing(run_module, src, dest_root):
    bad = {'model-00001-of-00002.safetensors': '0' * 64, 'missing.bin': '1' * 64}
    status, res = run_module(model_weights.main, local_args(src, dest_root, checksums=bad))
    assert status == 'fail'
    assert ('checksum mismatch for model-00001-of-00002.safetensors: expected sha256 %s, got %s'
            % ('0' * 64, sha256(FILES['model-00001-of-00002.safetensors']))) in res['msg']
    assert 'missing.bin is listed in checksums but was not fetched' in res['msg']
    assert os.listdir(str(dest_root)) == []


@pytest.mark.parametrize('content, message', [
    ('nothex  config.json\n', 'line 1 is not "<sha256>  <path>"'),
])
def test_bad_checksum_file(run_module, src, dest_root, tmp_path, content, message):
    sums = tmp_path / 'SHA256SUMS'
    sums.write_text(content)
    status, res = run_module(model_weights.main, local_args(src, dest_root, checksum_file=str(sums)))
    assert status == 'fail' and message in res['msg']
    status, res = run_module(model_weights.main, local_args(src, dest_root, checksum_file=str(tmp_path / 'nope')))
    assert status == 'fail' and 'cannot read checksum_file' in res['msg']


DiskUsage = collections.namedtuple('DiskUsage', 'total used free')


def test_free_space_checked_before_copying(run_module, src, dest_root, monkeypatch):
    monkeypatch.setattr(mw.shutil, 'disk_usage', lambda path: DiskUsage(10 ** 12, 10 ** 12 - 1000, 1000))
    total = sum(len(d) for d in FILES.values())
    status, res = run_module(model_weights.main, local_args(src, dest_root, min_free_bytes=500))
    assert status == 'fail'
    assert res['msg'] == ('%s: not enough free space for %s (filesystem of %s): 1000 bytes (0.0 GB) free, %d bytes (0.0 GB) '
                          'needed (0.0 GB to write + min_free_bytes 0.0 GB); free some space or choose another dest_root'
                          % (dest_root / 'tiny', dest_root / '.tiny.partial', os.path.dirname(str(dest_root)), total + 500))
    assert not dest_root.exists()


def test_owner_group_mode(run_module, src, dest_root):
    uid, gid = os.getuid(), os.getgid()
    import grp  # pylint: disable=import-outside-toplevel
    import pwd  # pylint: disable=import-outside-toplevel
    args = local_args(src, dest_root, mode='0640', owner=pwd.getpwuid(uid).pw_name, group=grp.getgrgid(gid).gr_name)
    assert run_module(model_weights.main, args)[1]['changed'] is True
    dest = dest_root / 'tiny'
    assert stat.S_IMODE(os.stat(str(dest / 'config.json')).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(str(dest / 'tokenizer')).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o750
    assert run_module(model_weights.main, args)[1]['changed'] is False
    # only the mode differs: changed, and check mode leaves it
    assert run_module(model_weights.main, dict(args, mode='0644'), check_mode=True)[1]['changed'] is True
    assert stat.S_IMODE(os.stat(str(dest / 'config.json')).st_mode) == 0o640
    status, res = run_module(model_weights.main, dict(args, mode='0644'))
    assert (status, res['changed'], res['action']) == ('exit', True, 'none')
    assert stat.S_IMODE(os.stat(str(dest / 'config.json')).st_mode) == 0o644


@pytest.mark.parametrize('extra, message', [
    ({'name': '../etc'}, 'name must be a plain directory name'),
    ({'name': '.hidden'}, 'name must be a plain directory name'),
    ({'repo_id': 'x/y'}, 'repo_id only applies to source=hf (source is local)'),
    ({'url': 'https://example.com/m.tar'}, 'url only applies to source=url (source is local)'),
    ({'mode': 'u+rw'}, 'mode must be an octal string such as "0644"'),
    ({'min_free_bytes': -1}, 'min_free_bytes must be 0 or more'),
    ({'verify': 'sometimes'}, 'value of verify must be one of: quick, full, got: sometimes'),
    ({'checksums': {'a': '0' * 64}, 'checksum_file': '/x'}, 'mutually exclusive: checksums|checksum_file'),
    ({'checksums': {'config.json': 'abc'}}, "checksums[config.json] is not a sha256 (64 hex digits): 'abc'"),
    ({'source': 'hf', 'src': None}, 'source is hf but all of the following are missing: repo_id'),
])
def test_bad_arguments(run_module, src, dest_root, extra, message):
    args = dict(local_args(src, dest_root), **extra)
    args = dict((k, v) for k, v in args.items() if v is not None)
    status, res = run_module(model_weights.main, args)
    assert status == 'fail' and message in res['msg'], res['msg']


def test_src_must_exist(run_module, dest_root, tmp_path):
    status, res = run_module(model_weights.main, local_args(tmp_path / 'nope', dest_root))
    assert status == 'fail' and res['msg'] == 'src %s is not a directory on this host' % (tmp_path / 'nope')


# --- Hugging Face Hub, faked -------------------------------------------------------------

class FakeHub(object):
    """The two calls the module makes: HfApi(...).model_info(...) and snapshot_download(...)."""

    def __init__(self, files=None, commit=COMMIT, lfs_sha=None):
        self.files = dict(files or FILES)
        self.commit = commit
        self.lfs_sha = lfs_sha or {}
        self.calls = []
        hub = self

        class HfApi(object):
            def __init__(self, endpoint=None, token=None):
                hub.calls.append(('HfApi', {'endpoint': endpoint, 'token': token}))

            def model_info(self, repo_id, revision=None, files_metadata=False):
                hub.calls.append(('model_info', {'repo_id': repo_id, 'revision': revision, 'files_metadata': files_metadata}))
                siblings = []
                for rel, data in sorted(hub.files.items()):
                    lfs = None
                    if rel.endswith('.safetensors'):
                        lfs = type('Lfs', (), {'size': len(data), 'sha256': hub.lfs_sha.get(rel, sha256(data)), 'pointer_size': 134})()
                    blob = hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()
                    siblings.append(type('Sibling', (), {'rfilename': rel, 'size': len(data), 'blob_id': blob, 'lfs': lfs})())
                return type('Info', (), {'sha': hub.commit, 'siblings': siblings})()

        self.HfApi = HfApi

    def snapshot_download(self, repo_id, **kwargs):
        self.calls.append(('snapshot_download', dict(kwargs, repo_id=repo_id)))
        root = kwargs['local_dir']
        for rel, data in self.files.items():
            if mw.select(rel, kwargs.get('allow_patterns'), kwargs.get('ignore_patterns')):
                make_tree(__import__('pathlib').Path(root), {rel: data})
        meta = os.path.join(root, '.cache', 'huggingface', 'download')
        os.makedirs(meta)
        with open(os.path.join(meta, 'config.json.metadata'), 'w') as fh:
            fh.write('etag')
        return root

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(mw, 'huggingface_hub', fake)
    monkeypatch.setattr(mw, 'HAS_HF', True)
    return fake


def hf_args(dest_root, **extra):
    args = {'name': 'tiny', 'source': 'hf', 'repo_id': 'zai-org/Tiny', 'revision': COMMIT, 'token': TOKEN,
            'endpoint': 'https://hf-mirror.example.com', 'allow_patterns': ['*.json', '*.safetensors'],
            'dest_root': str(dest_root)}
    args.update(extra)
    return args


def test_hf_download_passes_revision_patterns_endpoint_token(run_module, hub, dest_root, warnings):
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'exit', res.get('msg')
    assert (res['changed'], res['action'], res['revision'], res['resolved_revision']) == (True, 'fetch', COMMIT, COMMIT)
    assert hub.calls[0] == ('HfApi', {'endpoint': 'https://hf-mirror.example.com', 'token': TOKEN})
    assert hub.calls[1] == ('model_info', {'repo_id': 'zai-org/Tiny', 'revision': COMMIT, 'files_metadata': True})
    name, kwargs = hub.calls[2]
    assert name == 'snapshot_download'
    assert kwargs == {'repo_id': 'zai-org/Tiny', 'revision': COMMIT, 'token': TOKEN, 'endpoint': 'https://hf-mirror.example.com',
                      'allow_patterns': ['*.json', '*.safetensors'], 'ignore_patterns': None,
                      'local_dir': str(dest_root / '.tiny.partial')}
    # tokenizer/tokenizer.json matches *.json (fnmatch's * crosses /), the .cache metadata is gone
    assert read_dest(dest_root) == FILES
    assert res['total_bytes'] == sum(len(d) for d in FILES.values()) == res['needed_bytes']
    assert warnings == []
    manifest_text = (dest_root / 'tiny' / mw.MANIFEST).read_text()
    assert TOKEN not in manifest_text and TOKEN not in json.dumps(res)
    assert json.loads(manifest_text)['source'] == {'type': 'hf', 'repo_id': 'zai-org/Tiny', 'revision': COMMIT,
                                                   'allow_patterns': ['*.json', '*.safetensors'], 'ignore_patterns': None}
    # present and verified: the Hub is not asked again
    hub.calls[:] = []
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert (status, res['changed'], hub.calls, res['resolved_revision']) == ('exit', False, [], COMMIT)


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, msg: seen.append(msg))
    return seen


def test_hf_branch_warns_and_downloads_the_resolved_commit(run_module, hub, dest_root, warnings):
    status, res = run_module(model_weights.main, hf_args(dest_root, revision='main', allow_patterns=['config.json']))
    assert status == 'exit'
    assert warnings == ["revision 'main' of zai-org/Tiny is a branch or tag, not a commit: what it points to can change; "
                        "pin a 40-hex commit for reproducible deployments"]
    assert hub.calls[2][1]['revision'] == COMMIT
    assert read_dest(dest_root) == {'config.json': FILES['config.json']}
    # another revision is another source: fetched again
    hub.calls[:] = []
    status, res = run_module(model_weights.main, hf_args(dest_root, allow_patterns=['config.json']))
    assert (status, res['action'], res['reason']) == ('exit', 'replace', 'source changed')


def test_hf_lfs_checksum_mismatch_fails_without_secret(run_module, hub, dest_root):
    hub.lfs_sha['model-00002-of-00002.safetensors'] = 'f' * 64
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'fail'
    assert 'checksum mismatch for model-00002-of-00002.safetensors: the Hub says sha256 %s' % ('f' * 64) in res['msg']
    assert TOKEN not in json.dumps(res)
    assert os.listdir(str(dest_root)) == []


def test_hf_errors_are_reported_without_the_token(run_module, hub, dest_root):
    def boom(*args, **kwargs):
        raise RuntimeError('401 Client Error for https://hf-mirror.example.com/api/models (token %s)' % TOKEN)
    hub.HfApi.model_info = boom
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'fail'
    assert res['msg'].startswith('Hugging Face Hub (zai-org/Tiny, revision %s, endpoint https://hf-mirror.example.com): '
                                 'RuntimeError: 401 Client Error' % COMMIT)
    assert TOKEN not in json.dumps(res)


def test_hf_free_space_from_hub_sizes_before_download(run_module, hub, dest_root, monkeypatch):
    monkeypatch.setattr(mw.shutil, 'disk_usage', lambda path: DiskUsage(10 ** 12, 10 ** 12 - 100, 100))
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'fail' and 'not enough free space' in res['msg']
    assert '100 bytes (0.0 GB) free, %d bytes' % sum(len(d) for d in FILES.values()) in res['msg']
    assert 'snapshot_download' not in hub.names()


def test_hf_resume_counts_only_what_is_left(run_module, hub, dest_root):
    # an earlier run was interrupted after the first shard
    make_tree(dest_root / '.tiny.partial', {'model-00001-of-00002.safetensors': FILES['model-00001-of-00002.safetensors'],
                                            'old/leftover.bin': b'from another revision'})
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'exit'
    assert res['needed_bytes'] == sum(len(d) for d in FILES.values()) - 4096 - len(b'from another revision')
    assert hub.calls[2][1]['local_dir'] == str(dest_root / '.tiny.partial')
    assert read_dest(dest_root) == FILES and sorted(os.listdir(str(dest_root))) == ['tiny']


def test_hf_check_mode_asks_the_hub_but_downloads_nothing(run_module, hub, dest_root):
    status, res = run_module(model_weights.main, hf_args(dest_root), check_mode=True)
    assert (status, res['changed'], res['action'], res['resolved_revision']) == ('exit', True, 'fetch', COMMIT)
    assert hub.names() == ['HfApi', 'model_info'] and not dest_root.exists()


def test_hf_cache_dir_downloads_into_the_cache_then_copies(run_module, hub, dest_root, tmp_path):
    def cached(repo_id, **kwargs):
        hub.calls.append(('snapshot_download', dict(kwargs, repo_id=repo_id)))
        snap = make_tree(tmp_path / 'hf-cache' / 'snapshots' / COMMIT, FILES)
        return str(snap)
    hub.snapshot_download = cached
    status, res = run_module(model_weights.main, hf_args(dest_root, cache_dir=str(tmp_path / 'hf-cache')))
    assert status == 'exit'
    kwargs = hub.calls[2][1]
    assert kwargs['cache_dir'] == str(tmp_path / 'hf-cache') and 'local_dir' not in kwargs
    assert read_dest(dest_root) == FILES
    # cache and target on one filesystem: room for both copies was needed
    assert res['needed_bytes'] == 2 * sum(len(d) for d in FILES.values())


def test_hf_missing_library(run_module, dest_root, monkeypatch):
    monkeypatch.setattr(mw, 'HAS_HF', False)
    monkeypatch.setattr(mw, 'HF_IMPORT_ERROR', 'Traceback: No module named huggingface_hub')
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'fail' and 'install huggingface_hub on the managed host' in res['msg']


# --- archive over HTTP -------------------------------------------------------------------

def tar_bytes(files, top='tiny-model', mode='w:gz', extra=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo('%s/%s' % (top, rel) if top else rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            SimpleHTTPRequestHandler.__init__(self, *args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = HTTPServer(('127.0.0.1', 0), Quiet)
    thread = threading.Thread(target=server.serve_forever)
    thread.daemon = True
    thread.start()
    yield root, 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_url_archive_extracted_and_verified(run_module, http_root, dest_root):
    root, base = http_root
    (root / 'tiny.tar.gz').write_bytes(tar_bytes(FILES))
    url = base.replace('http://', 'http://deploy:pw@') + '/tiny.tar.gz'
    args = {'name': 'tiny', 'source': 'url', 'url': url, 'url_password': 'S3cretPw', 'dest_root': str(dest_root),
            'checksums': {'config.json': sha256(FILES['config.json'])}}
    status, res = run_module(model_weights.main, args)
    assert status == 'exit', res.get('msg')
    assert (res['changed'], res['action']) == (True, 'fetch')
    assert read_dest(dest_root) == FILES          # the single top directory is lifted
    assert sorted(os.listdir(str(dest_root))) == ['tiny']
    manifest = json.loads((dest_root / 'tiny' / mw.MANIFEST).read_text())
    assert manifest['source'] == {'type': 'url', 'url': base + '/tiny.tar.gz'}
    assert 'S3cretPw' not in json.dumps(res) and 'pw@' not in json.dumps(manifest)
    status, res = run_module(model_weights.main, args)
    assert (status, res['changed']) == ('exit', False)


def test_url_archive_escaping_the_directory_is_refused(run_module, http_root, dest_root):
    root, base = http_root
    evil = tarfile.TarInfo('../../etc/evil')
    link = tarfile.TarInfo('link')
    link.type = tarfile.SYMTYPE
    link.linkname = '/etc/passwd'
    for name, extra, message in [('evil.tar', [evil], "archive member '../../etc/evil' points outside"),
                                 ('link.tar', [link], "archive member 'link' is a link or device")]:
        (root / name).write_bytes(tar_bytes({'config.json': b'{}'}, top=None, mode='w', extra=extra))
        status, res = run_module(model_weights.main, {'name': 'tiny', 'source': 'url', 'url': base + '/' + name,
                                                      'dest_root': str(dest_root)})
        assert status == 'fail' and message in res['msg']
        assert os.listdir(str(dest_root)) == []


def test_url_http_error(run_module, http_root, dest_root):
    base = http_root[1]
    status, res = run_module(model_weights.main, {'name': 'tiny', 'source': 'url', 'url': base + '/missing.tar',
                                                  'dest_root': str(dest_root)})
    assert status == 'fail' and 'downloading %s/missing.tar failed: HTTP 404' % base in res['msg']


# --- traversal, confinement, refusals that change nothing --------------------------------

def snapshot(root):
    """{relative path: bytes} of every file under root, to show a tree was left alone."""
    return dict((rel, open(os.path.join(str(root), rel), 'rb').read()) for rel in mw.list_files(str(root)))


@pytest.fixture
def victim(tmp_path):
    """A sibling directory outside dest_root with files and no manifest (what on_mismatch=replace would replace)."""
    return make_tree(tmp_path / 'victim', {'passwd': b'root:x:0:0', 'sub/keep': b'keep me'})


@pytest.mark.parametrize('name, problem', [
    ('../victim', 'it contains a path separator'),
    ('..', "it is '..'"),
    ('.', "it is '.'"),
    ('', 'it is empty'),
    ('evil\nLD_PRELOAD=x', 'it contains a control character'),
    ('-rf', "it starts with '-'"),
    ('.victim', "it starts with '.'"),
    (' tiny', 'leading or trailing white space'),
])
def test_hostile_names_are_refused_and_the_sibling_is_untouched(run_module, src, tmp_path, victim, name, problem):
    dest_root = tmp_path / 'models'
    before = snapshot(victim)
    for on_mismatch in ('replace', 'fail'):
        status, res = run_module(model_weights.main, local_args(src, dest_root, name=name, on_mismatch=on_mismatch))
        assert status == 'fail', res
        assert res['msg'].startswith('name must be a plain directory name') and problem in res['msg'], res['msg']
    assert snapshot(victim) == before and not dest_root.exists()


def test_a_symlink_target_outside_dest_root_is_refused(run_module, src, tmp_path, victim):
    dest_root = tmp_path / 'models'
    dest_root.mkdir()
    (dest_root / 'tiny').symlink_to(victim)
    before = snapshot(victim)
    status, res = run_module(model_weights.main, local_args(src, dest_root, on_mismatch='replace'))
    assert status == 'fail' and res['changed'] is False
    assert 'is a symbolic link (to %s)' % victim in res['msg'] and 'dest_root' in res['msg'], res['msg']
    assert snapshot(victim) == before and os.path.islink(str(dest_root / 'tiny'))


def test_a_planted_staging_link_is_refused_before_the_hub_writes_or_prunes(run_module, hub, tmp_path, victim):
    # snapshot_download(local_dir=<link>) then prune() would write into, and delete from, the victim
    dest_root = tmp_path / 'models'
    dest_root.mkdir()
    (dest_root / '.tiny.partial').symlink_to(victim)
    before = snapshot(victim)
    status, res = run_module(model_weights.main, hf_args(dest_root))
    assert status == 'fail' and res['changed'] is False and '.tiny.partial is a symbolic link' in res['msg']
    assert 'snapshot_download' not in hub.names() and snapshot(victim) == before


def test_check_confined_resolves_links_in_dest_root(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    (tmp_path / 'alias').symlink_to(real)
    mw.check_confined(str(tmp_path / 'alias'), [str(tmp_path / 'alias' / 'tiny')])  # inside once resolved
    with pytest.raises(mw.WeightsError, match='outside dest_root'):
        mw.check_confined(str(tmp_path / 'alias'), [str(tmp_path / 'alias' / '..' / 'victim')])


def test_free_space_refusal_reports_changed_false(run_module, src, dest_root, monkeypatch):
    monkeypatch.setattr(mw.shutil, 'disk_usage', lambda path: DiskUsage(10 ** 12, 10 ** 12 - 1000, 1000))
    for check_mode in (False, True):
        status, res = run_module(model_weights.main, local_args(src, dest_root), check_mode=check_mode)
        assert (status, res['changed'], res['action']) == ('fail', False, 'fetch'), res
        assert 'not enough free space' in res['msg'] and not dest_root.exists()


def test_free_space_refusal_of_a_replace_leaves_the_old_copy(run_module, src, dest_root, monkeypatch):
    assert run_module(model_weights.main, local_args(src, dest_root))[1]['changed'] is True
    (src / 'config.json').write_bytes(b'{"hidden_size": 128}')  # the source changed: a replace is due
    before = read_dest(dest_root)
    monkeypatch.setattr(mw.shutil, 'disk_usage', lambda path: DiskUsage(10 ** 12, 10 ** 12 - 10, 10))
    status, res = run_module(model_weights.main, local_args(src, dest_root))
    assert (status, res['changed'], res['action'], res['reason']) == ('fail', False, 'replace', 'source changed')
    assert read_dest(dest_root) == before


# --- config_only: the fit check before the download ---------------------------------------

def test_config_only_local_reads_the_source_and_writes_nothing(run_module, src, dest_root):
    status, res = run_module(model_weights.main, local_args(src, dest_root, config_only=True))
    assert status == 'exit', res.get('msg')
    assert (res['changed'], res['config_source'], res['action']) == (False, 'local', 'fetch')
    assert res['config'] == json.loads(FILES['config.json'])
    assert res['weights_bytes'] == 4096 + 2048
    assert not dest_root.exists()


def test_config_only_uses_a_verified_target_without_the_source(run_module, src, dest_root):
    assert run_module(model_weights.main, local_args(src, dest_root))[1]['changed'] is True
    status, res = run_module(model_weights.main, local_args(src, dest_root, config_only=True))
    assert (status, res['changed'], res['config_source'], res['action']) == ('exit', False, 'target', 'none')


def test_config_only_hf_downloads_config_json_alone_at_the_resolved_commit(run_module, hub, dest_root, monkeypatch):
    fetched = []

    def hf_hub_download(repo_id, filename, revision=None, token=None, endpoint=None, local_dir=None):
        fetched.append((repo_id, filename, revision, token, endpoint))
        make_tree(__import__('pathlib').Path(local_dir), {filename: hub.files[filename]})
        return os.path.join(local_dir, filename)

    hub.hf_hub_download = hf_hub_download
    hub.commit = COMMIT
    status, res = run_module(model_weights.main, hf_args(dest_root, revision='main', config_only=True))
    assert status == 'exit', res.get('msg')
    assert fetched == [('zai-org/Tiny', 'config.json', COMMIT, TOKEN, 'https://hf-mirror.example.com')]
    assert 'snapshot_download' not in hub.names()
    assert (res['changed'], res['config_source'], res['resolved_revision']) == (False, 'hf', COMMIT)
    assert res['config'] == json.loads(FILES['config.json']) and res['weights_bytes'] == 4096 + 2048
    assert not dest_root.exists() and TOKEN not in json.dumps(res)


def test_config_only_url_says_it_cannot_know(run_module, dest_root):
    status, res = run_module(model_weights.main, {'name': 'tiny', 'source': 'url', 'url': 'https://example.com/m.tar',
                                                  'dest_root': str(dest_root), 'config_only': True})
    assert (status, res['changed'], res['config']) == ('exit', False, None)
    assert 'cannot be read before it is downloaded' in res['msg']
