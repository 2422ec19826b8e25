# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_weights module_utils: manifests, checksum files, patterns, free space, the final rename."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.openautoglm.deploy.plugins.module_utils import model_weights as mw

DiskUsage = collections.namedtuple('DiskUsage', 'total used free')


def test_manifest_round_trip_and_verify(tmp_path):
    (tmp_path / 'a').write_bytes(b'alpha')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'b').write_bytes(b'beta')
    manifest = mw.build_manifest(str(tmp_path), {'type': 'local', 'src': '/x'})
    assert manifest['files']['sub/b']['sha256'] == hashlib.sha256(b'beta').hexdigest()
    assert manifest['total_bytes'] == 9
    mw.write_manifest(str(tmp_path), manifest)
    assert mw.read_manifest(str(tmp_path)) == manifest
    assert mw.verify_tree(str(tmp_path), manifest) == [] and mw.verify_tree(str(tmp_path), manifest, full=True) == []
    os.unlink(str(tmp_path / 'a'))
    assert mw.verify_tree(str(tmp_path), manifest) == ['a is missing']
    (tmp_path / mw.MANIFEST).write_text('{not json')
    assert mw.read_manifest(str(tmp_path)) is None


def test_parse_checksum_file():
    text = ('# comment\n\n%s  ./model.safetensors\n%s *sub/config.json\n'
            % ('A' * 64, 'b' * 64))
    assert mw.parse_checksum_file(text) == {'model.safetensors': 'a' * 64, 'sub/config.json': 'b' * 64}
    with pytest.raises(mw.WeightsError, match='line 1 is not'):
        mw.parse_checksum_file('%s\n' % ('a' * 64))


@pytest.mark.parametrize('rel, allow, ignore, kept', [
    ('model-00001-of-00004.safetensors', ['*.safetensors'], None, True),
    ('original/consolidated.pth', ['*.json', '*.safetensors'], None, False),
    ('original/params.json', None, ['original/'], False),
    ('tokenizer/tokenizer.json', ['*.json'], None, True),
    ('config.json', None, None, True),
])
def test_select_follows_hugging_face_patterns(rel, allow, ignore, kept):
    assert mw.select(rel, allow, ignore) is kept


def test_redact_url():
    assert mw.redact_url('https://user:pw@host.example/m.tar') == 'https://host.example/m.tar'
    assert mw.redact_url('https://host.example/a@b.tar') == 'https://host.example/a@b.tar'


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'{"a": 1}\n')
    git = shutil.which('git')
    if git is None:
        pytest.skip('git not installed')
    expected = subprocess.run([git, 'hash-object', str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert mw.git_blob_sha1(str(path)) == expected


def test_free_space_adds_up_paths_on_one_filesystem(tmp_path, monkeypatch):
    monkeypatch.setattr(mw.shutil, 'disk_usage', lambda path: DiskUsage(1000, 0, 1000))
    assert mw.check_free_space([(str(tmp_path / 'a' / 'b'), 400), (str(tmp_path / 'c'), 500)], 100) == (1000, 1000)
    with pytest.raises(mw.WeightsError, match=r'1000 bytes \(0.0 GB\) free, 1001 bytes'):
        mw.check_free_space([(str(tmp_path / 'a'), 400), (str(tmp_path / 'c'), 500)], 101)


def test_swap_into_place_replaces_the_old_tree(tmp_path):
    (tmp_path / 'dest').mkdir()
    (tmp_path / 'dest' / 'old').write_text('old')
    (tmp_path / 'staging').mkdir()
    (tmp_path / 'staging' / 'new').write_text('new')
    mw.swap_into_place(str(tmp_path / 'staging'), str(tmp_path / 'dest'))
    assert sorted(os.listdir(str(tmp_path))) == ['dest']
    assert os.listdir(str(tmp_path / 'dest')) == ['new']


def test_extract_keeps_several_top_entries(tmp_path):
    import io  # pylint: disable=import-outside-toplevel
    import tarfile  # pylint: disable=import-outside-toplevel
    archive = tmp_path / 'm.tar'
    with tarfile.open(str(archive), 'w') as tar:
        for name in ('config.json', 'weights/model.safetensors'):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b'{}'))
    assert mw.archive_members(str(archive))[1] == 4
    mw.extract_archive(str(archive), str(tmp_path / 'out'))
    assert sorted(mw.list_files(str(tmp_path / 'out'))) == ['config.json', 'weights/model.safetensors']
