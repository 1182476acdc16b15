#!/usr/bin/env bash
# Sparse deltas end to end: a masked fine-tune exported as `hone export --format delta`
# against its base and applied back with `hone apply` gives its /model bit for bit, holding
# no more entries than the mask selected; two deltas of the same base on disjoint rows
# compose in either order; a delta refuses another base, a damaged index and an existing -o;
# `hone eval` reads the applied checkpoint.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
PY=/usr/bin/python3
EQUAL="$PY $(dirname "$0")/h5_equal.py"

awk 'BEGIN { for (i = 0; i < 300; i++) printf "line %d: the cat sat on mat %d and the dog ran %d.\n", i, i % 7, i % 5 }' \
  > "$WORK/train.txt"
"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards" --tokenizer byte --val 0.1 > /dev/null && ok || bad "prepare"
cat > "$WORK/base.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
optim: {lr: 1e-2, warmup: 2}
train: {steps: 4, log_every: 1, threads: 2, sample_tokens: 0}
YAML
"$HONE" train "$WORK/base.yaml" --set train.out="$WORK/base" > /dev/null 2> "$WORK/e" && ok || bad "base run: $(tail -1 "$WORK/e")"
"$HONE" train "$WORK/base.yaml" --set train.out="$WORK/other" --set train.seed=7 > /dev/null 2> "$WORK/e" &&
  ok || bad "second base run: $(tail -1 "$WORK/e")"
"$HONE" train "$WORK/base.yaml" --set train.out="$WORK/small" --set model.channels=16 --set train.steps=3 \
  > /dev/null 2> "$WORK/e" && ok || bad "small base run: $(tail -1 "$WORK/e")"
BASE="$WORK/base/latest.h5"

# fine-tunes of the base: a magnitude mask over every row, and two on disjoint layers
ft() { # NAME MASK-YAML
  cat > "$WORK/$1.yaml" <<YAML
model: {from: "$BASE"}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
mask: $2
optim: {lr: 1e-2, warmup: 2}
train: {steps: 4, log_every: 1, threads: 2, sample_tokens: 0, out: "$WORK/$1"}
YAML
  "$HONE" train "$WORK/$1.yaml" > /dev/null 2> "$WORK/e" && ok || bad "fine-tune $1: $(tail -1 "$WORK/e")"
}
ft ft "{method: magnitude, density: 0.01}"
ft fta "{method: magnitude, density: 0.05, patterns: ['layers.0.*']}"
ft ftb "{method: magnitude, density: 0.05, patterns: ['layers.1.*']}"
cat > "$WORK/bitfit.yaml" <<YAML
model: {from: "$BASE"}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 4, seq: 32}
peft: [bitfit]
train: {steps: 1, threads: 2, sample_tokens: 0, out: "$WORK/bitfit"}
YAML
"$HONE" train "$WORK/bitfit.yaml" > /dev/null 2> "$WORK/e" && ok || bad "bitfit run: $(tail -1 "$WORK/e")"

"$HONE" export "$WORK/ft/latest.h5" --format delta --base "$BASE" -o "$WORK/d.h5" > "$WORK/x.out" 2> "$WORK/e" &&
  ok || bad "export: $(tail -1 "$WORK/e")"
grep -qE "^delta: [0-9]+ of [0-9]+ rows changed, [0-9]+ of [0-9]+ entries" "$WORK/x.out" && ok || bad "export output: $(cat "$WORK/x.out")"
cat "$WORK/x.out"
"$HONE" apply "$BASE" "$WORK/d.h5" -o "$WORK/applied.h5" > "$WORK/a.out" 2> "$WORK/e" && ok || bad "apply: $(tail -1 "$WORK/e")"
grep -qE "^applied 1 delta: [0-9]+ of [0-9]+ rows changed" "$WORK/a.out" && ok || bad "apply output: $(cat "$WORK/a.out")"
$EQUAL "$WORK/applied.h5" "$WORK/ft/latest.h5" /model && ok || bad "base + delta differs from the fine-tuned /model"

$PY - "$WORK/d.h5" "$WORK/ft/latest.h5" "$BASE" <<'PY' && ok || bad "the delta's layout"
import sys, h5py, numpy as np
d, ft, base = (h5py.File(p, "r") for p in sys.argv[1:])
assert d.attrs["format"] == "hone-delta"
# the entries that trained: a masked row's /mask, all of a row with AdamW state but no mask
# (the mask took it whole), none of the others
masked = sum(ft["mask"][r].shape[0] if r in ft["mask"] else ft["model"][r].size for r in ft["optim/m"])
n = 0
for r in d["delta"]:
    idx, val = d["delta"][r]["index"][()], d["delta"][r]["value"][()]
    assert idx.dtype == np.uint32 and val.dtype == np.float32, r
    assert (idx[1:] > idx[:-1]).all(), r
    assert r in ft["optim/m"], f"{r}: a frozen row changed"
    assert r not in ft["mask"] or np.isin(idx, ft["mask"][r][()]).all(), f"{r}: an entry outside the mask"
    assert (val.view(np.uint32) == ft["model"][r][()].ravel().view(np.uint32)[idx]).all(), r
    n += idx.size
assert 0 < n <= masked, (n, masked)
assert d.attrs["entries"] == n
print(f"delta holds {n} entries, the mask trains {masked}")
PY

# two deltas on disjoint entries, applied together in either order
"$HONE" export "$WORK/fta/latest.h5" --format delta --base "$BASE" -o "$WORK/da.h5" > /dev/null 2> "$WORK/e" &&
  ok || bad "export a: $(tail -1 "$WORK/e")"
"$HONE" export "$WORK/ftb/latest.h5" --format delta --base "$BASE" -o "$WORK/db.h5" > /dev/null 2> "$WORK/e" &&
  ok || bad "export b: $(tail -1 "$WORK/e")"
"$HONE" apply "$BASE" "$WORK/da.h5" "$WORK/db.h5" -o "$WORK/ab.h5" > /dev/null 2> "$WORK/e" && ok || bad "apply a+b: $(tail -1 "$WORK/e")"
"$HONE" apply "$BASE" "$WORK/db.h5" "$WORK/da.h5" -o "$WORK/ba.h5" > /dev/null 2> "$WORK/e" && ok || bad "apply b+a: $(tail -1 "$WORK/e")"
$PY - "$BASE" "$WORK/fta/latest.h5" "$WORK/ftb/latest.h5" "$WORK/ab.h5" "$WORK/ba.h5" <<'PY' && ok || bad "two deltas do not compose"
import sys, h5py, numpy as np
base, a, b, ab, ba = (h5py.File(p, "r") for p in sys.argv[1:])
changed_a = changed_b = 0
for r in base["model"]:
    w0 = base["model"][r][()].view(np.uint32)
    wa, wb = a["model"][r][()].view(np.uint32), b["model"][r][()].view(np.uint32)
    da, db = wa != w0, wb != w0
    assert not (da & db).any(), f"{r}: the two fine-tunes overlap"
    want = np.where(da, wa, np.where(db, wb, w0))
    changed_a += da.sum(); changed_b += db.sum()
    for out in (ab, ba):
        assert (out["model"][r][()].view(np.uint32) == want).all(), f"{r} differs from base+a+b"
assert changed_a > 0 and changed_b > 0
PY

# refusals
expect_fail "a delta on another base" 1 "made against another base.*does not match" -- \
  "$HONE" apply "$WORK/other/latest.h5" "$WORK/d.h5" -o "$WORK/wrong.h5"
[ ! -e "$WORK/wrong.h5" ] && ok || bad "a refused apply left its output"
cp "$WORK/d.h5" "$WORK/bad.h5"
$PY - "$WORK/bad.h5" <<'PY' && ok || bad "damaging the delta"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r+")
r = sorted(f["delta"])[0]
idx = f["delta"][r]["index"][()]
idx[-1] = f["delta"][r].attrs["numel"] + 5
del f["delta"][r]["index"]
f["delta"][r]["index"] = idx.astype(np.uint32)
PY
expect_fail "a delta changed after it was written" 1 "bad.h5: damaged: its SHA-256 does not match" -- \
  "$HONE" apply "$BASE" "$WORK/bad.h5" -o "$WORK/bad_out.h5"
expect_fail "an index out of range" 1 "index\[[0-9]+\] = [0-9]+ is out of range" -- \
  "$HONE" apply --allow-unverified "$BASE" "$WORK/bad.h5" -o "$WORK/bad_out.h5"
expect_fail "export over an existing file" 1 "exists — pass --force" -- \
  "$HONE" export "$WORK/ft/latest.h5" --format delta --base "$BASE" -o "$WORK/d.h5"
expect_fail "apply over an existing file" 1 "exists — pass --force" -- \
  "$HONE" apply "$BASE" "$WORK/d.h5" -o "$WORK/applied.h5"
"$HONE" export "$WORK/ft/latest.h5" --format delta --base "$BASE" -o "$WORK/d.h5" --force > /dev/null 2>&1 &&
  ok || bad "export --force"
expect_fail "an unknown format" 2 "unknown --format 'onnx'" -- \
  "$HONE" export "$WORK/ft/latest.h5" --format onnx -o "$WORK/x.onnx"
expect_fail "another model shape" 1 "not the same model" -- \
  "$HONE" export "$WORK/ft/latest.h5" --format delta --base "$WORK/small/latest.h5" -o "$WORK/s.h5"
expect_fail "an add-on checkpoint" 1 "holds only what a run trained on the frozen base" -- \
  "$HONE" export "$WORK/bitfit/latest.h5" --format delta --base "$BASE" -o "$WORK/s.h5"
expect_fail "not a delta" 1 "not a hone delta" -- "$HONE" apply "$BASE" "$BASE" -o "$WORK/s.h5"

# the applied checkpoint is a checkpoint: hone eval reads it
"$HONE" eval "$WORK/applied.h5" --task ppl --data "$WORK/shards/val_000000.bin" > "$WORK/ev.out" 2> "$WORK/e" &&
  ok || bad "eval of the applied checkpoint: $(tail -1 "$WORK/e")"
finish
