# Kaldi-style option parsing for recipe scripts; source it after defining defaults.
# Every variable `foo_bar` defined before sourcing can be set with `--foo-bar VALUE`
# (or `--foo-bar=VALUE`). `--help` prints $help_message.
# Positional arguments are left in "$@". The names of the options given are in $options_given.
# --stage and --stop-stage must be non-negative integers; when the recipe sets last_stage, --stage
# must be one of its stages 0..last_stage (a --stop-stage beyond it means "to the end").
options_given=""
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
  options_given="$options_given $_var"
done
unset _name _value _var
for _var in stage stop_stage; do
  if [ -n "${!_var+set}" ] && ! [[ ${!_var} =~ ^[0-9]+$ ]]; then
    echo "$0: --${_var//_/-} '${!_var}': not a stage number (a non-negative integer; see --help)" >&2
    exit 1
  fi
done
unset _var
if [ -n "${stage+set}" ] && [ -n "${last_stage+set}" ] && [ "$stage" -gt "$last_stage" ]; then
  echo "$0: --stage $stage: this recipe's stages are 0..$last_stage (see --help)" >&2
  exit 1
fi
if [ -n "${stage+set}" ] && [ -n "${stop_stage+set}" ] && [ "$stop_stage" -lt "$stage" ]; then
  echo "$0: --stop-stage $stop_stage is before --stage $stage: nothing would run" >&2
  exit 1
fi
