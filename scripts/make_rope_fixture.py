#!/usr/bin/env python3
"""Writes tests/fixtures/rope_hf.txt: a small input and its rotary embedding as computed by
HF transformers' Llama code (LlamaRotaryEmbedding + apply_rotary_pos_emb), so that
tests/unit/test_ops_llama.c checks hone's RoPE convention against a reference that does not
come from hone's own formula.

Needs torch and transformers (run with Debian's /usr/bin/python3):
    /usr/bin/python3 scripts/make_rope_fixture.py

File format, whitespace-separated numbers after the '#' comment lines:
    B T nheads HS pos0 theta
    B*T*nheads*HS input values, in hone's layout (B, T, nheads*HS)
    B*T*nheads*HS expected output values, same layout
"""
import os

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

B, T, NHEADS, HS, POS0, THETA = 1, 5, 2, 8, 3, 10000.0


def main():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=NHEADS * HS, num_attention_heads=NHEADS,
                         num_key_value_heads=NHEADS, rope_theta=THETA,
                         max_position_embeddings=64)
    rotary = LlamaRotaryEmbedding(config=config)
    # HF's layout is (B, nheads, T, HS); hone's is (B, T, nheads*HS)
    x = torch.randn(B, NHEADS, T, HS, dtype=torch.float32)
    positions = torch.arange(POS0, POS0 + T).unsqueeze(0).expand(B, T)
    cos, sin = rotary(x, positions)
    y, _ = apply_rotary_pos_emb(x, x, cos, sin)

    def hone_layout(t):
        return t.permute(0, 2, 1, 3).reshape(-1).tolist()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "rope_hf.txt")
    with open(path, "w") as f:
        f.write("# RoPE reference from transformers.models.llama.modeling_llama "
                "(written by scripts/make_rope_fixture.py)\n")
        f.write("# B T nheads HS pos0 theta, then the input, then the expected output\n")
        f.write(f"{B} {T} {NHEADS} {HS} {POS0} {THETA:g}\n")
        for values in (hone_layout(x), hone_layout(y)):
            for i in range(0, len(values), NHEADS * HS):
                f.write(" ".join(f"{v:.9g}" for v in values[i:i + NHEADS * HS]) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
