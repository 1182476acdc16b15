#!/usr/bin/python3
"""
Forward-only evaluation speed of SmolLM2-135M on the CPU, hone against transformers, in one
script: both score the same 512-token windows of the same ids (perplexity, no gradients),
2 threads. hone runs as the real CLI (`hone eval --task ppl` on a token shard); its
checkpoint-loading time is removed by timing 1 and 9 windows and taking the difference.
transformers (PyTorch CPU) loads the same GGUF and runs the same windows.

Interpreter: Debian's /usr/bin/python3 with python3-torch 1.13 and transformers 4.46.3,
accelerate, gguf (PyPI). Needs models/ from scripts/get_model.sh and build/hone.
  /usr/bin/python3 benchmarks/smollm2_eval_bench.py
Writes benchmarks/results/smollm2_eval.{json,md}.
"""
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS, WINDOW, WINDOWS = 2, 512, 9
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def write_shard(path, ids):
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253)))
        f.write(np.asarray(ids, dtype="<u2").tobytes())


def hone_seconds(shard):
    t = time.perf_counter()
    subprocess.run([os.path.join(ROOT, "build", "hone"), "eval", os.path.join(ROOT, "models", "smollm2.h5"),
                    "--task", "ppl", "--data", shard, "--context", str(WINDOW)],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS=str(THREADS)))
    return time.perf_counter() - t


def main():
    ids = np.random.default_rng(1).integers(0, 49152, WINDOWS * WINDOW + 1)
    with tempfile.TemporaryDirectory() as d:
        one, many = os.path.join(d, "one.bin"), os.path.join(d, "many.bin")
        write_shard(one, ids[: WINDOW + 1])
        write_shard(many, ids)
        hone_seconds(one)  # warm the page cache
        t1 = min(hone_seconds(one) for _ in range(2))
        tn = min(hone_seconds(many) for _ in range(2))
    hone_tps = (WINDOWS - 1) * WINDOW / (tn - t1)

    from transformers import AutoModelForCausalLM
    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "models"),
                                                 gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                 torch_dtype=torch.float32)
    model.lm_head.weight = model.model.embed_tokens.weight  # the GGUF's classifier is tied
    model.eval()
    times = []
    with torch.no_grad():
        for w in range(WINDOWS):
            x = torch.tensor(ids[w * WINDOW: (w + 1) * WINDOW + 1]).long()
            t = time.perf_counter()
            logits = model(x[None, :-1]).logits[0]
            torch.nn.functional.cross_entropy(logits, x[1:], reduction="sum")
            times.append(time.perf_counter() - t)
    tf_tps = WINDOW / float(np.median(times[1:]))
    import transformers
    res = {"date": datetime.date.today().isoformat(), "threads": THREADS, "window": WINDOW,
           "hone_tokens_per_s": round(hone_tps, 1), "transformers_tokens_per_s": round(tf_tps, 1),
           "ratio": round(hone_tps / tf_tps, 2), "transformers": transformers.__version__,
           "torch": torch.__version__.split("+")[0]}
    print(json.dumps(res))
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "smollm2_eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(ROOT, "benchmarks", "results", "smollm2_eval.md"), "w") as f:
        f.write("# SmolLM2-135M forward-only evaluation on the CPU\n\n"
                f"{res['date']}, {THREADS} threads, {WINDOW}-token windows of the same ids, one run.\n\n"
                "| implementation | tokens/s |\n|---|---:|\n"
                f"| hone (`hone eval --task ppl`, load time removed) | {hone_tps:.0f} |\n"
                f"| transformers {res['transformers']} + torch {res['torch']} | {tf_tps:.0f} |\n\n"
                f"hone / transformers: **{res['ratio']:.2f}x**\n")


if __name__ == "__main__":
    sys.exit(main())
