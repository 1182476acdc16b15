#!/usr/bin/env bash
# Hostile inputs, one table: every file hone reads (GGUF, safetensors, Hugging Face model
# folders, tokenizer files, YAML configs, JSONL data and tasks, token shards and loss
# masks, checkpoints, PEFT adapters) damaged one way at a time, and command-line misuse.
# Each case is checked the same strict way by `hostile`: exit status 1 (2 for usage), no
# crash; stderr exactly one line, "hone: error: " (usage: "hone: ") and a message that
# names the file and the problem; the output the command would write existed before with
# known bytes and is byte-identical after, with no temporary file left beside it.
# The table of cases and the error lines observed goes to $WORK/hostile.tsv and, when
# HONE_HOSTILE_TABLE names a file, there (for docs/RELIABILITY.md).
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import h5py" 2>/dev/null || skip_or_fail "/usr/bin/python3 cannot import h5py (apt-get install python3-h5py)"
HERE="$(cd "$(dirname "$0")" && pwd)"
FIX="$HERE/../fixtures"
I="$WORK/in"
O="$WORK/out"
TABLE="$WORK/hostile.tsv"
ncases=0

# ---- the check ----

# a listing of PATH (file, link or folder) with every file's SHA-256
snapshot() {
  if [ -d "$1" ]; then
    (cd "$1" && find . -printf '%y %p %l\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
  elif [ -e "$1" ] || [ -L "$1" ]; then
    sha256sum "$1"
  else
    echo "absent"
  fi
}

# hostile NAME CODE OUTPUT REGEX INPUT -- CMD...: CMD must exit CODE with one stderr line
# "hone: error: ..." (CODE 2: "hone: ...") matching REGEX (grep -E), leave OUTPUT (a path
# that exists, or -) byte-identical and no *.tmp* file under $O. INPUT describes the case.
hostile() {
  local name="$1" code="$2" out="$3" regex="$4" input="$5"
  shift 6
  ncases=$((ncases + 1))
  local before after rc nlines line prefix="hone: error: " why=""
  [ "$code" -eq 2 ] && prefix="hone: "
  [ "$out" = - ] || before=$(snapshot "$out")
  "$@" > "$WORK/case.out" 2> "$WORK/case.err"
  rc=$?
  [ "$out" = - ] || after=$(snapshot "$out")
  nlines=$(awk 'END { print NR }' "$WORK/case.err")
  line=$(head -c 2000 "$WORK/case.err" | tr '\n\t' '  ' | sed 's/ *$//; s|'"$WORK"'/||g')
  local leftovers
  leftovers=$(find "$O" -name '*.tmp*' 2>/dev/null)
  [ "$rc" -ge 126 ] && why="$why; exit $rc: a crash or signal"
  [ "$rc" -lt 126 ] && [ "$rc" -ne "$code" ] && why="$why; exit $rc, wanted $code"
  [ "$nlines" -ne 1 ] && why="$why; $nlines stderr lines, wanted one"
  if ! tail -1 "$WORK/case.err" | grep -q "^$prefix"; then
    why="$why; the last line does not start with '$prefix'"
  elif ! tail -1 "$WORK/case.err" | grep -qE -- "$regex"; then
    why="$why; the line does not match /$regex/"
  fi
  [ "$out" != - ] && [ "$before" != "$after" ] &&
    why="$why; the output $(basename "$out") changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -2 | tr '\n' ' ')"
  [ -n "$leftovers" ] && why="$why; temporary files left: $leftovers"
  why="${why#; }"
  [ -n "$leftovers" ] && printf '%s\n' "$leftovers" | while IFS= read -r f; do rm -rf "$f"; done
  printf '%s\t%s\t%s\n' "$name" "$input" "${line:-(exit $rc, no error line)}" >> "$TABLE"
  if [ -n "$why" ]; then
    bad "$name ($input): $why; stderr: ${line:-(none)}"
  else
    ok
  fi
}

# ---- what the cases read and write ----

printf 'case\tinput\tobserved error line\n' > "$TABLE"
printf 'The quick brown fox jumps over the lazy dog.\n%.0s' $(seq 1 200) > "$WORK/text.txt"
"$HONE" prepare "$WORK/text.txt" -o "$WORK/shards" --val 0.1 > /dev/null || bad "prepare"
cat > "$WORK/cfg.yaml" <<YAML
model: {layers: 1, channels: 32, heads: 2, context: 32}
data: {train: "$WORK/shards/train_*.bin", val: "$WORK/shards/val_*.bin", batch: 2, seq: 16}
train: {steps: 2, threads: 1, out: "$O/run"}
YAML
mkdir -p "$O"
"$HONE" train "$WORK/cfg.yaml" > /dev/null 2>&1 || bad "training the good checkpoint failed"
GOOD="$WORK/good.h5"
cp "$O/run/ckpt/step_000002.h5" "$GOOD"
/usr/bin/python3 "$HERE/hostile_make.py" "$FIX" "$GOOD" "$I" || bad "hostile_make.py failed"
cp "$WORK/shards/meta.json" "$I/shards/"
for k in missing-row wrong-shape format-version not-hone no-config; do
  /usr/bin/python3 "$HERE/ckpt_damage.py" "$GOOD" "$I/ckpt_$k.h5" "$k" || bad "ckpt_damage.py $k failed"
done
# the outputs, each with known content: an import target, a shard folder, the run folder
# (train.out), an eval report, exports of each kind, and a run folder whose latest
# checkpoint is damaged
cp "$GOOD" "$O/import.h5"
cp -a "$WORK/shards" "$O/shards"
echo '{"task": "ppl", "ppl": 1.0}' > "$O/eval.json"
"$HONE" export "$GOOD" --format hf -o "$O/hf" > /dev/null || bad "the good hf export failed"
"$HONE" export "$GOOD" --format hdf5-merged -o "$O/merged.h5" > /dev/null || bad "the good merged export failed"
echo "an earlier export" > "$O/model.gguf"
cp "$GOOD" "$O/applied.h5"
cp -a "$O/run" "$O/resume"
cp "$I/ckpt_byte_flipped.h5" "$O/resume/ckpt/step_000002.h5"
"$HONE" import "$FIX/hf/gpt2_tiny" -o "$WORK/base.h5" > /dev/null 2>&1 || bad "importing the tiny GPT-2 failed"
# a delta of the good checkpoint against another run of the same shape
"$HONE" train "$WORK/cfg.yaml" --set "train.out=$WORK/other" --set train.seed=7 > /dev/null 2>&1 || bad "training the other run failed"
"$HONE" export "$GOOD" --format delta --base "$WORK/other/latest.h5" -o "$WORK/delta.h5" > /dev/null || bad "the delta export failed"
# a shard with a loss mask that is not one
mkdir -p "$I/maskshards"
cp "$WORK/shards/train_000000.bin" "$WORK/shards/meta.json" "$I/maskshards/"
head -c 1024 /dev/zero | tr '\0' 'x' > "$I/maskshards/train_000000.mask"
tail -c +1025 "$WORK/shards/train_000000.bin" >> "$I/maskshards/train_000000.mask"
# a shard folder whose meta.json is cut short; one whose document index is noise; a sharded
# HF folder whose index is cut short
mkdir -p "$I/metashards" "$I/docshards" "$I/hf_index_not_json"
cp "$WORK/shards/train_000000.bin" "$I/metashards/"
echo '{"format": "hone-shards", "tokenizer": "byte",' > "$I/metashards/meta.json"
cp "$WORK/shards/train_000000.bin" "$WORK/shards/meta.json" "$I/docshards/"
head -c 1100 /dev/zero | tr '\0' 'y' > "$I/docshards/train_000000.docs"
cp "$FIX/hf/gpt2_tiny/"* "$I/hf_index_not_json/"
mv "$I/hf_index_not_json/model.safetensors" "$I/hf_index_not_json/model-00001-of-00001.safetensors"
echo '{"weight_map": {"lm_head.weight": ' > "$I/hf_index_not_json/model.safetensors.index.json"
# PEFT adapter folders with a bad adapter_config.json
for c in peft_config_not_json peft_type_loha; do
  mkdir -p "$I/$c"
  cp "$FIX/peft/gpt2_lora.safetensors" "$I/$c/adapter_model.safetensors"
done
echo '{"peft_type": "LORA", "r": 8,' > "$I/peft_config_not_json/adapter_config.json"
echo '{"peft_type": "LOHA", "r": 8, "lora_alpha": 16, "target_modules": ["c_attn"]}' > "$I/peft_type_loha/adapter_config.json"

imp() { "$HONE" import "$1" -o "$O/import.h5"; }
train() { "$HONE" train "$WORK/cfg.yaml" "$@"; }
yaml() { printf '%s' "$2" > "$I/$1.yaml"; }
eval_json() { "$HONE" eval "$@" --json "$O/eval.json"; }
jsonl() { printf '%s' "$2" > "$I/$1.jsonl"; }
prep_gpt2() { "$HONE" prepare "$WORK/text.txt" -o "$O/shards" --tokenizer gpt2 --encoder "$1" --merges "$2"; }
ENC="$I/good_encoder.json"
BPE="$I/good_vocab.bpe"

# ---- GGUF (hone import over an existing checkpoint; hone inspect) ----

H=import.h5
hostile gguf_bad_magic 1 "$O/$H" "gguf_bad_magic\.gguf: not a GGUF file" "GGUF: magic GGUX" -- imp "$I/gguf_bad_magic.gguf"
hostile gguf_version_99 1 "$O/$H" "gguf_version_99\.gguf: GGUF version 99 is not supported" "GGUF: version 99" -- imp "$I/gguf_version_99.gguf"
hostile gguf_version_1 1 "$O/$H" "gguf_version_1\.gguf: GGUF version 1 .*not supported" "GGUF: version 1" -- imp "$I/gguf_version_1.gguf"
hostile gguf_empty 1 "$O/$H" "gguf_empty\.gguf: the file is 0 bytes, too short" "GGUF: empty file" -- imp "$I/gguf_empty.gguf"
hostile gguf_truncated_header 1 "$O/$H" "gguf_truncated_header\.gguf: the file is 20 bytes, too short for a GGUF header" "GGUF: 20 bytes" -- imp "$I/gguf_truncated_header.gguf"
hostile gguf_truncated_kv 1 "$O/$H" "gguf_truncated_kv\.gguf: .*(truncated|remain)" "GGUF: cut inside the metadata" -- imp "$I/gguf_truncated_kv.gguf"
hostile gguf_truncated_infos 1 "$O/$H" "gguf_truncated_infos\.gguf: .*tensor.*(truncated|remain)" "GGUF: cut inside the tensor infos" -- imp "$I/gguf_truncated_infos.gguf"
hostile gguf_truncated_data 1 "$O/$H" "gguf_truncated_data\.gguf: tensor .* lies beyond the end of the file" "GGUF: last 5000 data bytes cut" -- imp "$I/gguf_truncated_data.gguf"
hostile gguf_tensor_count_huge 1 "$O/$H" "gguf_tensor_count_huge\.gguf: the header claims 1099511627776 tensors" "GGUF: tensor count 2^40" -- imp "$I/gguf_tensor_count_huge.gguf"
hostile gguf_kv_count_huge 1 "$O/$H" "gguf_kv_count_huge\.gguf: .* 18446744073709551615 metadata keys" "GGUF: metadata count 2^64-1" -- imp "$I/gguf_kv_count_huge.gguf"
hostile gguf_ndims_5 1 "$O/$H" "gguf_ndims_5\.gguf: tensor 'token_embd.weight' has 5 dimensions" "GGUF: n_dims 5" -- imp "$I/gguf_ndims_5.gguf"
hostile gguf_ndims_0 1 "$O/$H" "gguf_ndims_0\.gguf: tensor 'token_embd.weight' has 0 dimensions" "GGUF: n_dims 0" -- imp "$I/gguf_ndims_0.gguf"
hostile gguf_dim_zero 1 "$O/$H" "gguf_dim_zero\.gguf: tensor 'token_embd.weight': dimension 0 is 0" "GGUF: a dimension of 0" -- imp "$I/gguf_dim_zero.gguf"
hostile gguf_dims_overflow 1 "$O/$H" "gguf_dims_overflow\.gguf: tensor 'token_embd.weight': the element count of its shape overflows" "GGUF: dims 2^62 x 2^62" -- imp "$I/gguf_dims_overflow.gguf"
hostile gguf_unknown_type 1 "$O/$H" "gguf_unknown_type\.gguf: tensor 'token_embd.weight': unsupported quantization type 200" "GGUF: tensor type 200" -- imp "$I/gguf_unknown_type.gguf"
hostile gguf_offset_beyond 1 "$O/$H" "gguf_offset_beyond\.gguf: tensor 'token_embd.weight' .* lies beyond the end of the file" "GGUF: data offset 2^40" -- imp "$I/gguf_offset_beyond.gguf"
hostile gguf_offset_misaligned 1 "$O/$H" "gguf_offset_misaligned\.gguf: tensor 'token_embd.weight' has offset 7, not a multiple of the alignment" "GGUF: data offset 7" -- imp "$I/gguf_offset_misaligned.gguf"
hostile gguf_string_huge 1 "$O/$H" "gguf_string_huge\.gguf: key 'general.name': a string .* claims 1152921504606846976 bytes" "GGUF: string length 2^60" -- imp "$I/gguf_string_huge.gguf"
hostile gguf_array_huge 1 "$O/$H" "gguf_array_huge\.gguf: key 'tokenizer.ggml.tokens': an array of 4611686018427387904" "GGUF: array count 2^62" -- imp "$I/gguf_array_huge.gguf"
hostile gguf_value_type_bad 1 "$O/$H" "gguf_value_type_bad\.gguf: key 'general.name' has value type 99" "GGUF: value type 99" -- imp "$I/gguf_value_type_bad.gguf"
hostile gguf_duplicate_tensor 1 "$O/$H" "gguf_duplicate_tensor\.gguf: tensor 'blk.0.attn_qkv.weight' appears twice" "GGUF: a tensor name twice" -- imp "$I/gguf_duplicate_tensor.gguf"
hostile gguf_duplicate_key 1 "$O/$H" "gguf_duplicate_key\.gguf: metadata key 'tokenizer.ggml.eos_token_id' appears twice" "GGUF: a metadata key twice" -- imp "$I/gguf_duplicate_key.gguf"
hostile gguf_alignment_zero 1 "$O/$H" "gguf_alignment_zero\.gguf: general.alignment is 0, not a positive power of two" "GGUF: general.alignment 0" -- imp "$I/gguf_alignment_zero.gguf"
hostile gguf_name_nul 1 "$O/$H" "gguf_name_nul\.gguf: a tensor name .* contains a NUL byte" "GGUF: NUL in a tensor name" -- imp "$I/gguf_name_nul.gguf"
hostile gguf_inspect_truncated 1 - "gguf_truncated_infos\.gguf: .*remain" "GGUF (inspect): cut inside the tensor infos" -- "$HONE" inspect "$I/gguf_truncated_infos.gguf"

# ---- safetensors and Hugging Face folders (hone import over an existing checkpoint) ----

M="model\.safetensors"
hostile st_header_len_huge 1 "$O/$H" "st_header_len_huge/$M: the header length [0-9]+ exceeds" "safetensors: header length > file" -- imp "$I/st_header_len_huge"
hostile st_too_short 1 "$O/$H" "st_too_short/$M: the file is 3 bytes, too short" "safetensors: 3 bytes" -- imp "$I/st_too_short"
hostile st_header_not_json 1 "$O/$H" "st_header_not_json/$M: the header is not valid JSON" "safetensors: header not JSON" -- imp "$I/st_header_not_json"
hostile st_header_not_object 1 "$O/$H" "st_header_not_object/$M: the header is not a JSON object" "safetensors: header a JSON array" -- imp "$I/st_header_not_object"
hostile st_dtype_unknown 1 "$O/$H" "st_dtype_unknown/$M: tensor '.*' has dtype 'F9'" "safetensors: dtype F9" -- imp "$I/st_dtype_unknown"
hostile st_shape_mismatch 1 "$O/$H" "st_shape_mismatch/$M: tensor '.*': data_offsets \[0, 384\] hold 384 bytes, but 4 elements" "safetensors: shape [2,2] for 384 bytes" -- imp "$I/st_shape_mismatch"
hostile st_negative_dim 1 "$O/$H" "st_negative_dim/$M: tensor '.*': shape entry 0 is not a non-negative integer" "safetensors: shape [-192]" -- imp "$I/st_negative_dim"
hostile st_offsets_out_of_range 1 "$O/$H" "st_offsets_out_of_range/$M: tensor '.*': data_offsets .* lie outside" "safetensors: data_offsets past the end" -- imp "$I/st_offsets_out_of_range"
hostile st_offsets_reversed 1 "$O/$H" "st_offsets_reversed/$M: tensor '.*': data_offsets \[384, 0\]" "safetensors: data_offsets [384, 0]" -- imp "$I/st_offsets_reversed"
hostile st_offsets_not_pair 1 "$O/$H" "st_offsets_not_pair/$M: tensor '.*': \"data_offsets\" is not \[begin, end\]" "safetensors: data_offsets [0]" -- imp "$I/st_offsets_not_pair"
hostile st_offsets_overlap 1 "$O/$H" "st_offsets_overlap/$M: .*overlap" "safetensors: two tensors on the same bytes" -- imp "$I/st_offsets_overlap"
hostile st_duplicate_tensor 1 "$O/$H" "st_duplicate_tensor/$M: tensor '.*' appears twice" "safetensors: a tensor twice in the header" -- imp "$I/st_duplicate_tensor"
hostile st_inspect_not_json 1 - "st_inspect_not_json\.safetensors: the header is not valid JSON" "safetensors (inspect): header not JSON" -- "$HONE" inspect "$I/st_inspect_not_json.safetensors"
hostile hf_config_not_json 1 "$O/$H" "hf_config_not_json/config\.json: .*JSON" "HF folder: config.json cut short" -- imp "$I/hf_config_not_json"
hostile hf_config_bert 1 "$O/$H" "hf_config_bert/config\.json: model_type \"bert\" cannot be imported" "HF folder: model_type bert" -- imp "$I/hf_config_bert"
hostile hf_config_negative_layers 1 "$O/$H" "hf_config_negative_layers/config\.json: \"n_layer\" must be" "HF folder: n_layer -2" -- imp "$I/hf_config_negative_layers"
hostile hf_vocab_wrong_type 1 "$O/$H" "hf_vocab_wrong_type/vocab\.json: token \"!\" has an id that is not a number" "HF folder: vocab.json id a string" -- imp "$I/hf_vocab_wrong_type"
hostile hf_index_not_json 1 "$O/$H" "hf_index_not_json/model\.safetensors\.index\.json: .*JSON" "HF folder: model.safetensors.index.json cut short" -- imp "$I/hf_index_not_json"
hostile hf_folder_missing 1 "$O/$H" "nowhere.*(cannot|no such|missing|not)" "HF folder: does not exist" -- imp "$I/nowhere"

# ---- tokenizer files ----

hostile tokjson_model_wordpiece 1 "$O/$H" "tokjson_model_wordpiece/tokenizer\.json: model type \"WordPiece\" is not supported" "tokenizer.json: model WordPiece" -- imp "$I/tokjson_model_wordpiece"
hostile tokjson_no_vocab 1 "$O/$H" "tokjson_no_vocab/tokenizer\.json: model\.vocab is not an object" "tokenizer.json: no model.vocab" -- imp "$I/tokjson_no_vocab"
hostile tokjson_merges_not_array 1 "$O/$H" "tokjson_merges_not_array/tokenizer\.json: model\.merges is not an array" "tokenizer.json: merges a number" -- imp "$I/tokjson_merges_not_array"
hostile tokjson_not_json 1 "$O/$H" "tokjson_not_json/tokenizer\.json:1: not valid JSON" "tokenizer.json: cut short" -- imp "$I/tokjson_not_json"
hostile enc_not_json 1 "$O/shards" "enc_not_json\.json:1: not valid JSON" "encoder.json: cut short" -- prep_gpt2 "$I/enc_not_json.json" "$BPE"
hostile enc_array 1 "$O/shards" "enc_array\.json: expected a JSON object of token -> id" "encoder.json: a JSON array" -- prep_gpt2 "$I/enc_array.json" "$BPE"
hostile enc_id_not_number 1 "$O/shards" "enc_id_not_number\.json: token \"!\" has an id that is not a number" "encoder.json: an id [1]" -- prep_gpt2 "$I/enc_id_not_number.json" "$BPE"
hostile enc_id_fraction 1 "$O/shards" "enc_id_fraction\.json: token \"!\" has id 1\.5, not an integer" "encoder.json: an id 1.5" -- prep_gpt2 "$I/enc_id_fraction.json" "$BPE"
hostile enc_missing 1 "$O/shards" "enc_missing\.json: cannot open" "encoder.json: missing" -- prep_gpt2 "$I/enc_missing.json" "$BPE"
hostile bpe_one_token_line 1 "$O/shards" "bpe_one_token_line\.bpe:6: merge \"abc\": expected \"left right\"" "vocab.bpe: a line with one token" -- prep_gpt2 "$ENC" "$I/bpe_one_token_line.bpe"
hostile bpe_unknown_token 1 "$O/shards" "bpe_unknown_token\.bpe:6: merge .*byte alphabet" "vocab.bpe: a token outside the byte alphabet" -- prep_gpt2 "$ENC" "$I/bpe_unknown_token.bpe"

# ---- YAML configs (hone train over an existing run folder) ----

R="$O/run"
D="data: {train: \"$WORK/shards/train_*.bin\", batch: 2, seq: 16}
train: {steps: 2, threads: 1, out: \"$R\"}
"
MODEL="model: {layers: 1, channels: 32, heads: 2, context: 32}
"
yaml y_unknown_key "model: {layers: 1, channels: 32, heads: 2, context: 32, chanels: 3}
$D"
yaml y_unknown_section "modle: {layers: 1}
$D"
yaml y_wrong_type "model: {layers: two, channels: 32, heads: 2, context: 32}
$D"
yaml y_negative_layers "model: {layers: -1, channels: 32, heads: 2, context: 32}
$D"
yaml y_zero_heads "model: {layers: 1, channels: 32, heads: 0, context: 32}
$D"
yaml y_negative_batch "${MODEL}data: {train: \"$WORK/shards/train_*.bin\", batch: -2, seq: 16}
train: {out: \"$R\"}
"
yaml y_syntax "model: {layers: 1, channels: [32, heads: 2
$D"
yaml y_duplicate_key "model: {layers: 1, layers: 2, channels: 32, heads: 2, context: 32}
$D"
yaml y_duplicate_section "${MODEL}model: {layers: 2}
$D"
yaml y_nan_lr "${MODEL}optim: {lr: .nan}
$D"
yaml y_inf_lr "${MODEL}optim: {lr: .inf}
$D"
yaml y_int_overflow "model: {layers: 99999999999999999999, channels: 32, heads: 2, context: 32}
$D"
yaml y_seq_over_context "model: {layers: 1, channels: 32, heads: 2, context: 8}
$D"
yaml y_top_list "- model
- data
"
yaml y_two_documents "${MODEL}---
${MODEL}"
printf 'model: {layers: 1}\n\001\002\377\n' > "$I/y_binary.yaml"
yaml y_empty ""
yaml y_section_scalar "model: 5
$D"
yaml y_choice "${MODEL}optim: {schedule: wavy}
$D"
Y() { "$HONE" train "$I/$1.yaml"; }
hostile yaml_unknown_key 1 "$R" "y_unknown_key\.yaml:1: unknown key 'model\.chanels' \(did you mean 'model\.channels'\?\)" "YAML: unknown key" -- Y y_unknown_key
hostile yaml_unknown_section 1 "$R" "y_unknown_section\.yaml:1: unknown key 'modle\.layers'" "YAML: unknown section" -- Y y_unknown_section
hostile yaml_wrong_type 1 "$R" "y_wrong_type\.yaml:1: model\.layers: expected an integer, got 'two'" "YAML: layers: two" -- Y y_wrong_type
hostile yaml_negative_layers 1 "$R" "model\.layers must be positive, got -1" "YAML: layers: -1" -- Y y_negative_layers
hostile yaml_zero_heads 1 "$R" "model\.heads must be positive, got 0" "YAML: heads: 0" -- Y y_zero_heads
hostile yaml_negative_batch 1 "$R" "data\.batch must be positive, got -2" "YAML: batch: -2" -- Y y_negative_batch
hostile yaml_syntax 1 "$R" "y_syntax\.yaml:2: YAML syntax error" "YAML: unclosed flow sequence" -- Y y_syntax
hostile yaml_duplicate_key 1 "$R" "y_duplicate_key\.yaml:1: duplicate key 'model\.layers'" "YAML: a key twice" -- Y y_duplicate_key
hostile yaml_duplicate_section 1 "$R" "y_duplicate_section\.yaml:2: duplicate section 'model'" "YAML: a section twice" -- Y y_duplicate_section
hostile yaml_nan_lr 1 "$R" "y_nan_lr\.yaml:2: optim\.lr: expected a finite number, got '\.nan'" "YAML: lr: .nan" -- Y y_nan_lr
hostile yaml_inf_lr 1 "$R" "y_inf_lr\.yaml:2: optim\.lr: expected a finite number, got '\.inf'" "YAML: lr: .inf" -- Y y_inf_lr
hostile yaml_int_overflow 1 "$R" "y_int_overflow\.yaml:1: model\.layers: integer out of range" "YAML: layers: 10^20" -- Y y_int_overflow
hostile yaml_seq_over_context 1 "$R" "data\.seq \(16\) must not exceed model\.context \(8\)" "YAML: seq 16 > context 8" -- Y y_seq_over_context
hostile yaml_top_list 1 "$R" "y_top_list\.yaml:1: the top level must be a mapping" "YAML: a list at the top" -- Y y_top_list
hostile yaml_two_documents 1 "$R" "y_two_documents\.yaml:[0-9]+: more than one YAML document" "YAML: two documents" -- Y y_two_documents
hostile yaml_binary 1 "$R" "y_binary\.yaml:[0-9]+: YAML syntax error: control characters" "YAML: control bytes" -- Y y_binary
hostile yaml_empty 1 "$R" "data\.train is empty" "YAML: empty file" -- Y y_empty
hostile yaml_section_scalar 1 "$R" "y_section_scalar\.yaml:1: section 'model' must be a mapping" "YAML: model: 5" -- Y y_section_scalar
hostile yaml_bad_choice 1 "$R" "optim\.schedule must be one of .*got 'wavy'" "YAML: schedule: wavy" -- Y y_choice
hostile yaml_missing 1 "$R" "cannot open config '.*nope\.yaml'" "YAML: missing file" -- "$HONE" train "$I/nope.yaml"
hostile set_bad_value 1 "$R" "data\.batch: expected an integer" "--set data.batch=abc" -- train --set data.batch=abc

# ---- token shards and loss masks (hone train over an existing run folder; hone eval) ----

S="$I/shards"
hostile shard_bad_magic 1 "$R" "shard_bad_magic\.bin: not a token shard \(bad magic 1234\)" "shard: magic 1234" -- train --set "data.train=$S/shard_bad_magic.bin"
hostile shard_bad_version 1 "$R" "shard_bad_version\.bin: unsupported shard version 9" "shard: version 9" -- train --set "data.train=$S/shard_bad_version.bin"
hostile shard_truncated 1 "$R" "shard_truncated\.bin: header says 4000 tokens .* truncated" "shard: 3000 of 8000 token bytes" -- train --set "data.train=$S/shard_truncated.bin"
hostile shard_negative_count 1 "$R" "shard_negative_count\.bin: negative token count" "shard: count -5" -- train --set "data.train=$S/shard_negative_count.bin"
hostile shard_header_only 1 "$R" "shard_header_only\.bin: too small to be a token shard" "shard: 600 bytes" -- train --set "data.train=$S/shard_header_only.bin"
hostile shard_token_ge_vocab 1 "$R" "shard_token_ge_vocab\.bin: token 5000 .* out of range for a vocabulary of 257" "shard: token ids 5000 >= vocab 257" -- train --set "data.train=$S/shard_token_ge_vocab.bin"
hostile shard_one_token_ge_vocab 1 "$R" "shard_one_token_ge_vocab\.bin: token 5000 .* out of range for a vocabulary of 257" "shard: one token id 5000 >= vocab 257 (position 1000)" -- train --set "data.train=$S/shard_one_token_ge_vocab.bin"
hostile mask_bad_magic 1 "$R" "train_000000\.mask: not a loss mask \(bad magic" "loss mask: bad magic" -- train --set "data.train=$I/maskshards/train_*.bin"
hostile meta_json_malformed 1 "$R" "metashards/meta\.json is malformed" "shard folder: meta.json cut short" -- train --set "data.train=$I/metashards/train_*.bin" --set data.val=
hostile docs_bad_magic 1 "$R" "train_000000\.docs: not a document index \(bad magic" "document index: bad magic (data.packing: documents)" -- train --set "data.train=$I/docshards/train_*.bin" --set data.packing=documents
hostile eval_shard_bad_magic 1 "$O/eval.json" "shard_bad_magic\.bin: neither a token shard .* nor text" "shard (eval ppl): magic 1234" -- eval_json "$GOOD" --task ppl --data "$S/shard_bad_magic.bin"
hostile eval_shard_truncated 1 "$O/eval.json" "shard_truncated\.bin: header says 4000 tokens .*truncated" "shard (eval ppl): cut short" -- eval_json "$GOOD" --task ppl --data "$S/shard_truncated.bin"
hostile eval_shard_token_ge_vocab 1 "$O/eval.json" "token id 5000 at position 1000 is not below the model's vocabulary 257" "shard (eval ppl): one token id 5000 >= vocab 257" -- eval_json "$GOOD" --task ppl --data "$S/shard_one_token_ge_vocab.bin"

# ---- JSONL: instruction data (hone prepare --instruct over a shard folder), eval tasks ----

jsonl i_not_json '{"prompt": "hi", "response": "there"}
{"prompt": "a",
'
jsonl i_missing_field '{"prompt": "hi"}
'
jsonl i_wrong_type '{"prompt": "hi", "response": 5}
'
jsonl i_bad_role '{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}
'
jsonl i_no_assistant '{"messages": [{"role": "user", "content": "x"}]}
'
jsonl i_not_object '[1, 2]
'
jsonl i_empty ''
P() { "$HONE" prepare --instruct "$I/$1.jsonl" -o "$O/shards"; }
hostile instruct_not_json 1 "$O/shards" "i_not_json\.jsonl:2: not valid JSON" "instruct JSONL: line 2 cut short" -- P i_not_json
hostile instruct_missing_field 1 "$O/shards" "i_missing_field\.jsonl:1: needs string \"prompt\" and \"response\"" "instruct JSONL: no response" -- P i_missing_field
hostile instruct_wrong_type 1 "$O/shards" "i_wrong_type\.jsonl:1: needs string \"prompt\" and \"response\"" "instruct JSONL: response 5" -- P i_wrong_type
hostile instruct_bad_role 1 "$O/shards" "i_bad_role\.jsonl:1: message 1 has role 'robot'" "instruct JSONL: role robot" -- P i_bad_role
hostile instruct_no_assistant 1 "$O/shards" "i_no_assistant\.jsonl:1: no assistant message" "instruct JSONL: no assistant turn" -- P i_no_assistant
hostile instruct_not_object 1 "$O/shards" "i_not_object\.jsonl:1: not a JSON object" "instruct JSONL: a JSON array" -- P i_not_object
hostile instruct_empty 1 "$O/shards" "no examples: the input files hold no usable line" "instruct JSONL: empty file" -- P i_empty
jsonl mc_not_json '{"context": "a", "choices": ["b"],
'
jsonl mc_no_answer '{"context": "a", "choices": [" b", " c"]}
'
jsonl mc_answer_range '{"context": "a", "choices": [" b", " c"], "answer": 7}
'
jsonl mc_choice_number '{"context": "a", "choices": [" b", 3], "answer": 0}
'
jsonl mc_empty ''
jsonl gen_no_reference '{"prompt": "a"}
'
printf '{"bad": 1}' > "$I/template_no_context.json"
printf '{"context": "The quick", "choices": [" brown", " red"], "answer": 0}\n' > "$I/mc_good.jsonl"
hostile mc_not_json 1 "$O/eval.json" "mc_not_json\.jsonl:1: not valid JSON" "mc JSONL: cut short" -- eval_json "$GOOD" --task mc --data "$I/mc_not_json.jsonl"
hostile mc_no_answer 1 "$O/eval.json" "mc_no_answer\.jsonl:1: needs an integer \"answer\"" "mc JSONL: no answer" -- eval_json "$GOOD" --task mc --data "$I/mc_no_answer.jsonl"
hostile mc_answer_range 1 "$O/eval.json" "mc_answer_range\.jsonl:1: answer 7 is out of range for 2 choices" "mc JSONL: answer 7 of 2" -- eval_json "$GOOD" --task mc --data "$I/mc_answer_range.jsonl"
hostile mc_choice_number 1 "$O/eval.json" "mc_choice_number\.jsonl:1: choice 1 is not a string" "mc JSONL: a choice 3" -- eval_json "$GOOD" --task mc --data "$I/mc_choice_number.jsonl"
hostile mc_empty 1 "$O/eval.json" "mc_empty\.jsonl has no examples" "mc JSONL: empty file" -- eval_json "$GOOD" --task mc --data "$I/mc_empty.jsonl"
hostile gen_no_reference 1 "$O/eval.json" "gen_no_reference\.jsonl:1: needs a string \"reference\"" "gen JSONL: no reference" -- eval_json "$GOOD" --task gen --data "$I/gen_no_reference.jsonl"
hostile template_no_context 1 "$O/eval.json" "template .*template_no_context\.json has no \{context\}" "eval template: no {context}" -- eval_json "$GOOD" --task mc --data "$I/mc_good.jsonl" --template "$I/template_no_context.json"

# ---- checkpoints (inspect, eval, generate, export over existing outputs, resume) ----

C="$I"
hostile ckpt_not_hdf5 1 - "ckpt_not_hdf5\.h5: not an HDF5 file" "checkpoint: text" -- "$HONE" inspect "$C/ckpt_not_hdf5.h5"
hostile ckpt_empty 1 - "ckpt_empty\.h5: not an HDF5 file" "checkpoint: empty file" -- "$HONE" inspect "$C/ckpt_empty.h5"
hostile ckpt_truncated 1 "$O/eval.json" "ckpt_truncated\.h5: damaged: [0-9]+ bytes follow its seal, which was written for [0-9]+" "checkpoint: last third cut (eval)" -- eval_json "$C/ckpt_truncated.h5" --task ppl --data "$WORK/shards/val_000000.bin"
hostile ckpt_seal_only 1 - "ckpt_seal_only\.h5: damaged: 0 bytes follow its seal" "checkpoint: its seal alone" -- "$HONE" inspect "$C/ckpt_seal_only.h5"
hostile ckpt_appended 1 - "ckpt_appended\.h5: damaged: [0-9]+ bytes follow its seal" "checkpoint: 100 bytes appended (generate)" -- "$HONE" generate "$C/ckpt_appended.h5" --prompt "The" --max-tokens 2
hostile ckpt_byte_flipped 1 "$O/hf" "ckpt_byte_flipped\.h5: damaged: its SHA-256 does not match the seal" "checkpoint: one byte flipped (export hf --force)" -- "$HONE" export "$C/ckpt_byte_flipped.h5" --format hf -o "$O/hf" --force
hostile ckpt_seal_edited 1 "$O/merged.h5" "ckpt_seal_edited\.h5: damaged: its SHA-256 does not match the seal" "checkpoint: the seal's digest edited (export hdf5-merged --force)" -- "$HONE" export "$C/ckpt_seal_edited.h5" --format hdf5-merged -o "$O/merged.h5" --force
hostile ckpt_truncated_gguf 1 "$O/model.gguf" "ckpt_truncated\.h5: damaged" "checkpoint: cut short (export gguf --force)" -- "$HONE" export "$C/ckpt_truncated.h5" --format gguf -o "$O/model.gguf" --force
hostile ckpt_no_seal 1 - "ckpt_no_seal\.h5: an HDF5 file hone did not write \(no seal\).*--allow-unverified" "checkpoint: copied by h5py (no seal)" -- "$HONE" inspect "$C/ckpt_no_seal.h5"
hostile ckpt_truncated_unverified 1 - "ckpt_truncated\.h5: cannot open the HDF5 file" "checkpoint: cut short, --allow-unverified" -- "$HONE" inspect "$C/ckpt_truncated.h5" --allow-unverified
hostile ckpt_wrong_shape 1 "$R" "ckpt_wrong-shape\.h5: row /model/layers\.0\.mlp\.up\.weight has shape 129x32, the config needs 128x32" "checkpoint: a row's shape changed (resume, --allow-unverified)" -- train --resume "$C/ckpt_wrong-shape.h5" --allow-unverified
hostile ckpt_missing_row 1 "$R" "ckpt_missing-row\.h5: row /model/layers\.0\.mlp\.up\.weight is missing" "checkpoint: a row deleted (resume, --allow-unverified)" -- train --resume "$C/ckpt_missing-row.h5" --allow-unverified
hostile ckpt_format_version 1 "$O/eval.json" "ckpt_format-version\.h5: checkpoint format_version 99" "checkpoint: format_version 99 (eval, --allow-unverified)" -- eval_json "$C/ckpt_format-version.h5" --allow-unverified --task ppl --data "$WORK/shards/val_000000.bin"
hostile ckpt_not_hone 1 "$O/hf" "ckpt_not-hone\.h5: not a hone checkpoint" "checkpoint: format attribute changed (export hf --force, --allow-unverified)" -- "$HONE" export "$C/ckpt_not-hone.h5" --allow-unverified --format hf -o "$O/hf" --force
hostile ckpt_no_config 1 - "ckpt_no-config\.h5: .*config" "checkpoint: no config attribute (--allow-unverified)" -- "$HONE" inspect --allow-unverified "$C/ckpt_no-config.h5"
hostile resume_damaged_latest 1 "$O/resume" "resume/latest\.h5: damaged: its SHA-256 does not match" "run folder: latest.h5 with a flipped byte (train --resume auto)" -- train --set "train.out=$O/resume" --resume auto
hostile apply_bad_delta 1 "$O/applied.h5" "ckpt_not_hdf5\.h5: not an HDF5 file" "delta: not HDF5 (apply over an existing file)" -- "$HONE" apply "$GOOD" "$C/ckpt_not_hdf5.h5" -o "$O/applied.h5" --force
hostile apply_wrong_base 1 "$O/applied.h5" "delta\.h5 was made against another base: its base_sha256 [0-9a-f]+\.* does not match" "delta: applied to another base" -- "$HONE" apply "$GOOD" "$WORK/delta.h5" -o "$O/applied.h5" --force
jsonl edit_requests '{"subject": "fox", "prompt": "The quick brown {} jumps",
'
hostile edit_requests_not_json 1 "$O/eval.json" "edit_requests\.jsonl:1: .*JSON" "edit requests JSONL: cut short" -- "$HONE" edit "$GOOD" --requests "$I/edit_requests.jsonl" --cov-data "$WORK/text.txt" --json "$O/eval.json"
hostile export_exists 1 "$O/hf" "hf exists — pass --force" "export: output folder exists, no --force" -- "$HONE" export "$GOOD" --format hf -o "$O/hf"

# ---- PEFT adapters (hone import --base over an existing checkpoint) ----

hostile peft_config_not_json 1 "$O/$H" "peft_config_not_json/adapter_config\.json is not valid JSON" "PEFT adapter: adapter_config.json cut short" -- "$HONE" import "$I/peft_config_not_json" --base "$WORK/base.h5" -o "$O/$H"
hostile peft_type_loha 1 "$O/$H" "peft_type_loha/adapter_config\.json: peft_type LOHA" "PEFT adapter: peft_type LOHA" -- "$HONE" import "$I/peft_type_loha" --base "$WORK/base.h5" -o "$O/$H"

# ---- the command line ----

hostile usage_no_command 2 - "no command given" "hone (nothing)" -- "$HONE"
hostile usage_unknown_command 2 - "unknown command 'trian'" "hone trian" -- "$HONE" trian
hostile usage_unknown_option 2 "$R" "unknown option '--bogus'" "hone train CFG --bogus" -- train --bogus
hostile usage_missing_value 2 "$O/$H" "-o needs a value" "hone import X.gguf -o" -- "$HONE" import "$FIX/gguf/gpt2_tiny.gguf" -o
hostile usage_set_missing 2 "$R" "--set needs key=value" "hone train CFG --set" -- train --set
hostile usage_bad_number 2 "$O/shards" "bad number 'abc'" "hone prepare --val abc" -- "$HONE" prepare "$WORK/text.txt" -o "$O/shards" --val abc
hostile usage_eval_shots 2 "$O/eval.json" "--shots wants a number 0\.\.64, not 'many'" "hone eval --shots many" -- eval_json "$GOOD" --task mc --data "$I/mc_good.jsonl" --shots many
hostile usage_export_no_format 2 - "export needs --format" "hone export CKPT -o OUT" -- "$HONE" export "$GOOD" -o "$O/hf2"

[ "$ncases" -ge 45 ] && ok || bad "only $ncases cases"
echo "$ncases hostile inputs; table: ${HONE_HOSTILE_TABLE:-$TABLE (removed at the end: set HONE_HOSTILE_TABLE=FILE to keep it)}"
cp "$TABLE" "${HONE_HOSTILE_TABLE:-/dev/null}"
finish
