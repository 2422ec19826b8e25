# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Model weights on disk: fetch into a staging directory beside the target, verify, rename.

A model directory written here carries ``.openautoglm-manifest.json``: where it came from
(never a secret) and the size, mtime and sha256 of every file. A directory whose files still
match its manifest (size and mtime, or sha256 with a full check) is left alone.

Sources: the Hugging Face Hub (``huggingface_hub``, optional), a local directory, or a
.tar / .tar.gz / .tgz archive at a URL. The functions are plain Python over paths (only
``open_url_archive`` goes through Ansible's fetch_url); ``Weights`` is the module's logic
around an AnsibleModule (parameters, check mode, owner/group/mode, fail_json).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import traceback

try:
    import huggingface_hub
    HAS_HF = True
    HF_IMPORT_ERROR = None
except ImportError:
    huggingface_hub = None
    HAS_HF = False
    HF_IMPORT_ERROR = traceback.format_exc()

MANIFEST = '.openautoglm-manifest.json'
MANIFEST_VERSION = 1
HF_METADATA_DIR = '.cache'
GB = 1e9
_CHUNK = 8 * 1024 * 1024
_COMMIT = re.compile(r'^[0-9a-f]{40}$')
_SHA256 = re.compile(r'^[0-9a-fA-F]{64}$')


class WeightsError(Exception):
    """Something about the weights or the target is wrong; the message says what to do."""


def plain_name_problem(name):
    """Why ``name`` is not a plain directory name (a sentence), or None when it is one.

    Plain: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no control characters, not
    starting with ``.`` or ``-``, no leading or trailing white space.
    """
    if not name:
        return 'it is empty'
    if name in ('.', '..'):
        return 'it is %r' % name
    if '/' in name or '\\' in name:
        return 'it contains a path separator'
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return 'it contains a control character (newline, tab, NUL...)'
    if name[0] in '.-':
        return 'it starts with %r' % name[0]
    if name != name.strip():
        return 'it has leading or trailing white space'
    return None


def check_confined(root, paths):
    """Raise WeightsError unless every path lies directly in ``root`` once resolved.

    A path that is a symbolic link is refused (a link planted as the target or the staging
    directory would send the download, the pruning or a replace elsewhere); so is one whose
    real path (symbolic links in ``root`` resolved) has another parent than ``root``'s.
    """
    real_root = os.path.realpath(root)
    for path in paths:
        if os.path.islink(path):
            raise WeightsError('%s is a symbolic link (to %s); the module only writes real directories inside '
                               'dest_root %s: remove the link or choose another name' % (path, os.readlink(path), real_root))
        real = os.path.realpath(path)
        if os.path.dirname(real) != real_root:
            raise WeightsError('%s resolves to %s, outside dest_root %s; refusing to write there' % (path, real, real_root))


def gb(num_bytes):
    return '%.1f GB' % (num_bytes / GB)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path):
    """The git object id of a file (what the Hub reports for files not stored in LFS)."""
    digest = hashlib.sha1()
    digest.update(b'blob %d\0' % os.path.getsize(path))
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def is_commit(revision):
    return bool(revision) and bool(_COMMIT.match(revision))


def redact_url(url):
    """The URL without user:password@."""
    return re.sub(r'^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@', r'\1', url or '')


def list_files(root):
    """{relative path: os.stat_result} of the regular files under root (manifest excluded)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in filenames:
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, root).replace(os.sep, '/')
            if rel == MANIFEST:
                continue
            found[rel] = os.stat(path)
    return found


def tree_bytes(root):
    return sum(st.st_size for st in list_files(root).values()) if os.path.isdir(root) else 0


def build_manifest(root, source, hashes=None):
    """Manifest dict of the tree at root; ``hashes`` (rel -> sha256) saves re-reading files."""
    hashes = hashes or {}
    files = {}
    for rel, st in sorted(list_files(root).items()):
        files[rel] = {'size': st.st_size, 'mtime_ns': st.st_mtime_ns,
                      'sha256': hashes.get(rel) or sha256_file(os.path.join(root, rel))}
    return {'version': MANIFEST_VERSION, 'source': source, 'files': files,
            'total_bytes': sum(f['size'] for f in files.values())}


def read_manifest(root):
    path = os.path.join(root, MANIFEST)
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get('files'), dict):
        return None
    return manifest


def write_manifest(root, manifest):
    path = os.path.join(root, MANIFEST)
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    os.rename(tmp, path)
    return path


def verify_tree(root, manifest, full=False):
    """Differences between the files under root and the manifest, as sentences (empty: matches)."""
    problems = []
    on_disk = list_files(root)
    for rel, entry in sorted(manifest['files'].items()):
        st = on_disk.get(rel)
        if st is None:
            problems.append('%s is missing' % rel)
        elif st.st_size != entry.get('size'):
            problems.append('%s has %d bytes, the manifest says %s' % (rel, st.st_size, entry.get('size')))
        elif full:
            actual = sha256_file(os.path.join(root, rel))
            if actual != entry.get('sha256'):
                problems.append('%s has sha256 %s, the manifest says %s' % (rel, actual, entry.get('sha256')))
        elif st.st_mtime_ns != entry.get('mtime_ns'):
            problems.append('%s was modified after it was written (mtime differs from the manifest)' % rel)
    for rel in sorted(set(on_disk) - set(manifest['files'])):
        problems.append('%s is not in the manifest' % rel)
    return problems


def parse_checksum_file(text, origin='checksum_file'):
    """{relative path: sha256} from sha256sum output ('<hex>  <path>' or '<hex> *<path>')."""
    sums = {}
    for num, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not _SHA256.match(parts[0]):
            raise WeightsError('%s line %d is not "<sha256>  <path>" (sha256sum format): %r' % (origin, num, line[:120]))
        rel = parts[1].lstrip('*')
        sums[normalise_rel(rel)] = parts[0].lower()
    return sums


def normalise_rel(rel):
    rel = rel.strip().replace('\\', '/')
    while rel.startswith('./'):
        rel = rel[2:]
    return rel


def check_checksums(checksums, hashes, origin='checksums'):
    """Sentences for each expected sha256 that the files' hashes (rel -> sha256) do not match."""
    problems = []
    for rel, expected in sorted(checksums.items()):
        rel = normalise_rel(rel)
        if not _SHA256.match(str(expected)):
            raise WeightsError('%s[%s] is not a sha256 (64 hex digits): %r' % (origin, rel, expected))
        actual = hashes.get(rel)
        if actual is None:
            problems.append('%s is listed in %s but was not fetched' % (rel, origin))
        elif actual != expected.lower():
            problems.append('checksum mismatch for %s: expected sha256 %s, got %s' % (rel, expected.lower(), actual))
    return problems


def hash_tree(root):
    return dict((rel, sha256_file(os.path.join(root, rel))) for rel in sorted(list_files(root)))


def existing_parent(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_free_space(targets, min_free_bytes=0):
    """Raise WeightsError unless each filesystem has room; ``targets`` is [(path, bytes to write)].

    Paths on one filesystem add up. Returns (free bytes, needed bytes) of the tightest one.
    """
    by_dev = {}
    for path, need in targets:
        where = existing_parent(path)
        dev = os.stat(where).st_dev
        entry = by_dev.setdefault(dev, {'paths': [], 'where': where, 'need': 0})
        entry['paths'].append(path)
        entry['need'] += max(int(need), 0)
    tightest = None
    for entry in by_dev.values():
        free = shutil.disk_usage(entry['where']).free
        needed = entry['need'] + int(min_free_bytes)
        if free < needed:
            raise WeightsError(
                'not enough free space for %s (filesystem of %s): %d bytes (%s) free, %d bytes (%s) needed '
                '(%s to write + min_free_bytes %s); free some space or choose another dest_root'
                % (', '.join(entry['paths']), entry['where'], free, gb(free), needed, gb(needed),
                   gb(entry['need']), gb(min_free_bytes)))
        if tightest is None or free - needed < tightest[0] - tightest[1]:
            tightest = (free, needed)
    return tightest


def remove_tree(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def swap_into_place(staging, dest):
    """Rename the finished staging directory to dest, replacing an old dest atomically enough.

    The old tree is renamed aside first (two renames on one filesystem), then deleted.
    """
    old = None
    if os.path.lexists(dest):
        old = os.path.join(os.path.dirname(dest), '.%s.old-%d' % (os.path.basename(dest), os.getpid()))
        remove_tree(old)
        os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        if old:
            os.rename(old, dest)
        raise
    if old:
        remove_tree(old)


# --- local directory -------------------------------------------------------------------

def copy_local(src, staging):
    """Copy the tree at src (regular files, contents of symlinks) to staging, keeping mtimes."""
    remove_tree(staging)
    shutil.copytree(src, staging, symlinks=False, ignore=shutil.ignore_patterns(MANIFEST))


def local_changed(src, manifest):
    """Whether the source tree differs from what the manifest recorded (sizes and mtimes)."""
    files = list_files(src)
    if set(files) != set(manifest['files']):
        return True
    return any(st.st_size != manifest['files'][rel].get('size') or st.st_mtime_ns != manifest['files'][rel].get('mtime_ns')
               for rel, st in files.items())


# --- Hugging Face Hub ------------------------------------------------------------------

def _matches(rel, patterns):
    for pattern in patterns:
        if pattern.endswith('/'):
            pattern += '*'
        if fnmatch.fnmatch(rel, pattern):
            return True
    return False


def select(rel, allow_patterns=None, ignore_patterns=None):
    """Hugging Face's pattern rule: kept when it matches an allow pattern and no ignore pattern."""
    if allow_patterns and not _matches(rel, allow_patterns):
        return False
    return not (ignore_patterns and _matches(rel, ignore_patterns))


def hf_plan(repo_id, revision, token=None, endpoint=None, allow_patterns=None, ignore_patterns=None):
    """Commit and files (name, size, sha256 or git blob id) the Hub will send, before downloading."""
    api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
    info = api.model_info(repo_id, revision=revision, files_metadata=True)
    files = {}
    for sib in info.siblings or []:
        rel = sib.rfilename
        if not select(rel, allow_patterns, ignore_patterns):
            continue
        lfs = getattr(sib, 'lfs', None)
        if isinstance(lfs, dict):
            sha256 = lfs.get('sha256')
        else:
            sha256 = getattr(lfs, 'sha256', None)
        files[rel] = {'size': sib.size, 'sha256': sha256, 'blob_id': getattr(sib, 'blob_id', None)}
    if not files:
        raise WeightsError('%s at revision %s has no file matching allow_patterns %s / ignore_patterns %s'
                           % (repo_id, revision or 'main', allow_patterns, ignore_patterns))
    return {'commit': getattr(info, 'sha', None), 'files': files,
            'total_bytes': sum(f['size'] or 0 for f in files.values())}


def hf_download(repo_id, revision, staging, token=None, endpoint=None, allow_patterns=None,
                ignore_patterns=None, cache_dir=None):
    """Download into staging; straight there (resumable), or through the cache at cache_dir."""
    kwargs = dict(repo_id=repo_id, revision=revision, token=token, endpoint=endpoint,
                  allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
    if cache_dir:
        snapshot = huggingface_hub.snapshot_download(cache_dir=cache_dir, **kwargs)
        copy_local(snapshot, staging)
    else:
        huggingface_hub.snapshot_download(local_dir=staging, **kwargs)
        remove_tree(os.path.join(staging, HF_METADATA_DIR, 'huggingface'))
        cache = os.path.join(staging, HF_METADATA_DIR)
        if os.path.isdir(cache) and not os.listdir(cache):
            os.rmdir(cache)


def prune(root, keep):
    """Delete files under root not in ``keep`` (left in a staging directory by an earlier, other download)."""
    removed = []
    for rel in sorted(set(list_files(root)) - set(keep)):
        os.unlink(os.path.join(root, rel))
        removed.append(rel)
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if dirpath != root and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return removed


def check_hf_files(plan, hashes, staging):
    """Sentences for files the Hub listed that are missing or differ (sha256 for LFS, git id otherwise)."""
    problems = []
    for rel, meta in sorted(plan['files'].items()):
        if rel not in hashes:
            problems.append('%s was listed by the Hub but not downloaded' % rel)
        elif meta.get('sha256') and hashes[rel] != meta['sha256']:
            problems.append('checksum mismatch for %s: the Hub says sha256 %s, got %s' % (rel, meta['sha256'], hashes[rel]))
        elif not meta.get('sha256') and meta.get('blob_id') and git_blob_sha1(os.path.join(staging, rel)) != meta['blob_id']:
            problems.append('checksum mismatch for %s: the Hub says git blob %s' % (rel, meta['blob_id']))
    return problems


# --- archive at a URL ------------------------------------------------------------------

def archive_members(archive):
    """Check an archive's members (regular files and directories inside it only); return them and their size."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    total = 0
    for member in members:
        name = member.name
        parts = name.replace('\\', '/').split('/')
        if name.startswith('/') or '..' in parts:
            raise WeightsError('archive member %r points outside the model directory; refusing to extract' % name)
        if not (member.isfile() or member.isdir()):
            raise WeightsError('archive member %r is a link or device; only files and directories are extracted' % name)
        total += member.size if member.isfile() else 0
    return members, total


def extract_archive(archive, staging):
    """Extract into staging; an archive holding one top directory gives that directory's contents."""
    remove_tree(staging)
    os.makedirs(staging)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(staging, filter='data')
        else:
            tar.extractall(staging)  # members checked by archive_members first
    entries = os.listdir(staging)
    if len(entries) == 1 and os.path.isdir(os.path.join(staging, entries[0])):
        inner = os.path.join(staging, entries[0])
        lifted = staging + '.lift'
        os.rename(inner, lifted)
        os.rmdir(staging)
        os.rename(lifted, staging)


def open_url_archive(module, url, timeout=60):
    """(response, Content-Length or None) for the archive at url, through Ansible's fetch_url
    (url_username / url_password / validate_certs from the module's parameters, proxies)."""
    from ansible.module_utils.urls import fetch_url  # pylint: disable=import-outside-toplevel

    resp, info = fetch_url(module, url, timeout=timeout)
    if resp is None or info.get('status') != 200:
        raise WeightsError('downloading %s failed: HTTP %s %s' % (redact_url(url), info.get('status'), info.get('msg', '')))
    length = resp.headers.get('Content-Length') if getattr(resp, 'headers', None) is not None else None
    return resp, (int(length) if length and str(length).isdigit() else None)


def save_stream(resp, path):
    try:
        with open(path, 'wb') as fh:
            shutil.copyfileobj(resp, fh, _CHUNK)
    finally:
        resp.close()


def makedirs(path):
    try:
        os.makedirs(path)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise


# --- the model_weights module ----------------------------------------------------------

SOURCE_OPTIONS = {
    'hf': ('repo_id', 'token', 'endpoint', 'allow_patterns', 'ignore_patterns', 'cache_dir'),
    'local': ('src',),
    'url': ('url', 'url_username', 'url_password'),
}


def source_identity(p):
    """What the manifest records about the source (compared on later runs; never a secret)."""
    if p['source'] == 'hf':
        return {'type': 'hf', 'repo_id': p['repo_id'], 'revision': p['revision'],
                'allow_patterns': p['allow_patterns'], 'ignore_patterns': p['ignore_patterns']}
    if p['source'] == 'local':
        return {'type': 'local', 'src': os.path.abspath(p['src'])}
    return {'type': 'url', 'url': redact_url(p['url'])}


def file_mode(module, mode):
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and re.match(r'^0?[0-7]{3,4}$', mode):
        value = int(mode, 8)
    else:
        module.fail_json(msg='mode must be an octal string such as "0644" (got %r)' % (mode,))
    if not 0 <= value <= 0o7777:
        module.fail_json(msg='mode must be between 0000 and 07777 (got %o)' % value)
    return value


def apply_tree_attributes(module, root, owner, group, mode, changed=False):
    """owner/group/mode on every directory and file under root (check mode: only report)."""
    if not (owner or group or mode is not None):
        return changed
    dir_mode = None if mode is None else mode | ((mode & 0o444) >> 2)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        paths = [(dirpath, dir_mode)] + [(os.path.join(dirpath, f), mode) for f in sorted(filenames)]
        for path, path_mode in paths:
            if owner:
                changed = module.set_owner_if_different(path, owner, changed)
            if group:
                changed = module.set_group_if_different(path, group, changed)
            if path_mode is not None:
                changed = module.set_mode_if_different(path, path_mode, changed)
    return changed


class Weights(object):
    def __init__(self, module):
        self.module = module
        p = self.p = module.params
        self.dest = os.path.join(p['dest_root'], p['name'])
        self.staging = os.path.join(p['dest_root'], '.%s.partial' % p['name'])
        self.archive = os.path.join(p['dest_root'], '.%s.download' % p['name'])
        self.identity = source_identity(p)
        self.secrets = [s for s in (p['token'], p['url_password']) if s]
        self.mode = file_mode(module, p['mode'])
        self.checksum_origin = 'checksum_file' if p['checksum_file'] else 'checksums'
        self.result = dict(changed=False, dest=self.dest, source=p['source'], action='none', reason=None,
                           mismatches=[], revision=p['revision'] if p['source'] == 'hf' else None,
                           resolved_revision=None, file_count=None, total_bytes=None, needed_bytes=None,
                           free_bytes=None, manifest_path=os.path.join(self.dest, MANIFEST), verify=p['verify'])

    def fail(self, msg, **kwargs):
        for secret in self.secrets:
            msg = msg.replace(secret, '********')
        self.result.update(kwargs)
        self.module.fail_json(msg=msg, **self.result)

    def checksums(self):
        p = self.p
        if p['checksum_file']:
            try:
                with open(p['checksum_file']) as fh:
                    return parse_checksum_file(fh.read(), p['checksum_file'])
            except (IOError, OSError) as exc:
                self.fail('cannot read checksum_file %s: %s' % (p['checksum_file'], exc))
        return dict((normalise_rel(k), str(v)) for k, v in (p['checksums'] or {}).items())

    def why_fetch(self, checksums):
        """None when the target is present and verified, else the reason (mismatches recorded)."""
        p = self.p
        if not os.path.lexists(self.dest):
            return 'absent'
        if not os.path.isdir(self.dest) or os.path.islink(self.dest):
            self.fail('%s exists and is not a directory; move it away or choose another name' % self.dest)
        manifest = read_manifest(self.dest)
        if manifest is None:
            self.result['mismatches'] = ['%s has no readable %s (not written by this module)' % (self.dest, MANIFEST)]
            return 'no manifest'
        self.result['resolved_revision'] = manifest.get('resolved_revision')
        if manifest.get('source') != self.identity:
            return 'source changed'
        problems = verify_tree(self.dest, manifest, full=p['verify'] == 'full')
        if not problems and checksums:
            recorded = dict((rel, e.get('sha256')) for rel, e in manifest['files'].items())
            problems = check_checksums(checksums, recorded, self.checksum_origin)
        if problems:
            self.result['mismatches'] = problems
            return 'files do not match'
        if p['source'] == 'local' and local_changed(p['src'], manifest):
            return 'source changed'
        self.result.update(file_count=len(manifest['files']), total_bytes=manifest.get('total_bytes'))
        return None

    def hf_call(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except WeightsError:
            raise
        except Exception as exc:  # huggingface_hub raises many kinds (HTTP, repo not found, gated)
            self.fail('Hugging Face Hub (%s, revision %s%s): %s: %s' % (
                self.p['repo_id'], self.p['revision'],
                ', endpoint %s' % self.p['endpoint'] if self.p['endpoint'] else '', type(exc).__name__, exc))

    def fetch(self, checksums):
        p, module = self.p, self.module
        plan, resolved = None, None
        hf_args = dict(token=p['token'], endpoint=p['endpoint'], allow_patterns=p['allow_patterns'],
                       ignore_patterns=p['ignore_patterns'])
        if p['source'] == 'hf':
            plan = self.hf_call(hf_plan, p['repo_id'], p['revision'], **hf_args)
            resolved = plan['commit']
            total = plan['total_bytes']
            if p['cache_dir']:
                targets = [(p['cache_dir'], total), (self.staging, total)]
            else:  # a download interrupted earlier resumes: count only what is left
                targets = [(self.staging, total - tree_bytes(self.staging))]
        elif p['source'] == 'local':
            total = tree_bytes(p['src'])
            targets = [(self.staging, total)]
        else:
            total, targets = None, None
        self.result.update(total_bytes=total, resolved_revision=resolved)
        if targets:
            self.result['free_bytes'], self.result['needed_bytes'] = check_free_space(targets, p['min_free_bytes'])
        # From here on the target is (or, in check mode, would be) replaced; a refusal above
        # (free space, the Hub) leaves everything as it was and reports changed=false.
        if module.check_mode:
            self.result['changed'] = True
            return

        makedirs(p['dest_root'])
        if p['source'] == 'hf':
            self.hf_call(hf_download, p['repo_id'], resolved or p['revision'], self.staging,
                         cache_dir=p['cache_dir'], **hf_args)
            prune(self.staging, plan['files'])
        elif p['source'] == 'local':
            copy_local(p['src'], self.staging)
        else:
            self.fetch_archive()

        hashes = hash_tree(self.staging)
        problems = check_checksums(checksums, hashes, self.checksum_origin)
        if plan:
            problems += check_hf_files(plan, hashes, self.staging)
        if problems:
            remove_tree(self.staging)
            self.fail('%s: the fetched files failed verification and were removed: %s' % (self.dest, '; '.join(problems)),
                      mismatches=problems)
        manifest = build_manifest(self.staging, self.identity, hashes)
        manifest['resolved_revision'] = resolved
        write_manifest(self.staging, manifest)
        apply_tree_attributes(module, self.staging, p['owner'], p['group'], self.mode)
        swap_into_place(self.staging, self.dest)
        self.result.update(changed=True, file_count=len(manifest['files']), total_bytes=manifest['total_bytes'])

    def read_config(self, checksums):
        """config_only: the model's config.json (and stored weight bytes) without fetching the weights.

        From the target when it is present and verified, else from the source: the Hub
        (config.json alone, at the resolved commit, into a temporary directory), the local
        source directory; an archive cannot be read before it is downloaded (config null).
        Changes nothing.
        """
        p = self.p
        self.result.update(config=None, config_source=None, weights_bytes=None)
        reason = self.why_fetch(checksums) if os.path.isdir(self.dest) and not os.path.islink(self.dest) else 'absent'
        self.result.update(reason=reason, action='none' if reason is None else ('fetch' if reason == 'absent' else 'replace'),
                           mismatches=[])
        if reason is None:
            where, root = 'target', self.dest
            files = dict((rel, st.st_size) for rel, st in list_files(root).items())
        elif p['source'] == 'local':
            where, root = 'local', p['src']
            files = dict((rel, st.st_size) for rel, st in list_files(root).items())
        elif p['source'] == 'hf':
            plan = self.hf_call(hf_plan, p['repo_id'], p['revision'], token=p['token'], endpoint=p['endpoint'],
                                allow_patterns=p['allow_patterns'], ignore_patterns=p['ignore_patterns'])
            if 'config.json' not in plan['files']:
                raise WeightsError('%s at revision %s has no config.json (among the files allow_patterns / '
                                   'ignore_patterns select)' % (p['repo_id'], p['revision']))
            self.result['resolved_revision'] = plan['commit']
            root = self.module.tmpdir
            self.hf_call(huggingface_hub.hf_hub_download, repo_id=p['repo_id'], filename='config.json',
                         revision=plan['commit'] or p['revision'], token=p['token'], endpoint=p['endpoint'],
                         local_dir=root)
            where, files = 'hf', dict((rel, meta['size'] or 0) for rel, meta in plan['files'].items())
        else:
            self.result['msg'] = ('source=url: an archive cannot be read before it is downloaded, so config.json '
                                  'is only known afterwards')
            return
        path = os.path.join(root, 'config.json')
        try:
            with open(path) as fh:
                config = json.load(fh)
        except (IOError, OSError) as exc:
            raise WeightsError('cannot read config.json from the %s (%s): %s' % (where, path if where != 'hf' else p['repo_id'], exc))
        except ValueError as exc:
            raise WeightsError('config.json from the %s is not valid JSON: %s' % (where, exc))
        if not isinstance(config, dict):
            raise WeightsError('config.json from the %s does not hold a JSON object' % where)
        stored = sum(size for rel, size in files.items() if rel.endswith('.safetensors'))
        self.result.update(config=config, config_source=where, weights_bytes=stored or None)

    def fetch_archive(self):
        p = self.p
        archive = self.archive
        resp, length = open_url_archive(self.module, p['url'], timeout=p['timeout'])
        if length is None:
            resp.close()
            self.fail('%s did not send a Content-Length, so the free space cannot be checked before downloading'
                      % redact_url(p['url']))
        self.result['free_bytes'], self.result['needed_bytes'] = check_free_space([(archive, length)], p['min_free_bytes'])
        save_stream(resp, archive)
        try:
            members_bytes = archive_members(archive)[1]
            # the archive is still there while extracting: its bytes are already used
            self.result['free_bytes'], self.result['needed_bytes'] = check_free_space(
                [(self.staging, members_bytes)], p['min_free_bytes'])
            extract_archive(archive, self.staging)
        finally:
            remove_tree(archive)

    def run(self):
        p, module = self.p, self.module
        if p['source'] == 'hf' and not HAS_HF:
            self.fail('source=hf needs the huggingface_hub Python library: install huggingface_hub on the managed host '
                      '(pip install huggingface_hub for %s), or use source=local or source=url' % sys.executable,
                      exception=HF_IMPORT_ERROR)
        if p['source'] == 'hf' and not is_commit(p['revision']):
            module.warn('revision %r of %s is a branch or tag, not a commit: what it points to can change; '
                        'pin a 40-hex commit for reproducible deployments' % (p['revision'], p['repo_id']))
        if p['source'] == 'local' and not os.path.isdir(p['src']):
            self.fail('src %s is not a directory on this host' % p['src'])
        try:
            check_confined(p['dest_root'], (self.dest, self.staging, self.archive))
            checksums = self.checksums()
            if p['config_only']:
                self.read_config(checksums)
                module.exit_json(**self.result)
            reason = self.why_fetch(checksums)
            if reason in ('no manifest', 'files do not match') and p['on_mismatch'] == 'fail':
                self.fail('%s does not verify (%s) and on_mismatch=fail: %s'
                          % (self.dest, reason, '; '.join(self.result['mismatches'])), reason=reason)
            if reason is None:
                self.result['changed'] = apply_tree_attributes(module, self.dest, p['owner'], p['group'], self.mode)
            else:
                self.result.update(reason=reason, action='fetch' if reason == 'absent' else 'replace')
                self.fetch(checksums)
        except (WeightsError, IOError, OSError, tarfile.TarError) as exc:
            self.fail('%s: %s' % (self.dest, exc))
        module.exit_json(**self.result)
