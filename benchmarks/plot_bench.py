#!/usr/bin/python3
"""
Charts of a `hone bench` table (Debian's /usr/bin/python3 with python3-matplotlib):
  plot_bench.py BENCH.csv OUT_DIR
writes OUT_DIR/accuracy_vs_trainable.png (multiple-choice accuracy against trainable
parameters, log scale; the methods that train nothing at 1) and OUT_DIR/gain_vs_forgetting.png
(domain perplexity gain against the change of general perplexity, both relative to zero-shot).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    path, out = sys.argv[1], sys.argv[2]
    rows = [r for r in csv.DictReader(open(path)) if r["status"] == "ok"]
    base = next((r for r in rows if r["method"] == "zero-shot"), None)
    kind = {"zero-shot": "black/grey-box", "few-shot": "black/grey-box", "retrieval": "black/grey-box",
            "prompt": "soft prompts", "prefix": "soft prompts", "ptuning": "soft prompts"}
    color = {"black/grey-box": "tab:gray", "soft prompts": "tab:orange", "weights": "tab:blue"}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        k = kind.get(r["method"], "weights")
        x = max(float(r["trainable"] or 0), 1.0)
        y = float(r["qa_accuracy"])
        ax.scatter(x, y, color=color[k], s=40)
        ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log; 1 = none)")
    ax.set_ylabel("multiple-choice accuracy (man-page questions)")
    ax.set_title("SmolLM2-135M on the Linux manual: accuracy vs trainable parameters")
    for k, c in color.items():
        ax.scatter([], [], color=c, label=k)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(f"{out}/accuracy_vs_trainable.png", dpi=110)

    if base:
        bd, bg = float(base["domain_ppl"]), float(base["general_ppl"])
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            if r["method"] in ("few-shot", "retrieval"):
                continue  # the same weights as zero-shot: perplexity unchanged
            k = kind.get(r["method"], "weights")
            gain = 100.0 * (1.0 - float(r["domain_ppl"]) / bd)
            forget = 100.0 * (float(r["general_ppl"]) / bg - 1.0)
            ax.scatter(forget, gain, color=color[k], s=40)
            ax.annotate(r["method"], (forget, gain), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("general perplexity change vs zero-shot, % (right = forgetting)")
        ax.set_ylabel("domain perplexity reduction vs zero-shot, %")
        ax.set_title("Domain gain vs forgetting (same token budget)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(f"{out}/gain_vs_forgetting.png", dpi=110)
    print(f"plot_bench: {out}/accuracy_vs_trainable.png, {out}/gain_vs_forgetting.png")


if __name__ == "__main__":
    main()
