#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with torch, transformers, peft): greedy
continuations of prompts by a `hone export --format hf` folder (DIR, or BASE_DIR::ADAPTER_DIR
for a `--format peft` adapter on it), N new tokens each or up to the end-of-text id, decoded
by the folder's own tokenizer. Prints one JSON list of strings.
  hf_generate.py DIR N PROMPT...
"""
import json
import sys

import torch
import transformers


def main():
    d, n, prompts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    adapter = None
    if "::" in d:
        d, adapter = d.split("::")
    tok = transformers.AutoTokenizer.from_pretrained(d)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
    if adapter:
        import peft

        model = peft.PeftModel.from_pretrained(model, adapter)
    model.eval()
    eos = tok.eos_token_id
    out = []
    with torch.no_grad():
        for p in prompts:
            seq = tok(p, add_special_tokens=False)["input_ids"]
            new = []
            # greedy by hand: model.generate trips over Debian's torch 1.13 on Python 3.11
            for _ in range(n):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                if nxt == eos:
                    break
                new.append(nxt)
                seq.append(nxt)
            out.append(tok.decode(new))
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
