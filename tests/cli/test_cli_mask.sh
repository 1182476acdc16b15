#!/usr/bin/env bash
# Partial-update masks end to end: a FISH-masked run, stopped and resumed, ends bit-identical
# to an uninterrupted one (masks, weights, the masks' sparse AdamW state); its checkpoint's
# /mask rows are the ones `hone mask build` selects from the same config; `hone mask
# inspect` lists them; bad mask settings get one error line.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
EQUAL="/usr/bin/python3 $(dirname "$0")/h5_equal.py"

awk 'BEGIN { for (i = 0; i < 300; i++) printf "line %d: the cat sat on mat %d and the dog ran %d.\n", i, i % 7, i % 5 }' \
  > "$WORK/train.txt"
"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards" --tokenizer byte --val 0.1 > /dev/null && ok || bad "prepare"
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
mask: {method: fish, density: 0.02, fish_examples: 16, patterns: ['layers.*']}
optim: {lr: 1e-2, warmup: 2}
train: {steps: 8, log_every: 1, save_every: 4, threads: 2}
YAML
"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/full" > /dev/null 2> "$WORK/e1" && ok || bad "masked run failed: $(tail -1 "$WORK/e1")"
grep -qE "mask: fish, [0-9]+ entries of [0-9]+ rows train" "$WORK/e1" && ok || bad "mask log line: $(grep mask: "$WORK/e1")"
"$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --stop-at 4 > /dev/null 2>&1 &&
  "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/split" --resume auto > /dev/null 2> "$WORK/e2"
[ $? -eq 0 ] && ok || bad "split run failed: $(tail -1 "$WORK/e2")"
$EQUAL "$WORK/full/latest.h5" "$WORK/split/latest.h5" /model /optim /mask && ok || bad "the resumed masked run differs"

"$HONE" mask build "$WORK/cfg.yaml" -o "$WORK/m.h5" > /dev/null 2> "$WORK/e3" && ok || bad "mask build: $(tail -1 "$WORK/e3")"
"$HONE" mask inspect "$WORK/m.h5" > "$WORK/inspect.txt" && grep -qE "^[0-9]+ masked rows, [0-9]+ selected entries" "$WORK/inspect.txt" && ok ||
  bad "mask inspect: $(tail -2 "$WORK/inspect.txt")"
$EQUAL "$WORK/full/latest.h5" "$WORK/m.h5" /mask && ok || bad "hone mask build selected other entries than the run"
/usr/bin/python3 - "$WORK/full/latest.h5" <<'PY' && ok || bad "the masked checkpoint's layout"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
# rows with AdamW state train: in part (their /mask) or whole (no mask)
k = sum(f["mask"][r].shape[0] if r in f["mask"] else f["model"][r].size for r in f["optim/m"])
eligible = sum(f["model"][r].size for r in f["model"] if r.startswith("layers."))
assert k == round(0.02 * eligible), (k, eligible)
for r in f["mask"]:
    idx = f["mask"][r][()]
    assert (idx[1:] > idx[:-1]).all() and f["optim/m"][r].shape == idx.shape, r
assert all(r.startswith("layers.") for r in f["optim/m"]), "state for a frozen row"
PY

expect_fail "density 0" 1 "mask.density must be in" -- "$HONE" train "$WORK/cfg.yaml" --set mask.density=0
expect_fail "patterns matching nothing" 1 "mask.patterns matches no parameter row" -- \
  "$HONE" train "$WORK/cfg.yaml" --set train.out="$WORK/bad" --set mask.patterns=nothing.here
expect_fail "mask with peft" 1 "mask.method fish and peft methods together" -- \
  "$HONE" train "$WORK/cfg.yaml" --set peft.methods=lora
expect_fail "mask inspect of a file that is not HDF5" 1 "not an HDF5 file" -- "$HONE" mask inspect "$WORK/shards/meta.json"
finish
