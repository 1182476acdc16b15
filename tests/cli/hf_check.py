#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with python3-torch and transformers): load a
`hone export --format hf` folder with transformers and print, as one JSON line,
  - "loss": the mean next-token negative log-likelihood of the ids in IDS_FILE (a hone
    token shard: 1024-byte header, then uint16 or uint32 ids) in windows of T as `hone eval
    --task ppl` takes them, T = the context less a PEFT adapter's virtual positions;
  - "greedy": the ids of a greedy continuation of PROMPT_IDS (comma separated), N tokens;
  - "tokens" (when the folder has a tokenizer and TEXT is given): the ids of TEXT.
  hf_check.py DIR IDS_FILE PROMPT_IDS N [TEXT]
DIR may be BASE_DIR::ADAPTER_DIR: a `hone export --format peft` adapter that peft's
PeftModel.from_pretrained puts on the hf export BASE_DIR.
"""
import json
import sys

import numpy as np
import torch
import transformers


def main():
    d, ids_file, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    adapter = None
    if "::" in d:
        d, adapter = d.split("::")
    model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
    if adapter:
        import peft

        model = peft.PeftModel.from_pretrained(model, adapter)
    model.eval()
    cfg = model.config if not adapter else model.get_base_model().config
    T = getattr(cfg, "n_positions", None) or cfg.max_position_embeddings
    if adapter:  # prefix and virtual tokens take positions of the context, as in hone
        with open(adapter + "/adapter_config.json") as f:
            ac = json.load(f)
        if ac["peft_type"] in ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING"):
            T -= ac["num_virtual_tokens"]
    raw = np.fromfile(ids_file, dtype=np.uint8)
    version = int(np.frombuffer(raw[4:8].tobytes(), dtype=np.int32)[0])
    ids = np.frombuffer(raw[1024:].tobytes(), dtype=np.uint16 if version == 1 else np.uint32)
    ids = torch.tensor(ids.astype(np.int64))[None]
    with torch.no_grad():
        # hone's windows: inputs ids[wT .. wT+T-1], targets one on; a last shorter window
        nll, count = 0.0, 0
        for w in range(0, ids.shape[1] - 1, T):
            x, y = ids[:, w : w + T], ids[0, w + 1 : w + T + 1]
            x = x[:, : y.shape[0]]
            # prompt tuning's virtual tokens come first in the logits: keep the real ones
            logits = model(x).logits[:, -x.shape[1] :].double()
            nll += torch.nn.functional.cross_entropy(logits[0], y, reduction="sum").item()
            count += y.shape[0]
        loss = nll / count
        # greedy by hand: model.generate trips over Debian's torch 1.13 on Python 3.11
        seq = [int(x) for x in prompt.split(",")]
        greedy = []
        for _ in range(n):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    res = {"loss": loss, "greedy": greedy}
    if len(sys.argv) > 5:
        tok = transformers.AutoTokenizer.from_pretrained(d)
        res["tokens"] = tok(sys.argv[5], add_special_tokens=False)["input_ids"]
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
