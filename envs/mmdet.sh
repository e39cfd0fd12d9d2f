#!/usr/bin/env bash
# Opt-in mmdetection backend: `make mmdet` (or `bash envs/mmdet.sh VENV`).
#
# mmdet needs mmcv's compiled ops, and no mmcv wheel exists on the package index. We build the maintained
# fork's sdist (onedl-mmcv) against the venv's torch, with its hard-coded -std=c++14/17 raised to c++20
# because torch's headers need it. The wheel is kept in a folder outside the repo, keyed by the torch
# version, so a later install (any clone on this machine) takes seconds. onedl-mmengine loads checkpoints
# on torch >= 2.6, which mmengine 0.10.7 does not.
set -euo pipefail

venv=${1:-.venv}
pip="$venv/bin/pip"
python="$venv/bin/python"
mmcv=onedl-mmcv==2.3.6
torch_version=$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')
wheels=${BLOCKSWAP_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/blockswap/wheels}/torch-$torch_version

if ! ls "$wheels"/onedl_mmcv-2.3.6-*.whl >/dev/null 2>&1; then
    echo "building $mmcv against torch $torch_version (about 25 minutes on 2 cores; once per machine) into $wheels"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "$pip" download --quiet --no-deps --no-binary :all: "$mmcv" -d "$build"
    tar -xzf "$build"/onedl_mmcv-2.3.6.tar.gz -C "$build"
    sed -i -E 's/([-/]std[=:])c\+\+1[47]/\1c++20/g' "$build"/onedl_mmcv-2.3.6/setup.py
    "$pip" install --quiet ninja  # parallel compilation; without it the ops build one file at a time
    mkdir -p "$wheels"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$pip" wheel --no-build-isolation --no-deps --wheel-dir "$wheels" "$build"/onedl_mmcv-2.3.6
fi
"$pip" install --quiet --find-links "$wheels" -c envs/constraints.txt -e ".[mmdet]"
"$python" -c 'import mmcv.ops, mmdet, mmengine; print("mmdet", mmdet.__version__, "mmcv", mmcv.__version__, "mmengine", mmengine.__version__)'
