#!/usr/bin/python3
"""
Writes tests/fixtures/peft/{arch}_{method}.safetensors: reference forward/backward (and
merge) results of Hugging Face PEFT adapters on tiny transformers models, stored under
hone's row names, for hone's parameter-efficient fine-tuning tests; the base weights and the
batch, which all of an arch's methods share, are written once to
tests/fixtures/peft/{arch}_base.safetensors (gpt2_base, llama_base).

float32 vs float64 (the same computation rerun with model.double() and the same weights;
max |d| / max |ref| of the worst tensor of each kind), as printed on the run that wrote the
committed files; the last column is merged vs unmerged float32 logits:
  fixture          logits   loss     grads    merged   merged_logits  merged-vs-unmerged
  gpt2_lora        5.66e-07 1.62e-07 1.69e-06 8.55e-08 1.24e-06       1.23e-06
  gpt2_rslora      4.83e-07 5.36e-08 1.45e-06 9.65e-08 5.77e-07       7.62e-07
  gpt2_dora        3.96e-07 5.21e-08 1.76e-06 2.78e-07 5.67e-07       5.86e-07
  gpt2_ia3         4.49e-07 3.03e-08 5.14e-07 4.01e-08 4.58e-07       4.30e-07
  gpt2_lora_ia3    5.30e-07 1.97e-08 1.53e-06 9.03e-08 4.91e-07       6.95e-07
  gpt2_bitfit      4.78e-07 1.21e-07 7.95e-07 -        -              -
  llama_lora       7.62e-07 9.57e-08 1.55e-06 1.15e-07 8.83e-07       1.34e-06
  llama_rslora     1.59e-06 2.09e-08 1.85e-06 1.04e-07 1.02e-06       2.13e-06
  llama_dora       3.64e-07 3.73e-08 1.43e-06 1.50e-07 3.25e-07       4.32e-07
  llama_ia3        4.21e-07 2.20e-08 9.04e-07 3.94e-08 3.50e-07       3.42e-07
  llama_lora_ia3   3.32e-07 1.76e-08 1.46e-06 9.05e-08 4.42e-07       5.44e-07

  arch    gpt2 (GPT2LMHeadModel: L=2, C=64, NH=4, V=300 padded to Vp=384, maxT=32,
          eps=1e-5, gelu_new, tied embeddings) and llama (LlamaForCausalLM: L=2, C=64, NH=4,
          NKV=2, F=160, V=300/384, maxT=32, eps=1e-5, rope_theta=10000, tied, no biases);
          both float32, eval mode, no dropout, attn_implementation="eager"
  method  lora     LoRA r=4, alpha=16 (scaling 4), dropout 0, bias "none";
                   gpt2: attn.qkv, attn.o, mlp.up, mlp.down (HF c_attn, attn.c_proj, c_fc,
                   mlp.c_proj, Conv1D, fan_in_fan_out=True); llama: all seven linears
          rslora   the same with use_rslora=True (scaling alpha/sqrt(r) = 8)
          dora     the same with use_dora=True (works on GPT-2's Conv1D in peft 0.13.2: the
                   Conv1D is wrapped by lora.Linear with fan_in_fan_out=True, so the same four
                   sites are targeted as for lora)
          ia3      PEFT's own defaults (IA3Config with target_modules=None), which in peft
                   0.13.2 are: gpt2 target ["c_attn", "mlp.c_proj"], feedforward
                   ["mlp.c_proj"]  (hone: attn.qkv output scaling, mlp.down input scaling);
                   llama target ["k_proj", "v_proj", "down_proj"], feedforward ["down_proj"]
                   (hone: attn.k, attn.v output scaling, mlp.down input scaling)
          lora_ia3 LoRA (as lora) and IA3 on disjoint sites in one model, built with
                   peft.inject_adapter_in_model(lora_cfg) then inject_adapter_in_model(ia3_cfg);
                   gpt2: LoRA attn.o, mlp.up; IA3 attn.qkv (output), mlp.down (input)
                   llama: LoRA attn.q, attn.o; IA3 attn.k, attn.v (output), mlp.down (input).
                   Injecting IA3 freezes every parameter whose name lacks "ia3_", the LoRA
                   matrices included, so they are made trainable again by hand afterwards;
                   the merge is done by calling merge() on each adapter layer and putting its
                   base layer back in its place (there is no PeftModel to merge_and_unload).
          bitfit   (gpt2 only) no peft: only the bias parameters are trainable

Every add-on tensor is set to seeded random non-zero values (lora_A, lora_B ~ 0.1 N(0,1);
DoRA magnitude = peft's initial value times 1 + 0.1 N(0,1); IA3 vectors 1 + 0.2 N(0,1)),
then one forward/backward on a (B=2, T=16) batch with some targets ignored, loss = summed
cross-entropy over the counted targets / their count.

Tensors (float32 unless said; names are hone's), in {arch}_base.safetensors:
  param.<row>            every base row, hone layout ((out, in) matrices, tok_embed padded to
                         (Vp, C) with zero rows), before any merge
  input.tokens, input.targets   I32 (B, T); target -1 = ignored
and in each {arch}_{method}.safetensors (no param.* or input.*: take them from the base file):
  peft.<row>             the add-ons: layers.N.<site>.lora_A (r, in), .lora_B (out, r),
                         .dora_m (out,), .ia3 (out,) for output scaling or (in,) for
                         feed-forward (input) scaling
  out.logits (B, T, V), out.loss (1,)
  grad.<row>             the gradient of every trainable tensor (add-on rows; bitfit: bias rows)
  merged.<row>           (not bitfit) every base row PEFT's merge changes, hone layout
  out.merged_logits      (not bitfit) the merged model's logits on the same tokens
Metadata, every file: arch, L, C, NH, NKV, F, V, Vp, maxT, eps, rope_theta (llama), B, T,
generator. For gpt2, NKV = NH and F = 4C. Method files add method, peft_yaml (hone's config
text for the method), trainable (sum of numel over the parameters that require grad) and base
(the base file's name, e.g. "gpt2_base.safetensors", in the same folder).
All of an arch's methods use the same base weights and batch (from the same seeds,
WEIGHT_SEED and DATA_SEED; asserted against the base file, including the weights the wrapped
model actually holds), so they are stored once per arch.
Sizes: gpt2_base 0.51 MB, llama_base 0.45 MB; method files 0.05 MB (gpt2_bitfit) to
0.55 MB, mostly merged.* (up to 0.4 MB) plus the two logits tensors (0.04 MB each); about
5.5 MB in all (9.8 MB when every file carried its own param.* and input.*).

Observed peft 0.13.2 behaviour the C side has to match:
  - IA3 output scaling (not feed-forward) multiplies the whole base output, bias included:
    y = (W x + b) * l, and its merge scales the bias too (merged.layers.N.attn.qkv.bias is
    stored for gpt2). Feed-forward IA3 is y = W (x * l) + b; its merge scales W's input
    columns and leaves the bias alone.
  - DoRA: y = W x + b + (m / n - 1) * (W x) + (m / n) * s * B A x, i.e. (m / n)(W + s B A) x + b
    with the bias NOT scaled; n = the L2 norm of each output row of W + s B A (over the input
    dimension, hone layout (out, in)), computed with lora_B @ lora_A detached and the norm
    itself detached (no gradient flows through n). The initial magnitude is the row norm of W
    (lora_B starts at zero). The merge is W' = (m / n) (W + s B A), bias unchanged.

Interpreter: Debian's /usr/bin/python3 with torch 1.13 (CPU), transformers 4.46.3 and
peft 0.13.2 (pip install --break-system-packages --no-deps peft==0.13.2); the exact versions
are printed and stored in each file's "generator" metadata.
Run from anywhere:  /usr/bin/python3 scripts/make_peft_fixtures.py
Rerunning reproduces every file, the base files included, bit for bit (fixed seeds, one
thread); it also prints the float32-vs-float64 table quoted at the top.
"""

import copy
import os
import re
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (safetensors writer, entries, batches)
import torch_gpt2 as tg  # noqa: E402  (loss)

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import IA3Config, LoraConfig, get_peft_model, inject_adapter_in_model  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

OUT = os.path.join(mf.FIXTURES, "peft")
L, C, NH, NKV, F_LLAMA, V, Vp, MAXT, EPS, THETA = 2, 64, 4, 2, 160, 300, 384, 32, 1e-5, 10000.0
B, T = mf.B, mf.T
RANK, ALPHA = 4, 16

# hone site -> the transformers module under the layer
HF_SITE = {
    "gpt2": {"attn.qkv": "attn.c_attn", "attn.o": "attn.c_proj", "mlp.up": "mlp.c_fc",
             "mlp.down": "mlp.c_proj"},
    "llama": {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
              "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj",
              "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"},
}
SITE_ORDER = ["attn.qkv", "attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"]
LAYER_PREFIX = {"gpt2": "transformer.h", "llama": "model.layers"}
ADDON_KIND = {"lora_A": "lora_A", "lora_B": "lora_B", "lora_magnitude_vector": "dora_m",
              "ia3_l": "ia3"}

# seeds: base weights and data per arch (shared by all of that arch's fixtures), add-ons per file
WEIGHT_SEED = {"gpt2": 1111, "llama": 2222}
DATA_SEED = {"gpt2": 3333, "llama": 4444}
ADDON_SEED = {("gpt2", "lora"): 11, ("gpt2", "rslora"): 12, ("gpt2", "dora"): 13,
              ("gpt2", "ia3"): 14, ("gpt2", "lora_ia3"): 15, ("gpt2", "bitfit"): 16,
              ("llama", "lora"): 21, ("llama", "rslora"): 22, ("llama", "dora"): 23,
              ("llama", "ia3"): 24, ("llama", "lora_ia3"): 25}

LORA_SITES = {"gpt2": ["attn.qkv", "attn.o", "mlp.up", "mlp.down"],
              "llama": ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"]}
# the combination: LoRA sites, IA3 sites, IA3 feed-forward sites (disjoint from the LoRA ones)
MIX_SITES = {"gpt2": (["attn.o", "mlp.up"], ["attn.qkv", "mlp.down"], ["mlp.down"]),
             "llama": (["attn.q", "attn.o"], ["attn.k", "attn.v", "mlp.down"], ["mlp.down"])}
# what PEFT's IA3 defaults should come to, in hone's names (checked against what it does)
IA3_DEFAULT = {"gpt2": (["attn.qkv", "mlp.down"], ["mlp.down"]),
               "llama": (["attn.k", "attn.v", "mlp.down"], ["mlp.down"])}

METHODS = {"gpt2": ["lora", "rslora", "dora", "ia3", "lora_ia3", "bitfit"],
           "llama": ["lora", "rslora", "dora", "ia3", "lora_ia3"]}


# ---- base models and hone's names ----

def hone_names(arch):
    """hone row name -> (transformers parameter name, transposed?) in hone's file order"""
    if arch == "llama":
        m = {"tok_embed.weight": ("model.embed_tokens.weight", False),
             "final_norm.weight": ("model.norm.weight", False)}
        for l in range(L):
            p = f"model.layers.{l}."
            m[f"layers.{l}.attn_norm.weight"] = (p + "input_layernorm.weight", False)
            for site in ["attn.q", "attn.k", "attn.v", "attn.o"]:
                m[f"layers.{l}.{site}.weight"] = (p + HF_SITE[arch][site] + ".weight", False)
            m[f"layers.{l}.mlp_norm.weight"] = (p + "post_attention_layernorm.weight", False)
            for site in ["mlp.gate", "mlp.up", "mlp.down"]:
                m[f"layers.{l}.{site}.weight"] = (p + HF_SITE[arch][site] + ".weight", False)
        return m
    m = {"tok_embed.weight": ("transformer.wte.weight", False),
         "pos_embed.weight": ("transformer.wpe.weight", False)}
    for l in range(L):
        p = f"transformer.h.{l}."
        for hone, hf, conv in [("attn_norm", "ln_1", False), ("attn.qkv", "attn.c_attn", True),
                               ("attn.o", "attn.c_proj", True), ("mlp_norm", "ln_2", False),
                               ("mlp.up", "mlp.c_fc", True), ("mlp.down", "mlp.c_proj", True)]:
            m[f"layers.{l}.{hone}.weight"] = (p + hf + ".weight", conv)  # Conv1D is (in, out)
            m[f"layers.{l}.{hone}.bias"] = (p + hf + ".bias", False)
    m["final_norm.weight"] = ("transformer.ln_f.weight", False)
    m["final_norm.bias"] = ("transformer.ln_f.bias", False)
    return m


def pad_vocab(name, t):
    """hone keeps the embedding padded to Vp rows; the padded rows are zero"""
    if name != "tok_embed.weight":
        return t
    out = torch.zeros(Vp, t.shape[1], dtype=t.dtype)
    out[: t.shape[0]] = t
    return out


def hone_rows(model, arch):
    """every base row of a plain (unwrapped or merged) transformers model, hone layout"""
    hf = dict(model.named_parameters())
    rows = {}
    for hone, (name, conv) in hone_names(arch).items():
        t = hf[name].detach()
        rows[hone] = pad_vocab(hone, t.t().contiguous() if conv else t.clone())
    return rows


def build_base(arch):
    """the tiny model with seeded non-trivial weights; the same weights on every call"""
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = GPT2Config(n_layer=L, n_embd=C, n_head=NH, vocab_size=V, n_positions=MAXT,
                         n_inner=None, activation_function="gelu_new", layer_norm_epsilon=EPS,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
                         tie_word_embeddings=True, attn_implementation="eager")
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F_LLAMA, num_hidden_layers=L,
                          num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=MAXT,
                          rms_norm_eps=EPS, rope_theta=THETA, tie_word_embeddings=True,
                          attention_bias=False, mlp_bias=False, attention_dropout=0.0,
                          hidden_act="silu", attn_implementation="eager")
        model = LlamaForCausalLM(cfg)
    model = model.float().eval()
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    gen = torch.Generator().manual_seed(WEIGHT_SEED[arch])
    hf = dict(model.named_parameters())
    names = hone_names(arch)
    assert sorted(n for n, _ in names.values()) == sorted(hf), "mapping misses a parameter"
    with torch.no_grad():
        for hone, (name, _) in names.items():
            p = hf[name]
            if "norm" in hone and hone.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif hone.endswith(".bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


# ---- adapters ----

def site_regex(arch, sites):
    """a full-match regex for exactly these hone sites in every layer"""
    alts = "|".join(re.escape(HF_SITE[arch][s]) for s in sites)
    return rf"{re.escape(LAYER_PREFIX[arch])}\.\d+\.(?:{alts})"


def lora_config(arch, sites, rslora=False, dora=False):
    return LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, bias="none",
                      target_modules=site_regex(arch, sites), fan_in_fan_out=(arch == "gpt2"),
                      use_rslora=rslora, use_dora=dora, task_type="CAUSAL_LM")


def hone_site(arch, module_name):
    """'...transformer.h.1.attn.c_attn' -> (1, 'attn.qkv')"""
    m = re.search(rf"{re.escape(LAYER_PREFIX[arch])}\.(\d+)\.(.+)$", module_name)
    inv = {v: k for k, v in HF_SITE[arch].items()}
    return int(m.group(1)), inv[m.group(2)]


def addon_row(arch, param_name):
    """peft parameter name -> hone add-on row 'layers.N.<site>.<kind>'"""
    m = re.match(r"(.*)\.(lora_A|lora_B|lora_magnitude_vector|ia3_l)\.default(?:\.weight)?$", param_name)
    assert m, param_name
    l, site = hone_site(arch, m.group(1))
    return f"layers.{l}.{site}.{ADDON_KIND[m.group(2)]}"


def adapter_layers(model, arch):
    """[(layer, site, tuner layer)] for every injected adapter layer"""
    return [(*hone_site(arch, n), mod) for n, mod in model.named_modules()
            if isinstance(mod, BaseTunerLayer)]


def sort_sites(sites):
    return sorted(set(sites), key=SITE_ORDER.index)


def yaml_list(sites):
    return "[" + ", ".join(sort_sites(sites)) + "]"


def lora_yaml(sites, rslora=False, dora=False):
    return (f"  - lora: {{targets: {yaml_list(sites)}, rank: {RANK}, alpha: {ALPHA}, dropout: 0, "
            f"rslora: {'true' if rslora else 'false'}, dora: {'true' if dora else 'false'}}}\n")


def ia3_yaml(sites, ff):
    return f"  - ia3: {{targets: {yaml_list(sites)}, feedforward: {yaml_list(ff)}}}\n"


def observed_ia3(model, arch):
    """(targets, feed-forward targets) in hone site names, as the injected IA3 layers say"""
    layers = [(site, mod.is_feedforward) for _, site, mod in adapter_layers(model, arch)
              if hasattr(mod, "ia3_l")]
    return sort_sites(s for s, _ in layers), sort_sites(s for s, ff in layers if ff)


def build(arch, method):
    """(model to run, peft_yaml); the model's trainable parameters are the method's tensors"""
    model = build_base(arch)
    torch.manual_seed(0)  # peft's own inits draw from the global generator; overwritten anyway
    if method in ("lora", "rslora", "dora"):
        rs, do = method == "rslora", method == "dora"
        model = get_peft_model(model, lora_config(arch, LORA_SITES[arch], rs, do))
        return model, "peft:\n" + lora_yaml(LORA_SITES[arch], rs, do)
    if method == "ia3":
        model = get_peft_model(model, IA3Config(task_type="CAUSAL_LM", fan_in_fan_out=(arch == "gpt2")))
        cfg = model.peft_config["default"]
        print(f"  peft's IA3 defaults for {arch}: target_modules={sorted(cfg.target_modules)} "
              f"feedforward_modules={sorted(cfg.feedforward_modules)}")
        targets, ff = observed_ia3(model, arch)
        assert (targets, ff) == IA3_DEFAULT[arch], (targets, ff)
        return model, "peft:\n" + ia3_yaml(targets, ff)
    if method == "lora_ia3":
        lora_sites, ia3_sites, ff_sites = MIX_SITES[arch]
        model = inject_adapter_in_model(lora_config(arch, lora_sites), model)
        ia3_cfg = IA3Config(target_modules=site_regex(arch, ia3_sites),
                            feedforward_modules=site_regex(arch, ff_sites),
                            fan_in_fan_out=(arch == "gpt2"))
        model = inject_adapter_in_model(ia3_cfg, model)
        frozen = [n for n, p in model.named_parameters() if "lora_" in n and not p.requires_grad]
        assert frozen, "expected IA3's injection to freeze the LoRA matrices"
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n or "ia3_" in n)
        assert observed_ia3(model, arch) == (sort_sites(ia3_sites), sort_sites(ff_sites))
        assert sort_sites(s for _, s, m in adapter_layers(model, arch) if hasattr(m, "lora_A")) \
            == sort_sites(lora_sites)
        return model, "peft:\n" + lora_yaml(lora_sites) + ia3_yaml(ia3_sites, ff_sites)
    assert method == "bitfit" and arch == "gpt2"
    for n, p in model.named_parameters():
        p.requires_grad_(n.endswith(".bias"))
    return model, "peft:\n  - bitfit\n"


def set_addons(model, arch, seed):
    """seeded non-zero values for every add-on; returns {hone add-on row: parameter}"""
    gen = torch.Generator().manual_seed(seed)
    rows = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            row = addon_row(arch, n)
            kind = row.rsplit(".", 1)[1]
            if kind in ("lora_A", "lora_B"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif kind == "dora_m":
                p.mul_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            rows[row] = p
    return rows


def check_addon_shapes(arch, model, rows, params):
    """peft's shapes against hone's: lora_A (r, in), lora_B (out, r), DoRA magnitude (out,),
    IA3 (out, 1) for output scaling and (1, in) for feed-forward (stored flattened)"""
    feedforward = {(l, s): getattr(m, "is_feedforward", None) for l, s, m in adapter_layers(model, arch)}
    for row, p in rows.items():
        l, rest = row.split(".", 1)[1].split(".", 1)
        site, kind = rest.rsplit(".", 1)
        out_f, in_f = params[f"layers.{l}.{site}.weight"].shape
        want = {"lora_A": (RANK, in_f), "lora_B": (out_f, RANK), "dora_m": (out_f,),
                "ia3": (1, in_f) if feedforward[(int(l), site)] else (out_f, 1)}[kind]
        assert tuple(p.shape) == want, (row, tuple(p.shape), want)


def merge(model, arch, method):
    """the merged plain transformers model"""
    if method != "lora_ia3":
        return model.merge_and_unload()
    for l, site, mod in adapter_layers(model, arch):
        mod.merge()
    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer):
            parent_name, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent_name), child, mod.get_base_layer())
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    return model


# ---- the computation ----

def logits_of(model, tokens):
    return model(input_ids=tokens.long()).logits


def run(model, arch, method, tokens, targets):
    """logits, loss, {grad row: gradient}, merged rows, merged logits (None for bitfit)"""
    model.zero_grad(set_to_none=True)
    logits = logits_of(model, tokens)
    total, count = tg.loss_sum(logits, targets)
    assert count > 0
    loss = total / count
    loss.backward()
    if method == "bitfit":
        hone = {name: h for h, (name, _) in hone_names(arch).items()}
        grads = {hone[n]: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return logits.detach(), loss.detach(), grads, None, None
    grads = {addon_row(arch, n): p.grad.detach().clone().reshape(-1 if "ia3_l" in n else p.shape)
             for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        merged_model = merge(model, arch, method)
        merged = hone_rows(merged_model, arch)
        merged_logits = logits_of(merged_model, tokens)
    return logits.detach(), loss.detach(), grads, merged, merged_logits


def shape_meta(arch):
    """the model-shape metadata every file of an arch carries (base and method files alike)"""
    meta = {"arch": arch, "L": str(L), "C": str(C), "NH": str(NH),
            "NKV": str(NKV if arch == "llama" else NH), "F": str(F_LLAMA if arch == "llama" else 4 * C),
            "V": str(V), "Vp": str(Vp), "maxT": str(MAXT), "eps": repr(EPS)}
    if arch == "llama":
        meta["rope_theta"] = repr(THETA)
    meta.update({"B": str(B), "T": str(T)})
    return meta


def generator(arch):
    return GENERATOR.format(cls="GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM")


def base_batch(arch):
    """the arch's (tokens, targets), the same on every call"""
    return mf.random_batch(torch.Generator().manual_seed(DATA_SEED[arch]), B, T)


def base_file(arch):
    return f"{arch}_base.safetensors"


def make_base(arch):
    """writes {arch}_base.safetensors (param.*, input.*) and returns (params, tokens, targets)"""
    print(f"{arch}_base:")
    params = hone_rows(build_base(arch), arch)
    tokens, targets = base_batch(arch)
    tensors = [mf.entry("param." + h, mf.f32(t)) for h, t in params.items()]
    tensors += [mf.entry("input.tokens", mf.i32(tokens)), mf.entry("input.targets", mf.i32(targets))]
    meta = shape_meta(arch)
    meta["generator"] = generator(arch)
    path = os.path.join(OUT, base_file(arch))
    mf.write_safetensors(path, tensors, meta)
    print(f"  wrote {os.path.relpath(path, mf.ROOT)} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
    return params, tokens, targets


def run_model_base_rows(model, arch):
    """the base rows (hone layout) the model about to be run actually holds, add-ons left out;
    peft's wrapping ("base_model.model." prefix, ".base_layer") is undone"""
    hf = {re.sub(r"^base_model\.model\.", "", n).replace(".base_layer.", "."): p
          for n, p in model.named_parameters() if "lora_" not in n and "ia3_" not in n}
    names = hone_names(arch)
    assert sorted(hf) == sorted(n for n, _ in names.values()), sorted(hf)
    return {h: pad_vocab(h, hf[n].detach().t().contiguous() if conv else hf[n].detach().clone())
            for h, (n, conv) in names.items()}


def same_rows(a, b):
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def make(arch, method, base):
    print(f"{arch}_{method}:")
    base_params, base_tokens, base_targets = base
    model, yaml = build(arch, method)
    # the file leaves the base weights and the batch to {arch}_base.safetensors: the model run
    # here must hold exactly those weights
    assert same_rows(run_model_base_rows(model, arch), base_params), f"{arch}_{method}: base weights differ"
    model.eval()  # injected adapter layers start in training mode (their dropout is 0 anyway)
    assert not any(m.training for m in model.modules())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the rows a merge must change: every adapted weight, and the bias under output-scaling IA3
    expected = set()
    for l, site, mod in adapter_layers(model, arch):
        expected.add(f"layers.{l}.{site}.weight")
        if hasattr(mod, "ia3_l") and not mod.is_feedforward and arch == "gpt2":
            expected.add(f"layers.{l}.{site}.bias")
    params = hone_rows(build_base(arch), arch)  # base rows before any merge (same seeded weights)
    assert same_rows(params, base_params)
    if method == "dora":  # peft's initial magnitude: the L2 norm of each output row of W
        for n, p in model.named_parameters():
            if "lora_magnitude_vector" in n:
                w = params[addon_row(arch, n).replace(".dora_m", ".weight")]
                assert torch.allclose(p, w.norm(dim=1), rtol=1e-6, atol=0), n
    addons = {}
    if method != "bitfit":
        addons = set_addons(model, arch, ADDON_SEED[(arch, method)])
        check_addon_shapes(arch, model, addons, params)
        assert trainable == sum(p.numel() for p in addons.values())
    addon_values = {r: p.detach().clone().flatten() if r.endswith(".ia3") else p.detach().clone()
                    for r, p in addons.items()}

    model64 = copy.deepcopy(model).double()
    tokens, targets = base_batch(arch)
    assert torch.equal(tokens, base_tokens) and torch.equal(targets, base_targets), \
        f"{arch}_{method}: batch differs"

    logits, loss, grads, merged, merged_logits = run(model, arch, method, tokens, targets)
    logits64, loss64, grads64, merged64, merged_logits64 = run(model64, arch, method, tokens, targets)
    assert set(grads) == (set(addons) if method != "bitfit" else
                          {h for h in params if h.endswith(".bias")})
    assert all(g.abs().max() > 0 for g in grads.values())

    worst_grad = max(grads, key=lambda r: mf.rel_diff(grads[r], grads64[r]))
    line = {"logits": mf.rel_diff(logits, logits64), "loss": mf.rel_diff(loss, loss64),
            "grads": mf.rel_diff(grads[worst_grad], grads64[worst_grad])}
    changed = []
    if merged is not None:
        changed = [h for h in params if not torch.equal(merged[h], params[h])]
        assert set(changed) == expected, sorted(set(changed) ^ expected)
        worst_merged = max(changed, key=lambda h: mf.rel_diff(merged[h], merged64[h]))
        line["merged"] = mf.rel_diff(merged[worst_merged], merged64[worst_merged])
        line["merged_logits"] = mf.rel_diff(merged_logits, merged_logits64)
        line["|merged-unmerged|"] = mf.rel_diff(merged_logits, logits)
        print(f"  merge changes {len(changed)} rows: {', '.join(changed)}")
    print(f"  trainable {trainable}; loss {loss.item():.6f}; worst grad {worst_grad}")
    print("  float32 vs float64 (max|d|/max|ref|): "
          + "  ".join(f"{k} {v:.2e}" for k, v in line.items()))

    # param.* and input.* live in the arch's base file
    tensors = [mf.entry("peft." + r, mf.f32(t)) for r, t in addon_values.items()]
    tensors += [mf.entry("out.logits", mf.f32(logits)), mf.entry("out.loss", mf.f32(loss.reshape(1)))]
    tensors += [mf.entry("grad." + r, mf.f32(g)) for r, g in grads.items()]
    if merged is not None:
        tensors += [mf.entry("merged." + h, mf.f32(merged[h])) for h in changed]
        tensors += [mf.entry("out.merged_logits", mf.f32(merged_logits))]
    meta = shape_meta(arch)
    meta.update({"method": method, "peft_yaml": yaml, "trainable": str(trainable),
                 "generator": generator(arch), "base": base_file(arch)})
    path = os.path.join(OUT, f"{arch}_{method}.safetensors")
    mf.write_safetensors(path, tensors, meta)
    print(f"  wrote {os.path.relpath(path, mf.ROOT)} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
    return line


GENERATOR = ("scripts/make_peft_fixtures.py, torch " + torch.__version__ + ", transformers "
             + transformers.__version__ + ", peft " + peft.__version__ + "; {cls} (eager attention)")


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
    os.makedirs(OUT, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    table = []
    for arch in ("gpt2", "llama"):
        base = make_base(arch)
        for method in METHODS[arch]:
            table.append((f"{arch}_{method}", make(arch, method, base)))
    keys = ["logits", "loss", "grads", "merged", "merged_logits", "|merged-unmerged|"]
    print("\nfloat32 vs float64, max|d|/max|ref| (worst tensor of each kind):")
    print(f"  {'fixture':<16s}" + "".join(f"{k:>19s}" for k in keys))
    for name, line in table:
        print(f"  {name:<16s}" + "".join(f"{line[k]:>19.2e}" if k in line else f"{'-':>19s}" for k in keys))


if __name__ == "__main__":
    main()
