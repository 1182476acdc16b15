#!/usr/bin/python3
"""
Writes tests/fixtures/llama_tiny.safetensors: a tiny Llama made by Hugging Face
transformers' LlamaForCausalLM (RMSNorm, RoPE, SwiGLU, grouped-query attention with 4
query heads sharing 2 key/value heads, tied embeddings), random non-trivial weights, one
forward/backward (logits, loss, every gradient) and ten AdamW steps with accumulation,
clipping and the cosine schedule, all stored under hone's parameter-row names.

Interpreter: Debian's /usr/bin/python3 with python3-torch (1.13) and transformers 4.44.2
from PyPI (pip install --break-system-packages transformers==4.44.2). The attention runs in
transformers' "eager" implementation (SDPA needs a newer torch).
Run from anywhere:  /usr/bin/python3 scripts/make_llama_fixture.py
"""

import os
import sys

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (safetensors writer, batches, training constants)
import torch_gpt2 as tg  # noqa: E402  (loss, AdamW groups, schedule)

L, C, NH, NKV, F, V, Vp, MAXT, EPS, THETA = 2, 64, 4, 2, 160, 300, 384, 32, 1e-5, 10000.0
B, T = mf.B, mf.T


def hone_names(L):
    """hone row name -> the transformers parameter name"""
    m = {"tok_embed.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight"}
    for l in range(L):
        p = f"model.layers.{l}."
        m.update({
            f"layers.{l}.attn_norm.weight": p + "input_layernorm.weight",
            f"layers.{l}.attn.q.weight": p + "self_attn.q_proj.weight",
            f"layers.{l}.attn.k.weight": p + "self_attn.k_proj.weight",
            f"layers.{l}.attn.v.weight": p + "self_attn.v_proj.weight",
            f"layers.{l}.attn.o.weight": p + "self_attn.o_proj.weight",
            f"layers.{l}.mlp_norm.weight": p + "post_attention_layernorm.weight",
            f"layers.{l}.mlp.gate.weight": p + "mlp.gate_proj.weight",
            f"layers.{l}.mlp.up.weight": p + "mlp.up_proj.weight",
            f"layers.{l}.mlp.down.weight": p + "mlp.down_proj.weight",
        })
    return m


def pad_vocab(name, t):
    """hone keeps the embedding padded to Vp rows; the padded rows are zero"""
    if name != "tok_embed.weight":
        return t
    out = torch.zeros(Vp, t.shape[1], dtype=t.dtype)
    out[: t.shape[0]] = t
    return out


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                      num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=MAXT,
                      rms_norm_eps=EPS, rope_theta=THETA, tie_word_embeddings=True,
                      attention_bias=False, mlp_bias=False, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).float()
    gen = torch.Generator().manual_seed(4321)
    names = hone_names(L)
    hf = dict(model.named_parameters())
    with torch.no_grad():
        for hone, hname in names.items():
            p = hf[hname]
            if "norm" in hone:  # gains near 1, not exactly 1, so their gradients matter
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    init = {h: hf[n].detach().clone() for h, n in names.items()}

    data = torch.Generator().manual_seed(8765)
    tokens, targets = mf.random_batch(data, B, T)
    train_tokens, train_targets = mf.random_batch(data, mf.STEPS, mf.ACCUM, B, T)

    def logits_of(tok):
        return model(input_ids=tok.long()).logits

    model.zero_grad(set_to_none=True)
    logits = logits_of(tokens)
    total, count = tg.loss_sum(logits, targets)
    loss = total / count
    loss.backward()
    grads = {h: hf[n].grad.detach().clone() for h, n in names.items()}

    # ten AdamW steps, hone's rules: decay by name patterns, clip, cosine schedule, accum
    named = [(h, hf[n]) for h, n in names.items()]
    groups = [{"params": [p for h, p in named if tg.decays(h)], "weight_decay": mf.WEIGHT_DECAY},
              {"params": [p for h, p in named if not tg.decays(h)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=mf.LR, betas=(mf.BETA1, mf.BETA2), eps=mf.ADAM_EPS)
    params = [p for _, p in named]
    opt.zero_grad(set_to_none=True)
    losses, norms, lrs = [], [], []
    for s in range(mf.STEPS):
        lr = tg.cosine_lr(s, mf.LR, mf.WARMUP, mf.STEPS, mf.MIN_LR_RATIO)
        for g in opt.param_groups:
            g["lr"] = lr
        cnt = int((train_targets[s] != tg.IGNORE).sum())
        step_loss = 0.0
        for k in range(mf.ACCUM):
            tot, _ = tg.loss_sum(logits_of(train_tokens[s, k]), train_targets[s, k])
            (tot / cnt).backward()
            step_loss += (tot / cnt).item()
        norm = torch.nn.utils.clip_grad_norm_(params, mf.CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(float(norm))
        lrs.append(lr)
        print(f"step {s} loss {step_loss:.6f} norm {float(norm):.5f}{' (clipped)' if norm > mf.CLIP else ''}")

    f32, i32, entry = mf.f32, mf.i32, mf.entry
    tensors = [entry("param." + h, f32(pad_vocab(h, init[h]))) for h in names]
    tensors += [entry("input.tokens", i32(tokens)), entry("input.targets", i32(targets)),
                entry("out.logits", f32(logits)), entry("out.loss", f32(loss.reshape(1)))]
    tensors += [entry("grad." + h, f32(pad_vocab(h, grads[h]))) for h in names]
    tensors += [entry("train.tokens", i32(train_tokens)), entry("train.targets", i32(train_targets)),
                entry("train.losses", np.array(losses, dtype=np.float32)),
                entry("train.grad_norms", np.array(norms, dtype=np.float32)),
                entry("train.lrs", np.array(lrs, dtype=np.float32))]
    tensors += [entry("final." + h, f32(pad_vocab(h, hf[n]))) for h, n in names.items()]
    import transformers
    meta = {"arch": "llama", "L": str(L), "C": str(C), "NH": str(NH), "NKV": str(NKV), "F": str(F),
            "V": str(V), "Vp": str(Vp), "maxT": str(MAXT), "B": str(B), "T": str(T), "eps": repr(EPS),
            "rope_theta": repr(THETA), "lr": repr(mf.LR), "beta1": repr(mf.BETA1), "beta2": repr(mf.BETA2),
            "adam_eps": repr(mf.ADAM_EPS), "weight_decay": repr(mf.WEIGHT_DECAY), "warmup": str(mf.WARMUP),
            "steps": str(mf.STEPS), "min_lr_ratio": repr(mf.MIN_LR_RATIO), "clip": repr(mf.CLIP),
            "accum": str(mf.ACCUM), "schedule": "cosine", "no_decay": ",".join(tg.NO_DECAY_PATTERNS),
            "generator": f"scripts/make_llama_fixture.py, transformers {transformers.__version__} "
                         f"LlamaForCausalLM (eager attention), torch {torch.__version__.split('+')[0]}"}
    path = os.path.join(mf.FIXTURES, "llama_tiny.safetensors")
    mf.write_safetensors(path, tensors, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
