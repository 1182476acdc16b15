"""
A plain-PyTorch GPT-2, written out op by op as hone computes it: the independent reference
that scripts/make_fixtures.py and benchmarks/bench_torch_step.py both use. It is not a port
of any library's model; it needs only torch (tested with Debian's python3-torch 1.13).

Conventions (the same as kernels/ops.h):
  - pre-LN blocks: x = x + o(attn(ln1(x))); x = x + down(gelu_tanh(up(ln2(x))))
  - LayerNorm over the last dimension, eps from the config
  - causal self-attention scaled by 1/sqrt(HS); q, k, v side by side in one projection,
    each split into NH heads of HS = C/NH contiguous columns
  - GELU, tanh approximation
  - the classifier is tied to the token embedding; it computes Vp logits and the first V
    are kept, so the padded rows (V..Vp) of the embedding never get probability
  - parameter names are hone's row names (train/params.h), nn.Linear layout (out, in)
  - cross-entropy ignores targets equal to IGNORE (-1)
"""

import fnmatch
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -1
NO_DECAY_PATTERNS = ("*.bias", "*norm*", "*embed*")


class Attention(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.qkv = nn.Linear(C, 3 * C)
        self.o = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        NH, HS = self.NH, C // self.NH
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, NH, HS).transpose(1, 2)  # (B, NH, T, HS)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))  # (B, NH, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.o(y)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.up = nn.Linear(C, 4 * C)
        self.down = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.down(gelu_tanh(self.up(x)))


class Block(nn.Module):
    def __init__(self, C, NH, eps):
        super().__init__()
        self.attn_norm = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(C, NH)
        self.mlp_norm = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        x = x + self.mlp(self.mlp_norm(x))
        return x


class GPT2(nn.Module):
    def __init__(self, L, C, NH, V, Vp, maxT, eps=1e-5):
        super().__init__()
        assert C % NH == 0 and V <= Vp
        self.V, self.Vp, self.maxT = V, Vp, maxT
        self.tok_embed = nn.Embedding(Vp, C)
        self.pos_embed = nn.Embedding(maxT, C)
        self.layers = nn.ModuleList([Block(C, NH, eps) for _ in range(L)])
        self.final_norm = nn.LayerNorm(C, eps=eps)

    def init_weights(self, gen, std=0.02, norm_noise=0.0):
        """Matrices and embeddings ~ N(0, std), biases 0, LayerNorm weights 1 (GPT-2's
        init); norm_noise > 0 perturbs the LayerNorm weights by 1 + norm_noise * N(0, 1)
        and gives every bias norm_noise/5 * N(0, 1), so a gradient test sees non-trivial
        values there. Draws from gen in named_parameters() order."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name and name.endswith(".weight"):
                    p.copy_(1.0 + norm_noise * torch.randn(p.shape, generator=gen))
                elif name.endswith(".bias"):
                    p.copy_(norm_noise / 5.0 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(std * torch.randn(p.shape, generator=gen))
            self.tok_embed.weight[self.V:].zero_()

    def forward(self, tokens):
        """tokens (B, T) -> logits (B, T, V)"""
        B, T = tokens.shape
        assert T <= self.maxT
        pos = torch.arange(T, device=tokens.device)
        x = self.tok_embed(tokens) + self.pos_embed(pos)
        for block in self.layers:
            x = block(x)
        x = self.final_norm(x)
        return (x @ self.tok_embed.weight.t())[..., : self.V]


def loss_sum(logits, targets):
    """(sum of cross-entropy over the counted positions, how many were counted)"""
    V = logits.shape[-1]
    total = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=IGNORE,
                            reduction="sum")
    return total, int((targets != IGNORE).sum())


def decays(name):
    return not any(fnmatch.fnmatchcase(name, pat) for pat in NO_DECAY_PATTERNS)


def param_groups(model, weight_decay):
    """AdamW groups: weight decay only on the parameters no NO_DECAY_PATTERNS matches"""
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if decays(n)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0},
    ]


def cosine_lr(step, peak, warmup, steps, min_lr_ratio):
    """linear warmup over `warmup` steps, then cosine down to peak * min_lr_ratio"""
    if step < warmup:
        return peak * (step + 1) / warmup
    lo = peak * min_lr_ratio
    progress = (step - warmup) / (steps - warmup)
    return lo + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - lo)
