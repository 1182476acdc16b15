#!/usr/bin/env bash
# `hone eval` and `hone generate` on checkpoints written by `hone train`:
#   - perplexity of the validation shard equals exp(the trainer's final val_loss): the
#     validation text has exactly k*T+1 tokens and eval_batches covers every window, so
#     both score the same k windows of T targets (an independent path: the training model
#     without a cache vs the inference model with one);
#   - mc and gen on small JSONL files (keys, counts, values in [0, 1]), with --shots and
#     --template; bad inputs give one error line and the right exit code;
#   - generate: greedy is repeatable, a seed makes sampling repeatable, --max-tokens holds;
#     a checkpoint without a tokenizer cannot generate but can score token shards.
source "$(dirname "$0")/lib.sh"

T=32 # model.context = data.seq
K=4  # validation windows

# training text: a few thousand bytes of varied, learnable lines
awk 'BEGIN { for (i = 0; i < 300; i++) printf "line %d: the cat sat on mat %d and the dog ran %d.\n", i, i % 7, i % 5 }' \
  > "$WORK/train.txt"
# validation text: exactly K*T bytes, so with the leading end-of-text K*T+1 tokens
awk 'BEGIN { for (i = 0; i < 100; i++) printf "the dog sat on the cat %d. ", i % 9 }' | head -c $((K * T)) > "$WORK/val.txt"
[ "$(wc -c < "$WORK/val.txt")" -eq $((K * T)) ] && ok || bad "val.txt is not $((K * T)) bytes"

"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards" --tokenizer byte --val 0 > /dev/null &&
  "$HONE" prepare "$WORK/val.txt" -o "$WORK/valshards" --tokenizer byte --val 0 > /dev/null
[ $? -eq 0 ] && ok || bad "prepare failed"
VAL="$WORK/valshards/train_000000.bin"
# 1024-byte header + (K*T+1) uint16 ids
[ "$(wc -c < "$VAL")" -eq $((1024 + 2 * (K * T + 1))) ] && ok || bad "validation shard has the wrong size"

cat > "$WORK/tiny.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: $T}
data: {train: "$WORK/shards/train_*.bin", val: "$VAL", batch: 4, seq: $T}
optim: {lr: 3e-3, warmup: 5}
train: {steps: 40, out: "$WORK/run", log_every: 20, eval_batches: 8, threads: 2, sample_tokens: 0}
YAML
"$HONE" train "$WORK/tiny.yaml" > "$WORK/train.out" 2> "$WORK/train.err"
[ $? -eq 0 ] && ok || bad "train failed: $(tail -3 "$WORK/train.err")"
CKPT="$WORK/run/latest.h5"
[ -e "$CKPT" ] || { bad "$CKPT missing: the trainer did not write it"; finish; exit 1; }

# a number from a one-line JSON object
json_num() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2; }
in_unit() { awk -v x="$1" 'BEGIN { exit !(x != "" && x + 0 >= 0 && x + 0 <= 1) }'; }

# ---- ppl == exp(final val_loss) ----
val_loss=$(grep -o '"val_loss":[0-9.eE+-]*' "$WORK/run/metrics.jsonl" | tail -1 | cut -d: -f2)
val_tokens=$(grep -o '"val_tokens":[0-9]*' "$WORK/run/metrics.jsonl" | tail -1 | cut -d: -f2)
[ "$val_tokens" = $((K * T)) ] && ok || bad "the trainer scored $val_tokens validation tokens, wanted $((K * T))"
"$HONE" eval "$CKPT" --task ppl --data "$VAL" --json "$WORK/ppl.json" > "$WORK/ppl.out"
[ $? -eq 0 ] && ok || bad "eval ppl failed"
ppl=$(json_num "$WORK/ppl.json" ppl)
tokens=$(json_num "$WORK/ppl.json" tokens)
echo "eval ppl $ppl over $tokens tokens; trainer val_loss $val_loss -> ppl $(awk -v l="$val_loss" 'BEGIN{printf "%.6f", exp(l)}')"
awk -v p="$ppl" -v l="$val_loss" 'BEGIN { e = exp(l); d = p - e; if (d < 0) d = -d; exit !(p != "" && d <= 1e-4 * e) }' &&
  ok || bad "ppl $ppl != exp(val_loss $val_loss) within 1e-4"
[ "$tokens" = $((K * T)) ] && ok || bad "eval scored $tokens tokens, wanted $((K * T))"
grep -q '"task":"ppl"' "$WORK/ppl.json" && grep -q '"loss":' "$WORK/ppl.json" && ok || bad "ppl.json lacks task/loss"
grep -qE '^ppl +ppl ' "$WORK/ppl.out" && ok || bad "no table on stdout"
ls "$WORK"/ppl.json.tmp* > /dev/null 2>&1 && bad "temporary JSON left behind" || ok
# the text itself: end-of-text + the bytes = the same ids, so the same perplexity
"$HONE" eval "$CKPT" --task ppl --data "$WORK/val.txt" --json "$WORK/ppl_text.json" > /dev/null
[ "$(json_num "$WORK/ppl_text.json" ppl)" = "$ppl" ] && ok || bad "text and shard of the same ids differ"

# ---- mc ----
cat > "$WORK/mc.jsonl" <<'EOF'
{"context": "the cat sat on", "choices": [" mat", " dog", " ran"], "answer": 0}
{"context": "line 3: the", "choices": [" cat", " mat"], "answer": 0}
{"context": "and the dog", "choices": [" sat", " ran", " on"], "answer": 1}
{"context": "the dog ran", "choices": [" 1.", " cat"], "answer": 0}
EOF
"$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --json "$WORK/mc.json" > /dev/null
[ $? -eq 0 ] && ok || bad "eval mc failed"
in_unit "$(json_num "$WORK/mc.json" accuracy)" && in_unit "$(json_num "$WORK/mc.json" accuracy_norm)" &&
  ok || bad "mc.json accuracy out of [0,1]: $(cat "$WORK/mc.json")"
[ "$(json_num "$WORK/mc.json" examples)" = 4 ] && grep -q '"task":"mc"' "$WORK/mc.json" && ok || bad "mc.json: $(cat "$WORK/mc.json")"
printf 'Text: {context}\n' > "$WORK/mc_tmpl.txt"
"$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --shots 2 --seed 3 --template "$WORK/mc_tmpl.txt" \
  --json "$WORK/mc2.json" > /dev/null
[ $? -eq 0 ] && [ "$(json_num "$WORK/mc2.json" shots)" = 2 ] && ok || bad "mc --shots 2 failed"

# ---- gen ----
cat > "$WORK/gen.jsonl" <<'EOF'
{"prompt": "line 12: the cat sat on", "reference": "mat 5 and the dog ran 2."}
{"prompt": "line 40: the", "reference": "cat sat on mat 5 and the dog ran 0."}
{"prompt": "the dog", "reference": "ran"}
EOF
"$HONE" eval "$CKPT" --task gen --data "$WORK/gen.jsonl" --max-tokens 16 --json "$WORK/gen.json" > /dev/null
[ $? -eq 0 ] && ok || bad "eval gen failed"
in_unit "$(json_num "$WORK/gen.json" exact_match)" && in_unit "$(json_num "$WORK/gen.json" rouge_l)" &&
  ok || bad "gen.json metrics out of [0,1]: $(cat "$WORK/gen.json")"
[ "$(json_num "$WORK/gen.json" examples)" = 3 ] && ok || bad "gen.json: $(cat "$WORK/gen.json")"
"$HONE" eval "$CKPT" --task gen --data "$WORK/gen.jsonl" --shots 2 --max-tokens 8 > /dev/null &&
  ok || bad "gen --shots 2 failed"

# ---- bad input ----
printf '{"context": "a", "choices": ["x"], "answer": 0}\n{"context": \n' > "$WORK/broken.jsonl"
printf '{"context": "a", "choices": ["x", "y"], "answer": 5}\n' > "$WORK/range.jsonl"
printf '{"context": "a", "choices": [], "answer": 0}\n' > "$WORK/nochoice.jsonl"
: > "$WORK/empty.jsonl"
expect_fail "malformed line" 1 "broken.jsonl:2" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/broken.jsonl"
expect_fail "answer out of range" 1 "range.jsonl:1: answer 5 is out of range" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/range.jsonl"
expect_fail "empty choices" 1 "nochoice.jsonl:1: \"choices\" is empty" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/nochoice.jsonl"
expect_fail "empty data" 1 "has no examples" -- "$HONE" eval "$CKPT" --task gen --data "$WORK/empty.jsonl"
expect_fail "missing data" 1 "cannot read" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/nope.jsonl"
expect_fail "missing checkpoint" 1 "nope.h5" -- "$HONE" eval "$WORK/nope.h5" --task ppl --data "$VAL"
expect_fail "too many shots" 1 "shots" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --shots 4
expect_fail "unknown task" 2 "unknown task 'qa'" -- "$HONE" eval "$CKPT" --task qa --data "$VAL"
expect_fail "no data" 2 "needs --data" -- "$HONE" eval "$CKPT" --task ppl
expect_fail "shots with ppl" 2 "--shots" -- "$HONE" eval "$CKPT" --task ppl --data "$VAL" --shots 1
expect_fail "unknown option" 2 "unknown option '--bogus'" -- "$HONE" eval "$CKPT" --bogus
expect_fail "retrieval with ppl" 2 "--retrieve applies" -- "$HONE" eval "$CKPT" --task ppl --data "$VAL" --retrieve "$WORK"
expect_fail "retrieval from no folder" 1 "is not a folder" -- \
  "$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --retrieve "$WORK/nope"
mkdir -p "$WORK/emptydir"
expect_fail "retrieval from an empty folder" 1 "has no text to retrieve from" -- \
  "$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --retrieve "$WORK/emptydir"
expect_fail "top-k 0" 2 "--top-k" -- "$HONE" eval "$CKPT" --task mc --data "$WORK/mc.jsonl" --retrieve "$WORK" --top-k 0

# retrieval augmentation on the real model: pages of made-up functions (no model can know
# their purpose), questions on them (a page's names -> its purpose, the others' purposes as
# distractors) answered without and with BM25's top passage in the prompt
MODEL="$HONE_SOURCE_DIR/models/smollm2.h5"
if [ -f "$MODEL" ]; then
  mkdir -p "$WORK/pages"
  page() { printf 'NAME\n       %s - %s\n\nDESCRIPTION\n       See the source.\n' "$2" "$3" > "$WORK/pages/$1.txt"; }
  page frob "frobnicate, frobnicate_r" "twiddle the quux register of a widget"
  page blit "zorblit" "paint seven gnomes onto a teapot"
  page wump "wumpify, wumpify_at" "count the pebbles of a moonbeam"
  page snarf "snarfle" "bake a bitmap into a fruitcake"
  purposes='" twiddle the quux register of a widget", " paint seven gnomes onto a teapot", " count the pebbles of a moonbeam", " bake a bitmap into a fruitcake"'
  : > "$WORK/qa.jsonl"
  for q in "frobnicate, frobnicate_r -:0" "zorblit -:1" "wumpify, wumpify_at -:2" "snarfle -:3"; do
    printf '{"context": "%s", "choices": [%s], "answer": %s}\n' "${q%:*}" "$purposes" "${q##*:}" >> "$WORK/qa.jsonl"
  done
  mc_acc() { "$HONE" eval "$MODEL" --task mc --data "$WORK/qa.jsonl" "$@" 2>/dev/null | awk '$2 == "accuracy" {print $3}'; }
  acc0=$(mc_acc)
  acc1=$(mc_acc --retrieve "$WORK/pages" --top-k 1)
  echo "SmolLM2 on 4 made-up man pages: accuracy $acc0 without retrieval, $acc1 with the top passage"
  [ "$acc1" = "1.000000" ] && [ "$acc0" != "1.000000" ] && ok || bad "retrieval-augmented accuracy $acc1 (without: $acc0)"
  printf '{"prompt": "frobnicate, frobnicate_r -", "reference": "twiddle the quux register of a widget"}\n' > "$WORK/qa_gen.jsonl"
  gen_rl() { "$HONE" eval "$MODEL" --task gen --data "$WORK/qa_gen.jsonl" --max-tokens 12 "$@" 2>/dev/null | awk '$2 == "rouge_l" {print $3}'; }
  rl0=$(gen_rl)
  rl1=$(gen_rl --retrieve "$WORK/pages" --top-k 1)
  echo "SmolLM2 generating a made-up purpose: ROUGE-L $rl0 without retrieval, $rl1 with"
  awk -v a="$rl0" -v b="$rl1" 'BEGIN {exit !(a != "" && b != "" && a < 0.3 && b > 0.6)}' && ok ||
    bad "retrieval-augmented ROUGE-L $rl1 (without: $rl0)"
else
  skip_or_fail "$MODEL is missing (run scripts/get_model.sh)"
fi
# a shard whose ids are not below the vocabulary (257): header, 2 uint16 ids 300 and 1
{ printf '\x88\xd8\x34\x01\x01\x00\x00\x00\x02\x00\x00\x00'; head -c 1012 /dev/zero; printf '\x2c\x01\x01\x00'; } > "$WORK/big.bin"
expect_fail "id >= vocab" 1 "token id 300 at position 0 is not below" -- "$HONE" eval "$CKPT" --task ppl --data "$WORK/big.bin"
"$HONE" eval --help | grep -q "usage: hone eval" && ok || bad "eval --help"

# ---- generate ----
gen() { "$HONE" generate "$CKPT" --prompt "the cat" "$@"; }
a=$(gen --temperature 0 --max-tokens 20) && b=$(gen --temperature 0 --max-tokens 20)
[ $? -eq 0 ] && [ "$a" = "$b" ] && ok || bad "greedy differs: '$a' vs '$b'"
a=$(gen --seed 7 --top-k 20 --top-p 0.9 --max-tokens 20) && b=$(gen --seed 7 --top-k 20 --top-p 0.9 --max-tokens 20)
[ $? -eq 0 ] && [ "$a" = "$b" ] && ok || bad "seeded sampling differs: '$a' vs '$b'"
gen --temperature 1.5 --max-tokens 7 > "$WORK/g7.txt"
# byte tokenizer: one token is one byte, plus the closing newline
[ $? -eq 0 ] && [ "$(wc -c < "$WORK/g7.txt")" -le 8 ] && ok || bad "--max-tokens 7 printed $(wc -c < "$WORK/g7.txt") bytes"
expect_fail "chat" 1 "no chat template" -- gen --chat
expect_fail "bad temperature" 2 "--temperature" -- gen --temperature -1
expect_fail "no prompt" 2 "--prompt" -- "$HONE" generate "$CKPT"
"$HONE" generate --help | grep -q "usage: hone generate" && ok || bad "generate --help"

# ---- a checkpoint without a tokenizer ----
"$HONE" train "$WORK/tiny.yaml" --set tokenizer.type=none --set model.vocab=257 --set train.steps=3 --set optim.warmup=1 \
  --set train.out="$WORK/run_notok" > /dev/null 2> "$WORK/notok.err"
[ $? -eq 0 ] && ok || bad "train without tokenizer failed: $(tail -2 "$WORK/notok.err")"
expect_fail "generate without tokenizer" 1 "no tokenizer: generation needs one" -- \
  "$HONE" generate "$WORK/run_notok/latest.h5" --prompt hi
expect_fail "mc without tokenizer" 1 "needs a tokenizer" -- \
  "$HONE" eval "$WORK/run_notok/latest.h5" --task mc --data "$WORK/mc.jsonl"
"$HONE" eval "$WORK/run_notok/latest.h5" --task ppl --data "$VAL" > /dev/null && ok || bad "ppl of a shard without tokenizer"
finish
