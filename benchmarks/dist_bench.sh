#!/usr/bin/env bash
# Data parallel on the CPU: one rank with every core against two ranks of half the cores each
# (mpirun, loopback), the same global batch, on a 4-layer, 256-channel GPT-2 over the byte-
# level Jargon File (scripts/demo.sh prepares it); and the gradient bytes one step moves for
# full fine-tuning against LoRA on the same model. Writes benchmarks/results/dist_cpu.{json,md}.
# Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
HONE=build/hone
RES=benchmarks/results
OUT=runs/dist_bench
mkdir -p "$RES" "$OUT"
[ -s shards/jargon/train_000000.bin ] || { echo "dist_bench: run scripts/demo.sh once first" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
CORES=$(nproc)
HALF=$(( CORES / 2 > 0 ? CORES / 2 : 1 ))
MPI=(mpirun -np 2 --bind-to none --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
STEPS=${STEPS:-30}
cat > "$OUT/cfg.yaml" <<YAML
model: {layers: 4, channels: 256, heads: 4, context: 128}
data: {train: "shards/jargon/train_*.bin", batch: 8, seq: 128}
optim: {lr: 1e-3, warmup: 5}
train: {steps: $STEPS, log_every: 5, sample_tokens: 0}
YAML

tps() { # mean tokens/s of the logged steps after the first (warm-up) one
  python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "tokens_per_s" in l]
v = [r["tokens_per_s"] for r in rows[1:]] or [rows[-1]["tokens_per_s"]]
print(sum(v) / len(v))' "$1/metrics.jsonl"
}
mib() { grep -o 'of [0-9.]* MiB of gradients' "$1" | awk '{print $2}'; }

rm -rf "$OUT"/one "$OUT"/two "$OUT"/lora1 "$OUT"/lora2
"$HONE" train "$OUT/cfg.yaml" --set train.out="$OUT/one" --set train.threads="$CORES" 2> "$OUT/one.log" >/dev/null
"${MPI[@]}" "$HONE" train "$OUT/cfg.yaml" --set train.out="$OUT/two" --set data.batch=4 \
  --set train.threads="$HALF" 2> "$OUT/two.log" >/dev/null
lora=(--set model.from="$OUT/one/latest.h5" --set 'peft.methods=[lora]' --set peft.lora.rank=8)
"$HONE" train "$OUT/cfg.yaml" "${lora[@]}" --set train.out="$OUT/lora1" --set train.threads="$CORES" 2> "$OUT/lora1.log" >/dev/null
"${MPI[@]}" "$HONE" train "$OUT/cfg.yaml" "${lora[@]}" --set train.out="$OUT/lora2" --set data.batch=4 \
  --set train.threads="$HALF" 2> "$OUT/lora2.log" >/dev/null

python3 - "$RES" "$CORES" "$(tps "$OUT/one")" "$(tps "$OUT/two")" "$(tps "$OUT/lora1")" \
  "$(tps "$OUT/lora2")" "$(mib "$OUT/two.log")" "$(mib "$OUT/lora2.log")" "$STEPS" <<'PY'
import json, sys
res, cores = sys.argv[1], int(sys.argv[2])
one, two, l1, l2, full_mib, lora_mib = map(float, sys.argv[3:9])
steps = int(sys.argv[9])
out = {"model": "GPT-2 4 layers x 256 channels (byte vocabulary), seq 128, global batch 8",
       "cores": cores, "steps": steps,
       "full": {"tokens_per_s_1_rank": one, "tokens_per_s_2_ranks": two, "speedup": two / one,
                "gradient_mib_per_step": full_mib},
       "lora": {"tokens_per_s_1_rank": l1, "tokens_per_s_2_ranks": l2, "speedup": l2 / l1,
                "gradient_mib_per_step": lora_mib},
       "bytes_ratio_lora_over_full": lora_mib / full_mib}
json.dump(out, open(f"{res}/dist_cpu.json", "w"), indent=2)
with open(f"{res}/dist_cpu.md", "w") as f:
    f.write("# Data parallel on the CPU (benchmarks/dist_bench.sh)\n\n"
            f"{out['model']}; {steps} steps; 1 rank x {cores} threads against 2 ranks x "
            f"{max(1, cores // 2)} threads (Open MPI, loopback), the same global batch.\n\n"
            "| method | 1 rank tok/s | 2 ranks tok/s | 2 ranks / 1 rank | gradients summed per step |\n"
            "|---|---|---|---|---|\n"
            f"| full fine-tuning | {one:.0f} | {two:.0f} | {two/one:.2f}x | {full_mib:.3f} MiB |\n"
            f"| LoRA r=8 (attn.qkv) | {l1:.0f} | {l2:.0f} | {l2/l1:.2f}x | {lora_mib:.3f} MiB |\n\n"
            f"LoRA moves {lora_mib/full_mib:.4f}x the bytes of full fine-tuning per step.\n")
print(open(f"{res}/dist_cpu.md").read())
PY
