# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller-side file helpers shared by the write_report and fleet_report action plugins."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

from ansible.errors import AnsibleActionFail


def parse_mode(value):
    """An octal mode string such as "0644" -> int; a clear error naming the option otherwise."""
    try:
        return int(value, 8)
    except (TypeError, ValueError):
        raise AnsibleActionFail('mode: must be an octal string such as "0644", got %r' % (value,))


def comparable(document, ignore_keys):
    """The document without the keys in ignore_keys, at any depth (volatile timestamps)."""
    if isinstance(document, dict):
        return dict((k, comparable(v, ignore_keys)) for k, v in document.items() if k not in ignore_keys)
    if isinstance(document, list):
        return [comparable(v, ignore_keys) for v in document]
    return document


def atomic_write(path, text, mode, prefix='.openautoglm-'):
    """Write text to path through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(path) or '.'
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        os.chmod(tmp_path, mode)
        os.rename(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
