#!/usr/bin/env bash
# End to end: prepare a real text corpus (the Jargon File from Debian's jargon-text) with
# the byte tokenizer, train a tiny GPT-2, and require the final validation loss to be
# below the unigram entropy of the validation tokens (computed here, independently of
# hone), i.e. the model learned more than token frequencies. Also checks the run folder.
source "$(dirname "$0")/lib.sh"

JARGON=/usr/share/doc/jargon-text/jargon.txt.gz
[ -r "$JARGON" ] || skip_or_fail "$JARGON is missing (apt-get install jargon-text)"
zcat "$JARGON" | head -c 400000 > "$WORK/jargon.txt"

out=$("$HONE" prepare "$WORK/jargon.txt" -o "$WORK/shards" --tokenizer byte --val 0.1)
[ $? -eq 0 ] && ok || bad "prepare failed: $out"
[ -s "$WORK/shards/train_000000.bin" ] && [ -s "$WORK/shards/val_000000.bin" ] && ok || bad "shards missing"
grep -qE '"tokenizer":[[:space:]]*"byte"' "$WORK/shards/meta.json" && ok || bad "meta.json lacks the tokenizer"

# unigram entropy (nats) of the validation tokens: uint16 ids after the 1024-byte header
H=$(od -An -tu2 -v -j1024 "$WORK/shards/val_000000.bin" | tr -s ' ' '\n' | grep -v '^$' |
    awk '{c[$1]++; n++} END {h = 0; for (k in c) {p = c[k] / n; h -= p * log(p)}; printf "%.6f", h}')

cat > "$WORK/tiny.yaml" <<YAML
model: {layers: 2, channels: 64, heads: 4, context: 64}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 8, seq: 64}
optim: {lr: 3e-3, warmup: 20}
train: {steps: 250, out: "$WORK/run", log_every: 50, eval_batches: 32, threads: 2, sample_tokens: 40, sample_prompt: "The "}
YAML
"$HONE" train "$WORK/tiny.yaml" > "$WORK/stdout.txt" 2> "$WORK/stderr.txt"
[ $? -eq 0 ] && ok || bad "train failed: $(tail -3 "$WORK/stderr.txt")"
val=$(grep -o '"val_loss":[0-9.]*' "$WORK/run/metrics.jsonl" | tail -1 | cut -d: -f2)
echo "validation loss $val nats, unigram entropy of the validation tokens $H nats"
awk -v v="$val" -v h="$H" 'BEGIN {exit !(v != "" && v + 0 < h + 0)}' && ok ||
  bad "validation loss '$val' is not below the unigram entropy $H"
[ -s "$WORK/run/config.yaml" ] && ok || bad "run/config.yaml missing"
[ "$(grep -c '"loss"' "$WORK/run/metrics.jsonl")" -eq 5 ] && ok || bad "metrics.jsonl should have 5 step lines"
grep -q -- "--- sample ---" "$WORK/stdout.txt" && ok || bad "no sample printed"
# not a terminal: plain progress lines, no carriage returns
grep -q $'\r' "$WORK/stderr.txt" && bad "carriage return in non-terminal progress" || ok
grep -q "step 250/250" "$WORK/stderr.txt" && ok || bad "no final progress line"

# the resolved config reloads and reproduces the run bit for bit (determinism)
"$HONE" train "$WORK/run/config.yaml" --set train.out="$WORK/run2" --set train.sample_tokens=0 >/dev/null 2>&1
cmp -s <(grep -o '"loss":[^,]*' "$WORK/run/metrics.jsonl") <(grep -o '"loss":[^,]*' "$WORK/run2/metrics.jsonl") &&
  ok || bad "the same config and seed gave different losses"
finish
