#!/usr/bin/env bash
# Idempotent set-up: creates .venv at the repository root and installs the
# project into it with the tested versions from pyproject.toml.
#
# CPU machines (the default) get torch==2.13.0, the CPU build. On a GPU
# machine install the CUDA build of torch into .venv first, e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch --index-url <your CUDA wheel index>
# then run this script: an installed torch is kept as it is.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "install.sh: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }

stamp=.venv/.whisper_llada_installed
want=$(cat pyproject.toml tools/install.sh | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install.sh: .venv is up to date"
  exit 0
fi

pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "install.sh: installing torch==$torch_version (CPU build)"
  pip install -q "torch==$torch_version"
fi
echo "install.sh: installing whisper-llada and its pinned dependencies"
pip install -q -e ".[test]"
.venv/bin/python -c "import torch, transformers, peft, lhotse, sentencepiece; print('install.sh: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| lhotse', lhotse.__version__)"
echo "$want" > "$stamp"
