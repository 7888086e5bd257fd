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
uv_version=0.13.9  # the uv these install paths were tested with

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

# What pip is configured to read for SETTING, trimmed: its environment variable (PIP_FIND_LINKS,
# ...) first, then its config files' [global] value (the last file pip lists, where several set it;
# `pip config get` misses /etc/xdg/pip in some pip versions). Several values come space-separated.
# The config is listed once ($pip_config, 0.5 s a listing), not once per setting.
pip_setting() {
  local var
  var=PIP_$(tr 'a-z-' 'A-Z_' <<< "$1")
  if [ -n "${!var:-}" ]; then
    xargs <<< "${!var}"
  else
    sed -n "s/^global\.$1='\(.*\)'\$/\1/p" <<< "$pip_config" | tail -1 | sed 's/\\n/ /g' | xargs
  fi
}

# uv installs the same pins faster than pip (43-59 s from scratch against 81 s on a 2-core AMD
# EPYC CPU).
# It compiles the bytecode at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, every
# process would otherwise compile what it imports (9 s more for torch and transformers). It reads
# no pip configuration, so pip's index, find-links, constraints and certificates are handed to it.
# pip's extra indexes are not: uv takes a package from the first index that has it, and a partial
# extra index could then shadow the wheel pip would choose (a soundfile without its library). If
# uv fails, or what it installed does not import, pip installs instead.
uv_install() {
  pip install -q "uv==$uv_version" || return 1
  local cert settings=() pip_config
  pip_config=$(pip config list 2>/dev/null || true)
  cert=$(pip_setting cert)
  # uv separates several find-links locations with commas, pip with spaces.
  settings+=("UV_FIND_LINKS=$(pip_setting find-links | tr ' ' ',')")
  settings+=("UV_INDEX_URL=$(pip_setting index-url)" "UV_CONSTRAINT=$(pip_setting constraint)")
  settings+=("SSL_CERT_FILE=${cert:-${SSL_CERT_FILE:-}}")
  case "$(pip_setting no-index)" in 1 | true | yes | on) settings+=(UV_NO_INDEX=1) ;; esac
  env "${settings[@]}" .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python "$@" && check_imports
}

check_imports() {
  .venv/bin/python -c "import torch, transformers, peft, lhotse, sentencepiece, soundfile, kaldialign, kaldifst; print('install.sh: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| lhotse', lhotse.__version__)"
}

packages=(-e ".[test]")
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "install.sh: installing torch==$torch_version (CPU build)"
  packages+=("torch==$torch_version")
fi
echo "install.sh: installing whisper-llada and its pinned dependencies"
if ! uv_install "${packages[@]}"; then
  echo "install.sh: uv failed; installing with pip"
  pip install -q --upgrade pip
  pip install -q "${packages[@]}"
  check_imports
fi
echo "$want" > "$stamp"
