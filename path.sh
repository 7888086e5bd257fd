# Sourced by every recipe and by tools/test.sh: activates the project's
# environment and makes the package and local/ importable.
_wl_root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
if [ ! -f "$_wl_root/.venv/bin/activate" ]; then
  echo "path.sh: $_wl_root/.venv is missing; run tools/install.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
. "$_wl_root/.venv/bin/activate"
export PYTHONPATH="$_wl_root${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
# Nothing in this project may reach a model hub at run time.
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
unset _wl_root
