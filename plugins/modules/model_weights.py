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
extends_documentation_fragment:
  - openautoglm.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  name:
    description:
      - Directory name of the model under O(dest_root). A plain name only - not empty, not C(.) or
        C(..), no C(/) or backslash, no control characters, not starting with C(.) or C(-) - else the
        module fails before it touches anything.
    type: str
    required: true
  dest_root:
    description:
      - Directory holding the models.
      - The target, its staging directory and the archive download must resolve directly inside
        it; a symbolic link planted as O(dest_root)/O(name) (or C(.<name>.partial)) is refused, so
        nothing outside O(dest_root) is ever written, pruned or replaced.
    type: path
    default: /data/models
  config_only:
    description:
      - Only read the model's C(config.json), and sum the sizes of its C(*.safetensors) files,
        without fetching the weights, to decide whether the model fits before a download (the
        C(model_fit) module's O(openautoglm.deploy.model_fit#module:config) and
        O(openautoglm.deploy.model_fit#module:weights_bytes)).
      - From the target when it is present and verified; otherwise from the source - the Hub
        (C(config.json) alone, at the commit O(revision) resolves to, into a temporary directory) or
        O(src). An archive at O(url) cannot be read before it is downloaded; RV(config) is then null.
      - Changes nothing (C(changed=false)), also outside check mode.
    type: bool
    default: false
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
config:
  description: With O(config_only=true), the parsed C(config.json); null for O(source=url) before a download.
  returned: when O(config_only=true)
  type: dict
  sample: {"architectures": ["Glm4vForConditionalGeneration"], "hidden_size": 4096}
config_source:
  description: With O(config_only=true), where RV(config) came from, C(target), C(hf) or C(local); null when unknown.
  returned: when O(config_only=true)
  type: str
  sample: hf
weights_bytes:
  description: With O(config_only=true), the total size of the C(*.safetensors) files (from the Hub's listing or the files); null when none.
  returned: when O(config_only=true)
  type: int
  sample: 20570000000
verify:
  description: How the present target was checked, O(verify).
  returned: always
  type: str
  sample: quick
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_weights as mw


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            dest_root=dict(type='path', default='/data/models'),
            config_only=dict(type='bool', default=False),
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
    problem = mw.plain_name_problem(p['name'])
    if problem:
        module.fail_json(msg='name must be a plain directory name (not empty, not "." or "..", no "/", no control '
                             'characters, not starting with "." or "-"), got %r: %s' % (p['name'], problem))
    for source, options in mw.SOURCE_OPTIONS.items():
        given = [o for o in options if p[o] is not None]
        if source != p['source'] and given:
            module.fail_json(msg='%s only applies to source=%s (source is %s)' % (', '.join(given), source, p['source']))
    if p['min_free_bytes'] < 0:
        module.fail_json(msg='min_free_bytes must be 0 or more (got %d)' % p['min_free_bytes'])
    if p['timeout'] < 1:
        module.fail_json(msg='timeout must be at least 1 second (got %d)' % p['timeout'])
    mw.Weights(module).run()


if __name__ == '__main__':
    main()
