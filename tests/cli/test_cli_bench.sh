#!/usr/bin/env bash
# `hone bench` end to end on a tiny GPT-2 (byte tokenizer) and a tiny Llama:
#   - every kind of method runs (eval-only: zero-shot, few-shot, retrieval; trained: LoRA,
#     prompt, FISH, BitFit, full) and lands in bench.csv / bench.md and METHOD.json;
#   - the figures are the ones `hone eval` and the trainer give on their own: the zero-shot
#     row's domain perplexity equals `hone eval --task ppl` of the base, the LoRA row's
#     equals `hone eval` of the run's checkpoint, few-shot and retrieval keep the base's
#     perplexity; trainable counts: full = every parameter, LoRA = 2 r (in + out) per site,
#     FISH = its mask's entries; optimizer MiB = 8 bytes per trainable entry;
#   - resumable: a second run reruns nothing (METHOD.json untouched), and a deleted result
#     is run again;
#   - BitFit on a Llama without biases is a row that says so, not a failure;
#   - bad configs get one error line: an unknown method, no bench.domain, retrieval
#     without a folder.
source "$(dirname "$0")/lib.sh"
awk 'BEGIN { for (i = 0; i < 300; i++) printf "line %d: the cat sat on mat %d and the dog ran %d.\n", i, i % 7, i % 5 }' \
  > "$WORK/train.txt"
"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards" --tokenizer byte --val 0 > /dev/null || bad "prepare"
awk 'BEGIN { for (i = 0; i < 40; i++) printf "the dog sat on the cat %d. ", i % 9 }' > "$WORK/domain.txt"
awk 'BEGIN { for (i = 0; i < 40; i++) printf "a general sentence number %d. ", i }' > "$WORK/general.txt"
mkdir -p "$WORK/docs"
printf 'the cat sat on mat 3\n' > "$WORK/docs/a.txt"
printf 'the dog ran 4 times\n' > "$WORK/docs/b.txt"
cat > "$WORK/qa.jsonl" <<'JSONL'
{"context": "the cat sat on", "choices": [" mat", " dog", " ran"], "answer": 0}
{"context": "the dog", "choices": [" mat", " ran", " cat"], "answer": 1}
{"context": "line 3: the", "choices": [" cat", " dog", " mat"], "answer": 0}
{"context": "and the dog", "choices": [" sat", " ran", " line"], "answer": 1}
JSONL
cat > "$WORK/qa_gen.jsonl" <<'JSONL'
{"prompt": "the cat sat", "reference": "on mat"}
{"prompt": "the dog", "reference": "ran"}
JSONL
for arch in gpt2 llama; do
  extra=""
  [ "$arch" = llama ] && extra="arch: llama, kv_heads: 1, tied: false,"
  cat > "$WORK/$arch.yaml" <<YAML
model: {$extra layers: 2, channels: 32, heads: 2, context: 64}
data: {train: "$WORK/shards/train_*.bin", batch: 4, seq: 32}
optim: {lr: 1e-2, warmup: 1}
train: {steps: 20, out: "$WORK/base_$arch", log_every: 5, sample_tokens: 0, threads: 2}
YAML
  "$HONE" train "$WORK/$arch.yaml" > /dev/null 2>&1 || bad "train the $arch base"
done
cat > "$WORK/bench.yaml" <<YAML
model: {from: "$WORK/base_gpt2/latest.h5"}
data: {train: "$WORK/shards/train_*.bin", batch: 4, seq: 32}
optim: {warmup: 1}
train: {steps: 4, log_every: 1, sample_tokens: 0, threads: 2}
bench:
  out: "$WORK/out"
  methods: [zero-shot, few-shot, retrieval, lora, prompt, fish, bitfit, full]
  domain: "$WORK/domain.txt"
  general: "$WORK/general.txt"
  qa: "$WORK/qa.jsonl"
  qa_gen: "$WORK/qa_gen.jsonl"
  retrieve: "$WORK/docs"
  shots: 1
  top_k: 1
  context: 64
  gen_tokens: 4
  lr: [lora=5e-3]
YAML
"$HONE" bench "$WORK/bench.yaml" > "$WORK/out1.txt" 2>&1 && ok || bad "hone bench: $(tail -5 "$WORK/out1.txt")"
for m in zero-shot few-shot retrieval lora prompt fish bitfit full; do
  [ -s "$WORK/out/$m.json" ] && grep -q "^$m,ok," "$WORK/out/bench.csv" && ok || bad "$m: no result"
done
grep -q "| lora |" "$WORK/out/bench.md" && ok || bad "bench.md"
field() { # METHOD KEY
  /usr/bin/env python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/out/$1.json" "$2"
}
ppl() { "$HONE" eval "$1" --task ppl --data "$WORK/domain.txt" --context 64 2>/dev/null | awk '$2 == "ppl" {print $3}'; }
close() { awk -v a="$1" -v b="$2" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-5 * b)}'; }
base=$(ppl "$WORK/base_gpt2/latest.h5")
close "$(field zero-shot domain_ppl)" "$base" && ok || bad "zero-shot ppl $(field zero-shot domain_ppl), hone eval $base"
close "$(field few-shot domain_ppl)" "$base" && close "$(field retrieval domain_ppl)" "$base" && ok ||
  bad "few-shot / retrieval changed the base's perplexity"
lora=$(ppl "$WORK/out/runs/lora/latest.h5")
close "$(field lora domain_ppl)" "$lora" && ok || bad "lora ppl $(field lora domain_ppl), hone eval $lora"
[ "$(field lora lr)" = 0.005 ] && ok || bad "bench.lr did not reach LoRA: $(field lora lr)"
# trainable counts: full = all; LoRA r=16 on every linear of a GPT-2 block (attn.qkv
# 32 -> 96, attn.o 32 -> 32, mlp.up 32 -> 128, mlp.down 128 -> 32) = 2 layers x 16 x
# (128 + 64 + 160 + 160); FISH = the mask's entries
params=$(field full parameters)
[ "$(field full trainable)" = "$params" ] && ok || bad "full trains $(field full trainable) of $params"
[ "$(field lora trainable)" = 16384 ] && ok || bad "LoRA trains $(field lora trainable), wanted 16384"
fishk=$(grep -o 'mask: fish, [0-9]* entries' "$WORK/out/fish.log" | grep -o '[0-9]* entries' | cut -d' ' -f1)
[ -n "$fishk" ] && [ "$(field fish trainable)" = "$fishk" ] && ok || bad "FISH trains $(field fish trainable), its mask $fishk"
awk -v a="$(field full optimizer_mib)" -v n="$params" 'BEGIN {exit !(a * 1048576 == 8 * n)}' && ok ||
  bad "optimizer MiB $(field full optimizer_mib) for $params entries"
# resumable: nothing reruns; a deleted result does
before=$(stat -c %Y "$WORK/out/lora.json")
"$HONE" bench "$WORK/bench.yaml" > "$WORK/out2.txt" 2>&1 && ok || bad "second hone bench"
[ "$(grep -c 'done before' "$WORK/out2.txt")" = 8 ] && [ "$(stat -c %Y "$WORK/out/lora.json")" = "$before" ] && ok ||
  bad "the second run reran methods: $(cat "$WORK/out2.txt")"
rm "$WORK/out/prompt.json"
"$HONE" bench "$WORK/bench.yaml" > "$WORK/out3.txt" 2>&1 && grep -q "prompt .*running" "$WORK/out3.txt" &&
  [ -s "$WORK/out/prompt.json" ] && ok || bad "a deleted result was not run again"
# BitFit on a Llama has nothing to train
"$HONE" bench "$WORK/bench.yaml" --set model.from="$WORK/base_llama/latest.h5" --set bench.out="$WORK/out_llama" \
  --set 'bench.methods=[zero-shot, bitfit]' > "$WORK/out4.txt" 2>&1 && ok || bad "llama bench: $(tail -3 "$WORK/out4.txt")"
grep -q "^bitfit,n/a," "$WORK/out_llama/bench.csv" && grep -q "| bitfit | not applicable: .*bias" "$WORK/out_llama/bench.md" &&
  ok || bad "BitFit on a Llama is not reported as not applicable"
# bad configs
expect_fail "unknown method" 1 "unknown method 'lorax'" -- "$HONE" bench "$WORK/bench.yaml" --set 'bench.methods=[lorax]'
expect_fail "no domain" 1 "bench.domain, bench.general and bench.qa are required" -- \
  "$HONE" bench "$WORK/bench.yaml" --set bench.domain=
expect_fail "retrieval without a folder" 1 "needs bench.retrieve" -- \
  "$HONE" bench "$WORK/bench.yaml" --set bench.retrieve= --set bench.out="$WORK/out5"
expect_fail "no config" 2 "needs a config" -- "$HONE" bench
finish
