#!/usr/bin/python3
"""
Writes tests/fixtures/gguf/gpt2_tiny.gguf: the tiny Hugging Face GPT-2 of
tests/fixtures/hf/gpt2_tiny converted to GGUF the way llama.cpp's converter does it for
the gpt2 architecture (its tensor names, Conv1D weights transposed to (out, in), the
tokenizer as tokenizer.ggml.* arrays). tests/cli/test_cli_import.sh imports it and checks
that the perplexity of the reference ids equals the one transformers computed for the HF
model (tests/fixtures/hf/reference.safetensors), so the GGUF path for gpt2 is checked
against an independent implementation.

Interpreter: Debian's /usr/bin/python3 with python3-torch 1.13, transformers 4.46.3 and
gguf 0.10.0 from PyPI. Run: /usr/bin/python3 scripts/make_gguf_gpt2_fixture.py
"""
import json
import os

import gguf
import numpy as np
import torch
from transformers import GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "fixtures", "hf", "gpt2_tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf", "gpt2_tiny.gguf")


def main():
    model = GPT2LMHeadModel.from_pretrained(SRC, torch_dtype=torch.float32)
    cfg = model.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(OUT, "gpt2")
    w.add_name("hone gpt2_tiny fixture")
    w.add_block_count(cfg.n_layer)
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type(0)

    vocab = json.load(open(os.path.join(SRC, "vocab.json"), encoding="utf-8"))
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m for m in open(os.path.join(SRC, "merges.txt"), encoding="utf-8").read().split("\n")
              if m and not m.startswith("#version")]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.add_bos_token_id(vocab["<|endoftext|>"])

    def put(name, array):
        w.add_tensor(name, np.ascontiguousarray(array))

    put("token_embd.weight", sd["transformer.wte.weight"])
    put("position_embd.weight", sd["transformer.wpe.weight"])
    for l in range(cfg.n_layer):
        h = f"transformer.h.{l}."
        b = f"blk.{l}."
        put(b + "attn_norm.weight", sd[h + "ln_1.weight"])
        put(b + "attn_norm.bias", sd[h + "ln_1.bias"])
        put(b + "attn_qkv.weight", sd[h + "attn.c_attn.weight"].T)  # Conv1D is (in, out)
        put(b + "attn_qkv.bias", sd[h + "attn.c_attn.bias"])
        put(b + "attn_output.weight", sd[h + "attn.c_proj.weight"].T)
        put(b + "attn_output.bias", sd[h + "attn.c_proj.bias"])
        put(b + "ffn_norm.weight", sd[h + "ln_2.weight"])
        put(b + "ffn_norm.bias", sd[h + "ln_2.bias"])
        put(b + "ffn_up.weight", sd[h + "mlp.c_fc.weight"].T)
        put(b + "ffn_up.bias", sd[h + "mlp.c_fc.bias"])
        put(b + "ffn_down.weight", sd[h + "mlp.c_proj.weight"].T)
        put(b + "ffn_down.bias", sd[h + "mlp.c_proj.bias"])
    put("output_norm.weight", sd["transformer.ln_f.weight"])
    put("output_norm.bias", sd["transformer.ln_f.bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
