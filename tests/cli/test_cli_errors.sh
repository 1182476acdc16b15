#!/usr/bin/env bash
# Bad input gets one clear error line and a non-zero exit, never a crash: usage errors
# exit 2, input and run errors exit 1.
source "$(dirname "$0")/lib.sh"

printf 'The quick brown fox jumps over the lazy dog.\n%.0s' $(seq 1 200) > "$WORK/text.txt"
"$HONE" prepare "$WORK/text.txt" -o "$WORK/shards" --val 0.1 >/dev/null || bad "prepare of a good file failed"
base="$WORK/base.yaml"
cat > "$base" <<YAML
model: {layers: 1, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", batch: 2, seq: 16}
train: {steps: 2, out: "$WORK/run", threads: 1}
YAML

# usage
expect_fail "no command" 2 "" -- "$HONE"
expect_fail "unknown command" 2 "unknown command 'trian'" -- "$HONE" trian
expect_fail "train without config" 2 "needs a config file" -- "$HONE" train
expect_fail "unknown train option" 2 "unknown option '--sett'" -- "$HONE" train "$base" --sett a=b
expect_fail "prepare without output" 2 "needs text files and -o DIR" -- "$HONE" prepare "$WORK/text.txt"
expect_fail "bad --val" 2 "bad number" -- "$HONE" prepare "$WORK/text.txt" -o "$WORK/x" --val abc

# configs
expect_fail "missing config" 1 "nope.yaml" -- "$HONE" train "$WORK/nope.yaml"
printf 'model: {layers: 2\n  channels: [\n' > "$WORK/broken.yaml"
expect_fail "malformed config" 1 "broken.yaml" -- "$HONE" train "$WORK/broken.yaml"
printf 'optim:\n  lrr: 0.1\n' > "$WORK/typo.yaml"
expect_fail "unknown key" 1 "optim.lrr.*optim.lr" -- "$HONE" train "$WORK/typo.yaml"
expect_fail "unknown --set key" 1 "modle.layers.*model.layers" -- "$HONE" train "$base" --set modle.layers=3
expect_fail "bad value type" 1 "data.batch" -- "$HONE" train "$base" --set data.batch=abc
expect_fail "sequence longer than the model" 1 "seq|context" -- "$HONE" train "$base" --set data.seq=64

# data
expect_fail "missing data" 1 "no data file matches" -- "$HONE" train "$base" --set "data.train=$WORK/none_*.bin"
: > "$WORK/empty.txt"
expect_fail "empty corpus" 1 "empty" -- "$HONE" prepare "$WORK/empty.txt" -o "$WORK/e"
expect_fail "missing text file" 1 "missing.txt" -- "$HONE" prepare "$WORK/missing.txt" -o "$WORK/m"
expect_fail "missing vocab file" 1 "encoder.json" -- \
  "$HONE" prepare "$WORK/text.txt" -o "$WORK/g" --tokenizer gpt2 --encoder "$WORK/encoder.json" --merges "$WORK/vocab.bpe"
expect_fail "token id out of range" 1 "out of range" -- \
  "$HONE" train "$base" --set model.vocab=50 --set tokenizer.type=none
head -c 1500 "$WORK/shards/train_000000.bin" > "$WORK/shards/trunc.bin"
expect_fail "truncated shard" 1 "truncated" -- "$HONE" train "$base" --set "data.train=$WORK/shards/trunc.bin"
head -c 2000 /dev/urandom > "$WORK/shards/junk.bin"
expect_fail "not a shard" 1 "not a token shard" -- "$HONE" train "$base" --set "data.train=$WORK/shards/junk.bin"
expect_fail "cuda without a GPU" 1 "cuda" -- "$HONE" train "$base" --set train.device=cuda

# help everywhere
for c in "" train prepare; do
  "$HONE" $c --help > "$WORK/help.txt" 2>&1 && grep -q "usage: hone" "$WORK/help.txt" && ok || bad "hone $c --help"
done
"$HONE" train "$base" >/dev/null 2>&1 && ok || bad "the good config should train"
finish
