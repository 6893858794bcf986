"""A Llama decoder in plain PyTorch, following Hugging Face's LlamaForCausalLM math, so
its weights load unchanged in BlockServe's engine (engine/weights.h names and shapes).

Per layer, for x of shape [batch, time, hidden]:
    h   = x + o_proj(Attention(RMSNorm_in(x)))
    out = h + down_proj(silu(gate_proj(RMSNorm_post(h))) * up_proj(RMSNorm_post(h)))
RMSNorm(x) = weight * x / sqrt(mean(x^2) + eps). Attention uses rotate_half RoPE at
explicit per-token positions, grouped-query attention (query head h reads key/value head
h // (heads / kv_heads)), scale 1/sqrt(head_dim), and an explicit boolean mask, so one
forward covers causal full attention and the Block-Attention mask with re-encoded (or
not re-encoded) positions.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, vocab_size, hidden_size=128, intermediate_size=384, num_layers=4,
                 num_heads=4, num_kv_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                 max_position_embeddings=2048, bos_token_id=None, eos_token_id=None,
                 tie_word_embeddings=False):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings

    def hf_json(self, torch_dtype):
        """config.json as Hugging Face's LlamaConfig writes it."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "attention_bias": False,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": torch_dtype,
        }


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(positions, head_dim, theta):
    """cos, sin of shape [batch, time, head_dim] for integer positions [batch, time].

    Angles are computed in float64 (as the engine does) and rounded once to float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = positions.to(torch.float64)[..., None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden_size, c.num_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=False)
        self.keep_probs = False  # training: keep the last forward's attention in .probs

    def forward(self, x, cos, sin, mask):
        """x [B, T, H]; cos/sin [B, T, D]; mask [B, T, T] bool (True: may attend)."""
        c, (b, t, _) = self.c, x.shape
        q = self.q_proj(x).view(b, t, c.num_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = c.num_heads // c.num_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if self.keep_probs:
            self.probs = probs  # [B, heads, T, T]
        out = probs @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, c.num_heads * c.head_dim))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """Parameter names match Hugging Face's (model.layers.L.self_attn.q_proj.weight ...)."""

    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = Backbone(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.apply(self._init)
        if c.tie_word_embeddings:  # one matrix embeds and unembeds (no lm_head.weight exported)
            self.lm_head.weight = self.model.embed_tokens.weight

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens, positions, mask):
        """tokens, positions [B, T] int64; mask [B, T, T] bool. Returns logits [B, T, V]."""
        c = self.config
        cos, sin = rope_tables(positions, c.head_dim, c.rope_theta)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


def causal_mask(length):
    return torch.ones(length, length, dtype=torch.bool).tril()


def block_layout(block_lengths, tail_length, reencode_positions=True, global_blocks=0):
    """Positions [T] and mask [T, T] of a Block-Attention prompt, as the engine builds it.

    `block_lengths` are the cached blocks (system block and passages); the tail (the query,
    plus any answer tokens being scored or decoded) attends to everything before it. The
    last `global_blocks` blocks join the tail: they attend to all earlier tokens too.
    With reencode_positions every token sits at its absolute position (shifting a block
    encoded at 0 to offset o equals encoding it at o); without, each local block keeps
    0..len-1 and the tail starts right after the total length of the blocks.
    """
    local = block_lengths[:len(block_lengths) - global_blocks]
    local_total = sum(local)
    total = sum(block_lengths) + tail_length
    mask = torch.zeros(total, total, dtype=torch.bool)
    positions = torch.arange(total)
    start = 0
    for n in local:
        mask[start:start + n, start:start + n] = causal_mask(n)
        if not reencode_positions:
            positions[start:start + n] = torch.arange(n)
        start += n
    mask[local_total:, :] = causal_mask(total)[local_total:, :]
    return positions, mask
