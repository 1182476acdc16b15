#!/usr/bin/python3
"""
The PyTorch CPU baseline for hone's training-step benchmark: one full step of GPT-2 124M
(forward, cross-entropy, backward, AdamW step, zero_grad) in fp32 on random weights and
random tokens, with the plain-PyTorch model of scripts/torch_gpt2.py (the same one the test
fixtures come from). Prints one JSON line:
  {"impl":"pytorch","torch":...,"threads":N,"median_ms":...,"all_ms":[...],"peak_rss_mb":...}

Interpreter: Debian's /usr/bin/python3 with python3-torch (1.13). Exit status 3 if torch
cannot be imported.
  /usr/bin/python3 benchmarks/bench_torch_step.py --threads 2 --steps 5
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

# GPT-2 124M; the vocabulary padded to a multiple of 128 as hone pads it
L, C, NH, V, VP, MAXT = 12, 768, 12, 50257, 50304, 1024


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    return ap.parse_args()


args = parse_args()
# Debian's torch does its GEMMs in OpenBLAS, whose own thread pool torch.set_num_threads
# does not size; it reads these when it loads, so they are set before the import.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[var] = str(args.threads)
try:
    import torch
except ImportError as e:
    print(f"bench_torch_step: cannot import torch ({e}); install python3-torch", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
import torch_gpt2 as tg  # noqa: E402


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = tg.GPT2(L, C, NH, V, VP, MAXT)
    model.init_weights(torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(tg.param_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, V, (args.batch, args.seq))
    targets = torch.randint(0, V, (args.batch, args.seq))

    def step():
        total, count = tg.loss_sum(model(tokens), targets)
        (total / count).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "B": args.batch,
        "T": args.seq,
        "median_ms": round(statistics.median(times), 3),
        "all_ms": [round(t, 3) for t in times],
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
    }))


if __name__ == "__main__":
    main()
