#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hardware_baseline
short_description: Judge a host against the GPU-server hardware baseline and list every shortfall
version_added: 0.1.0
author: openautoglm.deploy maintainers (@openautoglm)
description:
  - Gathers GPU (NVML / PCI sysfs), CPU topology, installed memory (SMBIOS / memory blocks)
    with ECC state, and NVMe facts in one pass - the same collectors as
    M(openautoglm.deploy.gpu_facts), M(openautoglm.deploy.cpu_facts),
    M(openautoglm.deploy.memory_facts) and M(openautoglm.deploy.nvme_facts) - or takes
    facts already gathered through O(hardware).
  - Compares them with thresholds from a named O(preset), each overridable on its own, and
    returns every check with its measured and required value.
  - When the host is below the baseline and O(fail_on_shortfall=true), fails listing EVERY
    shortfall at once, for example C(NVMe - none found, need >= 1 TB NVMe; RAM - 23.4 GB installed, need >= 128 GB).
  - RAM is judged on INSTALLED memory (SMBIOS DIMMs, else memory blocks), not on C(MemTotal),
    which the kernel's reservations keep below the installed size.
notes:
  - Units are decimal, as on datasheets - GB = 10^9 bytes, TB = 10^12 bytes. An A100 40GB
    (42.5 GB usable per NVML) passes a 40 GB threshold; 128 GiB of DIMMs is 137.4 GB.
  - Checks have status C(pass), C(fail), C(warn) (ECC not confirmed, model path not on
    NVMe, MIG enabled - unless made mandatory) or C(skip) (threshold 0).
  - Thresholds other than 0 must be plausible, else the module fails naming the threshold and its
    range - GPUs 1-64, GPU memory 1-1024 GB, CPU cores 1-4096, RAM 1-64000 GB (64 TB), NVMe
    0.01-1000 TB, compute capability 3.0-12.9 (C(0.0) skips). A value such as 0.0001 GB or
    compute capability 99.0 is a typo.
  - Also returns the gathered facts as C(openautoglm_gpu), C(openautoglm_cpu),
    C(openautoglm_memory) and C(openautoglm_nvme), as the fact modules would.
  - Supports check mode; never changes anything.
extends_documentation_fragment:
  - openautoglm.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  preset:
    description:
      - Named threshold set. C(reference) - the reference deployment (1 GPU >= 40 GB with
        compute capability >= 8.0, 16 physical cores, 128 GB RAM, 1 TB NVMe).
        C(h100) - H100-class serving node (80 GB, cc >= 9.0, 32 cores, 256 GB ECC RAM, 2 TB
        NVMe holding the model directory). C(development) - test hosts without GPU or NVMe
        (2 logical CPUs, 4 GB RAM).
    type: str
    choices: [reference, h100, development]
    default: reference
  min_gpu_count:
    description: GPUs that must each meet O(min_gpu_memory_gb) and O(min_compute_capability); 0 skips the GPU check.
    type: int
  min_gpu_memory_gb:
    description: Minimum memory per qualifying GPU, decimal GB.
    type: float
  min_compute_capability:
    description: Minimum CUDA compute capability as C(major.minor), for example C("8.0").
    type: str
  min_cpu_cores:
    description: Minimum number of CPU cores of kind O(cpu_core_kind).
    type: int
  cpu_core_kind:
    description: Count C(physical) cores or C(logical) CPUs (hardware threads).
    type: str
    choices: [physical, logical]
  min_ram_gb:
    description: Minimum installed RAM, decimal GB.
    type: float
  require_ecc:
    description: Fail (instead of warn) when ECC memory cannot be confirmed.
    type: bool
  min_nvme_tb:
    description: Minimum total NVMe capacity, decimal TB; 0 skips the NVMe check.
    type: float
  require_model_path_on_nvme:
    description: Fail (instead of warn) when O(model_path) is not on NVMe.
    type: bool
  model_path:
    description:
      - Absolute path of the directory that will hold the model weights; its backing device is checked.
      - It need not exist yet; when it does, it must be a directory. A relative path or a regular file is refused.
    type: path
    default: /data/models
  hardware:
    description:
      - Facts already gathered, as a dict with any of the keys C(gpu), C(cpu), C(memory),
        C(nvme) holding the C(openautoglm_gpu), C(openautoglm_cpu), C(openautoglm_memory) and
        C(openautoglm_nvme) facts. Missing keys are gathered live on the host.
    type: dict
  fail_on_shortfall:
    description: Fail the task when a check fails. With C(false) the verdict is only returned.
    type: bool
    default: true
seealso:
  - module: openautoglm.deploy.gpu_facts
  - module: openautoglm.deploy.memory_facts
  - module: openautoglm.deploy.nvme_facts
  - module: openautoglm.deploy.cpu_facts
"""

EXAMPLES = r"""
- name: Refuse hosts below the reference baseline
  openautoglm.deploy.hardware_baseline:

- name: H100 preset, but accept 16 cores and an older 960 GB drive
  openautoglm.deploy.hardware_baseline:
    preset: h100
    min_cpu_cores: 16
    min_nvme_tb: 0.96

- name: Only report, never fail
  openautoglm.deploy.hardware_baseline:
    preset: reference
    fail_on_shortfall: false
  register: baseline

- name: Show the shortfalls
  ansible.builtin.debug:
    var: baseline.shortfalls
"""

RETURN = r"""
passed:
  description: No check failed.
  returned: always
  type: bool
preset:
  description: The preset the thresholds started from.
  returned: always
  type: str
thresholds:
  description: Effective thresholds after overrides.
  returned: always
  type: dict
  sample: {min_gpu_count: 1, min_gpu_memory_gb: 40, min_compute_capability: "8.0", min_cpu_cores: 16,
           cpu_core_kind: physical, min_ram_gb: 128, require_ecc: false, min_nvme_tb: 1.0,
           require_model_path_on_nvme: false}
checks:
  description: Every check that ran.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: gpu, gpu_mig, cpu_cores, ram, ram_ecc, nvme, model_path_nvme.
      type: str
    status:
      description: pass, fail, warn or skip.
      type: str
    measured:
      description: What the host has, in words with units.
      type: str
    required:
      description: What the thresholds ask for.
      type: str
    message:
      description: One line for people.
      type: str
shortfalls:
  description: Messages of the failed checks.
  returned: always
  type: list
  elements: str
  sample: ["NVMe: none found, need >= 1 TB NVMe", "RAM: 23.4 GB installed, need >= 128 GB"]
warnings_list:
  description: Messages of the checks with status warn.
  returned: always
  type: list
  elements: str
hardware:
  description: The facts that were judged, keys C(gpu), C(cpu), C(memory), C(nvme) (see the fact modules).
  returned: always
  type: dict
ansible_facts:
  description:
    - The same facts under the names the fact modules use, so later tasks and roles can read
      C(ansible_facts.openautoglm_gpu) and friends without gathering again.
  returned: always
  type: dict
  contains:
    openautoglm_gpu:
      description: See M(openautoglm.deploy.gpu_facts).
      type: dict
    openautoglm_cpu:
      description: See M(openautoglm.deploy.cpu_facts).
      type: dict
    openautoglm_memory:
      description: See M(openautoglm.deploy.memory_facts).
      type: dict
    openautoglm_nvme:
      description: See M(openautoglm.deploy.nvme_facts).
      type: dict
msg:
  description: Verdict in one line, listing every shortfall.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openautoglm.deploy.plugins.module_utils import baseline, cpu, gpu, memory, nvme
from ansible_collections.openautoglm.deploy.plugins.module_utils.sysfs import HostPaths

COLLECTORS = {
    'gpu': lambda paths, params: gpu.collect(paths),
    'cpu': lambda paths, params: cpu.collect(paths),
    'memory': lambda paths, params: memory.collect(paths),
    'nvme': lambda paths, params: nvme.collect(paths, path=params['model_path']),
}


def main():
    argument_spec = dict(
        preset=dict(type='str', default=baseline.DEFAULT_PRESET, choices=sorted(baseline.PRESETS)),
        min_gpu_count=dict(type='int'),
        min_gpu_memory_gb=dict(type='float'),
        min_compute_capability=dict(type='str'),
        min_cpu_cores=dict(type='int'),
        cpu_core_kind=dict(type='str', choices=list(baseline.CORE_KINDS)),
        min_ram_gb=dict(type='float'),
        require_ecc=dict(type='bool'),
        min_nvme_tb=dict(type='float'),
        require_model_path_on_nvme=dict(type='bool'),
        model_path=dict(type='path', default='/data/models'),
        hardware=dict(type='dict'),
        fail_on_shortfall=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    problem = nvme.model_dir_problem(params['model_path'], 'model_path')
    if problem:
        module.fail_json(msg=problem)
    try:
        thresholds = baseline.resolve_thresholds(
            params['preset'], dict((k, params[k]) for k in baseline.THRESHOLD_KEYS))
    except baseline.BaselineError as exc:
        module.fail_json(msg='Invalid hardware_baseline thresholds: %s' % exc)

    given = params['hardware'] or {}
    unknown = sorted(set(given) - set(COLLECTORS))
    if unknown:
        module.fail_json(msg='hardware: unknown key(s) %s; allowed: %s' % (', '.join(unknown), ', '.join(sorted(COLLECTORS))))
    paths = HostPaths()
    hardware = {}
    for key, collect in COLLECTORS.items():
        hardware[key] = given[key] if given.get(key) is not None else collect(paths, params)

    verdict = baseline.evaluate(hardware, thresholds)
    if verdict['passed']:
        msg = 'Host meets the %s hardware baseline' % params['preset']
        if verdict['warnings']:
            msg += ' (warnings: %s)' % '; '.join(verdict['warnings'])
    else:
        msg = 'Host is below the %s hardware baseline: %s' % (params['preset'], '; '.join(verdict['shortfalls']))
    result = dict(
        changed=False,
        passed=verdict['passed'],
        preset=params['preset'],
        thresholds=thresholds,
        checks=verdict['checks'],
        shortfalls=verdict['shortfalls'],
        warnings_list=verdict['warnings'],
        hardware=hardware,
        ansible_facts=dict(('openautoglm_%s' % key, value) for key, value in hardware.items()),
        msg=msg,
    )
    if not verdict['passed'] and params['fail_on_shortfall']:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
