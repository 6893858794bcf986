#!/usr/bin/env python3
"""PyTorch's own prefill of ttft_bench's model shape: the peer for the GPU TTFT table.

Builds a Llama-architecture decoder in plain PyTorch (no transformers package) with the
shape ttft_bench benchmarks, random weights, and times a full prefill: one forward over
N prompt tokens with a causal mask, then the LM head on the last position and a greedy
pick of the first token (what ttft_bench's "full" mode times). Per token count: warm-up
runs, then the median (min, max) of timed runs, each bracketed by
torch.cuda.synchronize() and time.perf_counter().

The shape and the token counts come from ttft_bench itself (one source of truth):

    ttft_bench --shape llama3-8b --lengths 512,2048,8192,32768 --print_config > shape.json
    python3 bench/ttft/pytorch_peer.py --shape_json shape.json --device cuda

Writes <out>/ttft_<tag>.csv and .md; the tag defaults to <shape>_pytorch on CUDA and
<shape>_pytorch_cpu on the CPU, so CPU runs are never mistaken for GPU ones. The CSV's
first six columns are ttft_bench's (tokens,passages,mode,median_ms,min_ms,max_ms; mode is
"pytorch_full"), so merge_gpu_table.py (and plot.sh's column layout) can read both.

Weights: bf16 on CUDA, fp32 on the CPU (override with --dtype), drawn uniformly with the
scales engine/tiny_model.cc uses (timing does not depend on the values).
Attention: F.scaled_dot_product_attention(is_causal=True) where this torch has it, else a
manual causal softmax attention processed in query chunks (bounded memory at 32K tokens).

STATUS: run on the CPU (small shape, short prompts); the CUDA path has never run.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, **factory):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **factory))
        self.eps = eps

    def forward(self, x):
        # As Llama: normalize in fp32, scale in the model dtype.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(cfg, n, device):
    """cos/sin [n, head_dim] for positions 0..n-1 (no rope_scaling: ttft_bench's shapes)."""
    if cfg.get("rope_scaling"):
        raise SystemExit("pytorch_peer: rope_scaling is not implemented (ttft_bench's shapes have none)")
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64, device=device) / d))
    ang = torch.outer(torch.arange(n, dtype=torch.float64, device=device), inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x, cos, sin):
    # x: [B, H, N, D]; rotate_half convention (Hugging Face Llama).
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rot * sin.to(x.dtype)  # in the model dtype, as HF Llama


def causal_attention(q, k, v, chunk):
    """q [B,H,N,D], k/v [B,H,N,D] (KV heads already repeated). Causal."""
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    n, scale = q.shape[2], 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty_like(q)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        scores = torch.matmul(q[:, :, s:e].float(), k[:, :, :e].float().transpose(-1, -2)) * scale
        rows = torch.arange(s, e, device=q.device)[:, None]
        cols = torch.arange(e, device=q.device)[None, :]
        scores.masked_fill_(cols > rows, float("-inf"))
        out[:, :, s:e] = torch.matmul(scores.softmax(-1), v[:, :, :e].float()).to(q.dtype)
    return out


class Layer(nn.Module):
    def __init__(self, cfg, **factory):
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.heads, self.kv_heads, self.head_dim = (
            cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"])
        # Biases as Hugging Face builds them (engine/model_config.h): a llama's
        # attention_bias covers q/k/v AND o_proj, its mlp_bias gate/up/down; mistral
        # has none (main() refuses other families).
        llama = cfg.get("model_type", "llama") == "llama"
        bias = llama and bool(cfg.get("attention_bias", False))
        mlp_bias = llama and bool(cfg.get("mlp_bias", False))
        self.input_layernorm = RMSNorm(h, cfg["rms_norm_eps"], **factory)
        self.q_proj = nn.Linear(h, self.heads * self.head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=bias, **factory)
        self.o_proj = nn.Linear(self.heads * self.head_dim, h, bias=bias, **factory)
        self.post_attention_layernorm = RMSNorm(h, cfg["rms_norm_eps"], **factory)
        self.gate_proj = nn.Linear(h, i, bias=mlp_bias, **factory)
        self.up_proj = nn.Linear(h, i, bias=mlp_bias, **factory)
        self.down_proj = nn.Linear(i, h, bias=mlp_bias, **factory)

    def forward(self, x, cos, sin, chunk):
        b, n, _ = x.shape
        a = self.input_layernorm(x)
        q = self.q_proj(a).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(a).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(a).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        groups = self.heads // self.kv_heads
        k = k.repeat_interleave(groups, dim=1)  # grouped-query attention
        v = v.repeat_interleave(groups, dim=1)
        o = causal_attention(q, k, v, chunk).transpose(1, 2).reshape(b, n, -1)
        x = x + self.o_proj(o)
        m = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(m)) * self.up_proj(m))


class LlamaPeer(nn.Module):
    def __init__(self, cfg, device, dtype, attn_chunk=1024):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.cfg, self.attn_chunk = cfg, attn_chunk
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"], **factory)
        self.layers = nn.ModuleList(Layer(cfg, **factory) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"], **factory)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False, **factory)
        if cfg.get("tie_word_embeddings"):
            self.lm_head.weight = self.embed_tokens.weight
        self._init_random()

    @torch.no_grad()
    def _init_random(self):
        # Scales of engine/tiny_model.cc's RandomTensor: norms 1 +- 0.2, biases +-0.1,
        # embeddings +-1, q/k +-3/sqrt(fan_in), other matrices +-1.7/sqrt(fan_in).
        for name, p in self.named_parameters():
            if "norm" in name:
                p.uniform_(0.8, 1.2)
            elif p.dim() == 1:
                p.uniform_(-0.1, 0.1)
            elif "embed_tokens" in name:
                p.uniform_(-1.0, 1.0)
            else:
                bound = (3.0 if ("q_proj" in name or "k_proj" in name) else 1.7) / math.sqrt(p.shape[1])
                p.uniform_(-bound, bound)

    @torch.inference_mode()
    def first_token(self, ids):
        """Full causal prefill over ids [1, N]; returns the greedy first token (an int)."""
        n = ids.shape[1]
        cos, sin = rope_tables(self.cfg, n, ids.device)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, self.attn_chunk)
        logits = self.lm_head(self.norm(x[:, -1:]))  # TTFT needs only the last position
        return int(logits.argmax(-1).item())  # .item() waits for the device


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_prefill(model, n, vocab, device, warmup, repeats, max_cell_seconds, seed):
    g = torch.Generator().manual_seed(seed + n)
    ids = torch.randint(0, vocab, (1, n), generator=g).to(device)
    for _ in range(warmup):
        model.first_token(ids)
    ms = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        model.first_token(ids)
        sync(device)
        ms.append(1000 * (time.perf_counter() - t0))
        if ms[-1] > 1000 * max_cell_seconds:
            break
    return ms


def device_description(device):
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (f"{p.name} (CUDA device {device.index or 0}, compute capability {p.major}.{p.minor}, "
                f"{p.total_memory / 2**30:.1f} GiB, torch CUDA {torch.version.cuda})")
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def self_test(device):
    """Asserts the pieces the timing relies on: the manual attention (chunked) equals a
    one-shot masked softmax and, where this torch has it, SDPA; the prefill is causal
    (a token's output ignores later tokens)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 37, 16, generator=g).to(device) for _ in range(3))
    scores = (q @ k.transpose(-1, -2)) / 4.0
    scores = scores.masked_fill(torch.ones(37, 37, dtype=torch.bool, device=device).triu(1), float("-inf"))
    want = scores.softmax(-1) @ v
    global HAS_SDPA
    had = HAS_SDPA
    try:
        HAS_SDPA = False
        for chunk in (5, 37, 64):
            got = causal_attention(q, k, v, chunk)
            assert torch.allclose(got, want, atol=1e-4), f"manual attention, chunk {chunk}"
    finally:
        HAS_SDPA = had
    if HAS_SDPA:
        assert torch.allclose(causal_attention(q, k, v, 8), want, atol=1e-3), "SDPA"
    cfg = {"vocab_size": 50, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "rope_scaling": None}
    torch.manual_seed(0)
    model = LlamaPeer(cfg, device, torch.float32, attn_chunk=3).eval()
    ids = torch.randint(0, 50, (1, 12), generator=g).to(device)
    with torch.inference_mode():
        cos, sin = rope_tables(cfg, 12, device)
        def hidden(t):
            x = model.embed_tokens(t)
            for layer in model.layers:
                x = layer(x, cos[: t.shape[1]], sin[: t.shape[1]], 3)
            return x
        other_first = ids.clone()
        other_first[0, 0] = (ids[0, 0] + 1) % 50
        full, prefix, changed = hidden(ids), hidden(ids[:, :7]), hidden(other_first)
    # Loose enough for GPU kernels that differ with the sequence length; a wrong mask
    # changes these outputs by O(1).
    assert torch.allclose(full[:, :7], prefix, atol=1e-3, rtol=1e-3), "prefill is not causal"
    assert not torch.allclose(full[:, 7], changed[:, 7], atol=1e-3), "output ignores earlier tokens"
    assert isinstance(model.first_token(ids), int)
    print(f"pytorch_peer self-test on {device}: ok (attention: "
          f"{'SDPA and manual' if HAS_SDPA else 'manual'})", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self_test", action="store_true", help="run the self-checks on --device and exit")
    ap.add_argument("--shape_json",
                    help="output of `ttft_bench --shape S --lengths ... --print_config` ('-': stdin)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                    help="default: bf16 on CUDA, fp32 on the CPU")
    ap.add_argument("--tokens", default="", help="comma-separated prompt lengths (default: the JSON's prompt_tokens)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per token count")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per token count")
    ap.add_argument("--max_cell_seconds", type=float, default=120,
                    help="stop repeating a token count once a run takes longer")
    ap.add_argument("--attn_chunk", type=int, default=1024,
                    help="query rows per step of the manual attention (used only without SDPA)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--tag", default="", help="file names ttft_<tag>.{csv,md} (default: <shape>_pytorch[_cpu])")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"pytorch_peer: --device cuda, but this torch ({torch.__version__}) sees no "
                         f"CUDA GPU (built with CUDA: {torch.version.cuda or 'no'})")
    if args.self_test:
        self_test(device)
        return 0
    if not args.shape_json:
        ap.error("--shape_json is required")

    with (sys.stdin if args.shape_json == "-" else open(args.shape_json)) as f:
        spec = json.load(f)
    cfg = spec["config"]
    if cfg.get("model_type", "llama") not in ("llama", "mistral"):
        raise SystemExit(f"pytorch_peer: model_type {cfg['model_type']} is not built here")
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    # Attention here is full causal: a sliding window (mistral; absent key = 4096 as in
    # MistralConfig, null = none) shorter than a timed prompt would time another model.
    window = cfg.get("sliding_window", 4096) if cfg.get("model_type") == "mistral" else None
    timed = [int(t) for t in args.tokens.split(",")] if args.tokens else list(spec["prompt_tokens"])
    if window is not None and window < max(timed, default=0):
        raise SystemExit(f"pytorch_peer: sliding_window {window} is shorter than the longest prompt "
                         f"({max(timed)} tokens) and is not implemented here (full attention only)")
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(args.seed)

    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else list(spec["prompt_tokens"])
    passages = dict(zip(spec.get("prompt_tokens", []), spec.get("passages", [])))
    tag = args.tag or (spec["shape"] + ("_pytorch" if device.type == "cuda" else "_pytorch_cpu"))
    command = " ".join([os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "pytorch_peer.py"]
                       + (argv if argv is not None else sys.argv[1:]))

    t0 = time.perf_counter()
    model = LlamaPeer(cfg, device, dtype, args.attn_chunk).eval()
    sync(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"pytorch_peer: {spec['shape']} ({params / 1e6:.1f}M parameters, {dtype_name}) on "
          f"{device_description(device)}, built in {time.perf_counter() - t0:.1f} s; attention: "
          f"{'F.scaled_dot_product_attention' if HAS_SDPA else 'manual (chunked)'}", file=sys.stderr)

    header = "| tokens | PyTorch full prefill ms |\n|---:|---:|\n"
    table, csv = header, "tokens,passages,mode,median_ms,min_ms,max_ms,runs\n"
    print(header, end="", flush=True)
    for n in tokens:
        ms = time_prefill(model, n, cfg["vocab_size"], device, args.warmup, args.repeats,
                          args.max_cell_seconds, args.seed)
        med, lo, hi = sorted(ms)[len(ms) // 2], min(ms), max(ms)  # ttft_bench's median
        cell = f"{med:.1f} (n=1)" if len(ms) == 1 else f"{med:.1f} ({lo:.1f}–{hi:.1f})"
        row = f"| {n} | {cell} |\n"
        print(row, end="", flush=True)
        table += row
        csv += f"{n},{passages.get(n, '')},pytorch_full,{med:.3f},{lo:.3f},{hi:.3f},{len(ms)}\n"

    c = cfg
    md = (f"# TTFT peer: PyTorch full prefill ({tag})\n\n"
          f"Model: {spec['shape']} shape (from ttft_bench --print_config), {c['num_hidden_layers']} layers, "
          f"hidden {c['hidden_size']}, {c['num_attention_heads']} heads / {c['num_key_value_heads']} KV heads, "
          f"MLP {c['intermediate_size']}, vocab {c['vocab_size']}, random weights, {dtype_name}.\n"
          f"Backend: pytorch {torch.__version__} on {device_description(device)}; attention "
          f"{'F.scaled_dot_product_attention(is_causal=True)' if HAS_SDPA else f'manual causal softmax in {args.attn_chunk}-row chunks'}; "
          f"plain torch modules, eager mode, no KV cache kept.\n"
          f"Each run: embedding, all layers over the whole prompt (causal), final norm and LM head "
          f"on the last position, greedy first token. Cells: median (min–max) of {args.repeats} runs after "
          f"{args.warmup} untimed warm-up run(s), ms (torch.cuda.synchronize around each run on CUDA; "
          f"the upper middle run for even counts, as ttft_bench; a run over {args.max_cell_seconds:.0f} s stops the repeats).\n"
          f"Command: {command}\n\n{table}")
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"ttft_{tag}")
    with open(base + ".csv", "w") as f:
        f.write(csv)
    with open(base + ".md", "w") as f:
        f.write(md)
    print(f"wrote {base}.{{md,csv}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
