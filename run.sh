#!/usr/bin/env bash
# Sets up what it needs (tools/install.sh), then runs the embedded default recipe end to end:
# egs/espeak_fortunes (espeak-ng speech of fortune-file sentences, Whisper tiny.en first pass,
# a small Whisper-LLaDA and its autoregressive twin trained here, decoding, deliberation, report).
# Options go to egs/espeak_fortunes/run.sh (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tools/install.sh
start=$(date +%s)
egs/espeak_fortunes/run.sh "$@"
echo "run.sh: finished in $(( ($(date +%s) - start) / 60 )) min (set-up not counted); report: egs/espeak_fortunes/exp/report.json"
