#!/usr/bin/env bash
# Bad checkpoints — truncated, not HDF5, a flipped byte, a missing row, a row of the wrong
# shape, a wrong format_version, not a hone file — are one clear error from every command
# that reads them (inspect, train --resume), never a crash, and never touch the file. Files
# hone did not write (here: damaged copies made with h5py) are refused before libhdf5 sees
# them; with --allow-unverified the checkpoint schema's own checks catch the damage.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
DAMAGE="/usr/bin/python3 $(dirname "$0")/ckpt_damage.py"

printf 'The quick brown fox jumps over the lazy dog.\n%.0s' $(seq 1 200) > "$WORK/text.txt"
"$HONE" prepare "$WORK/text.txt" -o "$WORK/shards" >/dev/null || bad "prepare"
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", batch: 2, seq: 16}
train: {steps: 3, threads: 1, out: "$WORK/run"}
YAML
"$HONE" train "$WORK/cfg.yaml" > /dev/null 2>&1 || bad "training the good checkpoint failed"
good="$WORK/run/ckpt/step_000003.h5"
"$HONE" inspect "$good" > /dev/null && ok || bad "the good checkpoint does not inspect"

head -c 3000 "$good" > "$WORK/truncated.h5"
head -c $(( $(stat -c %s "$good") - 200 )) "$good" > "$WORK/truncated_tail.h5"
echo "not a checkpoint at all" > "$WORK/text.h5"
: > "$WORK/empty.h5"
for kind in missing-row wrong-shape format-version not-hone no-config; do
  $DAMAGE "$good" "$WORK/$kind.h5" "$kind" || bad "could not make $kind"
done

cp "$good" "$WORK/flipped.h5"
printf '\x55' | dd of="$WORK/flipped.h5" bs=1 seek=$(( $(stat -c %s "$good") / 2 )) conv=notrunc status=none
expect_fail "inspect flipped byte" 1 "flipped.h5: damaged: its SHA-256 does not match" -- "$HONE" inspect "$WORK/flipped.h5"
expect_fail "resume flipped byte" 1 "flipped.h5: damaged" -- \
  "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/r" --set train.steps=5 --resume "$WORK/flipped.h5"
for kind in missing-row not-hone; do
  expect_fail "inspect unsealed $kind" 1 "$kind.h5: an HDF5 file hone did not write \(no seal\).*--allow-unverified" -- \
    "$HONE" inspect "$WORK/$kind.h5"
done
expect_fail "inspect truncated" 1 "truncated.h5" -- "$HONE" inspect "$WORK/truncated.h5"
expect_fail "inspect truncated tail" 1 "truncated_tail.h5: damaged: .* bytes follow its seal" -- "$HONE" inspect "$WORK/truncated_tail.h5"
expect_fail "inspect non-HDF5" 1 "not an HDF5 file" -- "$HONE" inspect "$WORK/text.h5"
expect_fail "inspect empty" 1 "empty.h5" -- "$HONE" inspect "$WORK/empty.h5"
expect_fail "inspect missing file" 1 "nope.h5" -- "$HONE" inspect "$WORK/nope.h5"
expect_fail "inspect missing row" 1 "do not match" -- "$HONE" inspect --allow-unverified "$WORK/missing-row.h5"
expect_fail "inspect wrong shape" 1 "do not match" -- "$HONE" inspect --allow-unverified "$WORK/wrong-shape.h5"
expect_fail "inspect format_version" 1 "format_version 99" -- "$HONE" inspect --allow-unverified "$WORK/format-version.h5"
expect_fail "inspect not hone" 1 "not a hone checkpoint" -- "$HONE" inspect --allow-unverified "$WORK/not-hone.h5"
expect_fail "inspect no config" 1 "config" -- "$HONE" inspect --allow-unverified "$WORK/no-config.h5"

resume() { "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/r" --set train.steps=5 --allow-unverified --resume "$1"; }
expect_fail "resume truncated" 1 "truncated.h5" -- resume "$WORK/truncated.h5"
expect_fail "resume non-HDF5" 1 "not an HDF5 file" -- resume "$WORK/text.h5"
expect_fail "resume missing row" 1 "layers.0.mlp.up.weight is missing" -- resume "$WORK/missing-row.h5"
expect_fail "resume wrong shape" 1 "layers.0.mlp.up.weight has shape" -- resume "$WORK/wrong-shape.h5"
expect_fail "resume format_version" 1 "format_version 99" -- resume "$WORK/format-version.h5"
expect_fail "resume missing file" 1 "nope.h5" -- resume "$WORK/nope.h5"
expect_fail "resume into another model" 1 "model.layers" -- \
  "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/r2" --set model.layers=3 --resume "$good"

sum_before=$(md5sum < "$good")
"$HONE" inspect "$good" > /dev/null
[ "$(md5sum < "$good")" = "$sum_before" ] && ok || bad "reading changed the checkpoint"
expect_fail "inspect usage" 2 "one file" -- "$HONE" inspect
finish
