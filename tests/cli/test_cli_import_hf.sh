#!/usr/bin/env bash
# `hone import` of Hugging Face folders (tests/fixtures/hf/, scripts/make_hf_fixtures.py):
#   - each tiny model (GPT-2 in F16, Llama untied in F32, Llama tied in BF16) imports, from
#     its folder and from its model.safetensors alone, `hone inspect` reads the result, and
#     `hone eval --task ppl` on a shard of the reference ids gives transformers' perplexity
#     to 1e-4 relative (tests/golden/test_import_hf.c compares every logit);
#   - a sharded folder (model-0000x-of-00002.safetensors + index) imports to the same ppl;
#   - bad input is one error line and exit 1: no config.json, unknown model_type,
#     rope_scaling set, attention_bias true, a tensor missing, a tensor of the wrong shape,
#     extra layers, a NaN weight, a header whose data_offsets run past the file.
# The damaged copies are made here from the good fixtures with /usr/bin/python3 (json and
# struct only).
source "$(dirname "$0")/lib.sh"
FIX="$HONE_FIXTURES/hf"
PY=/usr/bin/python3
[ -x "$PY" ] || skip_or_fail "$PY is missing"

# st.py: rewrite a safetensors file (drop, reshape, poison or lie) and write shards of ids
cat > "$WORK/st.py" <<'PY'
import json, math, struct, sys

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    return h, meta, b[8 + n:]

def save(path, tensors, meta=None, lie=None):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if lie:
        header[lie]["data_offsets"][1] += 4096
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def tensors(path):
    h, meta, data = load(path)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}, meta

cmd, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
if cmd == "shard":  # the reference ids of model src as an llm.c token shard
    h, meta, data = load(src)
    v = h[dst + ".ids"]
    ids = struct.unpack("<%di" % v["shape"][0], data[v["data_offsets"][0]:v["data_offsets"][1]])
    open(sys.argv[4], "wb").write(struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253)) +
                                  struct.pack("<%dH" % len(ids), *ids))
    print(meta[dst + ".ppl"])
    sys.exit(0)
t, meta = tensors(src)
name = sys.argv[4] if len(sys.argv) > 4 else None
if cmd == "drop":
    del t[name]
elif cmd == "reshape":  # one row fewer
    dtype, shape, data = t[name]
    t[name] = (dtype, [shape[0] - 1] + shape[1:], data[:len(data) * (shape[0] - 1) // shape[0]])
elif cmd == "extra":  # a layer config.json does not have
    for k in [k for k in t if ".layers.1." in k]:
        t[k.replace(".layers.1.", ".layers.2.")] = t[k]
elif cmd == "nan":
    dtype, shape, data = t[name]
    t[name] = (dtype, shape, struct.pack("<f", math.nan) + data[4:])
elif cmd == "lie":
    pass
elif cmd == "split":  # two shards and an index, into folder dst
    names = sorted(t)
    half = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for f, ns in half.items():
        save(dst + "/" + f, {n: t[n] for n in ns}, meta)
    json.dump({"metadata": {}, "weight_map": {n: f for f, ns in half.items() for n in ns}},
              open(dst + "/model.safetensors.index.json", "w"))
    sys.exit(0)
save(dst, t, meta, lie=name if cmd == "lie" else None)
PY

json_num() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2; }

# ppl_matches CKPT MODEL: hone eval's ppl of the reference ids equals transformers'
ppl_matches() {
  local want got
  want=$("$PY" "$WORK/st.py" shard "$FIX/reference.safetensors" "$2" "$WORK/$2.bin") || { bad "$2: no shard"; return; }
  if ! "$HONE" eval "$1" --task ppl --data "$WORK/$2.bin" --json "$WORK/ppl.json" > /dev/null 2> "$WORK/eval.err"; then
    bad "$2: eval ppl failed: $(cat "$WORK/eval.err")"
    return
  fi
  got=$(json_num "$WORK/ppl.json" ppl)
  echo "$1: ppl hone $got, transformers $want"
  awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-4 * b) }' &&
    ok || bad "$2: ppl $got != transformers' $want within 1e-4 relative"
}

for m in gpt2_tiny llama_tiny llama_tied; do
  if "$HONE" import "$FIX/$m" -o "$WORK/$m.h5" 2> "$WORK/import.err"; then ok; else
    bad "$m: import failed: $(cat "$WORK/import.err")"
    continue
  fi
  "$HONE" inspect "$WORK/$m.h5" > "$WORK/inspect.out" && ok || bad "$m: inspect failed"
  ppl_matches "$WORK/$m.h5" "$m"
done
grep -q 'tokenizer *none' "$WORK/inspect.out" && ok || bad "llama_tied: tokenizer is not none: $(cat "$WORK/inspect.out")"
grep -q 'tokenizer.*is "none"' "$WORK/import.err" && ok || bad "llama_tied: no note about the missing tokenizer"

# one .safetensors file, config.json beside it; --dtype bf16 still loads
"$HONE" import "$FIX/gpt2_tiny/model.safetensors" -o "$WORK/file.h5" --dtype bf16 2> /dev/null &&
  "$HONE" inspect "$WORK/file.h5" | grep -q 'bf16' && ok || bad "import of a single .safetensors file failed"

# sharded: two files and model.safetensors.index.json
mkdir -p "$WORK/sharded"
cp "$FIX/llama_tiny/config.json" "$FIX/llama_tiny/tokenizer.json" "$WORK/sharded/"
"$PY" "$WORK/st.py" split "$FIX/llama_tiny/model.safetensors" "$WORK/sharded"
"$HONE" import "$WORK/sharded" -o "$WORK/sharded.h5" 2> "$WORK/import.err" && ok ||
  bad "sharded import failed: $(cat "$WORK/import.err")"
ppl_matches "$WORK/sharded.h5" llama_tiny

# ---- bad input ----
# bad_folder NAME MODEL: a copy of fixture MODEL in $WORK/NAME
bad_folder() { rm -rf "$WORK/$1" && cp -r "$FIX/$2" "$WORK/$1"; }
# with_config NAME MODEL PYTHON-EXPR: the copy's config.json c rewritten by PYTHON-EXPR
with_config() {
  bad_folder "$1" "$2"
  "$PY" -c "import json, sys; c = json.load(open(sys.argv[1])); $3; json.dump(c, open(sys.argv[1], 'w'))" \
    "$WORK/$1/config.json"
}
# with_weights NAME MODEL CMD [TENSOR]: the copy's model.safetensors damaged by st.py CMD
with_weights() {
  bad_folder "$1" "$2"
  "$PY" "$WORK/st.py" "$3" "$FIX/$2/model.safetensors" "$WORK/$1/model.safetensors" "${4:-}"
}

bad_folder noconfig llama_tiny && rm "$WORK/noconfig/config.json"
expect_fail "no config.json" 1 "noconfig/config.json: cannot open" -- "$HONE" import "$WORK/noconfig" -o "$WORK/x.h5"
with_config bert llama_tiny 'c["model_type"] = "bert"'
expect_fail "unknown model_type" 1 'model_type "bert" cannot be imported' -- "$HONE" import "$WORK/bert" -o "$WORK/x.h5"
with_config scaled llama_tiny 'c["rope_scaling"] = {"type": "linear", "factor": 2.0}'
expect_fail "rope_scaling" 1 "rope_scaling is set" -- "$HONE" import "$WORK/scaled" -o "$WORK/x.h5"
with_config biased llama_tiny 'c["attention_bias"] = True'
expect_fail "attention_bias" 1 "attention_bias is true" -- "$HONE" import "$WORK/biased" -o "$WORK/x.h5"
with_config badnum gpt2_tiny 'c["n_head"] = 0'
expect_fail "n_head out of range" 1 '"n_head" must be an integer in 1\.\.' -- "$HONE" import "$WORK/badnum" -o "$WORK/x.h5"
with_weights missing llama_tiny drop model.layers.1.self_attn.k_proj.weight
expect_fail "missing tensor" 1 "tensor model.layers.1.self_attn.k_proj.weight is missing" -- \
  "$HONE" import "$WORK/missing" -o "$WORK/x.h5"
with_weights gpt2missing gpt2_tiny drop transformer.h.0.mlp.c_fc.bias
expect_fail "missing gpt2 tensor" 1 "tensor transformer.h.0.mlp.c_fc.bias is missing" -- \
  "$HONE" import "$WORK/gpt2missing" -o "$WORK/x.h5"
with_weights shape gpt2_tiny reshape transformer.h.1.attn.c_attn.weight
expect_fail "wrong shape" 1 "tensor transformer.h.1.attn.c_attn.weight has shape \[63, 192\]; this config.json needs \[64, 192\]" -- \
  "$HONE" import "$WORK/shape" -o "$WORK/x.h5"
with_weights extra llama_tiny extra
expect_fail "extra layer" 1 "tensor model.layers.2.* is not part of a llama model" -- "$HONE" import "$WORK/extra" -o "$WORK/x.h5"
with_weights nan llama_tiny nan model.layers.0.mlp.up_proj.weight
expect_fail "NaN weight" 1 "tensor model.layers.0.mlp.up_proj.weight holds a NaN" -- "$HONE" import "$WORK/nan" -o "$WORK/x.h5"
with_weights lie llama_tiny lie model.norm.weight
expect_fail "lying header" 1 "lie/model.safetensors" -- "$HONE" import "$WORK/lie" -o "$WORK/x.h5"
expect_fail "not a model" 1 "neither a Hugging Face model folder nor a .safetensors file" -- \
  "$HONE" import "$FIX/gpt2_tiny/config.json" -o "$WORK/x.h5"
[ -e "$WORK/x.h5" ] && bad "a failed import left $WORK/x.h5" || ok
finish
