#!/usr/bin/python3
"""
Writes tests/fixtures/peft2/{arch}_{method}.safetensors: reference forward/backward results of
prefix tuning, prompt tuning, P-tuning, bottleneck adapters and two combinations on the tiny
transformers models of scripts/make_peft_fixtures.py, stored under hone's row names, for
hone's parameter-efficient fine-tuning tests. The base weights and the batch are NOT written
again: every file names tests/fixtures/peft/{arch}_base.safetensors (written by the sister
script) in its "base" metadata, and this script rebuilds the models from the same seeds and
asserts that they hold exactly that file's param.* rows and use its input.* batch.

float32 vs float64, max |d| / max |ref| of the worst tensor of each kind, as printed on the
run that wrote the committed files. "hf64" is the same transformers/peft computation rerun
after .double() (as in the sister script; transformers' LlamaRMSNorm and Llama's rotary
tables still compute in float32 there); "plain64" is this script's own plain float64
implementation (plain_forward below, written from the formulas, no transformers or peft) run
on the rows read back from the written file, against the file's float32 logits and gradients
(asserted below 1e-5 / 2e-5). The last column is how far each method moves the logits:
max |logits - the base model's logits| / max |base model's logits|.
  fixture                  hf64 logits  loss     grads    plain64 logits grads     effect
  gpt2_prefix              3.57e-07    8.31e-08 5.68e-07         3.57e-07 5.68e-07  1.20
  gpt2_prefix_proj         3.43e-07    7.83e-08 5.90e-07         3.43e-07 5.90e-07  1.29
  gpt2_prompt_random       4.81e-07    1.56e-08 3.67e-07         4.81e-07 3.67e-07  1.33
  gpt2_prompt_text         4.66e-07    9.90e-08 3.71e-07         4.66e-07 3.71e-07  1.47
  gpt2_ptuning             3.66e-07    4.62e-08 7.28e-07         3.66e-07 7.28e-07  1.36
  gpt2_adapter_pfeiffer    6.54e-07    3.44e-08 1.03e-06         6.54e-07 1.03e-06  1.25
  gpt2_adapter_houlsby     2.92e-07    1.04e-07 2.55e-06         2.92e-07 2.55e-06  1.19
  gpt2_adapter_parallel    4.14e-07    2.15e-07 7.05e-07         4.14e-07 7.05e-07  1.39
  gpt2_lora_prefix         3.45e-07    9.97e-08 1.24e-06         3.45e-07 1.24e-06  1.24
  gpt2_prompt_adapter      5.11e-07    3.12e-08 7.66e-07         5.11e-07 7.66e-07  1.28
  llama_prefix             4.37e-07    6.89e-08 4.89e-07         4.39e-07 4.32e-07  1.01
  llama_prefix_proj        3.57e-07    3.70e-08 6.29e-07         3.44e-07 5.91e-07  1.37
  llama_prompt_random      3.46e-07    2.94e-09 7.91e-07         3.39e-07 6.93e-07  1.22
  llama_prompt_text        3.86e-07    1.07e-07 4.50e-07         3.97e-07 4.24e-07  0.97
  llama_ptuning            3.26e-07    7.73e-08 4.60e-07         3.62e-07 4.61e-07  1.30
  llama_adapter_pfeiffer   3.72e-07    1.19e-07 8.26e-07         3.77e-07 7.35e-07  1.00
  llama_adapter_houlsby    2.95e-07    5.40e-08 7.43e-07         3.00e-07 7.63e-07  1.15
  llama_adapter_parallel   4.65e-07    5.95e-08 7.20e-07         5.11e-07 7.51e-07  1.65
  llama_lora_prefix        3.96e-07    2.14e-08 5.70e-07         3.31e-07 6.26e-07  1.43
  llama_prompt_adapter     3.30e-07    3.88e-09 1.71e-06         3.32e-07 2.10e-06  1.31

  arch    gpt2 and llama exactly as in scripts/make_peft_fixtures.py (GPT-2 L=2 C=64 NH=4
          V=300/Vp=384 maxT=32; Llama L=2 C=64 NH=4 NKV=2 F=160, tied, eager attention),
          float32, eval mode, no dropout; batch B=2, T=16 with ignored targets (base file)
  method  (P = 4 virtual tokens everywhere; KVdim = NKV * HS: 64 for gpt2, 32 for llama)
    prefix          peft PrefixTuningConfig(num_virtual_tokens=4, prefix_projection=False).
                    Trainable prefix_encoder.embedding.weight (P, 2*L*KVdim); peft's
                    get_prompt views it as (B, P, 2L, NKV, HS), permutes to (2L, B, NKV, P, HS)
                    and splits in pairs, so layer l's keys are columns
                    [2l*KVdim, (2l+1)*KVdim) and its values [(2l+1)*KVdim, (2l+2)*KVdim),
                    each KVdim block being NKV heads of HS contiguous columns. The prefix
                    keys are used as given (not rotated: they enter through the cache, after
                    transformers' RoPE); every real token sees all P prefix slots; real tokens
                    take positions P..P+T-1 (GPT-2's position ids and Llama's cache_position
                    start at the past length). hone row: prefix.embed (P, 2*L*KVdim).
    prefix_proj     stock peft prefix_projection=True, encoder_hidden_size=32:
                    kv = Linear(H, 2*L*KVdim)(tanh(Linear(KVdim, H)(embed))), embed (P, KVdim):
                    peft's embedding width and first Linear's input are its token_dim, which is
                    KVdim (= C for gpt2, 32 = NKV*HS for the GQA llama; see below). hone rows
                    prefix.embed (P, KVdim), prefix.mlp.0.weight (H, KVdim), .bias (H),
                    prefix.mlp.1.weight (2*L*KVdim, H), .bias (2*L*KVdim); plus
                    folded.prefix.kv (P, 2*L*KVdim), the MLP's output (what peft's inference mode
                    stores and uses). gpt2: (4, 64), (32, 64), (32), (256, 32), (256); llama:
                    (4, 32), (32, 32), (32), (128, 32), (128).
    prompt_random   peft PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init=RANDOM):
                    the P prompt vectors are prepended to the token embeddings (positions
                    0..P-1, real tokens at P..P+T-1); logits and loss on the real positions
                    only. hone row prompt.embed (P, C).
    prompt_text     the same with prompt_tuning_init=TEXT from token ids [5, 17, 42]: peft
                    repeats the ids ceil(P / 3) times and truncates to P, i.e. [5, 17, 42, 5],
                    and copies those embedding rows. The ids are fed to peft's own code through
                    a stub tokenizer (transformers.AutoTokenizer.from_pretrained patched for
                    the call). init.prompt.embed (P, C) holds the initial value (asserted equal
                    to tok_embed rows [5, 17, 42, 5]); metadata init_ids "5,17,42". The
                    trainable value is then randomised like the others.
    (prompt_vocab   not written: peft 0.13.2's PromptTuningInit has only TEXT and RANDOM, no
                    SAMPLE_VOCAB.)
    ptuning         peft PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=32,
                    encoder_reparameterization_type="MLP"): prompt = mlp_head(embedding), with
                    mlp_head = Linear(C, H), ReLU, Linear(H, H), ReLU, Linear(H, C) (peft
                    0.13.2, PromptEncoder, MLP branch); then as prompt tuning. hone rows
                    prompt.embed (P, C), prompt.mlp.0.weight (H, C), .bias (H),
                    prompt.mlp.1.weight (H, H), .bias (H), prompt.mlp.2.weight (C, H), .bias (C)
                    (= mlp_head.0, mlp_head.2, mlp_head.4).
    adapter_*       bottleneck adapters, plain PyTorch modules wrapped around transformers'
                    attention / MLP modules and the pre-MLP norm (no adapter library), placed and
                    composed exactly as AdapterHub's `adapters` 1.0.1 does on GPT-2 and Llama with
                    its SeqBnConfig (pfeiffer), DoubleSeqBnConfig (houlsby) and ParBnConfig
                    (parallel) defaults. The adapter is f(h) = up(act(down(h))) with
                    down: Linear(C, R) and up: Linear(R, C), both with bias, R = C // reduction:
                      f(h) = W_up act(W_down h + b_down) + b_up.
                    Per transformer block, with x the residual stream entering the half-block
                    (the input of ln_1 / input_layernorm for attention, of ln_2 /
                    post_attention_layernorm for the MLP) and s the sublayer's output (attn
                    c_proj / o_proj, MLP c_proj / down_proj, bias included, before the
                    residual add), the stream leaving the half-block is:
      houlsby       x + s + f(s), after attention and after the MLP (two adapters per
                    layer). reduction 16 (R = 4), swish (SiLU), scaling 1.
      pfeiffer      x + s + f(x + s), after the MLP only: the adapter's input is the residual
                    stream after the block's add, h = x + s, and the output is h + f(h).
                    reduction 16 (R = 4), relu, scaling 1.
      parallel      x + s + 4.0 * f(x), after the MLP only: the adapter reads x, the residual
                    stream BEFORE ln_2 / post_attention_layernorm (not the normed MLP input),
                    and the scaling multiplies the whole up-projection including its bias:
                    4.0 * (W_up relu(W_down x + b_down) + b_up). reduction 2 (R = 32), relu.
                    AdapterHub source read (adapters 1.0.1, line numbers of that release):
                    models/gpt2/modeling_gpt2.py GPT2BlockWithAdapters.forward (l. 216, 244) and
                    models/llama/modeling_llama.py LlamaDecoderLayerWithAdapters.forward
                    (l. 448, 454) call self.attention_adapters(<attention output>, residual,
                    None) and self.output_adapters(<MLP output>, residual, None), i.e.
                    methods/bottleneck.py BottleneckLayer.bottleneck_layer_forward
                    (l. 310-343) with hidden_states = s, residual_input = x, layer_norm = None;
                    the active setup Stack("a") runs adapter_layer_base.py compose_stack
                    (l. 343) -> BottleneckLayer.pre_block (l. 148, the adapter's pre_forward)
                    -> compose_single (l. 204, its forward), then post_forward (l. 336).
                    In methods/modeling.py:
                      Adapter.pre_forward (l. 132-173): residual_before_ln=True -> residual = s
                        (l. 153); original_ln_before (True for SeqBnConfig only, False for
                        DoubleSeqBnConfig) with layer_norm None -> hidden_states = s + x
                        (l. 165), else hidden_states = s.
                      Adapter.forward (l. 175-202): up = self.adapter_up(self.adapter_down(h))
                        (adapter_down = Sequential(Linear, Activation_Function_Class),
                        adapter_up = Linear: b_up inside), up = up * self.scaling (l. 179;
                        BnConfig.scaling 1.0), output = up + residual_input (l. 198).
                      Adapter.post_forward (l. 204-224): original_ln_after=True, layer_norm
                        None -> hidden_states + input_tensor (x) (l. 222).
                      ParallelAdapter.pre_forward (l. 248-270) returns (input_tensor, None,
                        input_tensor): the adapter reads x. ParallelAdapter.forward
                        (l. 272-292): up = self.adapter_up(down); up = up * self.scaling
                        (l. 275-276; configuration/adapter_config.py ParBnConfig.scaling = 4.0,
                        l. 364, a float, so Adapter.__init__ keeps self.scaling = 4.0 exactly;
                        b_up inside the scaling); no residual added. ParallelAdapter.
                        post_forward (l. 294-316): + input_hidden_states (s) (l. 308), then
                        + input_tensor (x) (l. 314).
                    The additions happen in the order (f + s) + x, the same as the wrappers
                    here ((s + f) by the wrapper, then x + that by transformers' block).
                    (ParBnConfig's init_weights "mam_adapter" only sets the initial values,
                    overwritten here.) hone rows layers.N.adapter_attn.{down,up}.{weight,bias}
                    (houlsby) and layers.N.adapter_mlp.*: down.weight (R, C), down.bias (R),
                    up.weight (C, R), up.bias (C) (AdapterHub's adapter_down.0 and adapter_up).
    lora_prefix     peft LoRA r=4, alpha=16 (scaling 4), dropout 0 on attn.q + attn.v (llama) /
                    attn.qkv (gpt2, Conv1D, fan_in_fan_out) plus the prefix as above. peft
                    cannot hold both in one PeftModel, so the prefix PeftModel is built with
                    get_peft_model (its own get_prompt and forward run unchanged) and LoRA is
                    injected into its base transformers model with inject_adapter_in_model
                    (which leaves the prefix encoder, outside that model, trainable). Rows as
                    prefix plus peft.layers.N.<site>.lora_A (r, in), .lora_B (out, r).
    prompt_adapter  peft prompt tuning (P=4, RANDOM) with the pfeiffer adapter (as above)
                    wrapped into its base transformers model's blocks; the adapter also runs on
                    the virtual positions (it is part of the model), loss on the real positions
                    only.

Every trainable tensor is set to seeded random non-zero values (prefix.embed and P-tuning's
prompt.embed 0.5 N(0,1), prompt tuning's prompt.embed 0.3 N(0,1), MLP and adapter weights
0.3 N(0,1), their biases 0.1 N(0,1), LoRA matrices 0.1 N(0,1)), then one forward/backward
on the base file's batch; loss = summed cross-entropy over the counted targets of the real
positions / their count (tg.loss_sum).

Tensors (float32; hone's names), in each file:
  peft.<row>          every trainable tensor (rows above)
  out.logits (B, T, V) the real positions' logits; out.loss (1,)
  grad.<row>          the gradient of every trainable tensor
  init.prompt.embed   (prompt_text) peft's TEXT initial value
  folded.prefix.kv    (prefix_proj) the projected prefix, (P, 2*L*KVdim)
Metadata: arch, L, C, NH, NKV, F, V, Vp, maxT, eps, rope_theta (llama), B, T, method, base,
trainable (sum of numel of the parameters that require grad), generator, peft_yaml (hone's
config text) and, for prompt_text, init_ids.

Observed peft 0.13.2 / transformers 4.46.3 behaviour (asserted below where possible):
  - prefix tuning handles grouped-query attention (_prepare_prompt_learning_config, "#1901"):
    for a config with num_key_value_heads it sets token_dim = hidden // heads * kv_heads and
    num_attention_heads = kv_heads, so the Llama prefix is (P, 2*L*NKV*HS) = (4, 128).
  - the same token_dim is also the width of peft's prefix embedding and the first Linear's
    input under prefix_projection (PrefixEncoder: Embedding(P, token_dim),
    Linear(token_dim, H)), so the Llama prefix_proj embedding is (P, NKV*HS) = (4, 32) and its
    first Linear 32 -> 32; GPT-2 (no GQA) gets (P, C). Both are stock peft here.
  - legacy tuple past_key_values: GPT-2 4.46.3 concatenates them ahead of the new keys and
    starts position ids at the past length; Llama converts them to a DynamicCache, starts
    cache_position (hence RoPE positions) at the past length, rotates only the new keys.
  - AdapterHub cross-check (adapters 1.0.1 beside transformers 4.46.3, not part of this
    script; its GPT-2 and Llama integrations both load): the adapter rows of
    {gpt2,llama}_adapter_{pfeiffer,houlsby,parallel} loaded into AdapterHub's SeqBnConfig /
    DoubleSeqBnConfig / ParBnConfig adapter (and, for prompt_adapter, SeqBnConfig inside
    peft's prompt tuning) reproduce these files' logits, loss and gradients bit for bit
    (max |d| = 0 for all eight files).
  - P-tuning's MLP head is Linear(C, H), ReLU, Linear(H, H), ReLU, Linear(H, C).
  - prompt tuning's TEXT init repeats the ids to fill P, then truncates; no SAMPLE_VOCAB.

Interpreter: Debian's /usr/bin/python3 with torch 1.13 (CPU), transformers 4.46.3, peft 0.13.2.
Run from anywhere:  /usr/bin/python3 scripts/make_peft2_fixtures.py
Rerunning reproduces every file bit for bit (fixed seeds, one thread) and prints the table
above; the base files in tests/fixtures/peft/ are read, never written.
"""

import copy
import json
import math
import os
import re
import struct
import sys
import warnings
from unittest import mock

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (safetensors writer, entries)
import make_peft_fixtures as mp  # noqa: E402  (tiny models, hone names, base files)
import torch_gpt2 as tg  # noqa: E402  (loss, gelu_tanh)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import (PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,  # noqa: E402
                  get_peft_model, inject_adapter_in_model)

OUT = os.path.join(mf.FIXTURES, "peft2")
BASE_DIR = os.path.join(mf.FIXTURES, "peft")
L, C, NH, V, Vp, EPS, THETA = mp.L, mp.C, mp.NH, mp.V, mp.Vp, mp.EPS, mp.THETA
B, T = mp.B, mp.T
P, H = 4, 32                        # virtual tokens; prefix-projection / P-tuning hidden size
TEXT_IDS = [5, 17, 42]
RANK, ALPHA = mp.RANK, mp.ALPHA
LORA_SITES = {"gpt2": ["attn.qkv"], "llama": ["attn.q", "attn.v"]}
ADAPTERS = {  # kind: (reduction, activation, scaling, sites)
    "pfeiffer": (16, "relu", None, ["mlp"]),
    "houlsby": (16, "swish", None, ["attn", "mlp"]),
    "parallel": (2, "relu", 4.0, ["mlp"]),
}
ACT = {"relu": F.relu, "swish": F.silu}

METHODS = ["prefix", "prefix_proj", "prompt_random", "prompt_text", "ptuning",
           "adapter_pfeiffer", "adapter_houlsby", "adapter_parallel", "lora_prefix",
           "prompt_adapter"]
SEED = {(arch, m): base + i for arch, base in (("gpt2", 101), ("llama", 201))
        for i, m in enumerate(METHODS)}


def nkv(arch):
    return mp.NKV if arch == "llama" else NH


def kvdim(arch):
    return nkv(arch) * (C // NH)


# ---- the base file ----

def read_safetensors(path):
    """{name: float32/int32 tensor}, metadata"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    types = {"F32": np.float32, "I32": np.int32}
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=types[h["dtype"]]).copy()
                                     .reshape(h["shape"]))
    return out, meta


def load_base(arch):
    """(params, tokens, targets) from the sister script's base file, checked against a rebuild"""
    path = os.path.join(BASE_DIR, mp.base_file(arch))
    tensors, meta = read_safetensors(path)
    params = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    tokens, targets = tensors["input.tokens"].long(), tensors["input.targets"].long()
    assert mp.same_rows(mp.hone_rows(mp.build_base(arch), arch), params), f"{path}: weights differ"
    t2, g2 = mp.base_batch(arch)
    assert torch.equal(t2, tokens) and torch.equal(g2, targets), f"{path}: batch differs"
    shape = mp.shape_meta(arch)
    assert all(meta[k] == v for k, v in shape.items()), f"{path}: shape metadata differs"
    return params, tokens, targets


def held_base_rows(model, arch):
    """the base rows (hone layout) a wrapped model actually holds"""
    hf = {}
    for n, p in model.named_parameters():
        if "prompt_encoder" in n or "lora_" in n or ".adapter." in n:
            continue
        n = re.sub(r"^base_model\.", "", n).replace(".base_layer.", ".").replace(".inner.", ".")
        hf[n] = p
    names = mp.hone_names(arch)
    assert sorted(hf) == sorted(n for n, _ in names.values()), sorted(hf)
    return {h: mp.pad_vocab(h, hf[n].detach().t().contiguous() if conv else hf[n].detach().clone())
            for h, (n, conv) in names.items()}


# ---- bottleneck adapters ----

class Bottleneck(nn.Module):
    """f(h) = up(act(down(h)))"""

    def __init__(self, r, act):
        super().__init__()
        self.down = nn.Linear(C, r)
        self.up = nn.Linear(r, C)
        self.act = act

    def forward(self, h):
        return self.up(ACT[self.act](self.down(h)))


class AfterAttn(nn.Module):
    """houlsby's attention adapter: the attention module's first output s becomes s + f(s) (the
    rest passes through); the block then adds its residual x"""

    def __init__(self, inner, adapter):
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        return (out[0] + self.adapter(out[0]),) + tuple(out[1:])


class StreamTap(nn.Module):
    """the block's pre-MLP norm (ln_2 / post_attention_layernorm), unchanged, which also hands its
    input x (the residual stream entering the MLP half of the block) to the MLP adapter"""

    def __init__(self, inner, box):
        super().__init__()
        self.inner, self.box = inner, box  # box: a dict shared with the block's AfterMLP

    def forward(self, x):
        self.box["x"] = x
        return self.inner(x)


class AfterMLP(nn.Module):
    """the MLP module's output s becomes, per AdapterHub (x = the residual stream before the norm;
    the block then adds x): houlsby s + f(s); pfeiffer s + f(s + x); parallel s + scaling * f(x)"""

    def __init__(self, inner, adapter, kind, box):
        super().__init__()
        self.inner, self.adapter, self.kind, self.box = inner, adapter, kind, box
        self.scaling = ADAPTERS[kind][2]

    def forward(self, u):
        s = self.inner(u)
        x = self.box.pop("x")
        if self.kind == "houlsby":
            return s + self.adapter(s)
        if self.kind == "pfeiffer":
            return s + self.adapter(s + x)
        assert self.kind == "parallel"
        return s + self.scaling * self.adapter(x)


def add_adapters(hf_model, arch, kind):
    """wraps every block's attention / MLP of a transformers model; the adapters are trainable"""
    reduction, act, scaling, sites = ADAPTERS[kind]
    blocks = hf_model.transformer.h if arch == "gpt2" else hf_model.model.layers
    attn_name = "attn" if arch == "gpt2" else "self_attn"
    norm_name = "ln_2" if arch == "gpt2" else "post_attention_layernorm"
    for blk in blocks:
        if "attn" in sites:
            setattr(blk, attn_name, AfterAttn(getattr(blk, attn_name), Bottleneck(C // reduction, act)))
        if "mlp" in sites:
            box = {}
            setattr(blk, norm_name, StreamTap(getattr(blk, norm_name), box))
            blk.mlp = AfterMLP(blk.mlp, Bottleneck(C // reduction, act), kind, box)
    for n, p in hf_model.named_parameters():
        p.requires_grad_(".adapter." in n)


def adapter_yaml(kind):
    reduction, act, scaling, _ = ADAPTERS[kind]
    extra = f", scaling: {scaling:g}" if scaling is not None else ""
    return f"  - adapter: {{kind: {kind}, reduction: {reduction}, activation: {act}{extra}}}\n"


# ---- building ----

def row_name(arch, method, n):
    """parameter name -> hone row"""
    m = re.search(r"prompt_encoder\.default\.(.+)$", n)
    if m:
        rest = m.group(1)
        root = "prefix" if "prefix" in method else "prompt"
        if rest == "embedding.weight":
            return f"{root}.embed"
        m2 = re.match(r"(transform|mlp_head)\.(\d)\.(weight|bias)$", rest)
        assert m2, n
        idx = {"transform": {"0": 0, "2": 1}, "mlp_head": {"0": 0, "2": 1, "4": 2}}[m2.group(1)][m2.group(2)]
        return f"{root}.mlp.{idx}.{m2.group(3)}"
    m = re.search(r"(?:transformer\.h|model\.layers)\.(\d+)\.(attn|self_attn|mlp)\.adapter\.(down|up)\.(weight|bias)$", n)
    if m:
        where = "attn" if "attn" in m.group(2) else "mlp"
        return f"layers.{m.group(1)}.adapter_{where}.{m.group(3)}.{m.group(4)}"
    return mp.addon_row(arch, n)  # LoRA


def text_tokenizer_stub():
    """a stand-in for AutoTokenizer.from_pretrained(...): its tokenization is TEXT_IDS"""
    class Stub:
        def __call__(self, text):
            return {"input_ids": list(TEXT_IDS)}
    return Stub()


def build(arch, method):
    """(model, peft_yaml, extra metadata); the model's trainable parameters are the method's"""
    model = mp.build_base(arch)
    torch.manual_seed(0)  # peft's own inits draw from the global generator; overwritten anyway
    meta = {}
    if method in ("prefix", "prefix_proj", "lora_prefix"):
        proj = method == "prefix_proj"
        cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, prefix_projection=proj,
                                 encoder_hidden_size=H if proj else None)
        model = get_peft_model(model, cfg)
        pc = model.peft_config["default"]
        # grouped-query attention: peft uses the key/value head count (and KVdim as token_dim)
        assert pc.num_attention_heads == nkv(arch) and pc.token_dim == kvdim(arch), \
            (pc.num_attention_heads, pc.token_dim)
        enc = model.prompt_encoder["default"]
        if proj:  # stock peft: the embedding width and the first Linear's input are token_dim = KVdim
            assert [type(m) for m in enc.transform] == [nn.Linear, nn.Tanh, nn.Linear]
            assert tuple(enc.embedding.weight.shape) == (P, kvdim(arch))
            assert (enc.transform[0].in_features, enc.transform[0].out_features) == (kvdim(arch), H)
            assert enc.transform[2].out_features == 2 * L * kvdim(arch)
        else:
            assert tuple(enc.embedding.weight.shape) == (P, 2 * L * kvdim(arch))
        yaml = f"  - prefix: {{length: {P}, projection: {H if proj else 0}}}\n"
        if method == "lora_prefix":
            inject_adapter_in_model(mp.lora_config(arch, LORA_SITES[arch]), model.base_model)
            yaml = (f"  - lora: {{targets: {mp.yaml_list(LORA_SITES[arch])}, rank: {RANK}, "
                    f"alpha: {ALPHA}}}\n") + yaml
        return model, "peft:\n" + yaml, meta
    if method in ("prompt_random", "prompt_text", "prompt_adapter"):
        if method == "prompt_text":
            cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, prompt_tuning_init="TEXT",
                                     prompt_tuning_init_text="(ids given by the stub tokenizer)",
                                     tokenizer_name_or_path="stub")
            with mock.patch.object(transformers.AutoTokenizer, "from_pretrained",
                                   side_effect=lambda *a, **k: text_tokenizer_stub()):
                model = get_peft_model(model, cfg)
            meta["init_ids"] = ",".join(map(str, TEXT_IDS))
            yaml = f"  - prompt: {{length: {P}, init: text, text_ids: [{', '.join(map(str, TEXT_IDS))}]}}\n"
        else:
            cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, prompt_tuning_init="RANDOM")
            model = get_peft_model(model, cfg)
            yaml = f"  - prompt: {{length: {P}, init: random}}\n"
        if method == "prompt_adapter":
            add_adapters(model.base_model, arch, "pfeiffer")
            yaml += adapter_yaml("pfeiffer")
        return model, "peft:\n" + yaml, meta
    if method == "ptuning":
        cfg = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=P, encoder_hidden_size=H,
                                  encoder_reparameterization_type="MLP")
        model = get_peft_model(model, cfg)
        head = model.prompt_encoder["default"].mlp_head
        assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
        assert [(m.in_features, m.out_features) for m in head[::2]] == [(C, H), (H, H), (H, C)]
        return model, f"peft:\n  - ptuning: {{length: {P}, hidden: {H}}}\n", meta
    assert method.startswith("adapter_")
    kind = method[len("adapter_"):]
    add_adapters(model, arch, kind)
    return model, "peft:\n" + adapter_yaml(kind), meta


def trainables(model, arch, method):
    """{hone row: parameter} in named_parameters order"""
    return {row_name(arch, method, n): p for n, p in model.named_parameters() if p.requires_grad}


def randomize(rows, seed):
    """seeded non-zero values, large enough to move the logits visibly"""
    gen = torch.Generator().manual_seed(seed)
    ptuning = "prompt.mlp.0.weight" in rows
    with torch.no_grad():
        for r, p in rows.items():
            if r.endswith(".lora_A") or r.endswith(".lora_B"):
                scale = 0.1
            elif r == "prefix.embed" or (r == "prompt.embed" and ptuning):
                scale = 0.5
            elif r == "prompt.embed":
                scale = 0.3
            elif r.endswith(".bias"):
                scale = 0.1
            else:
                scale = 0.3
            p.copy_(scale * torch.randn(p.shape, generator=gen))


def expected_shapes(arch, method):
    kv, rows = kvdim(arch), {}
    if "prefix" in method:
        if method == "prefix_proj":
            rows.update({"prefix.embed": (P, kv), "prefix.mlp.0.weight": (H, kv), "prefix.mlp.0.bias": (H,),
                         "prefix.mlp.1.weight": (2 * L * kv, H), "prefix.mlp.1.bias": (2 * L * kv,)})
        else:
            rows["prefix.embed"] = (P, 2 * L * kv)
    if method.startswith("prompt") or method == "ptuning":
        rows["prompt.embed"] = (P, C)
    if method == "ptuning":
        rows.update({"prompt.mlp.0.weight": (H, C), "prompt.mlp.0.bias": (H,), "prompt.mlp.1.weight": (H, H),
                     "prompt.mlp.1.bias": (H,), "prompt.mlp.2.weight": (C, H), "prompt.mlp.2.bias": (C,)})
    kind = {"prompt_adapter": "pfeiffer"}.get(method, method[len("adapter_"):] if method.startswith("adapter_") else None)
    if kind:
        r = C // ADAPTERS[kind][0]
        for l in range(L):
            for where in ADAPTERS[kind][3]:
                p = f"layers.{l}.adapter_{where}."
                rows.update({p + "down.weight": (r, C), p + "down.bias": (r,), p + "up.weight": (C, r),
                             p + "up.bias": (C,)})
    if method == "lora_prefix":
        out_in = {"attn.qkv": (3 * C, C), "attn.q": (C, C), "attn.v": (kv, C)}
        for l in range(L):
            for s in LORA_SITES[arch]:
                rows[f"layers.{l}.{s}.lora_A"] = (RANK, out_in[s][1])
                rows[f"layers.{l}.{s}.lora_B"] = (out_in[s][0], RANK)
    return rows


# ---- the computation ----

def real_logits(model, method, tokens):
    logits = model(input_ids=tokens.long()).logits
    if "prefix" in method or method.startswith("adapter_"):
        assert logits.shape[1] == T
        return logits
    assert logits.shape[1] == P + T
    return logits[:, P:]


def run(model, arch, method, tokens, targets):
    model.zero_grad(set_to_none=True)
    logits = real_logits(model, method, tokens)
    total, count = tg.loss_sum(logits, targets)
    assert count > 0
    loss = total / count
    loss.backward()
    grads = {r: p.grad.detach().clone() for r, p in trainables(model, arch, method).items()}
    return logits.detach(), loss.detach(), grads


# ---- an independent plain implementation (float64, no transformers / peft) ----

def rope(x, pos):
    """HF Llama's rotate-half RoPE; x (B, heads, S, HS), pos (S,)"""
    hs = x.shape[-1]
    inv = 1.0 / (THETA ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    ang = pos.double()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def plain_forward(arch, method, W, A, tokens):
    """logits (B, T, V) of the real positions; W: base rows, A: trainable rows (hone names)"""
    hs, nk, kv = C // NH, nkv(arch), kvdim(arch)
    lin = lambda x, name, bias=True: x @ W[name + ".weight"].t() + (W[name + ".bias"] if bias else 0)  # noqa: E731
    gpt2 = arch == "gpt2"

    def lora(x, l, site, y):
        if f"layers.{l}.{site}.lora_A" in A:
            y = y + (ALPHA / RANK) * (x @ A[f"layers.{l}.{site}.lora_A"].t()) @ A[f"layers.{l}.{site}.lora_B"].t()
        return y

    def adapter(l, where, s, x):
        """the sublayer output s -> what the block adds to its residual stream x"""
        p = f"layers.{l}.adapter_{where}."
        if p + "down.weight" not in A:
            return s
        kind = "pfeiffer" if method == "prompt_adapter" else method[len("adapter_"):]
        _, act, scaling, _ = ADAPTERS[kind]

        def f(h):  # the bottleneck, up-projection bias included
            return ACT[act](h @ A[p + "down.weight"].t() + A[p + "down.bias"]) @ A[p + "up.weight"].t() + A[p + "up.bias"]

        if kind == "houlsby":
            return s + f(s)
        if kind == "pfeiffer":
            return s + f(x + s)
        return s + scaling * f(x)

    def norm(x, name):
        if gpt2:
            return F.layer_norm(x, (C,), W[name + ".weight"], W[name + ".bias"], EPS)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * W[name + ".weight"]

    emb = W["tok_embed.weight"][:V]
    x = emb[tokens]
    prefix = None
    if "prefix" in method:
        prefix = A["prefix.embed"]
        if method == "prefix_proj":
            prefix = torch.tanh(prefix @ A["prefix.mlp.0.weight"].t() + A["prefix.mlp.0.bias"]) \
                @ A["prefix.mlp.1.weight"].t() + A["prefix.mlp.1.bias"]
    elif "prompt.embed" in A:
        prompt = A["prompt.embed"]
        if "prompt.mlp.0.weight" in A:
            for i in range(3):
                prompt = prompt @ A[f"prompt.mlp.{i}.weight"].t() + A[f"prompt.mlp.{i}.bias"]
                prompt = F.relu(prompt) if i < 2 else prompt
        x = torch.cat([prompt.expand(B, P, C), x], 1)
    S = x.shape[1]
    pk = P if prefix is not None else 0
    pos = torch.arange(pk, pk + S)
    if gpt2:
        x = x + W["pos_embed.weight"][pos]
    allowed = torch.arange(pk + S)[None, :] <= (pk + torch.arange(S))[:, None]  # (S, pk + S)
    for l in range(L):
        p = f"layers.{l}."
        h = norm(x, p + "attn_norm")
        if gpt2:
            q, k, v = lora(h, l, "attn.qkv", lin(h, p + "attn.qkv")).split(C, -1)
        else:
            q = lora(h, l, "attn.q", lin(h, p + "attn.q", False))
            k = lora(h, l, "attn.k", lin(h, p + "attn.k", False))
            v = lora(h, l, "attn.v", lin(h, p + "attn.v", False))
        q = q.view(B, S, NH, hs).transpose(1, 2)
        k = k.view(B, S, nk, hs).transpose(1, 2)
        v = v.view(B, S, nk, hs).transpose(1, 2)
        if not gpt2:
            q, k = rope(q, pos), rope(k, pos)
        if prefix is not None:
            heads = lambda cols: cols.reshape(P, nk, hs).transpose(0, 1).expand(B, nk, P, hs)  # noqa: E731
            k = torch.cat([heads(prefix[:, 2 * l * kv:(2 * l + 1) * kv]), k], 2)
            v = torch.cat([heads(prefix[:, (2 * l + 1) * kv:(2 * l + 2) * kv]), v], 2)
        k, v = k.repeat_interleave(NH // nk, 1), v.repeat_interleave(NH // nk, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, S, C)
        s = lin(y, p + "attn.o", gpt2)
        x = x + adapter(l, "attn", s, x)
        u = norm(x, p + "mlp_norm")
        if gpt2:
            m = lin(tg.gelu_tanh(lin(u, p + "mlp.up")), p + "mlp.down")
        else:
            m = lin(F.silu(lin(u, p + "mlp.gate", False)) * lin(u, p + "mlp.up", False), p + "mlp.down", False)
        x = x + adapter(l, "mlp", m, x)
    x = norm(x, "final_norm")
    return (x @ emb.t())[:, S - T:]


def plain_check(arch, method, params, tokens, targets, rows, logits, grads):
    """the stored float32 values against the plain float64 computation from the stored rows"""
    W = {k: v.double() for k, v in params.items()}
    A = {k: v.detach().double().requires_grad_(True) for k, v in rows.items()}
    lg = plain_forward(arch, method, W, A, tokens)
    total, count = tg.loss_sum(lg, targets)
    (total / count).backward()
    d_logits = mf.rel_diff(logits, lg)
    d_grads = max(mf.rel_diff(grads[r], A[r].grad) for r in A)
    assert d_logits < 1e-5 and d_grads < 2e-5, (arch, method, d_logits, d_grads)
    return d_logits, d_grads


def make(arch, method, base):
    print(f"{arch}_{method}:")
    params, tokens, targets = base
    model, yaml, extra_meta = build(arch, method)
    model.eval()
    assert not any(m.training for m in model.modules())
    assert mp.same_rows(held_base_rows(model, arch), params), f"{arch}_{method}: base weights differ"
    rows = trainables(model, arch, method)
    shapes = {r: tuple(p.shape) for r, p in rows.items()}
    assert shapes == expected_shapes(arch, method), (shapes, expected_shapes(arch, method))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in rows.values())

    extra = []
    if method == "prompt_text":  # peft's TEXT init: the ids repeated to fill P, truncated
        init = rows["prompt.embed"].detach().clone()
        ids = (TEXT_IDS * math.ceil(P / len(TEXT_IDS)))[:P]
        assert torch.equal(init, params["tok_embed.weight"][ids]), "TEXT init"
        extra.append(mf.entry("init.prompt.embed", mf.f32(init)))
    randomize(rows, SEED[(arch, method)])
    if method == "prefix_proj":
        enc = model.prompt_encoder["default"]
        with torch.no_grad():
            folded = enc.transform(enc.embedding.weight)
            got = model.get_prompt(B)  # peft's layout: per layer (k, v), each (B, NKV, P, HS)
            for l in range(L):
                for j in range(2):
                    cols = folded[:, (2 * l + j) * kvdim(arch):(2 * l + j + 1) * kvdim(arch)]
                    want = cols.reshape(P, nkv(arch), C // NH).transpose(0, 1).expand(B, -1, -1, -1)
                    assert torch.allclose(got[l][j], want, rtol=0, atol=1e-6), (l, j)
        extra.append(mf.entry("folded.prefix.kv", mf.f32(folded)))
    values = {r: p.detach().clone() for r, p in rows.items()}

    model64 = copy.deepcopy(model).double()
    logits, loss, grads = run(model, arch, method, tokens, targets)
    logits64, loss64, grads64 = run(model64, arch, method, tokens, targets)
    assert list(grads) == list(rows)
    assert all(g.abs().max() > 0 for g in grads.values()), [r for r, g in grads.items() if g.abs().max() == 0]
    worst = max(grads, key=lambda r: mf.rel_diff(grads[r], grads64[r]))
    line = {"logits": mf.rel_diff(logits, logits64), "loss": mf.rel_diff(loss, loss64),
            "grads": mf.rel_diff(grads[worst], grads64[worst])}
    with torch.no_grad():  # how far the method moves the logits from the plain base model's
        effect = mf.rel_diff(logits, mp.build_base(arch)(input_ids=tokens).logits)
    assert effect > 0.05, effect
    line["effect"] = effect

    tensors = [mf.entry("peft." + r, mf.f32(t)) for r, t in values.items()]
    tensors += [mf.entry("out.logits", mf.f32(logits)), mf.entry("out.loss", mf.f32(loss.reshape(1)))]
    tensors += [mf.entry("grad." + r, mf.f32(g)) for r, g in grads.items()]
    tensors += extra
    meta = mp.shape_meta(arch)
    meta.update({"method": method, "base": mp.base_file(arch), "trainable": str(trainable),
                 "generator": GENERATOR.format(cls="GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM"),
                 "peft_yaml": yaml})
    meta.update(extra_meta)
    path = os.path.join(OUT, f"{arch}_{method}.safetensors")
    mf.write_safetensors(path, tensors, meta)
    size = os.path.getsize(path)
    assert size < 400_000, size

    # read the file back and check it against the plain float64 implementation
    stored, smeta = read_safetensors(path)
    assert smeta == meta
    srows = {k[len("peft."):]: v for k, v in stored.items() if k.startswith("peft.")}
    sgrads = {k[len("grad."):]: v for k, v in stored.items() if k.startswith("grad.")}
    line["plain_logits"], line["plain_grads"] = plain_check(
        arch, method, params, tokens, targets, srows, stored["out.logits"], sgrads)
    print(f"  trainable {trainable}; loss {loss.item():.6f}; worst grad {worst}; "
          f"max|logits - base logits|/max|base logits| {effect:.2f}")
    print("  float32 vs float64 (max|d|/max|ref|): " + "  ".join(f"{k} {v:.2e}" for k, v in line.items()))
    print(f"  wrote {os.path.relpath(path, mf.ROOT)} ({size} bytes, {len(tensors)} tensors)")
    return line


GENERATOR = ("scripts/make_peft2_fixtures.py, torch " + torch.__version__ + ", transformers "
             + transformers.__version__ + ", peft " + peft.__version__ + "; {cls} (eager attention)")


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
    transformers.logging.set_verbosity_error()  # Llama's legacy-cache deprecation notice
    os.makedirs(OUT, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    assert not hasattr(peft.PromptTuningInit, "SAMPLE_VOCAB"), "peft has SAMPLE_VOCAB now: add prompt_vocab"
    print("  peft's PromptTuningInit: " + ", ".join(m.name for m in peft.PromptTuningInit)
          + " (no SAMPLE_VOCAB: prompt_vocab not written)")
    table = []
    for arch in ("gpt2", "llama"):
        base = load_base(arch)
        for method in METHODS:
            table.append((f"{arch}_{method}", make(arch, method, base)))
    keys = ["logits", "loss", "grads", "plain_logits", "plain_grads", "effect"]
    print("\nfloat32 vs float64, max|d|/max|ref| (worst tensor of each kind; hf64 then plain64):")
    print(f"  {'fixture':<24s}" + "".join(f"{k:>14s}" for k in keys))
    for name, line in table:
        print(f"  {name:<24s}" + "".join(f"{line[k]:>14.2e}" for k in keys))


if __name__ == "__main__":
    main()
