#!/usr/bin/env bash
# Parameter-efficient training from a base checkpoint (model.from), end to end:
#   - a LoRA (on GPT-2's attn.q and attn.v slices, with dropout) + BitFit run trains, logs
#     its trainable counts, and its checkpoints hold only what it trained (/peft rows, the
#     biases in /model) plus the base's path and SHA-256;
#   - stopped and resumed, it ends bit-identical to an uninterrupted run (dropout masks
#     included), and the base weights never move;
#   - `hone eval` of the add-on checkpoint (base + folded add-ons, an independent path: the
#     inference model with a KV cache) gives exp(the trainer's final val_loss);
#   - a base that changed after training is refused by eval and by resume;
#   - bad configs get one error line: a target that matches nothing, rank <= 0, a rank
#     above the layer width, BitFit on a bias-free Llama, two methods on one linear,
#     DoRA on a slice, an unknown method.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
EQUAL="/usr/bin/python3 $(dirname "$0")/h5_equal.py"

T=32
K=4
awk 'BEGIN { for (i = 0; i < 300; i++) printf "line %d: the cat sat on mat %d and the dog ran %d.\n", i, i % 7, i % 5 }' \
  > "$WORK/train.txt"
awk 'BEGIN { for (i = 0; i < 100; i++) printf "the dog sat on the cat %d. ", i % 9 }' | head -c $((K * T)) > "$WORK/val.txt"
"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards" --tokenizer byte --val 0 > /dev/null &&
  "$HONE" prepare "$WORK/val.txt" -o "$WORK/valshards" --tokenizer byte --val 0 > /dev/null
[ $? -eq 0 ] && ok || bad "prepare failed"
VAL="$WORK/valshards/train_000000.bin"

# the base: a tiny GPT-2 trained briefly
cat > "$WORK/base.yaml" <<YAML
model: {layers: 2, channels: 32, heads: 2, context: $T}
data: {train: "$WORK/shards/train_*.bin", batch: 4, seq: $T}
optim: {lr: 3e-3, warmup: 2}
train: {steps: 10, out: "$WORK/base", log_every: 10, threads: 2}
YAML
"$HONE" train "$WORK/base.yaml" > /dev/null 2> "$WORK/base.err" && ok || bad "base training failed: $(tail -1 "$WORK/base.err")"
cp "$WORK/base/latest.h5" "$WORK/base.h5"
# prepare with the tokenizer a checkpoint carries: the same ids as the byte tokenizer it holds
"$HONE" prepare "$WORK/train.txt" -o "$WORK/shards_ck" --tokenizer "$WORK/base.h5" --val 0 > /dev/null &&
  cmp -s "$WORK/shards/train_000000.bin" "$WORK/shards_ck/train_000000.bin" && ok ||
  bad "prepare --tokenizer CKPT.h5 gave other ids than --tokenizer byte"

cat > "$WORK/peft.yaml" <<YAML
model: {from: "$WORK/base.h5"}
data: {train: "$WORK/shards/train_*.bin", val: "$VAL", batch: 4, seq: $T}
peft:
  - lora: {targets: [attn.q, attn.v], rank: 4, alpha: 8, dropout: 0.1}
  - bitfit
optim: {lr: 1e-2, warmup: 2, accum: 2}
train: {steps: 8, log_every: 1, eval_every: 4, eval_batches: 8, save_every: 4, threads: 2}
YAML
"$HONE" train "$WORK/peft.yaml" --set train.out="$WORK/full" > /dev/null 2> "$WORK/full.err"
[ $? -eq 0 ] && ok || bad "peft run failed: $(tail -1 "$WORK/full.err")"
# 2 layers x (q, v) x (A 4x32 + B 32x4) = 1024 LoRA; biases 2 x (32+96+32+32+128+32) + 32 = 736
grep -q "peft: 1760 trainable parameters .*lora 1024, dora 0, ia3 0, bitfit 736, prefix 0" "$WORK/full.err" && ok ||
  bad "trainable counts: $(grep peft: "$WORK/full.err")"

/usr/bin/python3 - "$WORK/full/latest.h5" "$WORK/base.h5" <<'PY' && ok || bad "the add-on checkpoint's layout"
import sys, h5py, numpy as np
ck, base = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
model = sorted(ck["model"].keys())
assert model and all(k.endswith(".bias") for k in model), model
peft = sorted(ck["peft"].keys())
assert peft == sorted(f"layers.{l}.attn.{s}.lora_{m}" for l in range(2) for s in "qv" for m in "AB"), peft
assert ck.attrs["base_file"].endswith("base.h5") and len(ck.attrs["base_sha256"]) == 64
assert any(np.abs(ck["peft"][k][()]).max() > 0 for k in peft if k.endswith("lora_B")), "LoRA B never moved"
assert any(not np.array_equal(ck["model"][k][()], base["model"][k][()]) for k in model), "no bias trained"
opt = sorted(ck["optim/m"].keys())
assert opt == sorted(model + peft), "optimizer state beyond the trainable rows"
PY

# inspect: the base it names, the rows it holds, trainable counts per method
"$HONE" inspect "$WORK/full/latest.h5" > "$WORK/inspect.txt" 2>&1 && ok || bad "inspect failed: $(tail -1 "$WORK/inspect.txt")"
grep -q "^base .*base.h5 (SHA-256" "$WORK/inspect.txt" && grep -q "layers.1.attn.v.lora_B" "$WORK/inspect.txt" &&
  grep -q "trainable   1760 of .*lora 1024, dora 0, ia3 0, bitfit 736" "$WORK/inspect.txt" && ok ||
  bad "inspect output: $(grep -E '^(base|trainable)' "$WORK/inspect.txt")"

# stopped at 4 and resumed: the same bits as the uninterrupted run
"$HONE" train "$WORK/peft.yaml" --set train.out="$WORK/split" --stop-at 4 > /dev/null 2> "$WORK/s1.err" &&
  "$HONE" train "$WORK/peft.yaml" --set train.out="$WORK/split" --resume auto > /dev/null 2> "$WORK/s2.err"
[ $? -eq 0 ] && ok || bad "split run failed: $(tail -1 "$WORK/s1.err") $(tail -1 "$WORK/s2.err")"
$EQUAL "$WORK/full/latest.h5" "$WORK/split/latest.h5" /model /peft /optim && ok || bad "resumed add-ons/optimizer differ from the uninterrupted run"
extract() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }
cmp -s <(extract "$WORK/full/metrics.jsonl") <(extract "$WORK/split/metrics.jsonl") && ok || bad "loss curves differ after resume"

# eval of base + add-ons == exp(final val_loss)
val_loss=$(grep -o '"val_loss":[0-9.eE+-]*' "$WORK/full/metrics.jsonl" | tail -1 | cut -d: -f2)
"$HONE" eval "$WORK/full/latest.h5" --task ppl --data "$VAL" --json "$WORK/ppl.json" > /dev/null 2> "$WORK/eval.err"
[ $? -eq 0 ] && ok || bad "eval of the add-on checkpoint failed: $(tail -1 "$WORK/eval.err")"
ppl=$(grep -o '"ppl":[^,}]*' "$WORK/ppl.json" | cut -d: -f2)
echo "eval ppl $ppl; trainer val_loss $val_loss -> $(awk -v l="$val_loss" 'BEGIN{printf "%.6f", exp(l)}')"
awk -v p="$ppl" -v l="$val_loss" 'BEGIN { e = exp(l); d = p - e; if (d < 0) d = -d; exit !(p != "" && d <= 1e-4 * e) }' &&
  ok || bad "eval ppl $ppl != exp(val_loss $val_loss) within 1e-4"
base_ppl=$("$HONE" eval "$WORK/base.h5" --task ppl --data "$VAL" | grep -o 'ppl[^0-9]*[0-9.]*' | head -1)
echo "the base alone: $base_ppl"

# issue 7's methods on the same base: a prefix, prompt tuning, Houlsby adapters and LoRA in
# one model; stopped and resumed bit-exactly; evaluated by the cached inference path (its
# context capped at 23 = 4 prefix + 3 virtual + 16 positions, so it scores the same 8
# windows of 16 as the trainer)
cat > "$WORK/virt.yaml" <<YAML
model: {from: "$WORK/base.h5"}
data: {train: "$WORK/shards/train_*.bin", val: "$VAL", batch: 4, seq: 16}
peft:
  - prefix: {length: 4, projection: 16}
  - prompt: {length: 3, init: vocab}
  - adapter: {kind: houlsby, reduction: 8, activation: swish}
  - lora: {targets: [attn.o], rank: 2, dropout: 0.1}
optim: {lr: 1e-2, warmup: 2}
train: {steps: 6, log_every: 1, eval_every: 3, eval_batches: 16, save_every: 3, threads: 2}
YAML
"$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/vfull" > /dev/null 2> "$WORK/v1.err" &&
  "$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/vsplit" --stop-at 3 > /dev/null 2> "$WORK/v2.err" &&
  "$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/vsplit" --resume auto > /dev/null 2> "$WORK/v3.err"
[ $? -eq 0 ] && ok || bad "prefix/prompt/adapter run failed: $(tail -1 "$WORK/v1.err") $(tail -1 "$WORK/v3.err")"
grep -qE "prefix [1-9][0-9]*, prompt [1-9][0-9]*, adapter [1-9]" "$WORK/v1.err" && ok || bad "trainable counts per method: $(grep peft: "$WORK/v1.err")"
$EQUAL "$WORK/vfull/latest.h5" "$WORK/vsplit/latest.h5" /peft /optim && ok || bad "prefix/prompt/adapter resume differs"
vval=$(grep -o '"val_loss":[0-9.eE+-]*' "$WORK/vfull/metrics.jsonl" | tail -1 | cut -d: -f2)
"$HONE" eval "$WORK/vfull/latest.h5" --task ppl --data "$VAL" --context 23 --json "$WORK/vppl.json" > /dev/null 2> "$WORK/veval.err"
[ $? -eq 0 ] && ok || bad "eval of the prefix/prompt/adapter checkpoint failed: $(tail -1 "$WORK/veval.err")"
vppl=$(grep -o '"ppl":[^,}]*' "$WORK/vppl.json" | cut -d: -f2)
echo "prefix+prompt+adapter+lora: eval ppl $vppl; trainer val_loss $vval -> $(awk -v l="$vval" 'BEGIN{printf "%.6f", exp(l)}')"
awk -v p="$vppl" -v l="$vval" 'BEGIN { e = exp(l); d = p - e; if (d < 0) d = -d; exit !(p != "" && d <= 1e-4 * e) }' &&
  ok || bad "eval ppl $vppl != exp(val_loss $vval) within 1e-4"
expect_fail "prefix + prompt beyond the context" 1 "exceed the model's context" -- \
  "$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/bad3" --set peft.prefix.length=10 --set peft.prompt.length=10
expect_fail "adapter reduction not dividing the width" 1 "peft.adapter.reduction 5 must divide channels" -- \
  "$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/bad4" --set peft.adapter.reduction=5
expect_fail "prompt and ptuning together" 1 "prompt and ptuning both prepend" -- \
  "$HONE" train "$WORK/virt.yaml" --set train.out="$WORK/bad5" --set peft.methods=prompt,ptuning

# the base changes: eval and resume refuse the add-ons
"$HONE" train "$WORK/base.yaml" --set train.seed=7 --set train.out="$WORK/base2" > /dev/null 2>&1
cp "$WORK/base2/latest.h5" "$WORK/base.h5"
expect_fail "eval on a changed base" 1 "different .*base.h5" -- "$HONE" eval "$WORK/full/latest.h5" --task ppl --data "$VAL"
expect_fail "resume on a changed base" 1 "has changed" -- "$HONE" train "$WORK/peft.yaml" --set train.out="$WORK/split" --resume auto --set train.steps=10

# bad configs: one clear line each
cat > "$WORK/llama.yaml" <<YAML
model: {arch: llama, layers: 2, channels: 32, heads: 4, kv_heads: 2, context: $T}
data: {train: "$WORK/shards/train_*.bin", batch: 2, seq: $T}
train: {steps: 1, out: "$WORK/bad"}
YAML
B="$WORK/llama.yaml"
expect_fail "target matching nothing" 1 "peft.lora.targets: 'attn.qq' matches no site" -- \
  "$HONE" train "$B" --set peft.methods=lora --set peft.lora.targets=attn.qq
expect_fail "rank 0" 1 "peft.lora.rank must be positive" -- "$HONE" train "$B" --set peft.methods=lora --set peft.lora.rank=0
expect_fail "rank above the width" 1 "peft.lora.rank 40 is larger than layers.0.attn.q" -- \
  "$HONE" train "$B" --set peft.methods=lora --set peft.lora.rank=40
expect_fail "bitfit on llama" 1 "bitfit trains only biases, and this llama model has none" -- \
  "$HONE" train "$B" --set peft.methods=bitfit
expect_fail "two methods on one linear" 1 "layers.0.attn.v is targeted twice" -- \
  "$HONE" train "$B" --set peft.methods=lora,ia3 --set peft.ia3.targets=attn.v
expect_fail "unknown method" 1 "unknown method 'prefixx'" -- "$HONE" train "$B" --set peft.methods=prefixx
expect_fail "lora on the classifier" 1 "not a block site" -- \
  "$HONE" train "$B" --set peft.methods=lora --set peft.lora.targets=lm_head
expect_fail "dora on a slice" 1 "dora on layers.0.attn.q, a slice of attn.qkv" -- \
  "$HONE" train "$WORK/peft.yaml" --set train.out="$WORK/bad2" --set peft.lora.dora=true --set peft.lora.dropout=0
finish
