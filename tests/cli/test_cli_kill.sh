#!/usr/bin/env bash
# Crash consistency: a run that saves every few steps, killed with SIGKILL at 20 random
# moments (some inside a checkpoint write) and resumed with --resume auto after each, ends
# bit-identical to an uninterrupted run of the same config: every dataset and attribute of
# the final checkpoint (weights, AdamW moments and t, step and token counters, the data
# loader's RNG and cursor, best validation loss, config, tokenizer) and the metrics of
# every step. After each kill, every checkpoint the run folder names still loads.
# The kill moments are drawn (seeded: HONE_KILL_SEED) relative to the killed run's own
# events, in units of the start-up time and save cycle measured on the uninterrupted run,
# so they scale with a slower build (sanitizers) or a busy machine.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"

KILLS=20
SEED="${HONE_KILL_SEED:-12345}"
STEPS=60
now_ms() { date +%s%3N; }

for i in $(seq 1 400); do echo "record $i: $((i * 7919 % 10007)) lorem ipsum dolor sit amet"; done > "$WORK/a.txt"
"$HONE" prepare "$WORK/a.txt" -o "$WORK/shards" --val 0.1 >/dev/null || bad "prepare"
# 0.4M parameters, a 5 MB checkpoint with AdamW state every 3 steps: the save is most of a
# cycle, steps and evaluations the rest. train.out is relative, so both runs' checkpoints
# carry the same config text.
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 2, channels: 128, heads: 4, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
train: {steps: $STEPS, log_every: 1, eval_every: 4, eval_batches: 1, save_every: 3, keep: 2, deflate: 1, threads: 1, out: run}
YAML
mkdir -p "$WORK/ref" "$WORK/kill"

# the uninterrupted reference, timed: one save cycle (save_every steps and their checkpoint)
# from its metrics, and the start-up of a resume (load the checkpoint, find nothing to do)
(cd "$WORK/ref" && "$HONE" train "$WORK/cfg.yaml" > /dev/null 2> "$WORK/ref.err") || bad "reference run failed: $(tail -1 "$WORK/ref.err")"
loop_ms=$(grep -o '"elapsed_s":[0-9.]*' "$WORK/ref/run/metrics.jsonl" | tail -1 | awk -F: '{printf "%d", $2 * 1000}')
cycle_ms=$((loop_ms * 3 / STEPS))
mkdir -p "$WORK/probe" && cp -a "$WORK/ref/run" "$WORK/probe/run"
t0=$(now_ms)
(cd "$WORK/probe" && "$HONE" train "$WORK/cfg.yaml" --resume auto > /dev/null 2>&1) || bad "resuming the finished reference run failed"
startup_ms=$(($(now_ms) - t0))
[ "$cycle_ms" -lt 20 ] && cycle_ms=20
echo "reference: $STEPS steps in ${loop_ms} ms, a save cycle ~${cycle_ms} ms; a resume starts in ~${startup_ms} ms"

RUN="$WORK/kill/run"
check_loadable() {
  local f
  if [ -L "$RUN/latest.h5" ] && [ ! -e "$RUN/latest.h5" ]; then
    bad "after kill $1: latest.h5 -> $(readlink "$RUN/latest.h5") points nowhere"
    return
  fi
  for f in "$RUN/latest.h5" "$RUN/best.h5" "$RUN/ckpt/"step_*.h5; do
    [ -e "$f" ] || continue
    "$HONE" inspect "$f" > /dev/null 2> "$WORK/inspect.err" || { bad "after kill $1: $f does not load: $(cat "$WORK/inspect.err")"; return; }
  done
  ok
}

# wait, polling every 5 ms, until the run $pid shows an event: "step" (it logged a step),
# "save" (it is writing a checkpoint: NAME.tmp.PID exists) or "saved" (latest.h5 moved on
# from $was); 1 if it ended first
wait_event() {
  local i
  for i in $(seq 1 4000); do
    kill -0 "$pid" 2>/dev/null || return 1
    case $1 in
      step) grep -q '| loss' "$WORK/kill.err" 2>/dev/null && return 0 ;;
      save) compgen -G "$RUN/ckpt/*.tmp.$pid" > /dev/null && return 0 ;;
      saved) [ "$(readlink "$RUN/latest.h5" 2>/dev/null)" != "$was" ] && return 0 ;;
    esac
    sleep 0.005
  done
  return 1
}

# each kill draws a phase and a delay: within the start-up (loading the checkpoint,
# opening the data), after the run's first step (in steps, an evaluation or the save that
# follows), after a save began (inside the write), or after a save ended (the steps after
# it; the run moves on). Waiting for the run's own events keeps the kills where they were
# drawn when the machine's speed changes.
RANDOM=$SEED
live=0
inside=0
moments=""
for k in $(seq 1 $KILLS); do
  phase=$((RANDOM % 4))
  was=$(readlink "$RUN/latest.h5" 2>/dev/null)
  (cd "$WORK/kill" && exec "$HONE" train "$WORK/cfg.yaml" --resume auto > /dev/null 2> "$WORK/kill.err") &
  pid=$!
  case $phase in
    0) d=$((RANDOM * startup_ms / 32768)); moments="$moments start+$d" ;;
    1) d=$((RANDOM * cycle_ms / 2 / 32768)); moments="$moments step+$d"; wait_event step ;;
    2) d=$((RANDOM * cycle_ms / 3 / 32768)); moments="$moments save+$d"; wait_event save ;;
    3) d=$((RANDOM * cycle_ms / 2 / 32768)); moments="$moments saved+$d"; wait_event saved ;;
  esac
  sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rc=$?
  if [ "$rc" -eq 137 ]; then
    live=$((live + 1))
    # a write in progress leaves its temporary file (NAME.tmp.PID) behind
    if ls "$RUN" "$RUN/ckpt" 2>/dev/null | grep -q "\.tmp\.$pid\$"; then inside=$((inside + 1)); fi
  elif [ "$rc" -ne 0 ]; then
    bad "run $k failed by itself (exit $rc): $(tail -1 "$WORK/kill.err")"
  fi
  check_loadable "$k"
done
step_at=$(readlink "$RUN/latest.h5" 2>/dev/null)
echo "kill moments (phase+ms, seed $SEED):$moments"
echo "killed $live of $KILLS runs alive, $inside of them inside a checkpoint write; the run stood at ${step_at:-no checkpoint} of $STEPS steps"
[ "$live" -ge 16 ] && ok || bad "only $live of $KILLS kills hit a running process (wanted 16): the run finished or failed too early"
[ "$inside" -ge 1 ] && ok || bad "no kill landed inside a checkpoint write (wanted at least 1 of $live)"

(cd "$WORK/kill" && "$HONE" train "$WORK/cfg.yaml" --resume auto > /dev/null 2> "$WORK/final.err") ||
  bad "the final resume failed: $(tail -1 "$WORK/final.err")"
ls "$RUN" "$RUN/ckpt" | grep -q '\.tmp\.' && bad "temporary files left after the run ended: $(ls "$RUN" "$RUN/ckpt" | grep '\.tmp\.')" || ok

# every object of the two final checkpoints: datasets bit for bit (dtype, shape, bytes),
# attributes by value
/usr/bin/python3 - "$WORK/ref/run/latest.h5" "$RUN/latest.h5" <<'PY' && ok || bad "the killed-and-resumed run's final checkpoint differs from the uninterrupted run's"
import sys
import h5py
import numpy as np

def objects(f):
    out = {"/": f}
    f.visititems(lambda name, obj: out.__setitem__("/" + name, obj))
    return out

def same_attrs(a, b):
    if sorted(a.attrs) != sorted(b.attrs):
        return f"attributes {sorted(a.attrs)} != {sorted(b.attrs)}"
    for k in a.attrs:
        x, y = np.asarray(a.attrs[k]), np.asarray(b.attrs[k])
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return f"attribute {k}: {a.attrs[k]!r} != {b.attrs[k]!r}"
    return None

with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    oa, ob = objects(a), objects(b)
    if sorted(oa) != sorted(ob):
        sys.exit(f"different objects: {sorted(set(oa) ^ set(ob))[:5]}")
    ndata = 0
    for name in sorted(oa):
        x, y = oa[name], ob[name]
        why = same_attrs(x, y)
        if why:
            sys.exit(f"{name}: {why}")
        if isinstance(x, h5py.Dataset):
            ndata += 1
            if x.dtype != y.dtype or x.shape != y.shape or x[()].tobytes() != y[()].tobytes():
                sys.exit(f"{name}: differs")
    for g in ("/model", "/optim/m", "/optim/v", "/train/rng", "/train/cursor", "/train/shard_order"):
        if g not in oa:
            sys.exit(f"{g} missing from both checkpoints")
    print(f"final checkpoints identical: {len(oa)} objects, {ndata} datasets, step {a.attrs['step']}")
PY

# the metrics of every step and evaluation, timings left out
metrics() { sed -E 's/,"tokens_per_s":[^,]*,"elapsed_s":[^}]*//' "$1"; }
if cmp -s <(metrics "$WORK/ref/run/metrics.jsonl") <(metrics "$RUN/metrics.jsonl"); then
  ok
else
  bad "metrics differ: $(diff <(metrics "$WORK/ref/run/metrics.jsonl") <(metrics "$RUN/metrics.jsonl") | head -4)"
fi
[ "$(grep -c '"loss"' "$RUN/metrics.jsonl")" -eq "$STEPS" ] && ok || bad "metrics should hold each of the $STEPS steps once"
[ "$(metrics "$RUN/metrics.jsonl" | grep "\"step\":$STEPS,\"loss\"")" = "$(metrics "$WORK/ref/run/metrics.jsonl" | grep "\"step\":$STEPS,\"loss\"")" ] &&
  ok || bad "the final step's metrics differ"
finish
