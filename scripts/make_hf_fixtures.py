#!/usr/bin/python3
"""
Tiny Hugging Face model folders for `hone import` (tests/golden/test_import_hf.c and
tests/cli/test_import_hf.sh), written by transformers' own save_pretrained, with the
logits transformers computes for them:

  tests/fixtures/hf/gpt2_tiny/    GPT2LMHeadModel, 2 layers, 64 channels, 4 heads, vocab 300,
                                  32 positions, stored in F16; vocab.json + merges.txt
  tests/fixtures/hf/llama_tiny/   LlamaForCausalLM, 2 layers, 64 hidden, 4 heads, 2 kv heads,
                                  160 intermediate, vocab 300, untied lm_head, F32;
                                  tokenizer.json
  tests/fixtures/hf/llama_tied/   the same shape with tie_word_embeddings, stored in BF16;
                                  no tokenizer
  tests/fixtures/hf/reference.safetensors
    <name>.ids      32 input ids (I32): a sentence encoded by the folder's tokenizer (the
                    HF one), padded with fixed ids to 32
    <name>.logits   transformers' float32 logits at every position (32, 300)
    and in the metadata <name>.ppl: exp(mean NLL of ids[1:] given ids[:-1]), as
    `hone eval --task ppl` scores a token shard of the ids, and "text": the sentence.

Weights are random (torch.manual_seed) with a larger std than the default 0.02 so the
logits are far from uniform and a wrong transposition or permutation shows. Logits are
computed in float32 from the weights as stored (F16/BF16 values rounded first), with
attn_implementation="eager".

Interpreter: Debian's /usr/bin/python3 with torch 1.13, transformers 4.46.3, tokenizers
0.20.3 and safetensors.
"""

import json
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "hf")
TEXT = "The quick brown fox jumps over the lazy dog."
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A model that reads the same weights must write the same logits.",
    "Every tensor is checked against the shape the config implies.",
    "hone imports Hugging Face folders: config.json and model.safetensors.",
] * 20
VOCAB = 300
T = 32


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    return tok


def input_ids(tok):
    ids = tok.encode(TEXT).ids
    assert len(ids) < T, len(ids)
    filler = [(7 * i + 3) % VOCAB for i in range(T - len(ids))]
    return ids + filler


def randomize(model, std, dtype):
    """normal(0, std) weights, norm gains near 1, biases small; rounded to dtype"""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                x = 1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p)
            elif name.endswith("bias"):
                x = 0.05 * torch.randn_like(p)
            else:
                x = std * torch.randn_like(p)
            p.copy_(x.to(dtype).float())


def reference(model, ids):
    model.eval()
    with torch.no_grad():
        x = torch.tensor([ids])
        logits = model(x).logits[0].float()
        nll = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="mean")
    return logits.numpy().astype(np.float32), float(np.exp(nll.item()))


def save(model, name, dtype):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    model.to(dtype).save_pretrained(path, safe_serialization=True)
    os.remove(os.path.join(path, "generation_config.json"))
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = train_tokenizer()
    ids = input_ids(tok)
    tensors, meta = {}, {"text": TEXT}

    torch.manual_seed(1)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=T, n_inner=None,
                     attn_implementation="eager")
    gpt2 = GPT2LMHeadModel(cfg)
    randomize(gpt2, 0.1, torch.float16)
    logits, ppl = reference(gpt2, ids)
    path = save(gpt2, "gpt2_tiny", torch.float16)
    tok.model.save(path)  # vocab.json + merges.txt
    tensors["gpt2_tiny.ids"], tensors["gpt2_tiny.logits"], meta["gpt2_tiny.ppl"] = ids, logits, repr(ppl)

    for name, tied, dtype, seed in [("llama_tiny", False, torch.float32, 2),
                                    ("llama_tied", True, torch.bfloat16, 3)]:
        torch.manual_seed(seed)
        cfg = LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=160, vocab_size=VOCAB, max_position_embeddings=T,
                          rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied,
                          attn_implementation="eager")
        llama = LlamaForCausalLM(cfg)
        randomize(llama, 0.1, dtype)
        if tied:
            assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()
        logits, ppl = reference(llama, ids)
        path = save(llama, name, dtype)
        if not tied:
            tok.save(os.path.join(path, "tokenizer.json"))
        tensors[name + ".ids"], tensors[name + ".logits"], meta[name + ".ppl"] = ids, logits, repr(ppl)
        print(f"{name}: ppl {ppl:.6f}")
    print(f"gpt2_tiny: ppl {float(meta['gpt2_tiny.ppl']):.6f}")

    arrays = {k: (np.asarray(v, dtype=np.int32) if k.endswith(".ids") else v) for k, v in tensors.items()}
    save_file(arrays, os.path.join(OUT, "reference.safetensors"), metadata=meta)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Tiny HF model folders and transformers' logits for them; written by "
                "scripts/make_hf_fixtures.py (see its docstring). Do not edit by hand.\n")


if __name__ == "__main__":
    main()
