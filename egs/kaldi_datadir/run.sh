#!/usr/bin/env bash
# Whisper-LLaDA on a corpus in Kaldi data directories: --data-dir DIR holds one per part of the
# config (DIR/train, DIR/dev, DIR/test: wav.scp, text, utt2spk, segments if any). The stages are
# the steps every recipe shares (tools/steps.sh); settings and models are egs/librispeech's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh
stage=1; stop_stage=100; last_stage=10
data_dir=
config=conf/whisper_llada.yaml
nj=4; device=cpu; world_size=1; epoch=; avg=; num_nodes=1; node_rank=0; master_addr=; master_port=29500
help_message="Usage: $0 --data-dir DIR [--config YAML (default $config)] [--stage N] [--stop-stage N]
  [--nj N ($nj)] [--device DEV ($device)] [--epoch E --avg A] [--world-size N ($world_size): processes
  per node, stages 4-9] [--num-nodes N --node-rank R --master-addr HOST --master-port P ($master_port)]
  (nodes other than 0 start at --stage 4 on a shared file system; egs/librispeech/run.sh --help)
Stages: 1 manifests (wav.scp files or pipe commands, any rate and channels), 2 features, 3 lang,
        4 Whisper first pass, 5-6 CTC first pass, 7 train, 8 decode, 9 deliberate, 10 report"
. ../../tools/parse_options.sh
. ../../tools/log.sh
. ../../tools/steps.sh
[ -n "$data_dir" ] || { echo "$0: --data-dir is required (see --help)" >&2; exit 1; }
launcher # the process options are checked before any stage runs
exp_dir=exp/$(basename "$config" .yaml)
run_stage 1 "lhotse manifests of $data_dir" step_manifests "$config" "$data_dir"
run_stage 2 "Whisper log-mel features" step_features "$config"
run_stage 3 "lang directory" step_lang "$config"
run_stage 4 "Whisper first pass" step_whisper_first_pass "$config"
run_stage 5 "train the CTC recogniser" step_train_ctc "$config"
run_stage 6 "CTC first pass" step_ctc_first_pass "$config"
run_stage 7 "train $exp_dir" step_train "$config" "$exp_dir"
run_stage 8 "decode" step_decode "$config" "$exp_dir"
run_stage 9 "deliberate the first pass" step_deliberate "$config" "$exp_dir"
run_stage 10 "report" step_report "$exp_dir"
log "Done"
