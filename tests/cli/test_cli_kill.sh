#!/usr/bin/env bash
# A save killed with SIGKILL at random moments, inside the write included, never damages
# the previous checkpoint: after every kill, each checkpoint the run folder names
# (latest.h5, best.h5, ckpt/step_*.h5) loads, and the run resumes to the end.
source "$(dirname "$0")/lib.sh"

for i in $(seq 1 400); do echo "record $i: $((i * 7919 % 10007)) lorem ipsum dolor sit amet"; done > "$WORK/a.txt"
"$HONE" prepare "$WORK/a.txt" -o "$WORK/shards" --val 0.1 >/dev/null || bad "prepare"
# a model large enough (1.7M parameters: an 18 MB checkpoint with AdamW state) that a
# save takes most of each step (about 0.5 s with its fsyncs), so kills land inside writes
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 2, channels: 256, heads: 4, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 2, seq: 32}
train: {steps: 400, log_every: 50, eval_every: 3, eval_batches: 1, save_every: 1, keep: 2, deflate: 1, threads: 1, out: "$WORK/run"}
YAML

check_loadable() {
  local f n=0
  for f in "$WORK/run/latest.h5" "$WORK/run/best.h5" "$WORK/run/ckpt/"step_*.h5; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    "$HONE" inspect "$f" > /dev/null 2> "$WORK/inspect.err" || { bad "after kill $1: $f does not load: $(cat "$WORK/inspect.err")"; return; }
  done
  ok
}

kills=0
inside=0
RANDOM=12345
for k in $(seq 1 12); do
  "$HONE" train "$WORK/cfg.yaml" --resume auto > /dev/null 2>&1 &
  pid=$!
  # 0.6 to 2.1 s: past start-up, then somewhere in a step or a save
  sleep "$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))"
  sleep 0.6
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null
  ls "$WORK/run/ckpt" 2>/dev/null | grep -q '\.tmp\.' && inside=$((inside + 1))
  check_loadable "$k"
done
echo "killed $kills runs, $inside of them inside a checkpoint write"
[ "$kills" -ge 8 ] && ok || bad "only $kills of 12 runs were still running when killed"
[ -e "$WORK/run/latest.h5" ] && ok || bad "no checkpoint survived"
"$HONE" train "$WORK/cfg.yaml" --resume auto --set train.steps=1 > /dev/null 2> "$WORK/final.err"
# train.steps=1 is below the checkpoint's step: nothing to do, but the resume must load
grep -q "resumed from" "$WORK/final.err" && ok || bad "resume after the kills failed: $(tail -1 "$WORK/final.err")"
ls "$WORK/run/ckpt" | grep -q '\.tmp\.' && bad "temporary files left after a clean start" || ok
finish
