#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_weights
short_description: Put model weights in place from the Hugging Face Hub, a local directory or an archive URL, verified
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Makes O(dest_root)/O(name) a verified copy of a model's files, fetched from the Hugging Face
    Hub (C(huggingface_hub), pinned revision, token, mirror endpoint, file patterns), copied from a
    local directory, or extracted from a C(.tar)/C(.tar.gz)/C(.tgz) archive at a URL.
  - Files are fetched into a staging directory beside the target (C(.<name>.partial), same
    filesystem), verified, and renamed into place, so the target is never half-written. A Hub
    download interrupted half-way resumes from the staging directory on the next run.
  - Before anything is fetched the free space is checked; for the Hub from the file sizes the Hub
    reports, for a local directory from the size of its files, for a URL from the archive's size.
  - After fetching, every file is hashed (sha256) and checked against O(checksums) or
    O(checksum_file) when given, and, for the Hub, against the sha256 (LFS files) or git blob id
    the Hub lists. The result is written to C(<dest>/.openautoglm-manifest.json).
  - A target whose manifest matches the requested source and whose files match the manifest
    (size and mtime, or sha256 with O(verify=full)) is left alone (C(changed=false)); a local
    source whose files changed since the copy is copied again.
  - Secrets (O(token), O(url_password)) are never returned, written to the manifest or shown in
    error messages.
requirements:
  - huggingface_hub on the managed host, for O(source=hf) only
notes:
  - Supports check mode; it reports what would change (and checks the free space) without
    fetching or writing anything.
  - A target directory without a manifest, or whose files do not match it, is replaced when
    O(on_mismatch=replace); the module owns O(dest_root)/O(name).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  name:
    description: Directory name of the model under O(dest_root) (no C(/), not starting with C(.)).
    type: str
    required: true
  dest_root:
    description: Directory holding the models.
    type: path
    default: /data/models
  source:
    description: Where the files come from.
    type: str
    required: true
    choices: [hf, local, url]
  repo_id:
    description: Hugging Face repository, C(owner/name). Required with O(source=hf).
    type: str
  revision:
    description:
      - Commit (40 hex digits), tag or branch of O(repo_id). A branch or tag gives a warning, since
        what it points to moves; pin a commit for reproducible deployments.
      - A present target is compared with the requested O(revision), not with what a branch points
        to now.
    type: str
    default: main
  token:
    description: Hugging Face access token for gated or private repositories.
    type: str
  endpoint:
    description: Hugging Face Hub endpoint or mirror (what C(HF_ENDPOINT) sets), for example C(https://hf-mirror.example.com).
    type: str
  allow_patterns:
    description: Only files matching one of these glob patterns are fetched from the Hub (C(*.safetensors), C(config.json)).
    type: list
    elements: str
  ignore_patterns:
    description: Files matching one of these glob patterns are not fetched from the Hub (C(original/*)).
    type: list
    elements: str
  cache_dir:
    description:
      - Hugging Face cache directory. When set, files are downloaded into this cache (shared, resumable)
        and copied into place, which needs room for both; when unset, they are downloaded straight
        into the staging directory.
    type: path
  src:
    description: Model directory on the managed host to copy. Required with O(source=local).
    type: path
  url:
    description:
      - URL of a C(.tar), C(.tar.gz) or C(.tgz) archive of the model directory. Required with O(source=url).
      - An archive holding a single top directory gives that directory's contents. Members that are
        links, devices or point outside the archive are refused.
    type: str
  url_username:
    description: User name for HTTP basic authentication of O(url).
    type: str
  url_password:
    description: Password for HTTP basic authentication of O(url).
    type: str
  force_basic_auth:
    description: Send the basic authentication header with the first request instead of waiting for a 401.
    type: bool
    default: false
  validate_certs:
    description: Validate the TLS certificate of O(url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for O(url) to answer.
    type: int
    default: 60
  checksums:
    description:
      - Expected sha256 of files, as a dict of path relative to the model directory -> sha256.
      - Mutually exclusive with O(checksum_file).
    type: dict
  checksum_file:
    description: File on the managed host in C(sha256sum) format (C(<sha256>  <relative path>) lines) with the expected sha256 of files.
    type: path
  verify:
    description:
      - How a present target is checked against its manifest. C(quick) compares sizes and
        modification times; C(full) hashes every file (reads all the weights).
    type: str
    default: quick
    choices: [quick, full]
  on_mismatch:
    description:
      - What to do when a present target has no manifest or its files do not match it (or
        O(checksums)). C(replace) fetches the model again; C(fail) fails and lists the differences.
    type: str
    default: replace
    choices: [replace, fail]
  min_free_bytes:
    description: Bytes that must remain free on the target filesystem after fetching, on top of the model's size.
    type: int
    default: 0
  owner:
    description: Owner of the model directory tree (the service user, so that it can read the weights).
    type: str
  group:
    description: Group of the model directory tree.
    type: str
  mode:
    description:
      - Mode of the files, an octal string such as C("0644") (quote it in YAML). Directories get it
        with the search bit added wherever the read bit is set (C("0644") -> C("0755")).
    type: raw
seealso:
  - module: openautoglm.deploy.model_fit
"""

EXAMPLES = r"""
- name: Download AutoGLM-Phone-9B at a pinned commit from a mirror
  openautoglm.deploy.model_weights:
    name: autoglm-phone-9b
    source: hf
    repo_id: zai-org/AutoGLM-Phone-9B
    revision: 0123456789abcdef0123456789abcdef01234567
    endpoint: "{{ model_service_hf_endpoint }}"
    token: "{{ vault_hf_token }}"
    allow_patterns: ["*.json", "*.safetensors", "*.model", "*.txt", "*.py"]
    min_free_bytes: 10000000000
    owner: autoglm
    group: autoglm
    mode: "0644"

- name: Copy weights staged on a local disk, checked against a sha256sum file
  openautoglm.deploy.model_weights:
    name: glm-4-9b-chat
    source: local
    src: /mnt/staging/glm-4-9b-chat
    checksum_file: /mnt/staging/glm-4-9b-chat.sha256
    verify: full

- name: Fetch the model archive from an internal server
  openautoglm.deploy.model_weights:
    name: glm-4-9b-chat
    source: url
    url: https://artifacts.example.com/models/glm-4-9b-chat.tar
    url_username: deploy
    url_password: "{{ vault_artifacts_password }}"
    checksums:
      model-00001-of-00004.safetensors: 0f0f3b8b2c6d4f8e9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071
"""

RETURN = r"""
dest:
  description: The model directory.
  returned: always
  type: str
  sample: /data/models/autoglm-phone-9b
source:
  description: The source type, O(source).
  returned: always
  type: str
  sample: hf
action:
  description:
    - C(none) when the target was present and verified; C(fetch) when it was absent; C(replace) when
      it was present but stale (other source or revision, changed local source) or did not verify.
    - In check mode, what would be done.
  returned: always
  type: str
  sample: fetch
reason:
  description: Why the files were (or would be) fetched; null when nothing was.
  returned: always
  type: str
  sample: absent
mismatches:
  description: Differences found between a present target and its manifest or O(checksums).
  returned: always
  type: list
  elements: str
  sample: ["model-00001-of-00004.safetensors has sha256 9c1d..., the manifest says 0f0f..."]
revision:
  description: The requested revision (O(source=hf)); null for other sources.
  returned: always
  type: str
  sample: main
resolved_revision:
  description: The commit the Hub resolved O(revision) to when the files were fetched (O(source=hf)); null otherwise.
  returned: always
  type: str
  sample: 0123456789abcdef0123456789abcdef01234567
file_count:
  description: Files in the model directory (manifest excluded); null in check mode before a fetch.
  returned: always
  type: int
  sample: 14
total_bytes:
  description: Size of the model's files in bytes; in check mode before a fetch, what would be fetched (null for a URL).
  returned: always
  type: int
  sample: 18800000000
needed_bytes:
  description: Bytes that had to be free on the target filesystem (model + O(min_free_bytes)); null when nothing was fetched.
  returned: always
  type: int
  sample: 28800000000
free_bytes:
  description: Free bytes on the target filesystem before fetching; null when nothing was fetched.
  returned: always
  type: int
  sample: 512000000000
manifest_path:
  description: Path of the manifest recording the source and the size, mtime and sha256 of every file.
  returned: always
  type: str
  sample: /data/models/autoglm-phone-9b/.openautoglm-manifest.json
verify:
  description: How the present target was checked, O(verify).
  returned: always
  type: str
  sample: quick
"""

import os
import re
import sys
import tarfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_weights as mw

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
    return {'type': 'url', 'url': mw.redact_url(p['url'])}


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
        self.identity = source_identity(p)
        self.secrets = [s for s in (p['token'], p['url_password']) if s]
        self.mode = file_mode(module, p['mode'])
        self.result = dict(changed=False, dest=self.dest, source=p['source'], action='none', reason=None,
                           mismatches=[], revision=p['revision'] if p['source'] == 'hf' else None,
                           resolved_revision=None, file_count=None, total_bytes=None, needed_bytes=None,
                           free_bytes=None, manifest_path=os.path.join(self.dest, mw.MANIFEST), verify=p['verify'])

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
                    return mw.parse_checksum_file(fh.read(), p['checksum_file'])
            except (IOError, OSError) as exc:
                self.fail('cannot read checksum_file %s: %s' % (p['checksum_file'], exc))
        return dict((mw.normalise_rel(k), str(v)) for k, v in (p['checksums'] or {}).items())

    def why_fetch(self, checksums):
        """None when the target is present and verified, else the reason (mismatches recorded)."""
        p = self.p
        if not os.path.lexists(self.dest):
            return 'absent'
        if not os.path.isdir(self.dest) or os.path.islink(self.dest):
            self.fail('%s exists and is not a directory; move it away or choose another name' % self.dest)
        manifest = mw.read_manifest(self.dest)
        if manifest is None:
            self.result['mismatches'] = ['%s has no readable %s (not written by this module)' % (self.dest, mw.MANIFEST)]
            return 'no manifest'
        self.result['resolved_revision'] = manifest.get('resolved_revision')
        if manifest.get('source') != self.identity:
            return 'source changed'
        problems = mw.verify_tree(self.dest, manifest, full=p['verify'] == 'full')
        if not problems and checksums:
            problems = mw.check_checksums(checksums, dict((rel, e.get('sha256')) for rel, e in manifest['files'].items()),
                                          'checksum_file' if p['checksum_file'] else 'checksums')
        if problems:
            self.result['mismatches'] = problems
            return 'files do not match'
        if p['source'] == 'local' and mw.local_changed(p['src'], manifest):
            return 'source changed'
        self.result.update(file_count=len(manifest['files']), total_bytes=manifest.get('total_bytes'))
        return None

    def hf_call(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except mw.WeightsError:
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
            plan = self.hf_call(mw.hf_plan, p['repo_id'], p['revision'], **hf_args)
            resolved = plan['commit']
            total = plan['total_bytes']
            if p['cache_dir']:
                targets = [(p['cache_dir'], total), (self.staging, total)]
            else:  # a download interrupted earlier resumes: count only what is left
                targets = [(self.staging, total - mw.tree_bytes(self.staging))]
        elif p['source'] == 'local':
            total = mw.tree_bytes(p['src'])
            targets = [(self.staging, total)]
        else:
            total, targets = None, None
        self.result.update(total_bytes=total, resolved_revision=resolved)
        if targets:
            self.result['free_bytes'], self.result['needed_bytes'] = mw.check_free_space(targets, p['min_free_bytes'])
        if module.check_mode:
            return

        mw.makedirs(p['dest_root'])
        if p['source'] == 'hf':
            self.hf_call(mw.hf_download, p['repo_id'], resolved or p['revision'], self.staging,
                         cache_dir=p['cache_dir'], **hf_args)
        elif p['source'] == 'local':
            mw.copy_local(p['src'], self.staging)
        else:
            self.fetch_archive()

        hashes = mw.hash_tree(self.staging)
        problems = mw.check_checksums(checksums, hashes, 'checksum_file' if p['checksum_file'] else 'checksums')
        if plan:
            problems += mw.check_hf_files(plan, hashes, self.staging)
        if problems:
            mw.remove_tree(self.staging)
            self.fail('%s: the fetched files failed verification and were removed: %s' % (self.dest, '; '.join(problems)),
                      mismatches=problems)
        manifest = mw.build_manifest(self.staging, self.identity, hashes)
        manifest['resolved_revision'] = resolved
        mw.write_manifest(self.staging, manifest)
        apply_tree_attributes(module, self.staging, p['owner'], p['group'], self.mode)
        mw.swap_into_place(self.staging, self.dest)
        self.result.update(file_count=len(manifest['files']), total_bytes=manifest['total_bytes'])

    def fetch_archive(self):
        p = self.p
        archive = os.path.join(p['dest_root'], '.%s.download' % p['name'])
        resp, length = mw.open_url_archive(self.module, p['url'], timeout=p['timeout'])
        if length is None:
            resp.close()
            self.fail('%s did not send a Content-Length, so the free space cannot be checked before downloading'
                      % mw.redact_url(p['url']))
        self.result['free_bytes'], self.result['needed_bytes'] = mw.check_free_space([(archive, length)], p['min_free_bytes'])
        mw.save_stream(resp, archive)
        try:
            members_bytes = mw.archive_members(archive)[1]
            # the archive is still there while extracting: its bytes are already used
            self.result['free_bytes'], self.result['needed_bytes'] = mw.check_free_space(
                [(self.staging, members_bytes)], p['min_free_bytes'])
            mw.extract_archive(archive, self.staging)
        finally:
            mw.remove_tree(archive)

    def run(self):
        p, module = self.p, self.module
        if p['source'] == 'hf' and not mw.HAS_HF:
            self.fail('source=hf needs the huggingface_hub Python library: install huggingface_hub on the managed host '
                      '(pip install huggingface_hub for %s), or use source=local or source=url' % sys.executable,
                      exception=mw.HF_IMPORT_ERROR)
        if p['source'] == 'hf' and not mw.is_commit(p['revision']):
            module.warn('revision %r of %s is a branch or tag, not a commit: what it points to can change; '
                        'pin a 40-hex commit for reproducible deployments' % (p['revision'], p['repo_id']))
        if p['source'] == 'local' and not os.path.isdir(p['src']):
            self.fail('src %s is not a directory on this host' % p['src'])
        try:
            checksums = self.checksums()
            reason = self.why_fetch(checksums)
            if reason in ('no manifest', 'files do not match') and p['on_mismatch'] == 'fail':
                self.fail('%s does not verify (%s) and on_mismatch=fail: %s'
                          % (self.dest, reason, '; '.join(self.result['mismatches'])), reason=reason)
            if reason is None:
                self.result['changed'] = apply_tree_attributes(module, self.dest, p['owner'], p['group'], self.mode)
            else:
                self.result.update(changed=True, reason=reason, action='fetch' if reason == 'absent' else 'replace')
                self.fetch(checksums)
        except (mw.WeightsError, IOError, OSError, tarfile.TarError) as exc:
            self.fail('%s: %s' % (self.dest, exc))
        module.exit_json(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            dest_root=dict(type='path', default='/data/models'),
            source=dict(type='str', required=True, choices=['hf', 'local', 'url']),
            repo_id=dict(type='str'),
            revision=dict(type='str', default='main'),
            token=dict(type='str', no_log=True),
            endpoint=dict(type='str'),
            allow_patterns=dict(type='list', elements='str'),
            ignore_patterns=dict(type='list', elements='str'),
            cache_dir=dict(type='path'),
            src=dict(type='path'),
            url=dict(type='str'),
            url_username=dict(type='str'),
            url_password=dict(type='str', no_log=True),
            force_basic_auth=dict(type='bool', default=False),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='int', default=60),
            checksums=dict(type='dict'),
            checksum_file=dict(type='path'),
            verify=dict(type='str', default='quick', choices=['quick', 'full']),
            on_mismatch=dict(type='str', default='replace', choices=['replace', 'fail']),
            min_free_bytes=dict(type='int', default=0),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw'),
        ),
        required_if=[('source', 'hf', ['repo_id']), ('source', 'local', ['src']), ('source', 'url', ['url'])],
        mutually_exclusive=[('checksums', 'checksum_file')],
        supports_check_mode=True,
    )
    p = module.params
    name = p['name']
    if not name or '/' in name or name.startswith('.') or name != name.strip():
        module.fail_json(msg='name must be a plain directory name (no "/", not starting with "."), got %r' % name)
    for source, options in SOURCE_OPTIONS.items():
        given = [o for o in options if p[o] is not None]
        if source != p['source'] and given:
            module.fail_json(msg='%s only applies to source=%s (source is %s)' % (', '.join(given), source, p['source']))
    if p['min_free_bytes'] < 0:
        module.fail_json(msg='min_free_bytes must be 0 or more (got %d)' % p['min_free_bytes'])
    if p['timeout'] < 1:
        module.fail_json(msg='timeout must be at least 1 second (got %d)' % p['timeout'])
    Weights(module).run()


if __name__ == '__main__':
    main()
