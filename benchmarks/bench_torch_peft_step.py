#!/usr/bin/python3
"""
The PyTorch CPU baseline for hone's parameter-efficient step benchmark: one training step of
GPT-2 124M (forward, cross-entropy, backward, AdamW step, zero_grad) in fp32 on random weights
and random tokens, with transformers' GPT2LMHeadModel built from GPT2Config() (124M, eager
attention, dropout 0), either fully fine-tuned or with PEFT's LoRA r=8 alpha=16 on c_attn
(get_peft_model, LoraConfig(target_modules=["c_attn"], fan_in_fan_out=True)), or PEFT's prefix
tuning (PrefixTuningConfig(num_virtual_tokens=16): 16 past keys/values per layer, no projection)
or prompt tuning (PromptTuningConfig(num_virtual_tokens=16, random init): 16 virtual tokens
prepended, whose logits the loss leaves out), both task_type CAUSAL_LM. One method per
process, so the peak RSS is that method's. Prints one JSON line:
  {"impl":"pytorch","method":...,"torch":...,"transformers":...,"peft":...,"threads":N,
   "trainable_params":...,"total_params":...,"median_ms":...,"all_ms":[...],"peak_rss_mb":...}

LoRA's B starts at zero in PEFT; it is set to normal(0, 0.02) here, as hone's benchmark does,
so the adapter's path carries real values. AdamW updates the trainable parameters only; as in
hone, weight decay applies to the base's matrices (full) and not to the adapters.

Interpreter: Debian's /usr/bin/python3 with python3-torch (1.13), transformers and peft.
Exit status 3 if one of them cannot be imported.
  /usr/bin/python3 benchmarks/bench_torch_peft_step.py --method lora --threads 2 --steps 7
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--method", choices=("full", "lora", "prefix", "prompt"), required=True)
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
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
try:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel
    import peft
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
except ImportError as e:
    print(f"bench_torch_peft_step: cannot import ({e}); needs python3-torch, transformers, peft",
          file=sys.stderr)
    sys.exit(3)


VIRTUAL = 16  # prefix / prompt tuning's virtual tokens


def build(method):
    cfg = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # GPT-2 124M
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg)  # random init (normal 0.02)
    if method == "full":
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": 0.1},
                  {"params": no_decay, "weight_decay": 0.0}]
    elif method in ("prefix", "prompt"):
        conf = (PrefixTuningConfig if method == "prefix" else PromptTuningConfig)(
            task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL)
        model = get_peft_model(model, conf)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad],
                   "weight_decay": 0.0}]
    else:
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["c_attn"], fan_in_fan_out=True))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.02)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad],
                   "weight_decay": 0.0}]
    model.train()
    return model, groups


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, groups = build(args.method)
    trainable = sum(p.numel() for g in groups for p in g["params"])
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    V = model.config.vocab_size
    tokens = torch.randint(0, V, (args.batch, args.seq))
    targets = torch.randint(0, V, (args.batch, args.seq))
    loss_box = [0.0]

    def step():
        logits = model(input_ids=tokens).logits
        if args.method == "prompt":  # the virtual tokens' positions come first
            logits = logits[:, VIRTUAL:]
        loss = F.cross_entropy(logits.reshape(-1, V), targets.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_box[0] = loss.item()

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
        "method": args.method,
        "model": "transformers GPT2LMHeadModel" + {
            "full": "", "lora": " + peft LoRA c_attn", "prefix": " + peft prefix tuning 16",
            "prompt": " + peft prompt tuning 16"}[args.method],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": args.threads,
        "B": args.batch,
        "T": args.seq,
        "positions": args.seq + (VIRTUAL if args.method == "prompt" else 0),
        "prefix": VIRTUAL if args.method == "prefix" else 0,
        "trainable_params": trainable,
        "total_params": total,
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "all_ms": [round(t, 1) for t in times],
        "peak_rss_mb": round(peak_kb / 1024.0),
        "tokens_per_s": round(1000.0 * args.batch * args.seq / statistics.median(times)),
        "loss": round(loss_box[0], 4),
    }))


if __name__ == "__main__":
    main()
