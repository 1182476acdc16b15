#!/usr/bin/env bash
# The training-step benchmark of GPT-2 124M (B=4, T=64, fp32, random weights) on the CPU.
# In one run: hone's step and its GEMM-only floor (same process, same BLAS), then the same
# step in PyTorch on the CPU (Debian's python3-torch, run with /usr/bin/python3; skipped
# with a message if it is not installed). Prints the ratios and writes
# benchmarks/results/step_124M.{json,md}.
#   benchmarks/step_bench.sh [--threads N] [--steps S]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2
steps=7
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    *) echo "usage: $0 [--threads N] [--steps S]" >&2; exit 2 ;;
  esac
done
[ -x build/benchmarks/bench_step ] || scripts/setup.sh
mkdir -p benchmarks/results

hone_json=$(build/benchmarks/bench_step --threads "$threads" --steps "$steps")
echo "$hone_json"
torch_json=""
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  torch_json=$(/usr/bin/python3 benchmarks/bench_torch_step.py --threads "$threads" --steps "$steps")
  echo "$torch_json"
else
  echo "PyTorch baseline skipped: Debian's python3-torch is not installed (apt-get install python3-torch)" >&2
fi

HONE_JSON="$hone_json" TORCH_JSON="$torch_json" CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  THREADS="$threads" /usr/bin/python3 - <<'PY'
import json, os, datetime
h = json.loads(os.environ["HONE_JSON"])
t = json.loads(os.environ["TORCH_JSON"]) if os.environ["TORCH_JSON"] else None
res = {"date": datetime.date.today().isoformat(), "cpu": os.environ["CPU"], "hone": h, "pytorch": t}
lines = [
    "# GPT-2 124M training step on the CPU (B=4, T=64, fp32)",
    "",
    f"{res['date']}, {res['cpu']}, {h['threads']} threads; median of the timed steps, same run.",
    "",
    "| what | median ms/step | peak RSS (MB) |",
    "|---|---:|---:|",
    f"| hone step | {h['median_ms']:.0f} | {h['peak_rss_mb']:.0f} |",
    f"| GEMMs of the step alone (floor) | {h['gemm_floor_ms']:.0f} | |",
]
if t:
    lines.append(f"| PyTorch {t['torch']} | {t['median_ms']:.0f} | {t['peak_rss_mb']:.0f} |")
lines += ["", f"- hone / GEMM floor: **{h['median_ms'] / h['gemm_floor_ms']:.2f}x**"]
if t:
    lines.append(f"- PyTorch / hone: **{t['median_ms'] / h['median_ms']:.2f}x** (hone is that many times faster)")
print("\n".join(lines[5:]))
open("benchmarks/results/step_124M.json", "w").write(json.dumps(res, indent=1) + "\n")
open("benchmarks/results/step_124M.md", "w").write("\n".join(lines) + "\n")
PY
