#!/usr/bin/env bash
# Forward-only evaluation and single-stream decoding of GPT-2 124M and SmolLM2-135M shapes (2 threads,
# random weights): prefill tokens/s against the same GEMMs' floor, and KV-cached decode
# tokens/s against decoding by recomputing the whole prefix, all in one run. Writes
# benchmarks/results/eval_124M.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/benchmarks/bench_eval ] || scripts/setup.sh
mkdir -p benchmarks/results
json=$(build/benchmarks/bench_eval "$@")
echo "$json"
JSON="$json" CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1)" /usr/bin/python3 - <<'PY'
import json, os, datetime
runs = [json.loads(line) for line in os.environ["JSON"].splitlines() if line.strip()]
lines = [
    "# Inference on the CPU (eval path, fp32, random weights)",
    "",
    f"{datetime.date.today().isoformat()}, {os.environ['CPU']}, {runs[0]['threads']} threads, one run.",
    "",
    "| model | what | tokens/s | baseline in the same run | ratio |",
    "|---|---|---:|---:|---:|",
]
for r in runs:
    lines.append(f"| {r['model']} | prefill, {r['prefill_window']}-token windows | {r['prefill_tokens_per_s']:.0f} | "
                 f"{r['gemm_floor_tokens_per_s']:.0f} (its GEMMs alone) | {r['prefill_vs_gemm_floor']:.2f} |")
    lines.append(f"| {r['model']} | decode with KV cache, context {r['decode_context']} | {r['decode_tokens_per_s']:.1f} | "
                 f"{r['nocache_decode_tokens_per_s']:.1f} (recompute the prefix) | {r['decode_speedup_vs_nocache']:.1f}x |")
open("benchmarks/results/eval_124M.json", "w").write(json.dumps(runs, indent=1) + "\n")
open("benchmarks/results/eval_124M.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines[4:]))
PY
