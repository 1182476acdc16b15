#!/usr/bin/python3
"""
Writes the reference fixtures the C tests compare hone against, from an independent
plain-PyTorch GPT-2 (scripts/torch_gpt2.py):

  tests/fixtures/gpt2_tiny.safetensors   a tiny GPT-2's parameters, one forward/backward
                                         (logits, loss, every gradient) and ten AdamW steps
                                         with accumulation, clipping and a cosine schedule
  tests/fixtures/st_dtypes.safetensors   small tensors of every dtype hone reads, with values
                                         exactly representable in each, for the reader's test

Interpreter: Debian's /usr/bin/python3 with python3-torch (1.13) and python3-numpy; no
transformers, no safetensors package (the writer below is hand-written).
Run from anywhere:  /usr/bin/python3 scripts/make_fixtures.py
Rerunning reproduces both files bit for bit (fixed seeds, one thread). It also prints how
far float32 is from a float64 run of the same computation; the C tests' tolerances are
stated from those numbers.
"""

import copy
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt2 as tg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# model
L, C, NH, V, Vp, MAXT, EPS = 2, 64, 4, 300, 384, 32, 1e-5
# one forward/backward
B, T = 2, 16
IGNORE_FRACTION = 0.2
# training
LR, BETA1, BETA2, ADAM_EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1
# With random targets the tied classifier's gradient alone has a norm near
# sqrt(C / counted tokens) ~ 1.1, and this run's pre-clip norms lie in 1.4..2.1; a clip of 1.6
# makes some steps clip and some not, so a test sees both branches.
WARMUP, STEPS, MIN_LR_RATIO, CLIP, ACCUM = 3, 10, 0.1, 1.6, 2
INIT_STD, NORM_NOISE = 0.02, 0.1


# ---- safetensors ----

def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype string, shape, raw little-endian bytes), in file order"""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, raw in tensors:
            f.write(raw)


DTYPES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16",
          np.dtype("int32"): "I32", np.dtype("int64"): "I64"}


def entry(name, array):
    a = np.array(array, order="C")  # (ascontiguousarray would make a scalar 1-d)
    return (name, DTYPES[a.dtype], a.shape, a.astype(a.dtype.newbyteorder("<")).tobytes())


def f32(t):
    return t.detach().to(torch.float32).numpy()


def i32(t):
    return t.to(torch.int32).numpy()


# ---- the reference computation ----

def random_batch(gen, *shape):
    """tokens in [0, V); targets in [0, V) with about IGNORE_FRACTION of them ignored"""
    tokens = torch.randint(0, V, shape, generator=gen)
    targets = torch.randint(0, V, shape, generator=gen)
    ignored = torch.rand(shape, generator=gen) < IGNORE_FRACTION
    targets[ignored] = tg.IGNORE
    return tokens, targets


def forward_backward(model, tokens, targets):
    """logits, mean loss over counted positions, and the gradients it leaves in model"""
    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    total, count = tg.loss_sum(logits, targets)
    assert count > 0
    loss = total / count
    loss.backward()
    return logits, loss


def train(model, tokens, targets):
    """STEPS AdamW steps; each step's loss is the mean over all counted tokens of its ACCUM
    micro-batches. Returns per-step losses, pre-clip gradient norms and learning rates."""
    opt = torch.optim.AdamW(tg.param_groups(model, WEIGHT_DECAY), lr=LR,
                            betas=(BETA1, BETA2), eps=ADAM_EPS)
    params = [p for p in model.parameters()]
    opt.zero_grad(set_to_none=True)
    losses, norms, lrs = [], [], []
    for s in range(STEPS):
        lr = tg.cosine_lr(s, LR, WARMUP, STEPS, MIN_LR_RATIO)
        for group in opt.param_groups:
            group["lr"] = lr
        count = int((targets[s] != tg.IGNORE).sum())
        assert count > 0
        step_loss = 0.0
        for m in range(ACCUM):
            total, _ = tg.loss_sum(model(tokens[s, m]), targets[s, m])
            (total / count).backward()
            step_loss += (total / count).item()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(float(norm))
        lrs.append(lr)
    return losses, norms, lrs


def rel_diff(a, ref):
    """max |a - ref| / max |ref|: the error relative to the tensor's scale"""
    a, ref = a.detach().double(), ref.detach().double()
    scale = ref.abs().max().item()
    return (a - ref).abs().max().item() / scale if scale > 0 else (a - ref).abs().max().item()


def report_precision(title, rows):
    print(title)
    for name, d in rows:
        print(f"  {name:<40s} {d:.3e}")
    print(f"  {'max':<40s} {max(d for _, d in rows):.3e}")


def make_gpt2_tiny():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    model = tg.GPT2(L, C, NH, V, Vp, MAXT, EPS)
    model.init_weights(gen, std=INIT_STD, norm_noise=NORM_NOISE)
    names = [n for n, _ in model.named_parameters()]
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    model64 = copy.deepcopy(model).double()

    data = torch.Generator().manual_seed(5678)
    tokens, targets = random_batch(data, B, T)
    train_tokens, train_targets = random_batch(data, STEPS, ACCUM, B, T)

    logits, loss = forward_backward(model, tokens, targets)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    assert all(grads["tok_embed.weight"][V:].flatten() == 0)

    logits64, loss64 = forward_backward(model64, tokens, targets)
    report_precision("float32 vs float64, one forward/backward (max|d| / max|ref| per tensor):",
                     [("out.logits", rel_diff(logits, logits64)),
                      ("out.loss", rel_diff(loss, loss64))]
                     + [("grad." + n, rel_diff(grads[n], p.grad))
                        for n, p in model64.named_parameters()])

    losses, norms, lrs = train(model, train_tokens, train_targets)
    losses64, norms64, _ = train(model64, train_tokens, train_targets)
    final64 = dict(model64.named_parameters())
    print("training: step  loss  pre-clip grad norm  lr")
    for s in range(STEPS):
        print(f"  {s}  {losses[s]:.6f}  {norms[s]:.6f}{' (clipped)' if norms[s] > CLIP else ''}"
              f"  {lrs[s]:.6e}")
    assert any(n > CLIP for n in norms), "clipping never triggers"
    assert any(n <= CLIP for n in norms), "clipping always triggers"
    report_precision("float32 vs float64, training:",
                     [("train.losses", rel_diff(torch.tensor(losses), torch.tensor(losses64))),
                      ("train.grad_norms", rel_diff(torch.tensor(norms), torch.tensor(norms64)))]
                     + [("final." + n, rel_diff(p, final64[n]))
                        for n, p in model.named_parameters()])
    worst = max((final64[n] - p).abs().max().item() for n, p in model.named_parameters())
    print(f"  max |final32 - final64| over all parameters: {worst:.3e} (lr peak {LR})")

    tensors = [entry("param." + n, f32(init[n])) for n in names]
    tensors += [entry("input.tokens", i32(tokens)), entry("input.targets", i32(targets)),
                entry("out.logits", f32(logits)), entry("out.loss", f32(loss.reshape(1)))]
    tensors += [entry("grad." + n, f32(grads[n])) for n in names]
    tensors += [entry("train.tokens", i32(train_tokens)),
                entry("train.targets", i32(train_targets)),
                entry("train.losses", np.array(losses, dtype=np.float32)),
                entry("train.grad_norms", np.array(norms, dtype=np.float32)),
                entry("train.lrs", np.array(lrs, dtype=np.float32))]
    tensors += [entry("final." + n, f32(p)) for n, p in model.named_parameters()]
    metadata = {
        "L": str(L), "C": str(C), "NH": str(NH), "V": str(V), "Vp": str(Vp),
        "maxT": str(MAXT), "B": str(B), "T": str(T), "eps": repr(EPS), "lr": repr(LR),
        "beta1": repr(BETA1), "beta2": repr(BETA2), "adam_eps": repr(ADAM_EPS),
        "weight_decay": repr(WEIGHT_DECAY), "warmup": str(WARMUP), "steps": str(STEPS),
        "min_lr_ratio": repr(MIN_LR_RATIO), "clip": repr(CLIP), "accum": str(ACCUM),
        "schedule": "cosine", "no_decay": ",".join(tg.NO_DECAY_PATTERNS),
        "generator": "scripts/make_fixtures.py, torch " + torch.__version__.split("+")[0],
    }
    path = os.path.join(FIXTURES, "gpt2_tiny.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def make_st_dtypes():
    """Values exactly representable in their dtype, so the reader's test compares exactly.
    f16 covers the largest finite value, the smallest normal and the smallest subnormal;
    bf16 (stored as the top half of float32 bits) covers a large exponent and a subnormal."""
    bf16_values = np.array([1.0, -3.0, 0.15625, 2.0**100, 2.0**-130], dtype=np.float32)
    bf16_bits = (bf16_values.view(np.uint32) >> 16).astype("<u2")
    assert np.array_equal((bf16_bits.astype(np.uint32) << 16).view(np.float32), bf16_values)
    tensors = [
        entry("f32", np.array([[0.0, 1.0, -2.0], [0.5, 3.25, -1024.0]], dtype=np.float32)),
        entry("f16", np.array([[1.0, -2.5, 65504.0, 2.0**-14],
                               [2.0**-24, 0.0, 3.140625, -0.0009765625]], dtype=np.float16)),
        ("bf16", "BF16", bf16_values.shape, bf16_bits.tobytes()),
        entry("i32", np.array([[0, -1], [2147483647, -2147483648]], dtype=np.int32)),
        entry("i64", np.array([5, -7, 2147483647, -2147483648], dtype=np.int64)),
        entry("i64_big", np.array([2**40], dtype=np.int64)),
        entry("scalar", np.array(42.0, dtype=np.float32)),
        entry("empty", np.zeros((0, 3), dtype=np.float32)),
    ]
    path = os.path.join(FIXTURES, "st_dtypes.safetensors")
    write_safetensors(path, tensors, {"format": "pt", "note": "hone dtype fixture"})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    os.makedirs(FIXTURES, exist_ok=True)
    make_st_dtypes()
    make_gpt2_tiny()
