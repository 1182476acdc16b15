#!/usr/bin/env bash
# `hone import` of GGUF files. First a tiny GPT-2 converted to GGUF as llama.cpp does it
# (scripts/make_gguf_gpt2_fixture.py): its perplexity on reference ids must equal the one
# transformers computed for the same model. Then the real model (SmolLM2-135M-Instruct,
# Q4_1 GGUF from scripts/get_model.sh):
# the checkpoint inspects, carries its tokenizer and config, scores held-out text at the
# perplexity transformers gives the same ids (tests/fixtures/smollm2), and generates; bad
# GGUF files are one error line each.
source "$(dirname "$0")/lib.sh"

"$HONE" import "$HONE_FIXTURES/gguf/gpt2_tiny.gguf" -o "$WORK/gpt2.h5" 2> /dev/null && ok || bad "gpt2 GGUF import failed"
want=$(/usr/bin/python3 - "$HONE_FIXTURES/hf/reference.safetensors" "$WORK/gpt2.bin" <<'PY'
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
a, b = h["gpt2_tiny.ids"]["data_offsets"]
ids = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<i4")
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253)))
    f.write(ids.astype("<u2").tobytes())
print(h["__metadata__"]["gpt2_tiny.ppl"])
PY
)
"$HONE" eval "$WORK/gpt2.h5" --task ppl --data "$WORK/gpt2.bin" --json "$WORK/gpt2.json" > /dev/null || bad "gpt2 eval failed"
got=$(grep -o '"ppl": *[0-9.]*' "$WORK/gpt2.json" | grep -o '[0-9.]*$')
echo "gpt2 GGUF perplexity: hone $got, transformers $want"
awk -v a="$got" -v b="$want" 'BEGIN {d = (a - b) / b; exit !(d < 1e-4 && d > -1e-4)}' && ok ||
  bad "gpt2 GGUF perplexity $got differs from transformers' $want"

MODEL="$HONE_SOURCE_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -r "$MODEL" ] || skip_or_fail "$MODEL is missing (scripts/get_model.sh fetches it)"

"$HONE" import "$MODEL" -o "$WORK/smol.h5" --deflate 0 2> "$WORK/import.err" && ok || bad "import failed: $(cat "$WORK/import.err")"
grep -q "llama L=30 C=576 NH=9 NKV=3 F=1536 V=49152" "$WORK/import.err" && ok || bad "import summary: $(cat "$WORK/import.err")"
"$HONE" inspect "$WORK/smol.h5" > "$WORK/inspect.txt" && grep -q "tokenizer   bpe" "$WORK/inspect.txt" &&
  grep -q "layers.29.mlp.down.weight" "$WORK/inspect.txt" && ok || bad "inspect of the import"
"$HONE" inspect "$MODEL" | grep -q "tokenizer.ggml.pre *string *\"smollm\"" && ok || bad "inspect of the GGUF"

# perplexity of held-out text equals transformers' on the same ids (one window)
"$HONE" eval "$WORK/smol.h5" --task ppl --data "$HONE_FIXTURES/smollm2/heldout.bin" --json "$WORK/ppl.json" > /dev/null &&
  ok || bad "eval failed"
want=$(/usr/bin/python3 -c "
import json,struct; raw=open('$HONE_FIXTURES/smollm2/reference.safetensors','rb').read()
n=struct.unpack('<Q',raw[:8])[0]; print(json.loads(raw[8:8+n])['__metadata__']['heldout_ppl'])")
got=$(grep -o '"ppl": *[0-9.]*' "$WORK/ppl.json" | grep -o '[0-9.]*$')
echo "held-out perplexity: hone $got, transformers $want"
awk -v a="$got" -v b="$want" 'BEGIN {d = (a - b) / b; exit !(d < 1e-4 && d > -1e-4)}' && ok ||
  bad "perplexity $got differs from transformers' $want"

out=$("$HONE" generate "$WORK/smol.h5" --prompt "The capital of France is" --temperature 0 --max-tokens 8)
[[ "$out" == " Paris."* ]] && ok || bad "greedy continuation: '$out'"
chat=$("$HONE" generate "$WORK/smol.h5" --prompt $'<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n' \
  --temperature 0 --max-tokens 12)
[[ "$chat" == *"12 + 30"* ]] && ok || bad "chat-formatted prompt: '$chat'"

# bad GGUF files
head -c 100000 "$MODEL" > "$WORK/truncated.gguf"
expect_fail "truncated GGUF" 1 "truncated.gguf" -- "$HONE" import "$WORK/truncated.gguf" -o "$WORK/x.h5"
printf 'GGUX%.0s' 1 > "$WORK/magic.gguf"; head -c 4096 /dev/zero >> "$WORK/magic.gguf"
expect_fail "wrong magic" 1 "magic.gguf" -- "$HONE" import "$WORK/magic.gguf" -o "$WORK/x.h5"
expect_fail "unknown architecture" 1 "cannot be imported" -- "$HONE" import "$HONE_FIXTURES/gguf/types.gguf" -o "$WORK/x.h5"
expect_fail "missing GGUF" 1 "nope.gguf" -- "$HONE" import "$WORK/nope.gguf" -o "$WORK/x.h5"
expect_fail "import usage" 2 "needs a source" -- "$HONE" import "$MODEL"
[ ! -e "$WORK/x.h5" ] && ok || bad "a failed import left an output file"
finish
