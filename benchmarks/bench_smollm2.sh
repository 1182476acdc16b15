#!/usr/bin/env bash
# Every specialization method on SmolLM2-135M-Instruct and the Linux programming manual,
# side by side: `hone bench benchmarks/bench_smollm2.yaml`, then the charts. Prepares the
# model, the domain (scripts/prepare_domain.sh) and the evaluation files first. Resumable:
# a method with a result in benchmarks/results/bench_smollm2/ is not run again.
#   benchmarks/bench_smollm2.sh              # about 35 minutes on 2 cores (34 measured)
#   benchmarks/bench_smollm2.sh --set train.steps=64   # any hone bench --set
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/hone ] || scripts/setup.sh
[ -s models/smollm2.h5 ] || scripts/get_model.sh
scripts/prepare_domain.sh --tokenizer models/smollm2.h5 >&2
mkdir -p runs/bench corpus
[ -s corpus/jargon.txt ] || zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
# the evaluation files: held-out pages (whole pages, in name order, up to 40 KB), general
# text, and the questions
: > runs/bench/domain.txt
for f in corpus/manpages/test/*.txt; do
  [ "$(stat -c %s runs/bench/domain.txt)" -lt 40000 ] || break
  cat "$f" >> runs/bench/domain.txt
done
head -c 920000 corpus/jargon.txt | tail -c 20000 > runs/bench/general.txt
head -n 100 corpus/manpages/qa/train_mc.jsonl > runs/bench/qa_mc.jsonl
head -n 40 corpus/manpages/qa/train_gen.jsonl > runs/bench/qa_gen.jsonl
build/hone bench benchmarks/bench_smollm2.yaml "$@"
# the charts (Debian's python3-matplotlib), when it is there
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 benchmarks/plot_bench.py benchmarks/results/bench_smollm2/bench.csv benchmarks/results/bench_smollm2
else
  echo "bench_smollm2: no charts (apt-get install python3-matplotlib)" >&2
fi
