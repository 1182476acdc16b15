#!/usr/bin/env bash
# Data parallel training on the CPU with OpenMPI (two ranks on this machine, loopback
# transports, one thread each):
#   - 2 ranks x batch 4 end with the same parameters as 1 rank x batch 8 after 20 steps,
#     within 1e-5 + 1e-4 |w| (the same windows; sums in another order), for full fine-tuning
#     and for LoRA on a frozen base, and every rank holds the same parameters;
#   - ZeRO-1 (dist.zero: 1, AdamW state sharded) equals plain data parallel, and a 2-rank
#     ZeRO-1 run stopped at step 10 and resumed ends bit-identical to the uninterrupted one;
#   - a rank that dies (SIGKILL) makes the job exit non-zero within 30 s.
source "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || skip_or_fail "mpirun is missing (apt-get install openmpi-bin libopenmpi-dev)"
"$HONE" train --help 2>&1 | grep -q "This build has MPI" || skip_or_fail "this hone was built without MPI"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# on the sanitizer build (scripts/test.sh --sanitize), Open MPI's plugins leave allocations
# that LeakSanitizer cannot attribute (they are unloaded before it reports); leaks are
# checked on every single-process test instead. ASan's other checks stay on here.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
MPI=(mpirun -np 2 --oversubscribe --bind-to none --mca btl self,tcp --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo)
CLOSE="$(dirname "$0")/../cli/h5_close.py"
EQUAL="$(dirname "$0")/../cli/h5_equal.py"

head -c 300000 "$HONE_SOURCE_DIR/README.md" > "$WORK/text.txt"
cat "$HONE_SOURCE_DIR/docs/DESIGN.md" >> "$WORK/text.txt"
"$HONE" prepare "$WORK/text.txt" -o "$WORK/shards" --val 0 > /dev/null || bad "prepare failed"
cat > "$WORK/t.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", batch: 4, seq: 32}
optim: {lr: 1e-3, warmup: 2, weight_decay: 0.1, accum: 2}
train: {steps: 20, log_every: 5, threads: 1, sample_tokens: 0}
YAML

run2() { "${MPI[@]}" "$HONE" train "$WORK/t.yaml" "$@" > "$WORK/out.txt" 2> "$WORK/err2.txt" ||
  { bad "2-rank run $* failed: $(tail -3 "$WORK/err2.txt")"; return 1; }; ok; }
run1() { "$HONE" train "$WORK/t.yaml" --set data.batch=8 "$@" > /dev/null 2> "$WORK/err.txt" ||
  { bad "1-rank run $* failed: $(tail -3 "$WORK/err.txt")"; return 1; }; ok; }

# full fine-tuning
run2 --set train.out="$WORK/two"
grep -q "data parallel: 2 ranks x batch 4 x accum 2 = 16 sequences" "$WORK/err2.txt" && ok ||
  bad "no data parallel line: $(head -3 "$WORK/err2.txt")"
# every rank ends with the same parameters (the trainer compares hashes of them)
grep -q "parameters identical on all 2 ranks" "$WORK/err2.txt" && ok ||
  bad "the ranks did not confirm identical parameters: $(tail -2 "$WORK/err2.txt")"
run1 --set train.out="$WORK/one"
out=$(/usr/bin/python3 "$CLOSE" "$WORK/one/latest.h5" "$WORK/two/latest.h5" 1e-5 1e-4 /model)
[ $? -eq 0 ] && ok || bad "2 ranks x 4 differ from 1 rank x 8: $out"
echo "full fine-tuning, 2 ranks vs 1: $out"

# LoRA on a frozen base (the base: the full run's result)
lora=(--set model.from="$WORK/one/latest.h5" --set 'peft.methods=[lora]' --set peft.lora.rank=4)
run2 "${lora[@]}" --set train.out="$WORK/two_lora" && run1 "${lora[@]}" --set train.out="$WORK/one_lora"
out=$(/usr/bin/python3 "$CLOSE" "$WORK/one_lora/latest.h5" "$WORK/two_lora/latest.h5" 1e-5 1e-4 /peft)
[ $? -eq 0 ] && ok || bad "LoRA: 2 ranks x 4 differ from 1 rank x 8: $out"
echo "LoRA, 2 ranks vs 1: $out"


# ZeRO-1 equals plain data parallel; its stop + resume is bit-exact
run2 --set train.out="$WORK/zero" --set dist.zero=1
out=$(/usr/bin/python3 "$CLOSE" "$WORK/two/latest.h5" "$WORK/zero/latest.h5" 1e-6 1e-5 /model /optim)
[ $? -eq 0 ] && ok || bad "ZeRO-1 differs from plain data parallel: $out"
echo "ZeRO-1 vs plain data parallel: $out"
run2 --set train.out="$WORK/zr" --set dist.zero=1 --stop-at 10
run2 --set train.out="$WORK/zr" --set dist.zero=1 --resume auto
grep -q "resumed from" "$WORK/err2.txt" && ok || bad "the ZeRO-1 run did not resume"
/usr/bin/python3 "$EQUAL" "$WORK/zero/latest.h5" "$WORK/zr/latest.h5" /model /optim && ok ||
  bad "a resumed 2-rank ZeRO-1 run is not bit-identical to the uninterrupted one"

# a rank that dies ends the job
"${MPI[@]}" "$HONE" train "$WORK/t.yaml" --set train.out="$WORK/die" --set train.steps=1000000 \
  --set model.channels=64 > /dev/null 2> "$WORK/die.txt" &
job=$!
victim=""
for _ in $(seq 100); do
  for p in $(pgrep -f "train.out=$WORK/die" || true); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$p; fi
  done
  [ -n "$victim" ] && grep -q "step" "$WORK/die.txt" 2>/dev/null && break
  sleep 0.2
done
if [ -z "$victim" ]; then
  bad "rank 1 of the job was not found"
  kill "$job" 2>/dev/null
else
  start=$(date +%s)
  kill -9 "$victim"
  ( sleep 40; kill -9 "$job" 2>/dev/null ) &
  watchdog=$!
  wait "$job"
  rc=$?
  secs=$(( $(date +%s) - start ))
  kill "$watchdog" 2>/dev/null
  echo "killed rank 1: the job exited with status $rc after $secs s"
  [ "$rc" -ne 0 ] && [ "$secs" -le 30 ] && ok || bad "after rank 1 died the job exited $rc after $secs s"
fi
pkill -9 -f "train.out=$WORK/die" 2>/dev/null
finish
