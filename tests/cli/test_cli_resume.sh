#!/usr/bin/env bash
# A run stopped twice (--stop-at) and resumed each time ends with parameters, optimizer
# state and a loss curve bit-identical to an uninterrupted run, and each resume runs only
# the remaining steps. Also: --resume auto starts fresh when there is no checkpoint, keeps
# the last train.keep step files plus best.h5, and refuses a changed config key.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
EQUAL="/usr/bin/python3 $(dirname "$0")/h5_equal.py"

python_text() { for i in $(seq 1 300); do echo "line $i: the quick brown fox jumps over the lazy dog $((i * 7919 % 1000))"; done; }
python_text > "$WORK/a.txt"
"$HONE" prepare "$WORK/a.txt" -o "$WORK/shards" --val 0.1 >/dev/null || bad "prepare"
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
optim: {lr: 3e-3, warmup: 3, accum: 2}
train: {steps: 12, log_every: 1, eval_every: 4, eval_batches: 4, save_every: 4, keep: 2, threads: 2}
YAML

"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/full" > /dev/null 2>&1 || bad "uninterrupted run failed"

"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume auto --stop-at 5 > "$WORK/o1" 2> "$WORK/e1" ||
  bad "first part failed: $(tail -1 "$WORK/e1")"
grep -q "stopped at step 5" "$WORK/o1" && ok || bad "no stop message: $(cat "$WORK/o1")"
[ -f "$WORK/split/ckpt/step_000005.h5" ] && ok || bad "no checkpoint at the stop"
"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume auto --stop-at 9 > /dev/null 2> "$WORK/e2" ||
  bad "second part failed: $(tail -1 "$WORK/e2")"
grep -q "resumed from .* at step 5" "$WORK/e2" && ok || bad "second part did not resume at 5"
"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume "$WORK/split/latest.h5" > /dev/null 2> "$WORK/e3" ||
  bad "third part failed: $(tail -1 "$WORK/e3")"
grep -q "resumed from .* at step 9" "$WORK/e3" && ok || bad "third part did not resume at 9"
# only the remaining steps ran: progress lines 6..9 in part two, 10..12 in part three
[ "$(grep -c '| loss' "$WORK/e2")" -eq 4 ] && [ "$(grep -c '| loss' "$WORK/e3")" -eq 3 ] && ok ||
  bad "resumed parts ran $(grep -c '| loss' "$WORK/e2") and $(grep -c '| loss' "$WORK/e3") steps, wanted 4 and 3"
grep -q "step 10/12" "$WORK/e3" && ! grep -q "step 9/12 | loss" "$WORK/e3" && ok || bad "third part ran the wrong steps"

$EQUAL "$WORK/full/latest.h5" "$WORK/split/latest.h5" && ok || bad "resumed parameters/optimizer differ from the uninterrupted run"
extract() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }
cmp -s <(extract "$WORK/full/metrics.jsonl") <(extract "$WORK/split/metrics.jsonl") && ok ||
  bad "loss curves differ: $(diff <(extract "$WORK/full/metrics.jsonl") <(extract "$WORK/split/metrics.jsonl") | head -4)"
cmp -s <(grep -o '"val_loss":[^,]*' "$WORK/full/metrics.jsonl") <(grep -o '"val_loss":[^,]*' "$WORK/split/metrics.jsonl") &&
  ok || bad "validation curves differ"
[ "$(extract "$WORK/split/metrics.jsonl" | wc -l)" -eq 12 ] && ok || bad "metrics should hold each of the 12 steps once"

# keep: the last 2 step files, plus best.h5 (a hard link that survives rotation)
ls "$WORK/full/ckpt" | grep -c '^step_' | grep -qx 2 && ok || bad "keep=2 not honoured: $(ls "$WORK/full/ckpt")"
[ -f "$WORK/full/best.h5" ] && "$HONE" inspect "$WORK/full/best.h5" > /dev/null && ok || bad "best.h5 missing or unreadable"
[ "$(readlink "$WORK/full/latest.h5")" = "ckpt/step_000012.h5" ] && ok || bad "latest.h5 -> $(readlink "$WORK/full/latest.h5")"
"$HONE" inspect "$WORK/full/latest.h5" > "$WORK/inspect.txt" && grep -q "layers.1.mlp.down.weight" "$WORK/inspect.txt" &&
  grep -q "step        12" "$WORK/inspect.txt" && ok || bad "inspect output: $(head -5 "$WORK/inspect.txt")"

# a changed key that is not resumable is refused, naming the key
expect_fail "changed config on resume" 1 "optim.weight_decay" -- \
  "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume auto --set optim.weight_decay=0.5 --set train.steps=14
# a resumable one is fine: two more steps
"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume auto --set train.steps=14 > /dev/null 2> "$WORK/e4" &&
  grep -q "resumed from .* at step 12" "$WORK/e4" && ok || bad "extending train.steps on resume failed: $(tail -1 "$WORK/e4")"
finish
