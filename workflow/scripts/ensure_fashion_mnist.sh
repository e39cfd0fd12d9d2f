#!/usr/bin/env bash
# Installs the real Fashion-MNIST (Debian package dataset-fashion-mnist) when it is missing.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have() { for f in "${files[@]}"; do [ -s "$dir/$f" ] || return 1; done; }
have && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Fashion-MNIST is missing from $dir and apt-get is not available: install the Debian package" \
       "dataset-fashion-mnist, or copy the four IDX .gz files there." >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Fashion-MNIST: $sudo apt-get install dataset-fashion-mnist" >&2
if ! { $sudo apt-get update -qq && $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } >&2; then
  echo "Could not install dataset-fashion-mnist with apt-get (needs root or sudo and a package mirror)." >&2
  exit 1
fi
have || { echo "dataset-fashion-mnist installed but $dir lacks the IDX files" >&2; exit 1; }
