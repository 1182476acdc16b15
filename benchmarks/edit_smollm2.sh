#!/usr/bin/env bash
# Knowledge edits on SmolLM2-135M-Instruct: the ten committed counterfactual requests
# (tests/fixtures/edit/requests.jsonl), each applied on its own to the original model with
# hone edit's defaults (ROME at layer L/6 = 5, 20 Adam steps, 10 sampled prefixes; key
# covariance from 20000 tokens of the Jargon File). Writes
# benchmarks/results/edit_smollm2.{json,md}: per request the new object's probability
# before and after on the prompt and its two paraphrases, and the neighbourhood KL; overall
# the efficacy (new object top-1 on the prompt), the paraphrase top-1 rate and the mean KL.
set -euo pipefail
cd "$(dirname "$0")/.."
HONE=build/hone
RES=benchmarks/results
mkdir -p "$RES" runs
[ -x "$HONE" ] || { echo "edit_smollm2: build hone first" >&2; exit 1; }
[ -s models/smollm2.h5 ] || scripts/get_model.sh
if [ ! -s corpus/jargon.txt ]; then
  mkdir -p corpus && zcat /usr/share/doc/jargon-text/jargon.txt.gz > corpus/jargon.txt
fi
head -c 400000 corpus/jargon.txt > runs/edit_cov.txt
start=$(date +%s)
"$HONE" edit models/smollm2.h5 --requests tests/fixtures/edit/requests.jsonl \
  --cov-data runs/edit_cov.txt --cov-tokens 20000 --json "$RES/edit_smollm2.json" | tee runs/edit_smollm2.txt
secs=$(( $(date +%s) - start ))
python3 - "$RES" "$secs" <<'PY'
import json, sys
res, secs = sys.argv[1], int(sys.argv[2])
j = json.load(open(f"{res}/edit_smollm2.json"))
reqs = [json.loads(l) for l in open("tests/fixtures/edit/requests.jsonl") if l.strip()]
with open(f"{res}/edit_smollm2.md", "w") as f:
    f.write("# Knowledge edits on SmolLM2-135M-Instruct (benchmarks/edit_smollm2.sh)\n\n"
            f"ROME at layer {j['layer']}, hone edit's defaults; each request applied to the "
            f"original model on its own; {secs} s for all ten on this machine.\n\n"
            f"- new object is the top prediction on the prompt: **{j['efficacy_top1']} of "
            f"{j['requests']}**\n"
            f"- on the paraphrases: {100 * j['paraphrase_top1_rate']:.0f}%\n"
            f"- p(new) > p(true) on prompt and paraphrases: "
            f"{100 * j.get('new_beats_true_rate', 0):.0f}%\n"
            f"- neighbourhood KL(before || after), mean over 50 prompts: "
            f"{j['neighborhood_kl']:.4f}; their top-1 unchanged: "
            f"{100 * j['neighborhood_top1_kept_rate']:.0f}%\n\n"
            "| subject | new object | p(new) prompt | top-1 | p(new) paraphrases | "
            "neighbourhood KL |\n|---|---|---|---|---|---|\n")
    for e in j["edits"]:
        para = ", ".join(f"{p['p_new_before']:.4f} -> {p['p_new_after']:.4f}"
                         for p in e["paraphrases"])
        kl = sum(e["neighborhood_kl"]) / max(1, len(e["neighborhood_kl"]))
        f.write(f"| {e['subject']} | {e['target'].strip()} | {e['p_new_before']:.4f} -> "
                f"{e['p_new_after']:.4f} | {'yes' if e['top1_after'] else 'no'} | {para} | "
                f"{kl:.4f} |\n")
print(open(f"{res}/edit_smollm2.md").read())
PY
