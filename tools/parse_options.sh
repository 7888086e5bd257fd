# Kaldi-style option parsing for recipe scripts; source it after defining defaults.
# Every variable `foo_bar` defined before sourcing can be set with `--foo-bar VALUE`
# (or `--foo-bar=VALUE`). `--help` prints $help_message and the current values.
# Positional arguments are left in "$@".
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "${help_message:-}" >&2
      exit 0 ;;
    --*=*)
      _name=${1%%=*}; _value=${1#*=}; shift ;;
    --*)
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      _name=$1; _value=$2; shift 2 ;;
    *)
      break ;;
  esac
  _var=${_name#--}; _var=${_var//-/_}
  if [ -z "${!_var+set}" ]; then
    echo "$0: unknown option $_name (see --help)" >&2
    exit 1
  fi
  printf -v "$_var" '%s' "$_value"
done
unset _name _value _var
