#!/usr/bin/env bash
# Instruction data end to end: `hone prepare --instruct` writes shards with a .mask beside
# each and "instruct": true in meta.json; malformed lines are fatal with their line number,
# or skipped and reported with --skip-bad; template options are checked; a plain prepare
# into the same folder removes stale masks; a short `hone train` on instruct shards of a
# tiny repetitive dataset lowers the (response-only) loss well below its start, and so does
# one with data.packing: documents (each example attends to itself only); that setting
# needs the .docs index and says so when it is missing.
source "$(dirname "$0")/lib.sh"

# 400 examples over 8 question/answer pairs, in both forms
pairs=("France|Paris" "Japan|Tokyo" "Peru|Lima" "Kenya|Nairobi" "Chile|Santiago" "Egypt|Cairo" "Spain|Madrid" "Cuba|Havana")
for i in $(seq 0 399); do
  p=${pairs[$((i * 7 % 8))]}
  c=${p%%|*} a=${p##*|}
  if [ $((i % 2)) -eq 0 ]; then
    printf '{"prompt": "Capital of %s?", "response": "%s."}\n' "$c" "$a"
  else
    printf '{"messages": [{"role": "system", "content": "Answer with a city."}, {"role": "user", "content": "Capital of %s?"}, {"role": "assistant", "content": "%s."}]}\n' "$c" "$a"
  fi
done > "$WORK/qa.jsonl"

out=$("$HONE" prepare --instruct "$WORK/qa.jsonl" -o "$WORK/shards" --template chatml --val 0.05 2>&1)
[ $? -eq 0 ] && ok || bad "prepare --instruct failed: $out"
echo "$out"
echo "$out" | grep -q "prepared 400 examples (template chatml" && ok || bad "summary line: $out"
for s in train val; do
  [ -s "$WORK/shards/${s}_000000.bin" ] && [ -s "$WORK/shards/${s}_000000.mask" ] && ok ||
    bad "$s shard or its mask missing"
done
magic=$(od -An -td4 -N12 "$WORK/shards/train_000000.mask" | tr -s ' ' | sed 's/^ //')
ntok=$(od -An -td4 -j8 -N4 "$WORK/shards/train_000000.bin" | tr -d ' ')
[ "$magic" = "20240521 1 $ntok" ] && ok || bad "mask header '$magic' (want 20240521 1 $ntok)"
[ "$(($(stat -c %s "$WORK/shards/train_000000.mask") - 1024))" -eq "$ntok" ] && ok || bad "mask size"
grep -qE '"instruct":[[:space:]]*true' "$WORK/shards/meta.json" && ok || bad "meta.json lacks instruct: true"
grep -qE '"chat_template":[[:space:]]*"chatml"' "$WORK/shards/meta.json" && ok || bad "meta.json lacks the template"
# the counted tokens are the responses and their <|im_end|>: e.g. "Paris.<|im_end|>" is 16 bytes
counted=$(od -An -tu1 -v -j1024 "$WORK/shards/train_000000.mask" | tr -s ' ' '\n' | grep -c '^1$')
want=$(grep -o '"response": "[^"]*"\|"assistant", "content": "[^"]*"' "$WORK/qa.jsonl" | wc -l)
[ "$counted" -gt "$want" ] && [ "$counted" -lt $((ntok / 3)) ] && ok ||
  bad "$counted counted tokens of $ntok for $want responses"

# malformed lines: fatal with the line number, or skipped and reported
{ head -2 "$WORK/qa.jsonl"; echo '{"prompt": "x", "response": '; echo; echo '{"messages": [{"role": "user", "content": "no answer"}]}'; tail -2 "$WORK/qa.jsonl"; } > "$WORK/bad.jsonl"
expect_fail "malformed line" 1 "bad\.jsonl:3: not valid JSON.*--skip-bad" -- \
  "$HONE" prepare --instruct "$WORK/bad.jsonl" -o "$WORK/bad"
err=$("$HONE" prepare --instruct "$WORK/bad.jsonl" -o "$WORK/bad" --skip-bad 2>&1 >/dev/null)
[ $? -eq 0 ] && ok || bad "--skip-bad failed: $err"
printf '%s\n' "$err" | grep -q '^hone: warning: .*bad\.jsonl:3: not valid JSON (skipped)' && ok || bad "line 3 not reported: $err"
printf '%s\n' "$err" | grep -q '^hone: warning: .*bad\.jsonl:5: no assistant message' && ok || bad "line 5 not reported: $err"
grep -qE '"documents":[[:space:]]*4' "$WORK/bad/meta.json" && ok || bad "4 examples should remain"
expect_fail "unknown template" 1 "unknown chat template 'jinja'" -- \
  "$HONE" prepare --instruct "$WORK/qa.jsonl" -o "$WORK/t" --template jinja
expect_fail "template without --instruct" 2 "go with --instruct" -- \
  "$HONE" prepare "$WORK/qa.jsonl" -o "$WORK/t" --template chatml

# a plain prepare into the folder drops the stale masks
"$HONE" prepare "$WORK/qa.jsonl" -o "$WORK/bad" >/dev/null && [ ! -e "$WORK/bad/train_000000.mask" ] && ok ||
  bad "a plain prepare left a stale .mask"

cat > "$WORK/tiny.yaml" <<YAML
model: {layers: 2, channels: 64, heads: 4, context: 64}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 8, seq: 64}
optim: {lr: 3e-3, warmup: 10}
train: {steps: 80, out: "$WORK/run", log_every: 10, eval_every: 80, eval_batches: 8, threads: 2, sample_tokens: 0}
YAML
"$HONE" train "$WORK/tiny.yaml" > "$WORK/stdout.txt" 2> "$WORK/stderr.txt"
[ $? -eq 0 ] && ok || bad "train failed: $(tail -3 "$WORK/stderr.txt")"
first=$(grep -o '"loss":[0-9.e+-]*' "$WORK/run/metrics.jsonl" | head -1 | cut -d: -f2)
last=$(grep -o '"loss":[0-9.e+-]*' "$WORK/run/metrics.jsonl" | tail -1 | cut -d: -f2)
val=$(grep -o '"val_loss":[0-9.e+-]*' "$WORK/run/metrics.jsonl" | tail -1 | cut -d: -f2)
echo "response-only loss: first logged $first, last $last; validation $val"
awk -v f="$first" -v l="$last" 'BEGIN {exit !(f != "" && l != "" && l + 0 < 0.3 * f)}' && ok ||
  bad "loss did not fall enough: $first -> $last"
awk -v v="$val" -v l="$last" 'BEGIN {exit !(v != "" && v + 0 < 1.0)}' && ok ||
  bad "validation loss '$val' on held-out examples of the same pairs should be small"

# packed documents: every shard has its index; training on them learns the same task
for s in train val; do
  [ -s "$WORK/shards/${s}_000000.docs" ] && ok || bad "$s shard has no .docs index"
done
ndocs=$(od -An -td4 -j8 -N4 "$WORK/shards/train_000000.docs" | tr -d ' ')
nval=$(od -An -td4 -j8 -N4 "$WORK/shards/val_000000.docs" | tr -d ' ')
[ "$((ndocs + nval))" -eq 400 ] && ok || bad "the indexes hold $ndocs + $nval document starts, not 400"
"$HONE" train "$WORK/tiny.yaml" --set data.packing=documents --set train.out="$WORK/run_docs" \
  --set data.seq=128 --set model.context=128 --set data.batch=4 \
  > /dev/null 2> "$WORK/stderr.txt"
[ $? -eq 0 ] && ok || bad "train with packed documents failed: $(tail -3 "$WORK/stderr.txt")"
last=$(grep -o '"loss":[0-9.e+-]*' "$WORK/run_docs/metrics.jsonl" | tail -1 | cut -d: -f2)
val=$(grep -o '"val_loss":[0-9.e+-]*' "$WORK/run_docs/metrics.jsonl" | tail -1 | cut -d: -f2)
echo "packed documents: last loss $last, validation $val"
awk -v v="$val" -v l="$last" -v f="$first" 'BEGIN {exit !(v != "" && v + 0 < 1.0 && l + 0 < 0.3 * f)}' && ok ||
  bad "packed documents: loss $last, validation '$val'"
rm "$WORK/shards/val_000000.docs"
expect_fail "packing without an index" 1 "val_000000.bin has no document index .*hone prepare" -- \
  "$HONE" train "$WORK/tiny.yaml" --set data.packing=documents --set train.out="$WORK/run_x"
finish
