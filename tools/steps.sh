# The steps every recipe runs, as shell functions a recipe's run.sh calls by name with its own
# configs. Source it after tools/parse_options.sh and tools/log.sh; it reads the recipe's $nj,
# $device, $world_size, $num_nodes, $node_rank, $master_addr, $master_port and, for decoding,
# $epoch and $avg (all optional). Each step is one call of a local/*.py stage script, which skips
# outputs that are up to date ("... already exists - skipping"). Training, the first passes,
# decoding and deliberation run on $world_size processes on each of $num_nodes nodes (torchrun)
# when that makes more than one; the other steps run one process.
#
#   step_manifests CONFIG CORPUS_DIR      recordings + supervisions of every part (data.corpus says the format)
#   step_features CONFIG                  Whisper log-mel cuts of every part
#   step_lang CONFIG                      data/lang_bpe_{data.vocab_size}: BPE, words
#   step_whisper_first_pass CONFIG        Whisper's n-best of the dev and test parts
#   step_train_ctc CONFIG                 the CTC recogniser of CONFIG's firstpass.ctc_config (none: nothing)
#   step_ctc_first_pass CONFIG            its lattices, n-best and word confidences; the other first passes'
#                                         words get confidences and their n-best CTC scores (rerun: the new ones)
#   step_train CONFIG EXP_DIR [MAIN]      train; MAIN: the recipe config whose data and lang it uses
#   step_decode CONFIG EXP_DIR [MAIN]     decode with every decode: setting
#   step_deliberate CONFIG EXP_DIR [MAIN] deliberate the first pass with every deliberate: setting
#   step_report EXP_DIR... [-- ARGS]      the comparison of systems (report.txt, report.json, plot)

steps_local=$(cd "$(dirname "${BASH_SOURCE[0]}")/../local" && pwd)

# run_stage N DESCRIPTION COMMAND...: COMMAND if stage N is within --stage..--stop-stage.
run_stage() {
  local n=$1 what=$2
  shift 2
  if [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ]; then
    log "Stage $n: $what"
    "$@"
  fi
}

# config_value CONFIG KEY...: the values, one a line (lists space-separated, sections as JSON).
config_value() {
  python "$steps_local/config_value.py" "$@"
}

# stage_args CONFIG [MAIN]: sets stage_args to what a stage script gets for CONFIG, and stage_epochs
# to its train.num_epochs. With MAIN (the recipe's config), CONFIG reads MAIN's data and lang
# directory: one source for the parts, the prefix and the vocabulary (a CTC recogniser or an AR
# twin trains on the recipe's data).
stage_args() {
  local config=$1 main=${2:-$1} tok vocab data out
  # Read into a variable first: a config that fails to load stops the recipe (set -e).
  if [ "$main" = "$config" ]; then
    out=$(config_value "$config" model.tokenizer.type data.vocab_size data train.num_epochs)
    { read -r tok; read -r vocab; read -r data; read -r stage_epochs; } <<< "$out"
    stage_args=(--config "$config")
  else
    out=$(config_value "$main" data.vocab_size data)
    { read -r vocab; read -r data; } <<< "$out"
    out=$(config_value "$config" model.tokenizer.type train.num_epochs)
    { read -r tok; read -r stage_epochs; } <<< "$out"
    stage_args=(--config "$config" --set "data=$data")
  fi
  if [ "$tok" = sentencepiece ]; then
    stage_args+=(--set "model.tokenizer.path=data/lang_bpe_$vocab/bpe.model")
  fi
  return 0
}

# launcher: sets launch to the command that runs a stage script: python, or torchrun with
# $world_size processes per node; on $num_nodes > 1 nodes a static rendezvous at
# $master_addr:$master_port where this node is $node_rank (every node runs the same step).
launcher() {
  local procs=${world_size:-1} nodes=${num_nodes:-1} rank=${node_rank:-0}
  if [ "$nodes" -gt 1 ]; then
    if [ -z "${master_addr:-}" ]; then
      echo "$0: --num-nodes $nodes needs --master-addr, the host of node 0 (all nodes give the same)" >&2
      return 1
    fi
    if [ "$rank" -lt 0 ] || [ "$rank" -ge "$nodes" ]; then
      echo "$0: --node-rank $rank is not in 0..$((nodes - 1)) (--num-nodes $nodes)" >&2
      return 1
    fi
    launch=(torchrun --nnodes "$nodes" --node-rank "$rank" --master-addr "$master_addr"
      --master-port "${master_port:-29500}" --nproc-per-node "$procs")
  elif [ "$procs" -gt 1 ]; then
    launch=(torchrun --standalone --nproc-per-node "$procs")
  else
    launch=(python)
  fi
}

step_manifests() {
  python "$steps_local/prepare_manifests.py" --config "$1" --corpus-dir "$2" --nj "${nj:-1}"
}

step_features() {
  python "$steps_local/compute_fbank.py" --config "$1" --nj "${nj:-1}"
}

step_lang() {
  python "$steps_local/prepare_lang.py" --config "$1"
}

step_whisper_first_pass() {
  stage_args "$1"
  launcher
  "${launch[@]}" "$steps_local/whisper_first_pass.py" "${stage_args[@]}" --device "${device:-cpu}"
}

# ctc_config CONFIG: the CTC recogniser's config named by CONFIG ("" when there is none).
ctc_config() {
  config_value "$1" firstpass.ctc_config
}

step_train_ctc() {
  local ctc
  ctc=$(ctc_config "$1")
  if [ -z "$ctc" ]; then
    log "$1 names no firstpass.ctc_config - no CTC first pass"
    return 0
  fi
  step_train "$ctc" "exp/$(basename "$ctc" .yaml)" "$1"
}

step_ctc_first_pass() {
  local ctc
  ctc=$(ctc_config "$1")
  if [ -z "$ctc" ]; then
    log "$1 names no firstpass.ctc_config - no CTC first pass"
    return 0
  fi
  stage_args "$ctc" "$1"
  launcher
  "${launch[@]}" "$steps_local/ctc_first_pass.py" "${stage_args[@]}" --exp-dir "exp/$(basename "$ctc" .yaml)" \
    --device "${device:-cpu}"
}

# step_train CONFIG EXP_DIR [MAIN]: local/train.py, on torchrun when there is more than one process
# (each then takes the device of its local rank: cuda:LOCAL_RANK where there is a GPU).
step_train() {
  local config=$1 exp=$2
  stage_args "$config" "${3:-$config}"
  launcher
  if [ -f "$exp/epoch-$stage_epochs.pt" ]; then
    log "$exp/epoch-$stage_epochs.pt already exists - skipping training"
  elif [ "${launch[0]}" = torchrun ]; then
    "${launch[@]}" "$steps_local/train.py" "${stage_args[@]}" --exp-dir "$exp"
  else
    python "$steps_local/train.py" "${stage_args[@]}" --exp-dir "$exp" --device "${device:-cpu}"
  fi
}

# decode_args: the checkpoint options (--epoch E --avg A) of the recipe's $epoch and $avg, where
# set (else each config's train.num_epochs and train.avg).
decode_args() {
  decode_args=()
  [ -n "${avg:-}" ] && decode_args+=(--avg "$avg")
  [ -n "${epoch:-}" ] && decode_args+=(--epoch "$epoch")
  return 0
}

step_decode() {
  stage_args "$1" "${3:-$1}"
  decode_args
  launcher
  "${launch[@]}" "$steps_local/decode.py" "${stage_args[@]}" --exp-dir "$2" "${decode_args[@]}" --device "${device:-cpu}"
}

step_deliberate() {
  stage_args "$1" "${3:-$1}"
  decode_args
  launcher
  "${launch[@]}" "$steps_local/deliberate.py" "${stage_args[@]}" --exp-dir "$2" "${decode_args[@]}" --device "${device:-cpu}"
}

# step_report EXP_DIR... [-- ARGS]: the first EXP_DIR also gets the first passes and, by default,
# the report and its plot (ARGS such as --output-dir DIR --plot FILE go to local/compare_systems.py).
step_report() {
  local exps=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do exps+=(--exp-dir "$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  [ ${#extra[@]} -gt 0 ] || extra=(--plot "${exps[1]}/wer-vs-rtf.png")
  python "$steps_local/compare_systems.py" "${exps[@]}" "${extra[@]}"
}
