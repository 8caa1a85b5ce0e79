#!/usr/bin/env bash
# The Python package as a user installs it: `pip install .` into a fresh venv, then pytest on
# tests/python. The venv is made from Debian's python3 with its site packages visible, so
# Debian's numpy and PyTorch (python3-numpy, python3-torch) serve the tests; pip fetches the
# build's own requirements (scikit-build-core, nanobind) and pytest from PyPI.
# Usage: run.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1
work=$2
venv="$work/venv"
rm -rf "$venv"
mkdir -p "$work"
/usr/bin/python3 -m venv --system-site-packages "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check --quiet)
"${pip[@]}" install pytest
"${pip[@]}" install "$src"
cd "$work"  # not the source tree: `import vae` must find the installed package
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$src/tests/python"
