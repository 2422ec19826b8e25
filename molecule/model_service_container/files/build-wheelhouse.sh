#!/bin/sh
# Builds, on the controller, what the container-mode test host needs offline:
#   <dir>/simple/<project>/<wheel>   a PEP 503 package index of the server's runtime wheels
#                                    (CPU torch from this machine's local wheel, pinned to the
#                                    versions the server's tests pass with), served by the test
#                                    host on loopback to the image build (model_service_image_pip_index_url)
#   <dir>/base-image.tar             the base image (docker save), loaded into the test host's Docker
#   <dir>/tiny-model/                a tiny random model (python -m autoglm_service.tiny_model), made
#                                    with [python] when it imports torch and transformers (the
#                                    server's test venv, .venv-service, in `make test`), else in a
#                                    throw-away venv installed from those wheels, no network
# Usage: build-wheelhouse.sh <dir> <requirements.txt> <constraints.txt> <base image> <server package parent dir> [python]
# Idempotent: skips what exists; prints "changed" when it built something.
set -eu
dir=${1:?cache dir}; req=${2:?requirements}; con=${3:?constraints}; image=${4:?base image}; pkg=${5:?dir holding autoglm_service}; py=${6:-}
changed=no
mkdir -p "$dir"
if [ ! -f "$dir/wheels.done" ]; then
  rm -rf "$dir/wheels" "$dir/simple"
  # Python 3.11 manylinux wheels, as the Debian 12 base image runs.
  python3 -m pip download --quiet --disable-pip-version-check --dest "$dir/wheels" \
    --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 \
    --platform any -r "$req" -c "$con"
  mkdir -p "$dir/simple"
  for whl in "$dir"/wheels/*.whl; do
    base=$(basename "$whl")
    # PEP 503 normalised project name: the wheel's distribution part, lower case, runs of -_. -> -
    name=$(printf '%s' "${base%%-*}" | tr '[:upper:]' '[:lower:]' | sed 's/[-_.][-_.]*/-/g')
    mkdir -p "$dir/simple/$name"
    ln -sf "../../wheels/$base" "$dir/simple/$name/$base"
  done
  touch "$dir/wheels.done"
  changed=yes
fi
if [ ! -f "$dir/base-image.tar" ]; then
  docker save -o "$dir/base-image.tar.tmp" "$image"
  mv "$dir/base-image.tar.tmp" "$dir/base-image.tar"
  changed=yes
fi
if [ ! -f "$dir/tiny-model/config.json" ]; then
  rm -rf "$dir/venv" "$dir/tiny-model" "$dir/tiny-model.tmp"
  if [ -z "$py" ] || ! "$py" -c 'import torch, transformers, tokenizers, safetensors' 2>/dev/null; then
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$dir/wheels" \
      -c "$con" torch transformers tokenizers safetensors
    py="$dir/venv/bin/python"
  fi
  PYTHONPATH="$pkg" "$py" -m autoglm_service.tiny_model --out "$dir/tiny-model.tmp"
  mv "$dir/tiny-model.tmp" "$dir/tiny-model"
  rm -rf "$dir/venv"
  changed=yes
fi
[ "$changed" = yes ] && echo changed
exit 0
