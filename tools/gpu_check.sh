#!/usr/bin/env bash
# A prepared GPU check: the decoding benchmark at LLaDA-8B shapes (bf16, batch 1 and 16, every
# strategy beside the AR twin), then the full-width check at full size (whisper-large-v3 +
# LLaDA-8B, all layers, random weights, LoRA, gradient checkpointing) trained a few dozen steps
# on torchrun (NCCL), decoded and deliberated, with its peak GPU memory beside the memory plan.
# Markdown tables go to the output directory: bench.md, full_width.md, gpu_check.md (both).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. ./path.sh

device=cuda
size=full
out_dir=${OUT:-exp/gpu_check}
steps=24
batch=4
num_test=16
llm_layers=32
whisper_layers=32
work_dir=
help_message="Usage: $0 [options]
  --device DEV          cuda, or cpu with --size tiny (default $device)
  --size SIZE           full (LLaDA-8B, whisper-large-v3) or tiny (toy widths, CPU minutes) (default $size)
  --out-dir DIR         where the tables go (default \$OUT, else exp/gpu_check)
  --steps N             training steps (default $steps; the tiny run: 2 on one process)
  --batch N             utterances a training step (default $batch)
  --num-test N          utterances decoded and deliberated (default $num_test)
  --llm-layers N        LLM layers at full size (default $llm_layers)
  --whisper-layers N    Whisper encoder layers at full size (default $whisper_layers)
  --work-dir DIR        corpus, features and checkpoints (default: a new temporary directory)
Sized for one H100 (80 GB) in about 6 minutes by estimate; nothing here has run on a GPU yet."
. tools/parse_options.sh
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
# Checkpoints stay out of the output directory, which holds the tables only.
[ -n "$work_dir" ] || work_dir=$(mktemp -d)

if [ "$size" = full ]; then
  fw=(--size full --nproc 1 --whisper-layers "$whisper_layers" --llm-layers "$llm_layers" --full-window
      --response-length 128 --gen-len 128 --decode-steps 32 --decode-batch 16 --resume-at 0)
  # torchrun gives each process one thread unless told; each reads the random 8B weights (written
  # once by the check as a hub directory) on the CPU before they move.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
else
  # The tiny run checks this script's wiring: two steps on one process, decode, deliberate. Two
  # processes and the resumed run are tests/test_full_width.py's full-width check.
  fw=(--size tiny --nproc 1 --resume-at 0)
  steps=2 batch=1 num_test=2
fi

t0=$(date +%s)
bench() {
  if [ "$size" = full ]; then
    # Batch 1 over 4 utterances (the 16 of batch 16 one at a time would take minutes), batch 16 over 16.
    python tools/bench_decode.py --size llada-8b --batch-sizes 1 --num-utts 4 --device "$device"
    echo
    python tools/bench_decode.py --size llada-8b --batch-sizes 16 --num-utts 16 --device "$device"
  else
    # Two strategies and the AR twin at one batch size: the tiny run checks the script, not the speeds.
    python tools/bench_decode.py --size tiny --batch-sizes 2 --num-utts 2 --seconds 1 --tokens 5 --gen-len 16 \
      --only "diffusion steps 4" "delib low-conf 0.3" --device "$device"
  fi
}
bench > "$out_dir/bench.md.tmp"
mv "$out_dir/bench.md.tmp" "$out_dir/bench.md"
t1=$(date +%s)
python tools/full_width_check.py "${fw[@]}" --device "$device" --work-dir "$work_dir" --out-dir "$out_dir" \
  --steps "$steps" --batch "$batch" --num-test "$num_test"
t2=$(date +%s)
{
  echo "# GPU check ($device, size $size), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Decoding benchmark: $((t1 - t0)) s; full-width check: $((t2 - t1)) s."
  echo
  echo "## Decoding benchmark"
  echo
  cat "$out_dir/bench.md"
  echo
  sed 's/^#/##/' "$out_dir/full_width.md"
} > "$out_dir/gpu_check.md.tmp"
mv "$out_dir/gpu_check.md.tmp" "$out_dir/gpu_check.md"
echo "$0: tables in $out_dir/gpu_check.md ($((t2 - t0)) s)"
