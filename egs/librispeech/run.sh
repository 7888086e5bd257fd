#!/usr/bin/env bash
# Whisper-LLaDA on LibriSpeech: data, first passes, training, decoding, deliberation, report.
# Its stages call the steps shared by every recipe (tools/steps.sh) by name, with this recipe's
# config; another corpus is another short run.sh over the same steps (see egs/kaldi_datadir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh

stage=0
stop_stage=100
last_stage=10
dl_dir=$PWD/download
config=conf/whisper_llada.yaml
exp_dir=
nj=4
world_size=1
num_nodes=1
node_rank=0
master_addr=
master_port=29500
epoch=
avg=
device=
help_message="Usage: $0 [options]
  --stage N          first stage to run (default $stage)
  --stop-stage N     last stage to run (default: the last, $last_stage)
  --dl-dir DIR       where LibriSpeech/ is (default \$PWD/download). Stage 0 downloads it (about
                     61 GB) only when --stage 0 is given or DIR exists and is empty
  --config YAML      every setting (default $config): data (parts, prefix, vocab_size,
                     normaliser), model, training, first passes (firstpass.ctc_config: the CTC
                     recogniser's config, or null for none), decoding and deliberation
  --exp-dir DIR      experiment directory (default exp/<config name>)
  --nj N             parallel jobs for data preparation (default $nj)
  --world-size N     processes per node (GPUs of each node) for stages 4-9 (first passes,
                     training, decoding, deliberation); more than one process in all launches
                     torchrun, and decoding then splits each test part between them (default $world_size)
  --num-nodes N      nodes (default $num_nodes); with N > 1 run this script on every node with the
                     same options but --node-rank, from --stage 4 once node 0 has run stages 0-3
                     (data, exp/ and the first passes on a file system every node sees)
  --node-rank R      this node's rank, 0..N-1 (default $node_rank)
  --master-addr HOST --master-port P   where node 0 meets the others (torchrun's static
                     rendezvous; needed with --num-nodes > 1; default port $master_port)
  --epoch E --avg A  checkpoint to decode: average of epochs E-A+1..E (default: the config's
                     train.num_epochs and train.avg)
  --device DEV       cpu or cuda (default: cuda when available)
Stages: 0 download, 1 manifests, 2 features, 3 lang, 4 Whisper first pass, 5 train the CTC
        recogniser, 6 CTC first pass (lattices; word confidences for Whisper's too), 7 train,
        8 decode, 9 deliberate, 10 report
Smoke test of every stage (tiny random models) on a LibriSpeech-layout tree DIR:
  $0 --dl-dir DIR --config conf/smoke.yaml --stage 1"
. ../../tools/parse_options.sh
. ../../tools/log.sh
. ../../tools/steps.sh

launcher # the process options are checked before any stage runs
exp_dir=${exp_dir:-exp/$(basename "$config" .yaml)}
if [ -z "$device" ]; then
  device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: download LibriSpeech"
  if [ -d "$dl_dir/LibriSpeech" ]; then
    log "$dl_dir/LibriSpeech already exists - skipping download"
  elif [[ " $options_given " == *" stage "* ]] || { [ -d "$dl_dir" ] && [ -z "$(ls -A "$dl_dir")" ]; }; then
    log "downloading LibriSpeech (960 h of training speech, dev and test: about 61 GB of archives) into $dl_dir"
    lhotse download librispeech --full "$dl_dir"
  else
    echo "$0: $dl_dir/LibriSpeech not found: give --dl-dir the directory that holds LibriSpeech/, or ask" \
      "for the download (about 61 GB) with --stage 0 or an empty --dl-dir; --stage 1 starts after it" >&2
    exit 1
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: lhotse manifests"
  step_manifests "$config" "$dl_dir/LibriSpeech"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: Whisper log-mel features"
  step_features "$config"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: lang directory (BPE, words)"
  step_lang "$config"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: first pass (Whisper autoregressive decoding, n-best)"
  step_whisper_first_pass "$config"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: train the CTC recogniser"
  step_train_ctc "$config"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: CTC first pass (lattices, n-best, confidences; the other first passes' words get confidences too)"
  step_ctc_first_pass "$config"
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: train $exp_dir on $world_size process(es) on each of $num_nodes node(s)"
  step_train "$config" "$exp_dir"
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: decode"
  step_decode "$config" "$exp_dir"
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  log "Stage 9: deliberate the first pass"
  step_deliberate "$config" "$exp_dir"
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: report"
  step_report "$exp_dir"
fi
log "Done"
