#!/usr/bin/env bash
# Whisper-LLaDA on LibriSpeech: data, first pass, training, decoding, deliberation, report.
# Another recipe whose corpus is in LibriSpeech layout runs these stages in its own
# directory by setting WL_RECIPE_DIR (see egs/espeak_fortunes/run.sh).
set -euo pipefail
cd "${WL_RECIPE_DIR:-$(dirname "${BASH_SOURCE[0]}")}"
. ../../path.sh

stage=0
stop_stage=100
dl_dir=$PWD/download
config=conf/whisper_llada.yaml
ctc_config=conf/ctc.yaml
exp_dir=
nj=4
world_size=1
vocab_size=500
epoch=
avg=1
device=
help_message="Usage: $0 [options]
  --stage N          first stage to run (default $stage)
  --stop-stage N     last stage to run (default $stop_stage)
  --dl-dir DIR       where LibriSpeech is, or is downloaded to (default \$PWD/download)
  --config YAML      model, data, train, first pass, decode and deliberate settings (default $config)
  --ctc-config YAML  the CTC first-pass recogniser (stages 5-6; default $ctc_config; "" skips them)
  --exp-dir DIR      experiment directory (default exp/<config name>)
  --nj N             parallel jobs for data preparation (default $nj)
  --world-size N     GPUs to train on; > 1 launches torchrun (default $world_size)
  --vocab-size N     BPE vocabulary of data/lang_bpe_N (default $vocab_size)
  --epoch E --avg A  checkpoint to decode: average of epochs E-A+1..E (default: last epoch, 1)
  --device DEV       cpu or cuda (default: cuda when available)
Stages: 0 download, 1 manifests, 2 features, 3 lang, 4 Whisper first pass, 5 train the CTC
        recogniser, 6 CTC first pass (lattices; word confidences for Whisper's too), 7 train,
        8 decode, 9 deliberate, 10 report"
. ../../tools/parse_options.sh

name=$(basename "$config" .yaml)
exp_dir=${exp_dir:-exp/$name}
lang_dir=data/lang_bpe_$vocab_size
if [ -z "$device" ]; then
  device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi
{ read -r train_parts; read -r dev_parts; read -r test_parts; read -r num_mel_bins; read -r tok_type; read -r num_epochs; } \
  < <(python ../../local/config_value.py "$config" data.train_parts data.dev_parts data.test_parts \
        data.num_mel_bins model.tokenizer.type train.num_epochs)
all_parts="$train_parts $dev_parts $test_parts"
# Every stage reads the same config; a sentencepiece model is the one built in stage 3.
common=(--config "$config")
[ "$tok_type" = sentencepiece ] && common+=(--set "model.tokenizer.path=$lang_dir/bpe.model")

. ../../tools/log.sh

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: download LibriSpeech"
  if [ -d "$dl_dir/LibriSpeech" ]; then
    log "$dl_dir/LibriSpeech already exists - skipping download"
  else
    lhotse download librispeech --full "$dl_dir"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: lhotse manifests"
  python ../../local/prepare_manifests.py --corpus-dir "$dl_dir/LibriSpeech" --output-dir data/manifests --nj "$nj"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: Whisper log-mel features ($num_mel_bins bins) for $all_parts"
  present=""
  for p in $all_parts; do
    if [ -f data/manifests/librispeech_recordings_$p.jsonl.gz ]; then present="$present $p"; else log "no manifests for $p - skipping it"; fi
  done
  [ -n "$present" ] || { echo "$0: no manifests in data/manifests (run stage 1)" >&2; exit 1; }
  python ../../local/compute_fbank.py --parts $present --num-mel-bins "$num_mel_bins" --nj "$nj"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: lang directory $lang_dir"
  python ../../local/prepare_lang.py --parts $train_parts --lang-dir "$lang_dir" --vocab-size "$vocab_size"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: first pass (Whisper autoregressive decoding, n-best)"
  python ../../local/whisper_first_pass.py "${common[@]}" --device "$device"
fi

# train_model EXP_DIR EPOCHS CONFIG-ARGS...: local/train.py, on torchrun when --world-size > 1.
train_model() {
  local exp=$1 epochs=$2
  shift 2
  if [ -f "$exp/epoch-$epochs.pt" ]; then
    log "$exp/epoch-$epochs.pt already exists - skipping training"
  elif [ "$world_size" -gt 1 ]; then
    torchrun --standalone --nproc-per-node "$world_size" ../../local/train.py "$@" --exp-dir "$exp"
  else
    python ../../local/train.py "$@" --exp-dir "$exp" --device "$device"
  fi
}

if [ -n "$ctc_config" ]; then
  ctc_exp=exp/$(basename "$ctc_config" .yaml)
  ctc_epochs=$(python ../../local/config_value.py "$ctc_config" train.num_epochs)
  # The CTC recogniser always reads this recipe's BPE pieces.
  ctc_common=(--config "$ctc_config" --set "model.tokenizer.path=$lang_dir/bpe.model")
  if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
    log "Stage 5: train the CTC recogniser $ctc_exp"
    train_model "$ctc_exp" "$ctc_epochs" "${ctc_common[@]}"
  fi
  if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
    log "Stage 6: CTC first pass (lattices, n-best, confidences; Whisper's words get confidences too)"
    python ../../local/ctc_first_pass.py "${ctc_common[@]}" --exp-dir "$ctc_exp" --align whisper --device "$device"
  fi
elif [ $stage -le 6 ] && [ $stop_stage -ge 5 ]; then
  log "no --ctc-config - skipping stages 5-6 (the CTC first pass)"
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: train $exp_dir on $world_size process(es)"
  train_model "$exp_dir" "$num_epochs" "${common[@]}"
fi

epoch_opt=()
[ -n "$epoch" ] && epoch_opt=(--epoch "$epoch")

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: decode"
  python ../../local/decode.py "${common[@]}" --exp-dir "$exp_dir" "${epoch_opt[@]}" --avg "$avg" --device "$device"
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  log "Stage 9: deliberate the first pass"
  python ../../local/deliberate.py "${common[@]}" --exp-dir "$exp_dir" "${epoch_opt[@]}" --avg "$avg" --device "$device"
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: report"
  python ../../local/compare_systems.py --exp-dir "$exp_dir" --plot "$exp_dir/wer-vs-rtf.png"
fi
log "Done"
