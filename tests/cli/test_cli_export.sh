#!/usr/bin/env bash
# `hone export --format hf | peft | hdf5-merged`, checked by transformers and peft (Debian's
# python3-torch, transformers 4.46, peft 0.13): tiny GPT-2 and Llama models made here, and a
# LoRA + IA3 run on a frozen Llama base, exported as Hugging Face folders, give hone's loss on
# a window (within 1e-4 nats, f32) and hone's greedy continuation (the same 16 ids); bf16
# within 0.05 nats. PEFT adapters (DoRA + rsLoRA, IA3, prefix with projection, P-tuning;
# GPT-2 LoRA, prefix, prompt tuning) loaded by PeftModel onto the hf export of their base do
# the same, and adapters PEFT itself made (LoRA, DoRA + rsLoRA, IA3, prefix with and without
# projection, prompt tuning, P-tuning, on both architectures) imported onto the hone base
# score what PEFT scores.
# The merged checkpoint of the frozen-base run scores what the run itself scores, and its
# SHA-256 manifest checks. SmolLM2's export carries its tokenizer: transformers tokenizes a
# text to hone's ids and scores it as hone does. Existing outputs need --force; a failed
# export leaves nothing behind.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import torch, transformers, safetensors" 2>/dev/null ||
  skip_or_fail "/usr/bin/python3 lacks torch/transformers/safetensors (scripts/setup.sh --test)"
CHECK="$(dirname "$0")/hf_check.py"
cat "$HONE_SOURCE_DIR/README.md" "$HONE_SOURCE_DIR/docs/DESIGN.md" > "$WORK/text.txt"
"$HONE" prepare "$WORK/text.txt" -o "$WORK/shards" --val 0 > /dev/null || bad "prepare"
# one window of 64 targets: 64 bytes after the end-of-text id
printf 'Specialization of a model to a domain, measured on held-out text.' | head -c 64 > "$WORK/win.txt"
"$HONE" prepare "$WORK/win.txt" -o "$WORK/win" --val 0 > /dev/null || bad "prepare window"
WIN="$WORK/win/train_000000.bin"

# near their random start (init_std 0.3, two tiny steps), so greedy decoding wanders
# through many ids instead of repeating the commonest byte
cat > "$WORK/gpt2.yaml" <<YAML
model: {layers: 2, channels: 64, heads: 4, context: 64, init_std: 0.3}
data: {train: "$WORK/shards/train_*.bin", batch: 8, seq: 64}
optim: {lr: 1e-6, warmup: 1}
train: {steps: 2, out: "$WORK/gpt2", log_every: 1, sample_tokens: 0, threads: 2}
YAML
sed -e 's/model: {layers: 2, channels: 64, heads: 4, context: 64,/model: {arch: llama, layers: 2, channels: 64, heads: 4, kv_heads: 2, ffn: 160, context: 64, tied: false,/' \
    -e "s#$WORK/gpt2\"#$WORK/llama\"#" "$WORK/gpt2.yaml" > "$WORK/llama.yaml"
"$HONE" train "$WORK/gpt2.yaml" > /dev/null 2>&1 && ok || bad "train gpt2"
"$HONE" train "$WORK/llama.yaml" > /dev/null 2>&1 && ok || bad "train llama"
"$HONE" train "$WORK/llama.yaml" --set model.from="$WORK/llama/latest.h5" --set train.out="$WORK/lora" \
  --set 'peft.methods=[lora, ia3]' --set 'peft.lora.targets=[attn.q, attn.v]' \
  --set 'peft.ia3.targets=[attn.k, mlp.down]' --set peft.lora.rank=4 --set train.steps=30 \
  --set optim.lr=1e-2 --set optim.warmup=2 > /dev/null 2>&1 && ok || bad "train lora + ia3"

compare() { # NAME CKPT DIR [TOL]
  local name=$1 ckpt=$2 dir=$3 tol=${4:-1e-4}
  local hone_loss json hf_loss hf_greedy hone_greedy
  hone_loss=$("$HONE" eval "$ckpt" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
  json=$(/usr/bin/python3 "$CHECK" "$dir" "$WIN" 256,84,104,101,32 16 2>"$WORK/py.err") ||
    { bad "$name: transformers could not load $dir: $(tail -2 "$WORK/py.err")"; return; }
  hf_loss=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
  # transformers' greedy ids up to the end-of-text id, where hone's generation stops
  hf_greedy=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys
g = json.load(sys.stdin)["greedy"]
print(",".join(map(str, g[: g.index(256)] if 256 in g else g)))')
  # the bytes hone prints (a byte model: one per id), less the newline it ends with
  "$HONE" generate "$ckpt" --prompt "The " --max-tokens 16 --temperature 0 > "$WORK/gen.bin" 2>/dev/null
  hone_greedy=$(head -c -1 "$WORK/gen.bin" | od -An -tu1 -v | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
  echo "$name: loss hone $hone_loss, transformers $hf_loss; greedy hone [$hone_greedy] transformers [$hf_greedy]"
  awk -v a="$hone_loss" -v b="$hf_loss" -v t="$tol" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t)}' &&
    ok || bad "$name: loss $hone_loss (hone) vs $hf_loss (transformers)"
  if [ "$tol" = 1e-4 ]; then
    [ -n "$hone_greedy" ] && [ "$hone_greedy" = "$hf_greedy" ] && ok ||
      bad "$name: greedy continuations differ: hone [$hone_greedy] transformers [$hf_greedy]"
  fi
}

for m in gpt2 llama lora; do
  "$HONE" export "$WORK/$m/latest.h5" --format hf -o "$WORK/hf_$m" > /dev/null 2> "$WORK/err.txt" &&
    ok || bad "export hf $m: $(cat "$WORK/err.txt")"
  (cd "$WORK/hf_$m" && sha256sum -c --quiet SHA256SUMS) && ok || bad "$m: SHA256SUMS does not check"
  compare "$m" "$WORK/$m/latest.h5" "$WORK/hf_$m"
done
grep -q '"LlamaForCausalLM"' "$WORK/hf_lora/config.json" && ok || bad "llama config.json"
"$HONE" export "$WORK/llama/latest.h5" --format hf --dtype bf16 -o "$WORK/hf_bf16" > /dev/null &&
  grep -q '"bfloat16"' "$WORK/hf_bf16/config.json" && ok || bad "bf16 export"
compare "llama bf16" "$WORK/llama/latest.h5" "$WORK/hf_bf16" 0.05

# peft: adapters that PEFT puts on the hf export of the base (DoRA with rsLoRA's scaling on
# Llama; IA3 on Llama; LoRA on GPT-2's fused attn.qkv, a Conv1D)
"$HONE" export "$WORK/gpt2/latest.h5" --format hf -o "$WORK/hf_gpt2_base" > /dev/null || bad "hf gpt2 base"
peft_run() { # NAME YAML BASE_DIR SETTINGS...
  local name=$1 yaml=$2 base=$3
  shift 3
  "$HONE" train "$WORK/$yaml.yaml" --set model.from="$WORK/$yaml/latest.h5" --set train.out="$WORK/$name" \
    --set train.steps=20 --set optim.lr=1e-2 --set optim.warmup=2 "$@" > /dev/null 2>&1 &&
    ok || bad "train $name"
  "$HONE" export "$WORK/$name/latest.h5" --format peft -o "$WORK/peft_$name" > /dev/null 2> "$WORK/err.txt" &&
    ok || bad "export peft $name: $(cat "$WORK/err.txt")"
  compare "peft $name" "$WORK/$name/latest.h5" "$base::$WORK/peft_$name"
}
peft_run dora llama "$WORK/hf_llama" --set 'peft.methods=[lora]' --set 'peft.lora.targets=[attn.q, attn.v, mlp.down]' \
  --set peft.lora.dora=true --set peft.lora.rslora=true --set peft.lora.rank=4
peft_run ia3 llama "$WORK/hf_llama" --set 'peft.methods=[ia3]' --set 'peft.ia3.targets=[attn.k, attn.v, mlp.down]'
peft_run gpt2_lora gpt2 "$WORK/hf_gpt2_base" --set 'peft.methods=[lora]' --set 'peft.lora.targets=[attn.qkv, mlp.up]' \
  --set peft.lora.rank=4 --set peft.lora.alpha=8
# prompt learning: the prefix (after its projection) and the virtual tokens (after P-tuning's
# encoder) as PEFT saves them; 4 virtual positions, so windows of 60
peft_run prefix_proj llama "$WORK/hf_llama" --set 'peft.methods=[prefix]' --set peft.prefix.length=4 \
  --set peft.prefix.projection=16 --set data.seq=60
peft_run ptuning llama "$WORK/hf_llama" --set 'peft.methods=[ptuning]' --set peft.ptuning.length=4 \
  --set peft.ptuning.hidden=16 --set data.seq=60
peft_run gpt2_prefix gpt2 "$WORK/hf_gpt2_base" --set 'peft.methods=[prefix]' --set peft.prefix.length=4 --set data.seq=60
peft_run gpt2_prompt gpt2 "$WORK/hf_gpt2_base" --set 'peft.methods=[prompt]' --set peft.prompt.length=4 --set data.seq=60
grep -q '"P_TUNING"' "$WORK/peft_ptuning/adapter_config.json" && grep -q '"token_dim":[[:space:]]*32' \
  "$WORK/peft_prefix_proj/adapter_config.json" && ok || bad "prompt-learning adapter_config.json"
grep -q '"use_dora":[[:space:]]*true' "$WORK/peft_dora/adapter_config.json" && ok || bad "DoRA's adapter_config.json"
expect_fail "peft of two methods" 1 "one method" -- \
  "$HONE" export "$WORK/lora/latest.h5" --format peft -o "$WORK/peft_two"

# import: adapters PEFT made itself (non-zero weights) onto the hone base they were made for
# score what PEFT scores
for arch in llama gpt2; do
  base_ckpt="$WORK/$arch/latest.h5"
  base_dir="$WORK/hf_llama"
  [ "$arch" = gpt2 ] && base_dir="$WORK/hf_gpt2_base"
  json=$(/usr/bin/python3 "$(dirname "$0")/peft_make.py" "$base_dir" "$WIN" "$WORK/made_$arch" "$arch" 2> "$WORK/py.err") ||
    bad "PEFT could not make $arch adapters: $(tail -2 "$WORK/py.err")"
  for name in $(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'); do
    want=$(printf '%s' "$json" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$name'])")
    "$HONE" import "$WORK/made_$arch/$name" --base "$base_ckpt" -o "$WORK/imp_${arch}_$name.h5" \
      > /dev/null 2> "$WORK/err.txt" && ok || bad "import PEFT's $arch $name: $(cat "$WORK/err.txt")"
    got=$("$HONE" eval "$WORK/imp_${arch}_$name.h5" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
    echo "PEFT's own $arch $name adapter: loss PEFT $want, hone after import $got"
    awk -v a="$want" -v b="$got" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(b != "" && d <= 1e-4)}' &&
      ok || bad "imported $arch $name scores $got, PEFT $want"
  done
done
mkdir -p "$WORK/badpeft" && printf '{"peft_type": "LOHA"}' > "$WORK/badpeft/adapter_config.json"
expect_fail "an adapter type hone does not import" 1 "imports LORA, IA3, PREFIX_TUNING" -- \
  "$HONE" import "$WORK/badpeft" --base "$WORK/llama/latest.h5" -o "$WORK/x.h5"
expect_fail "a prefix made for another base" 1 "prompt_embeddings is not \\(4, 128\\)" -- \
  "$HONE" import "$WORK/made_gpt2/prefix" --base "$WORK/llama/latest.h5" -o "$WORK/x.h5"
mkdir -p "$WORK/badprompt" && cp "$WORK/made_llama/prompt/adapter_model.safetensors" "$WORK/badprompt/" &&
  sed 's/"num_virtual_tokens": 5/"num_virtual_tokens": 6/' "$WORK/made_llama/prompt/adapter_config.json" \
    > "$WORK/badprompt/adapter_config.json"
expect_fail "virtual tokens the config miscounts" 1 "prompt_embeddings is not \\(6, 64\\)" -- \
  "$HONE" import "$WORK/badprompt" --base "$WORK/llama/latest.h5" -o "$WORK/x.h5"
[ ! -e "$WORK/x.h5" ] && ok || bad "a failed import left $WORK/x.h5"
expect_fail "an adapter for another base" 1 "matches no site of this llama model" -- \
  "$HONE" import "$WORK/made_gpt2/lora" --base "$WORK/llama/latest.h5" -o "$WORK/x.h5"

# hdf5-merged: the frozen-base run as one whole checkpoint
"$HONE" export "$WORK/lora/latest.h5" --format hdf5-merged -o "$WORK/merged.h5" > "$WORK/out.txt" &&
  grep -q "2 add-ons\|add-ons folded" "$WORK/out.txt" && ok || bad "export hdf5-merged: $(cat "$WORK/out.txt")"
(cd "$WORK" && sha256sum -c --quiet merged.h5.sha256) && ok || bad "merged.h5.sha256 does not check"
a=$("$HONE" eval "$WORK/lora/latest.h5" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
b=$("$HONE" eval "$WORK/merged.h5" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "merged checkpoint scores $b, the run $a"
"$HONE" inspect "$WORK/merged.h5" | grep -q "lora_A" && bad "the merged checkpoint still has LoRA rows" || ok

# outputs are never replaced without --force, and failures leave nothing
expect_fail "hf over an existing folder" 1 "exists — pass --force" -- \
  "$HONE" export "$WORK/gpt2/latest.h5" --format hf -o "$WORK/hf_gpt2"
"$HONE" export "$WORK/gpt2/latest.h5" --format hf -o "$WORK/hf_gpt2" --force > /dev/null && ok || bad "--force"
"$HONE" train "$WORK/gpt2.yaml" --set model.from="$WORK/gpt2/latest.h5" --set train.out="$WORK/prefix" \
  --set 'peft.methods=[prefix]' --set peft.prefix.length=4 --set optim.lr=1e-2 --set data.seq=60 \
  > /dev/null 2>&1 || bad "prefix run"
expect_fail "hf of a prefix run" 1 "do not fold" -- \
  "$HONE" export "$WORK/prefix/latest.h5" --format hf -o "$WORK/hf_prefix"
[ ! -e "$WORK/hf_prefix" ] && ! ls "$WORK" | grep -q '\.tmp\.' && ok || bad "a failed export left files: $(ls "$WORK")"
"$HONE" export "$WORK/prefix/latest.h5" --format hdf5-merged -o "$WORK/prefix_merged.h5" > /dev/null && ok ||
  bad "hdf5-merged of a prefix run"
a=$("$HONE" eval "$WORK/prefix/latest.h5" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
b=$("$HONE" eval "$WORK/prefix_merged.h5" --task ppl --data "$WIN" 2>/dev/null | awk '$2 == "loss" {print $3}')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "merged prefix checkpoint scores $b, the run $a"

# SmolLM2: its tokenizer travels along
MODEL="$HONE_SOURCE_DIR/models/smollm2.h5"
if [ -f "$MODEL" ]; then
  "$HONE" export "$MODEL" --format hf -o "$WORK/hf_smol" > /dev/null && ok || bad "export SmolLM2"
  text="The mmap() system call maps files or devices into memory."
  printf '%s' "$text" > "$WORK/smol.txt"
  "$HONE" prepare "$WORK/smol.txt" -o "$WORK/smolwin" --tokenizer "$MODEL" --val 0 > /dev/null || bad "prepare smol"
  # the shard starts with the end-of-text id every document starts with; the text follows
  hone_ids=$(od -An -tu2 -v -j1026 "$WORK/smolwin/train_000000.bin" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
  json=$(/usr/bin/python3 "$CHECK" "$WORK/hf_smol" "$WORK/smolwin/train_000000.bin" 504,2 1 "$text" 2>"$WORK/py.err") ||
    bad "transformers on SmolLM2's export: $(tail -2 "$WORK/py.err")"
  hf_ids=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))')
  [ "$hone_ids" = "$hf_ids" ] && ok || bad "SmolLM2 tokens: hone [$hone_ids], the exported tokenizer [$hf_ids]"
  hf_loss=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
  hone_loss=$("$HONE" eval "$MODEL" --task ppl --data "$WORK/smolwin/train_000000.bin" 2>/dev/null | awk '$2 == "loss" {print $3}')
  echo "SmolLM2: loss hone $hone_loss, transformers on the export $hf_loss"
  awk -v a="$hone_loss" -v b="$hf_loss" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-4)}' &&
    ok || bad "SmolLM2 loss $hone_loss (hone) vs $hf_loss (transformers on the export)"

  # gguf: hone's importer reads it back to the same weights and tokenizer; gguf-py reads it
  "$HONE" export "$MODEL" --format gguf -o "$WORK/smol.gguf" > /dev/null && ok || bad "export gguf"
  (cd "$WORK" && sha256sum -c --quiet smol.gguf.sha256) && ok || bad "smol.gguf.sha256 does not check"
  "$HONE" import "$WORK/smol.gguf" -o "$WORK/smol_rt.h5" > /dev/null && ok || bad "import the gguf export"
  /usr/bin/python3 "$(dirname "$0")/h5_equal.py" "$MODEL" "$WORK/smol_rt.h5" /model && ok ||
    bad "the GGUF round trip changed the weights"
  "$HONE" prepare "$WORK/smol.txt" -o "$WORK/smolwin_rt" --tokenizer "$WORK/smol_rt.h5" --val 0 > /dev/null &&
    cmp -s "$WORK/smolwin/train_000000.bin" "$WORK/smolwin_rt/train_000000.bin" && ok ||
    bad "the GGUF round trip changed the tokenizer"
  /usr/bin/python3 - "$WORK/smol.gguf" <<'PY' && ok || bad "gguf-py cannot read the export"
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
f = r.fields
val = lambda k: f[k].parts[f[k].data[0]][0]
assert bytes(f["general.architecture"].parts[-1]).decode() == "llama"
assert val("llama.block_count") == 30 and val("llama.attention.head_count_kv") == 3
assert len(f["tokenizer.ggml.tokens"].data) == 49152
assert len(r.tensors) == 272 and r.tensors[0].name == "token_embd.weight"
print("gguf-py: llama, 30 blocks, 49152 tokens, 272 tensors")
PY
  "$HONE" export "$MODEL" --format gguf --dtype q8_0 -o "$WORK/smol_q8.gguf" > /dev/null && ok || bad "export q8_0"
  "$HONE" import "$WORK/smol_q8.gguf" -o "$WORK/smol_q8.h5" > /dev/null || bad "import q8_0"
  q8_loss=$("$HONE" eval "$WORK/smol_q8.h5" --task ppl --data "$WORK/smolwin/train_000000.bin" 2>/dev/null | awk '$2 == "loss" {print $3}')
  echo "SmolLM2 Q8_0 export: loss $q8_loss (f32 $hone_loss)"
  awk -v a="$hone_loss" -v b="$q8_loss" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(b != "" && d <= 0.05)}' &&
    ok || bad "Q8_0 loss $q8_loss vs $hone_loss"

  # after a LoRA run: hf (merged), peft (on the base's hf export) and gguf (through hone's
  # importer) all continue 5 prompts with hone's 32 greedy tokens
  cat > "$WORK/smol_lora.yaml" <<YAML
model: {from: "$MODEL"}
data: {train: "$WORK/shards/train_*.bin", batch: 1, seq: 64}
tokenizer: {type: none}
optim: {lr: 2e-3, warmup: 1}
peft:
  - lora: {targets: [attn.q, attn.v], rank: 4, alpha: 8}
train: {steps: 3, out: "$WORK/smol_lora", log_every: 1, sample_tokens: 0}
YAML
  "$HONE" prepare "$WORK/text.txt" -o "$WORK/smolshards" --tokenizer "$MODEL" --val 0 > /dev/null
  sed -i "s#$WORK/shards/train_#$WORK/smolshards/train_#" "$WORK/smol_lora.yaml"
  "$HONE" train "$WORK/smol_lora.yaml" > /dev/null 2> "$WORK/err.txt" && ok || bad "SmolLM2 LoRA: $(tail -2 "$WORK/err.txt")"
  prompts=("The open() system call" "A pointer in C is" "To copy a file, use" "The capital of France is" "Error handling in POSIX")
  hone_gen() { # CKPT -> JSON list of continuations
    local c=$1 p
    for p in "${prompts[@]}"; do
      "$HONE" generate "$c" --prompt "$p" --max-tokens 32 --temperature 0 2>/dev/null > "$WORK/g.txt"
      /usr/bin/python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[:-1]))' "$WORK/g.txt"
    done | /usr/bin/python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin]))'
  }
  want=$(hone_gen "$WORK/smol_lora/latest.h5")
  "$HONE" export "$WORK/smol_lora/latest.h5" --format hf -o "$WORK/hf_smol_lora" > /dev/null || bad "hf export of the LoRA run"
  "$HONE" export "$WORK/smol_lora/latest.h5" --format peft -o "$WORK/peft_smol_lora" > /dev/null || bad "peft export of the LoRA run"
  "$HONE" export "$WORK/smol_lora/latest.h5" --format gguf -o "$WORK/smol_lora.gguf" > /dev/null || bad "gguf export of the LoRA run"
  "$HONE" import "$WORK/smol_lora.gguf" -o "$WORK/smol_lora_rt.h5" > /dev/null || bad "import of the LoRA gguf"
  for via in "hf:$WORK/hf_smol_lora" "peft:$WORK/hf_smol::$WORK/peft_smol_lora"; do
    got=$(/usr/bin/python3 "$(dirname "$0")/hf_generate.py" "${via#*:}" 32 "${prompts[@]}" 2> "$WORK/py.err")
    [ -n "$got" ] && [ "$got" = "$want" ] && ok || bad "${via%%:*} export continues differently: $got vs hone $want $(tail -2 "$WORK/py.err")"
  done
  got=$(hone_gen "$WORK/smol_lora_rt.h5")
  [ "$got" = "$want" ] && ok || bad "gguf export continues differently: $got vs hone $want"
  echo "SmolLM2 LoRA run, hone's greedy continuations reproduced by the hf, peft and gguf exports: $want"
else
  skip_or_fail "$MODEL is missing (run scripts/get_model.sh)"
fi
finish
