#!/usr/bin/env bash
# Specializing SmolLM2-135M-Instruct to the Linux programming manual, three ways on the same
# token budget: full fine-tuning, LoRA, and a 1% FISH-masked partial update (Sung et al.
# 2021: the 1% of entries with the largest empirical Fisher information train, nothing else
# moves). Reports held-out perplexity on the domain (the test split of manpages-dev, pages
# no run trained on) and on general text (the Jargon File, which no run trained on) before
# and after, in benchmarks/results/specialize_smollm2.{json,md}.
#
#   benchmarks/specialize_smollm2.sh             # STEPS=100 (100 x 4 x 256 = 102400 tokens)
#   STEPS=20 benchmarks/specialize_smollm2.sh    # a quicker look
#
# Learning rates are each method's usual range, not tuned here: full 5e-5, LoRA 5e-4
# (rank 16, alpha 32, every linear of every block), FISH 2e-4 (64 examples for the Fisher
# estimate); AdamW, no weight decay, 5 warm-up steps, cosine to 10%.
# Run on a quiet machine; it takes about 40 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-100}
THREADS=${THREADS:-$(nproc)}
HONE=build/hone
OUT=runs/specialize
RES=benchmarks/results
mkdir -p "$OUT" "$RES"

[ -x "$HONE" ] || { echo "specialize: build hone first (cmake --build build)" >&2; exit 1; }
[ -s models/smollm2.h5 ] || scripts/get_model.sh
scripts/prepare_domain.sh --tokenizer models/smollm2.h5 >&2
if [ ! -s corpus/jargon.txt ]; then
  dpkg-query -W -f='${Status}' jargon-text 2>/dev/null | grep -q "install ok installed" ||
    { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get install -y -qq jargon-text >&2; }
  mkdir -p corpus && zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
fi
# general text: 120 KB from the middle of the Jargon File (its glossary entries)
head -c 920000 corpus/jargon.txt | tail -c 120000 > "$OUT/general.txt"
DOMAIN=shards/manpages/test/train_000000.bin

ppl() { # CKPT DATA -> perplexity
  "$HONE" eval "$1" --task ppl --data "$2" --context 1024 --json "$OUT/ppl.json" >/dev/null 2>&1 ||
    { echo "specialize: hone eval $1 $2 failed" >&2; exit 1; }
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$OUT/ppl.json"
}

common() { # NAME LR
  cat <<YAML
model: {from: models/smollm2.h5}
data: {train: "shards/manpages/train/train_*.bin", val: "shards/manpages/val/train_*.bin",
       batch: 4, seq: 256}
optim: {lr: $2, warmup: 5, weight_decay: 0.0, schedule: cosine}
train: {steps: $STEPS, out: $OUT/$1, log_every: 10, eval_every: $STEPS, eval_batches: 8,
        sample_tokens: 0, threads: $THREADS}
YAML
}

common full 5e-5 > "$OUT/full.yaml"
{ common lora 5e-4; cat <<'YAML'; } > "$OUT/lora.yaml"
peft:
  - lora: {targets: [attn.q, attn.k, attn.v, attn.o, mlp.gate, mlp.up, mlp.down], rank: 16, alpha: 32}
YAML
{ common fish 2e-4; cat <<'YAML'; } > "$OUT/fish.yaml"
mask: {method: fish, density: 0.01, fish_examples: 64}
YAML

echo "specialize: base model perplexities" >&2
base_dom=$(ppl models/smollm2.h5 "$DOMAIN")
base_gen=$(ppl models/smollm2.h5 "$OUT/general.txt")
echo "base: domain $base_dom, general $base_gen" >&2
rows=""
for m in full lora fish; do
  echo "specialize: training $m ($STEPS steps)" >&2
  rm -rf "${OUT:?}/$m"
  start=$(date +%s)
  "$HONE" train "$OUT/$m.yaml" 2> "$OUT/$m.log" || { tail -5 "$OUT/$m.log" >&2; exit 1; }
  secs=$(( $(date +%s) - start ))
  trained=$(grep -o 'mask: .*' "$OUT/$m.log" | head -1 || true)
  dom=$(ppl "$OUT/$m/latest.h5" "$DOMAIN")
  gen=$(ppl "$OUT/$m/latest.h5" "$OUT/general.txt")
  loss=$(grep -o '"loss":[0-9.e+-]*' "$OUT/$m/metrics.jsonl" | tail -1 | cut -d: -f2)
  echo "$m: domain $dom, general $gen, last loss $loss, $secs s ($trained)" >&2
  rows="$rows$m $dom $gen $loss $secs\n"
done

python3 - "$RES" "$STEPS" "$base_dom" "$base_gen" "$(printf "$rows")" <<'PY'
import json, sys, platform, os
res, steps, bd, bg, rows = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
out = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, imported to f32)",
       "domain": "manpages-dev sections 2/3, test split (39 pages, 50658 tokens)",
       "general": "Jargon File, 120 KB slice (not trained on)",
       "steps": steps, "tokens_per_run": steps * 4 * 256, "batch": 4, "seq": 256,
       "machine": f"{os.cpu_count()} cores, {platform.machine()}",
       "note": "seconds are wall time of hone train and may include other load; "
               "this benchmark's figures are the perplexities",
       "base": {"domain_ppl": bd, "general_ppl": bg}, "runs": {}}
lr = {"full": 5e-5, "lora": 5e-4, "fish": 2e-4}
what = {"full": "full fine-tuning (every parameter)",
        "lora": "LoRA r=16 alpha=32 on q,k,v,o,gate,up,down",
        "fish": "FISH mask, 1% of entries (64 examples)"}
for line in rows.strip().splitlines():
    m, d, g, l, s = line.split()
    out["runs"][m] = {"method": what[m], "lr": lr[m], "domain_ppl": float(d),
                      "general_ppl": float(g), "last_train_loss": float(l), "seconds": int(s),
                      "domain_ratio": float(d) / bd, "general_ratio": float(g) / bg}
json.dump(out, open(f"{res}/specialize_smollm2.json", "w"), indent=2)
with open(f"{res}/specialize_smollm2.md", "w") as f:
    f.write(f"# Specializing SmolLM2-135M to the Linux programming manual\n\n"
            f"{steps} steps x 4 x 256 = {steps*1024} training tokens per method "
            f"(benchmarks/specialize_smollm2.sh, {out['machine']}). Perplexity on held-out "
            f"man pages (domain) and on the Jargon File (general); ratios against the base "
            f"model measured in the same script.\n\n"
            f"| method | lr | domain ppl | x base | general ppl | x base | last train loss |\n"
            f"|---|---|---|---|---|---|---|\n"
            f"| base model | - | {bd:.3f} | 1.000 | {bg:.3f} | 1.000 | - |\n")
    for m, r in out["runs"].items():
        f.write(f"| {r['method']} | {r['lr']:g} | {r['domain_ppl']:.3f} | {r['domain_ratio']:.3f} "
                f"| {r['general_ppl']:.3f} | {r['general_ratio']:.3f} | {r['last_train_loss']:.4f} |\n")
print(open(f"{res}/specialize_smollm2.md").read())
PY
