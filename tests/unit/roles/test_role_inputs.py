# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' input checks, run for real by ansible-playbook on the controller.

One ansible-playbook run holds every case: each case is an inventory host (local
connection) whose host vars are the inputs, so the roles see them as an inventory would
give them (strings from surveys, numbers, newlines). Only the validation and decision
task files run; they change nothing. A case either is refused with a message naming the
variable, or is accepted with the decided facts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
DEBIAN_12 = {'os_family': 'Debian', 'distribution': 'Debian', 'distribution_major_version': '12',
             'distribution_version': '12', 'distribution_release': 'bookworm'}

MS = ('openautoglm.deploy.model_service', 'validate.yml')
CUDA = ('openautoglm.deploy.cuda', 'validate.yml')
VENV = ('openautoglm.deploy.python_venv', 'validate_path.yml')
TORCH = ('openautoglm.deploy.python_venv', 'torch_build.yml')
DOCKER = ('openautoglm.deploy.docker', 'gpu_present.yml')

# (id, (role, task file), inputs, expected: {'refused': [substrings]} or {'facts': {name: value}})
CASES = [
    # model_service: names that become directories, the unit's Description, env file lines
    ('ms_traversal', MS, {'model_service_model_name': '../../etc'},
     {'refused': ['model_service_model_name must be a plain directory name', '"../../etc"',
                  'model_service_model_path must be a directory directly under model_service_models_root']}),
    ('ms_empty_name', MS, {'model_service_model_name': ''},
     {'refused': ['model_service_model_name must be a plain directory name', 'got "".']}),
    ('ms_dot_name', MS, {'model_service_model_name': '..'}, {'refused': ['model_service_model_name', '".."']}),
    ('ms_newline_name', MS, {'model_service_model_name': 'm\nLD_PRELOAD=/tmp/x.so'},
     {'refused': ['model_service_model_name must be a plain directory name', '"m\\nLD_PRELOAD=/tmp/x.so"']}),
    ('ms_dash_name', MS, {'model_service_model_name': '-rf'}, {'refused': ['model_service_model_name']}),
    ('ms_root_dots', MS, {'model_service_models_root': '/data/models/../../etc'},
     {'refused': ['model_service_models_root, model_service_model_path must be absolute, normalised paths']}),
    ('ms_path_elsewhere', MS, {'model_service_model_path': '/etc/cron.d'},
     {'refused': ['model_service_model_path must be a directory directly under model_service_models_root']}),
    ('ms_host_newline', MS, {'model_service_host': '0.0.0.0\nAUTOGLM_API_KEY_FILE=/dev/null'},
     {'refused': ['model_service_host must be an IP address or a host name']}),
    ('ms_service_name', MS, {'model_service_name': 'autoglm\nExecStartPre=/bin/sh'}, {'refused': ['model_service_name must be']}),
    ('ms_user', MS, {'model_service_user': 'root\nUser=root'}, {'refused': ['model_service_user and model_service_group']}),
    ('ms_env_newline', MS, {'model_service_extra_env': {'HF_TOKEN': 'hf_secret_value\nLD_PRELOAD=/tmp/x.so'}},
     {'refused': ['model_service_extra_env values of ["HF_TOKEN"] are refused', '(values not shown)'],
      'absent': ['hf_secret_value']}),
    ('ms_env_key', MS, {'model_service_extra_env': {'A=B\nC': 'x'}},
     {'refused': ['model_service_extra_env names must be environment variable names']}),
    ('ms_env_quote', MS, {'model_service_extra_env': {'X': '"quoted"'}}, {'refused': ['values of ["X"] are refused']}),
    ('ms_env_nested', MS, {'model_service_extra_env': {'X': {'a': 1}}}, {'refused': ['values of ["X"] are refused']}),
    ('ms_key_newline', MS, {'model_service_api_key': 'k3y_secret\nX=1'},
     {'refused': ['model_service_api_key must be one line', '(value not shown)'], 'absent': ['k3y_secret']}),
    ('ms_served_newline', MS, {'model_service_served_model_name': 'autoglm-phone-9b\nAUTOGLM_API_KEY_FILE=/dev/null'},
     {'refused': ['model_service_served_model_name must be one or more names separated by commas']}),
    ('ms_served_slash', MS, {'model_service_served_model_name': 'autoglm,../x'},
     {'refused': ['model_service_served_model_name must be']}),
    ('ms_default_above_max', MS, {'model_service_default_max_new_tokens': 4000},
     {'refused': ['model_service_default_max_new_tokens (4000) must not exceed', 'model_service_max_new_tokens (3000)']}),
    ('ms_new_tokens_fill_context', MS, {'model_service_max_new_tokens': 25480},
     {'refused': ['must be below model_service_max_model_len (25480']}),
    ('ms_served_aliases', MS, {'model_service_served_model_name': 'autoglm-phone-9b,AutoGLM-Phone-9B'}, {'facts': {}}),
    ('ms_fetch_dir', MS, {'model_service_api_key_fetch_dir': 'keys'}, {'refused': ['model_service_api_key_fetch_dir must be']}),
    ('ms_good', MS, {'model_service_model_name': 'AutoGLM-Phone-9B', 'model_service_extra_env':
                     {'AUTOGLM_CUDA_GRAPHS': 'off', 'HF_TOKEN': 'hf_x y', 'N': 3, 'B': True}}, {'facts': {}}),
    # python_venv: system prefixes
    ('venv_usr', VENV, {'python_venv_path': '/usr'},
     {'refused': ['python_venv_path "/usr" is refused', 'not a system prefix']}),
    ('venv_root', VENV, {'python_venv_path': '/'}, {'refused': ['python_venv_path "/" is refused']}),
    ('venv_opt', VENV, {'python_venv_path': '/opt/'}, {'refused': ['python_venv_path "/opt/" is refused']}),
    ('venv_usr_lib', VENV, {'python_venv_path': '/usr/lib/venv'}, {'refused': ['is refused']}),
    ('venv_dots', VENV, {'python_venv_path': '/opt/x/../../usr'}, {'refused': ['is refused']}),
    ('venv_ok', VENV, {'python_venv_path': '/opt/openautoglm/venv'}, {'facts': {}}),
    ('venv_home_dir', VENV, {'python_venv_path': '/home/ops/venv/'}, {'facts': {}}),
    # python_venv: the PyTorch build (defaults: torch 2.9.1, transformers 5.24.0 needing Python 3.11)
    ('torch_defaults', TORCH, {}, {'facts': {'python_venv__torch_variant': 'cpu'}}),
    ('torch_cuda12', TORCH, {'python_venv_cuda_version': '12.1'}, {'facts': {'python_venv__torch_variant': 'cu128'}}),
    ('torch_cuda_float', TORCH, {'python_venv_cuda_version': 13.0}, {'facts': {'python_venv__torch_variant': 'cu130'}}),
    ('torch_driver', TORCH, {'case_ansible_facts': {'openautoglm_gpu': {'count': 8, 'driver_version': '570.195.03'}}},
     {'facts': {'python_venv__torch_variant': 'cu128'}}),
    ('torch_survey_no_gpu', TORCH, {'python_venv_gpu_present': 'no',
                                    'case_ansible_facts': {'openautoglm_gpu': {'count': 8, 'driver_version': '570.195.03'}}},
     {'facts': {'python_venv__torch_variant': 'cpu'}}),
    ('torch_typo', TORCH, {'python_venv_torch_variant': 'cuda12'},
     {'refused': ['python_venv_torch_variant must be auto, cpu or one of cu130, cu128, cu126 (the CUDA builds of '
                  'PyTorch 2.9', "got 'cuda12'", 'Nothing was changed']}),
    ('torch_old_build', TORCH, {'python_venv_torch_variant': 'cu121'},
     {'refused': ['python_venv_torch_variant must be auto, cpu or one of cu130, cu128, cu126', "got 'cu121'"]}),
    ('torch_other_release_typo', TORCH, {'python_venv_torch_version': '2.13.0', 'python_venv_torch_variant': 'cu13'},
     {'refused': ['python_venv_torch_variant must be auto, cpu or a CUDA build cuXYZ (CUDA XY.Z)', "got 'cu13'"]}),
    ('torch_bad_version', TORCH, {'python_venv_torch_version': '2.9.x'},
     {'refused': ["python_venv_torch_version must be a PyTorch release such as 2.9.1, got '2.9.x'"]}),
    ('torch_other_release', TORCH, {'python_venv_torch_version': '2.13.0', 'python_venv_torch_variant': 'cu130'},
     {'facts': {'python_venv__torch_variant': 'cu130'}}),
    ('torch_cuda11', TORCH, {'python_venv_cuda_version': '11.8'},
     {'refused': ['No build of PyTorch 2.9.1 (python_venv_torch_version) fits torch_cuda11: Its CUDA builds are '
                  'cu130, cu128, cu126. None is for CUDA 11.x (python_venv_cuda_version 11.8). Set', 'Nothing was changed']}),
    ('torch_old_driver', TORCH, {'case_ansible_facts': {'openautoglm_gpu': {'count': 1, 'driver_version': '520.61.05'}}},
     {'refused': ['The NVIDIA driver 520.61.05 runs none of them: CUDA 12.6 needs NVIDIA driver >= 525.60.13 '
                  '(with minor-version compatibility']}),
    ('torch_unknown_release', TORCH, {'python_venv_torch_version': '2.13.0', 'python_venv_cuda_version': '12.8'},
     {'refused': ['release 2.13 is not in the build table of the role', 'python_venv__torch_builds has 2.5, 2.6, 2.7, 2.8, 2.9']}),
    ('venv_py39_default_stack', TORCH, {'python_venv_python_version': '3.9'},
     {'refused': ['need Python >= 3.11 (python_venv_requires_python; transformers 5.24.0)',
                  'python_venv_python_version is 3.9', 'Nothing was changed']}),
    ('venv_py310_default_stack', TORCH, {'python_venv_python_version': '3.10'}, {'refused': ['need Python >= 3.11']}),
    ('venv_py39_older_stack', TORCH, {'python_venv_python_version': '3.9', 'python_venv_requires_python': '3.9',
                                      'python_venv_torch_version': '2.8.0'}, {'facts': {'python_venv__torch_variant': 'cpu'}}),
    ('venv_py313', TORCH, {'python_venv_python_version': '3.13'}, {'facts': {}}),
    # cuda: strings and numbers as -e and AWX surveys send them
    ('cuda_string', CUDA, {'cuda_versions': '12.1', 'case_ansible_facts': DEBIAN_12},
     {'facts': {'__cuda_versions': ['12.1'], '__cuda_default_version': '12.1'}}),
    ('cuda_csv', CUDA, {'cuda_versions': '11.8, 12.1', 'case_ansible_facts': DEBIAN_12},
     {'facts': {'__cuda_versions': ['11.8', '12.1'], '__cuda_default_version': '12.1'}}),
    ('cuda_lines', CUDA, {'cuda_versions': '11.8\n12.1\n', 'cuda_default_version': 11.8, 'case_ansible_facts': DEBIAN_12},
     {'facts': {'__cuda_versions': ['11.8', '12.1'], '__cuda_default_version': '11.8'}}),
    ('cuda_float_default', CUDA, {'cuda_versions': ['12.1'], 'cuda_default_version': 12.1, 'case_ansible_facts': DEBIAN_12},
     {'facts': {'__cuda_versions': ['12.1'], '__cuda_default_version': '12.1'}}),
    ('cuda_empty', CUDA, {'cuda_versions': [], 'case_ansible_facts': DEBIAN_12},
     {'refused': ['cuda_versions is empty: name at least one CUDA version']}),
    ('cuda_duplicates', CUDA, {'cuda_versions': ['12.1', '11.8', '12.1'], 'case_ansible_facts': DEBIAN_12},
     {'refused': ['cuda_versions ["12.1", "11.8", "12.1"] lists 12.1 more than once']}),
    ('cuda_unknown', CUDA, {'cuda_versions': '10.2', 'case_ansible_facts': DEBIAN_12},
     {'refused': ['cuda_versions ["10.2"] contains unknown versions ["10.2"]', 'allowed: 11.8, 12.1']}),
    # docker: survey strings for docker_gpu_present (the GPU facts say otherwise)
    ('docker_yes', DOCKER, {'docker_gpu_present': 'yes', 'case_ansible_facts': {'openautoglm_gpu': {'count': 0}}},
     {'facts': {'docker__gpu_present': True}}),
    ('docker_true', DOCKER, {'docker_gpu_present': 'true'}, {'facts': {'docker__gpu_present': True}}),
    ('docker_no', DOCKER, {'docker_gpu_present': 'no', 'case_ansible_facts': {'openautoglm_gpu': {'count': 8}}},
     {'facts': {'docker__gpu_present': False}}),
    ('docker_false', DOCKER, {'docker_gpu_present': 'False', 'case_ansible_facts': {'openautoglm_gpu': {'count': 8}}},
     {'facts': {'docker__gpu_present': False}}),
    ('docker_unset', DOCKER, {'case_ansible_facts': {'openautoglm_gpu': {'count': 2}}}, {'facts': {'docker__gpu_present': True}}),
    ('docker_empty', DOCKER, {'docker_gpu_present': '', 'case_ansible_facts': {'openautoglm_gpu': {'count': 0}}},
     {'facts': {'docker__gpu_present': False}}),
]


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    if not shutil.which('ansible-playbook'):
        pytest.skip('ansible-playbook is not on PATH')
    out = tmp_path_factory.mktemp('cases')
    hosts = {}
    for case_id, (role, tasks), inputs, expected in CASES:
        host = dict(inputs, case_role=role, case_tasks=tasks, ansible_connection='local',
                    ansible_python_interpreter=sys.executable, case_out=str(out))
        host.setdefault('case_facts', sorted(expected.get('facts', {})))
        hosts[case_id] = host
    inventory = out / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': hosts}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'), ANSIBLE_FORKS='8',
               ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', str(inventory), os.path.join(HERE, 'run_cases.yml')],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO, check=False,
                          universal_newlines=True)
    found = {}
    for case_id in hosts:
        path = out / (case_id + '.json')
        assert path.exists(), 'no result for %s:\n%s' % (case_id, proc.stdout[-4000:])
        found[case_id] = json.loads(path.read_text())
    found['_output'] = proc.stdout
    return found


@pytest.mark.parametrize('case_id, role_tasks, inputs, expected', CASES, ids=[c[0] for c in CASES])
def test_role_input(results, case_id, role_tasks, inputs, expected):
    res = results[case_id]
    if 'refused' in expected:
        assert res['accepted'] is False, 'accepted: %r' % (inputs,)
        for part in expected['refused']:
            assert part in res['msg'], res['msg']
    else:
        assert res['accepted'] is True, res.get('msg')
    for name, value in expected.get('facts', {}).items():
        assert res['facts'][name] == value, res['facts']
    for secret in expected.get('absent', []):
        assert secret not in res.get('msg', '') and secret not in results['_output']
