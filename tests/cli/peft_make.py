#!/usr/bin/python3
"""
Test helper (Debian's /usr/bin/python3 with torch, transformers, peft 0.13): adapters made
by PEFT itself, with non-zero weights (init_*_weights=False, DoRA's magnitudes moved too;
prefix, prompt and P-tuning rows start random), on the Hugging Face model BASE_DIR, each
saved as PEFT saves it (adapter_config.json, adapter_model.safetensors) under OUT/<name>;
prints one JSON object with each adapter's mean next-token loss on the ids of WIN (a hone
token shard), in the windows `hone eval --task ppl` takes (the context less the adapter's
virtual positions).
  peft_make.py BASE_DIR WIN OUT llama|gpt2
"""
import json
import os
import sys

import numpy as np
import peft
import torch
import transformers
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file


def main():
    base, win, out, arch = sys.argv[1:5]
    torch.manual_seed(0)
    raw = np.fromfile(win, dtype=np.uint8)
    ids = torch.tensor(np.frombuffer(raw[1024:].tobytes(), dtype=np.uint16).astype(np.int64))[None]
    if arch == "llama":
        configs = {
            "lora": peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                    init_lora_weights=False),
            "dora": peft.LoraConfig(r=2, lora_alpha=3, use_rslora=True, use_dora=True,
                                    target_modules=["k_proj", "o_proj"], init_lora_weights=False),
            "ia3": peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                  feedforward_modules=["down_proj"], init_ia3_weights=False),
        }
    else:
        configs = {
            "lora": peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_proj"],
                                    fan_in_fan_out=True, init_lora_weights=False),
        }
    # prompt learning, on both: PEFT saves the prefix after its projection and the virtual
    # tokens after P-tuning's encoder
    configs.update({
        "prefix": peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        "prefix_proj": peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3,
                                               prefix_projection=True, encoder_hidden_size=16),
        "prompt": peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
        "ptuning": peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                            encoder_hidden_size=16),
    })
    res = {}
    for name, pc in configs.items():
        model = transformers.AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        pm = peft.get_peft_model(model, pc)
        if name == "dora":
            with torch.no_grad():
                for n, p in pm.named_parameters():
                    if "lora_magnitude_vector" in n:
                        p.mul_(1.0 + 0.1 * torch.randn_like(p))
        pm.eval()
        T = model.config.max_position_embeddings if arch == "llama" else model.config.n_positions
        if pc.is_prompt_learning:
            T -= pc.num_virtual_tokens
        with torch.no_grad():  # hone's windows of T; virtual tokens' logits dropped
            nll, count = 0.0, 0
            for w in range(0, ids.shape[1] - 1, T):
                y = ids[0, w + 1 : w + T + 1]
                x = ids[:, w : w + y.shape[0]]
                logits = pm(x).logits[:, -x.shape[1] :].double()
                nll += torch.nn.functional.cross_entropy(logits[0], y, reduction="sum").item()
                count += y.shape[0]
            res[name] = nll / count
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        sd = {k: v.contiguous() for k, v in get_peft_model_state_dict(pm).items()}
        save_file(sd, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
        # the config as the model completed it (prompt learning: layers, widths, heads)
        cfg = pm.peft_config["default"].to_dict()
        cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, default=str)
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
