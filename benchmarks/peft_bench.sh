#!/usr/bin/env bash
# The parameter-efficient training-step benchmark of GPT-2 124M (B=4, T=64, fp32, random
# weights) on the CPU: hone's step with each method on a frozen base (LoRA r=8 on attn.qkv,
# LoRA r=8 on every linear, IA3, BitFit, DoRA, prefix tuning of 16 positions without and with
# a 512-wide projection, prompt tuning and P-tuning of 16 virtual tokens, Houlsby, Pfeiffer
# and parallel adapters) against hone's full fine-tuning step, then PyTorch's step
# (transformers' GPT2LMHeadModel, full and with PEFT's LoRA r=8 on c_attn, prefix tuning and
# prompt tuning of 16; Debian's /usr/bin/python3 with python3-torch, transformers and peft;
# skipped with a message if they are missing). Every row is its own process, so each peak RSS
# is that method's. Tokens/s count the B x T real tokens only (prompt tuning runs over T + 16
# positions, prefix tuning attends to 16 more keys). Prints the table and writes
# benchmarks/results/peft_step_124M.{json,md}.
#
# Each run also records how much CPU other processes took while it ran (from /proc/stat less
# the run's own CPU time): a shared machine slows a run down without any change in hone. A
# run where others took more than 10% of the machine is run again (--retries times) and the
# quieter run is kept; the share is in the JSON and flagged in the table. Before each run it
# waits (up to --wait seconds, 0 = not at all) until others take at most 10% of the machine
# over 3 seconds.
#   benchmarks/peft_bench.sh [--threads N] [--steps S] [--torch-steps S] [--retries R]
#                            [--wait S] [--no-torch]
# (defaults: 2 threads, 7 timed steps for every row, 1 retry, waits of up to 300 s; about
# 7 minutes on 2 idle cores)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
threads=2
steps=7
torch_steps=""
retries=1
wait_max=300
torch=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --torch-steps) torch_steps="$2"; shift 2 ;;
    --retries) retries="$2"; shift 2 ;;
    --wait) wait_max="$2"; shift 2 ;;
    --no-torch) torch=0; shift ;;
    *) echo "usage: $0 [--threads N] [--steps S] [--torch-steps S] [--retries R] [--wait S]" \
         "[--no-torch]" >&2
       exit 2 ;;
  esac
done
[ -n "$torch_steps" ] || torch_steps="$steps"
[ -x build/benchmarks/bench_peft_step ] || scripts/setup.sh
mkdir -p benchmarks/results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# busy CPU seconds of the whole machine so far (user nice system irq softirq steal)
busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2+$3+$4+$7+$8+$9)/hz; exit}' /proc/stat
}

# wait up to $wait_max seconds until the machine is quiet: at most 10% of its CPU busy over
# 3 seconds (nothing of this script's runs then)
wait_quiet() {
  local t0=$SECONDS b0 b1 pct said=0
  [ "$wait_max" -gt 0 ] || return 0
  while [ $((SECONDS - t0)) -lt "$wait_max" ]; do
    b0=$(busy_s); sleep 3; b1=$(busy_s)
    pct=$(awk -v b="$b1" -v a="$b0" -v n="$(nproc)" 'BEGIN{printf "%.0f", 100*(b-a)/(3*n)}')
    [ "$pct" -le 10 ] && return 0
    [ $said = 1 ] || echo "  (others use ${pct}% of the machine: waiting up to ${wait_max}s)" >&2
    said=1
  done
  echo "  (still busy after ${wait_max}s: running anyway)" >&2
}

# run "$@" once; stdout: its JSON line with "other_cpu_pct" added (the share of the machine's
# CPU that other processes used while it ran)
run_once() {
  local b0 b1 t0 t1 out
  b0=$(busy_s); t0=$(date +%s.%N)
  out=$(/usr/bin/time -f "%U %S" -o "$tmp/time" "$@")
  b1=$(busy_s); t1=$(date +%s.%N)
  read -r u s <"$tmp/time"
  local pct
  pct=$(awk -v b="$b1" -v a="$b0" -v u="$u" -v s="$s" -v w1="$t1" -v w0="$t0" -v n="$(nproc)" \
    'BEGIN{o=(b-a)-(u+s); if(o<0)o=0; printf "%.1f", 100*o/((w1-w0)*n)}')
  echo "${out%\}},\"other_cpu_pct\":$pct}"
}

# run "$@", again up to $retries times while others took > 10% of the machine; the quietest run
run() {
  local best="" best_pct=1000 j pct
  for ((k = 0; k <= retries; k++)); do
    wait_quiet
    j=$(run_once "$@")
    pct=$(sed 's/.*"other_cpu_pct":\([0-9.]*\)}$/\1/' <<<"$j")
    if awk -v p="$pct" -v b="$best_pct" 'BEGIN{exit !(p < b)}'; then best="$j"; best_pct="$pct"; fi
    awk -v p="$best_pct" 'BEGIN{exit !(p <= 10)}' && break
    [ $k -lt "$retries" ] && echo "  (others used ${pct}% of the machine: running again)" >&2
  done
  echo "$best"
}

: >"$tmp/hone.jsonl"
# full first: it is the baseline
for method in full lora lora_all ia3 bitfit dora prefix prefix_proj prompt ptuning houlsby \
  pfeiffer parallel; do
  j=$(run build/benchmarks/bench_peft_step --method "$method" --threads "$threads" --steps "$steps")
  echo "$j"
  echo "$j" >>"$tmp/hone.jsonl"
done
: >"$tmp/torch.jsonl"
if [ "$torch" = 1 ]; then
  if /usr/bin/python3 -c "import torch, transformers, peft" 2>/dev/null; then
    for method in full lora prefix prompt; do
      j=$(run /usr/bin/python3 benchmarks/bench_torch_peft_step.py --method "$method" \
        --threads "$threads" --steps "$torch_steps")
      echo "$j"
      echo "$j" >>"$tmp/torch.jsonl"
    done
  else
    echo "PyTorch baseline skipped: /usr/bin/python3 lacks torch, transformers or peft" >&2
  fi
fi

HONE="$tmp/hone.jsonl" TORCH="$tmp/torch.jsonl" CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  THREADS="$threads" /usr/bin/python3 - <<'PY'
import json, os, datetime
hone = [json.loads(l) for l in open(os.environ["HONE"]) if l.strip()]
torch = [json.loads(l) for l in open(os.environ["TORCH"]) if l.strip()]
by = {r["method"]: r for r in hone}
full = by["full"]
LORA_TARGET, RSS_TARGET_MB = 0.75, 1000  # issue: LoRA r=8 attn.qkv <= 0.75x full, RSS <= 1.0 GB
what = {
    "full": "full fine-tuning (baseline)",
    "lora": "LoRA r=8 α=16, attn.qkv",
    "lora_all": "LoRA r=8 α=16, qkv + o + up + down",
    "ia3": "IA3 (default: attn.qkv out, mlp.down in)",
    "bitfit": "BitFit (biases)",
    "dora": "DoRA r=8 α=16, attn.qkv",
    "prefix": "prefix tuning, 16 keys/values per layer",
    "prefix_proj": "prefix tuning, 16, projection MLP 512",
    "prompt": "prompt tuning, 16 virtual tokens",
    "ptuning": "P-tuning, 16 virtual tokens, encoder MLP 768",
    "houlsby": "Houlsby adapters, reduction 16, swish",
    "pfeiffer": "Pfeiffer adapter, reduction 16, ReLU",
    "parallel": "parallel adapter, reduction 2, ReLU, scaling 4",
}
torch_what = {
    "full": "full fine-tuning",
    "lora": "PEFT LoRA r=8 α=16, c_attn",
    "prefix": "PEFT prefix tuning, 16 virtual tokens",
    "prompt": "PEFT prompt tuning, 16 virtual tokens",
}
res = {"date": datetime.date.today().isoformat(), "cpu": os.environ["CPU"],
       "threads": int(os.environ["THREADS"]), "B": full["B"], "T": full["T"],
       "targets": {"lora_step_ratio_max": LORA_TARGET, "lora_peak_rss_mb_max": RSS_TARGET_MB},
       "hone": hone, "pytorch": torch}
tok_s = lambda r: 1000.0 * r["B"] * r["T"] / r["median_ms"]  # real tokens only
busy = lambda r: " ⚠" if r.get("other_cpu_pct", 0) > 10 else ""
lines = [
    "# Parameter-efficient training step, GPT-2 124M on the CPU (B=4, T=64, fp32)",
    "",
    f"{res['date']}, {res['cpu']}, {res['threads']} threads; median of {len(full['all_ms'])} "
    "timed steps after 2 warm-up steps; one process per row (peak RSS is that method's). "
    "A step is forward, backward, gradient norm and AdamW on the trainable rows.",
    "",
    "| method | trainable params | step ms | tokens/s | fwd / bwd / optim ms | base GEMM floor ms | step / floor | ratio to hone full | peak RSS MB | others' CPU % |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in hone:
    lines.append(
        f"| hone {what.get(r['method'], r['method'])} | {r['trainable_params']:,} | "
        f"{r['median_ms']:.0f}{busy(r)} | {tok_s(r):.0f} | "
        f"{r['forward_ms']:.0f} / {r['backward_ms']:.0f} / "
        f"{r['optim_ms']:.0f} | {r['gemm_floor_ms']:.0f} | {r['ratio_to_floor']:.2f}x | "
        f"{r['median_ms'] / full['median_ms']:.2f}x | "
        f"{r['peak_rss_mb']:.0f} | {r['other_cpu_pct']:.0f} |")
if torch:
    lines += ["", "| PyTorch | trainable params | step ms | tokens/s | peak RSS MB | hone same method ms | hone speedup | others' CPU % |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in torch:
        h = by[t["method"]]
        name = torch_what.get(t["method"], t["method"])
        lines.append(
            f"| {t['torch']} transformers {t['transformers']} peft {t['peft']}, {name} | "
            f"{t['trainable_params']:,} | {t['median_ms']:.0f}{busy(t)} | {tok_s(t):.0f} | "
            f"{t['peak_rss_mb']:.0f} | "
            f"{h['median_ms']:.0f} | **{t['median_ms'] / h['median_ms']:.2f}x** | "
            f"{t['other_cpu_pct']:.0f} |")
lo = by.get("lora")
if lo:
    ratio = lo["median_ms"] / full["median_ms"]
    ok_t, ok_m = ratio <= LORA_TARGET, lo["peak_rss_mb"] <= RSS_TARGET_MB
    res["lora_vs_targets"] = {"step_ratio": round(ratio, 3), "step_ok": ok_t,
                              "peak_rss_mb": lo["peak_rss_mb"], "rss_ok": ok_m}
    lines += ["",
              f"- LoRA r=8 on attn.qkv, step time: **{ratio:.2f}x** hone's full fine-tuning step "
              f"(target ≤ {LORA_TARGET}x): {'met' if ok_t else 'NOT met'}",
              f"- LoRA r=8 on attn.qkv, peak RSS: **{lo['peak_rss_mb']:.0f} MB** (target ≤ 1.0 GB): "
              f"{'met' if ok_m else 'NOT met'}; full fine-tuning: {full['peak_rss_mb']:.0f} MB"]
lines += ["- trainable params count hone's rows as stored: the vocabulary is padded to "
          f"{(full['total_params'] - 124439808) // 768 + 50257} rows, so full fine-tuning counts "
          f"{full['total_params']:,} against transformers' 124,439,808.",
          "- LoRA B is set to normal(0, 0.02) in both implementations (PEFT starts it at zero) so "
          "the adapter path carries real values.",
          "- tokens/s: the B x T = "
          f"{full['B'] * full['T']} real tokens of a step over its median time. Prompt tuning and "
          "P-tuning run every sequence over T + 16 positions (the virtual tokens first, outside "
          "the loss); prefix tuning attends to 16 more keys per layer at every position; as in "
          "PEFT, the real tokens then take positions 16.. in both.",
          "- adapters as AdapterHub places them: Houlsby after attention and after the MLP, "
          "Pfeiffer after the MLP, parallel beside the MLP (AdapterHub's default normal(0, 0.02) "
          "init, so no path is zero).",
          "- base GEMM floor: the step's GEMMs of the base alone (every linear's forward and "
          "input gradient, the weight gradient only where the weight trains), timed on the same "
          "buffers in the same process, over every position the model runs (T + 16 with prompt "
          "tuning and P-tuning); the add-ons' own small GEMMs and attention are not in it.",
          "- ⚠ marks a row during which other processes used more than 10% of the machine's CPU."]
print("\n".join(lines[4:]))
open("benchmarks/results/peft_step_124M.json", "w").write(json.dumps(res, indent=1) + "\n")
open("benchmarks/results/peft_step_124M.md", "w").write("\n".join(lines) + "\n")
PY
