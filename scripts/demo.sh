#!/usr/bin/env bash
# The main job, from a fresh machine: set up, prepare a real Debian text corpus (the Jargon
# File) with the byte-level tokenizer, train a small GPT-2-architecture model on it
# (checkpoints in runs/jargon_byte/), evaluate its perplexity on the held-out text, and
# generate a sample from the checkpoint. About 6 minutes on 2 cores. Extra arguments go to
# `hone train` (e.g. --set train.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --corpora

mkdir -p corpus
if [ ! -s corpus/jargon.txt ]; then
  zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
fi
build/hone prepare corpus/jargon.txt -o shards/jargon --tokenizer byte --val 0.05
build/hone train configs/jargon_byte.yaml "$@"
build/hone eval runs/jargon_byte/latest.h5 --task ppl --data shards/jargon/val_000000.bin
echo "--- sample (hone generate) ---"
build/hone generate runs/jargon_byte/latest.h5 --prompt "hacker n. " --max-tokens 300 \
  --temperature 0.8 --top-k 40 --seed 1
