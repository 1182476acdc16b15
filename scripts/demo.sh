#!/usr/bin/env bash
# The main job, from a fresh machine: set up, prepare a real Debian text corpus (the Jargon
# File) with the byte-level tokenizer, train a small GPT-2-architecture model on it, and
# print a sample. About 5 minutes on 2 cores. Extra arguments go to `hone train`
# (e.g. --set train.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --corpora

mkdir -p corpus
if [ ! -s corpus/jargon.txt ]; then
  zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
fi
build/hone prepare corpus/jargon.txt -o shards/jargon --tokenizer byte --val 0.05
build/hone train configs/jargon_byte.yaml "$@"
