"""Trains BlockServe's tiny RAG models and writes everything the evaluation needs.

    nice -n 10 /usr/bin/python3 training/train.py        (see training/run.sh)

1. Generates the synthetic RAG task (rag_data.py) from --seed: a training stream, a dev
   set, and held-out test sets about unseen entities (eval/data/*.jsonl).
2. Trains a byte-level BPE on the training text and tokenizes every example with
   BlockServe's own C++ tokenizer and block layout (//training:tokenizer_tool).
3. Stage 1, "vanilla SFT": causal full-attention training on whole prompts.
4. Stage 2, "Block-Attention fine-tuning" from stage 1: a --block_fraction of the examples
   use the block mask (each passage attends only to itself, the query and answer attend
   to everything) with re-encoded positions, exactly as the engine computes them; the
   rest keep full attention, as in the paper.
5. Exports both as Hugging Face folders (BF16) to models/, and writes the parity fixture
   eval/testdata/parity.json: PyTorch's logits for a few held-out prompts, computed with
   the exported (bf16-rounded) weights, which the engine must reproduce.

The loss is cross-entropy on the answer tokens and EOS, plus --aux_weight times the
next-token loss on the prompt tokens (it teaches the copying circuits sooner).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import llama_model  # noqa: E402
import rag_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=20240923)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default="/tmp/blockserve-training")
    p.add_argument("--tool", default=os.path.join(REPO, "bazel-bin/training/tokenizer_tool"))
    p.add_argument("--models_dir", default=os.path.join(REPO, "models"))
    p.add_argument("--eval_dir", default=os.path.join(REPO, "eval"))
    p.add_argument("--merges", type=int, default=900)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=384)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv_heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--stage1_steps", type=int, default=2400)
    p.add_argument("--stage2_steps", type=int, default=900)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--stage2_lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--aux_weight", type=float, default=0.2)
    p.add_argument("--block_fraction", type=float, default=0.5)
    p.add_argument("--two_hop_fraction", type=float, default=0.25)
    p.add_argument("--min_passages", type=int, default=3)
    p.add_argument("--max_passages", type=int, default=6)
    p.add_argument("--curriculum_steps", type=int, default=300,
                   help="first stage-1 steps use 1-3 passages (copying is learned sooner)")
    p.add_argument("--recite_steps", type=int, default=500,
                   help="first stage-1 steps put half the batch on passage recitation")
    p.add_argument("--eval_every", type=int, default=300)
    p.add_argument("--test_size", type=int, default=500)
    return p.parse_args()


# ---------------------------------------------------------------------------------------
# Data: text examples -> token ids (through the C++ tool) -> padded batches.

def run_tool(tool, *flags):
    return subprocess.run([tool, *flags], check=True, capture_output=True, text=True).stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


class Example:
    """One tokenized prompt: cached blocks (system + passages), query, answer + EOS."""

    def __init__(self, encoded, eos, text=None):
        self.blocks = encoded["blocks"]
        self.query = encoded["query"]
        self.answer = encoded["answer"] + [eos]
        self.text = text
        self.block_lengths = [len(b) for b in self.blocks]
        self.prompt = [t for b in self.blocks for t in b] + self.query
        self.seq = self.prompt + self.answer


class Recitation:
    """A copy warm-up sequence made from an example's blocks: the system block and the
    passages, then the passages again in another order, scored on the repetition. Every
    repeated token is predictable by finding its passage by name and copying, which forms
    induction heads within a few hundred steps; the QA signal alone (a few answer tokens
    per prompt) takes far longer."""

    def __init__(self, ex, order):
        self.prompt = [t for b in ex.blocks for t in b]
        self.seq = self.prompt + [t for i in order for t in ex.blocks[1 + i]]


def encode(tool, tokenizer_path, examples, eos, path):
    write_jsonl(path + ".in", examples)
    run_tool(tool, "--mode=encode", "--tokenizer=" + tokenizer_path, "--in=" + path + ".in",
             "--out=" + path)
    with open(path) as f:
        return [Example(json.loads(line), eos, text) for line, text in zip(f, examples)]


def layout(ex, block, reencode_positions=True, global_blocks=0):
    """Positions [T] and mask [T, T] over ex.seq[:-1] (the model's inputs)."""
    n = len(ex.seq) - 1
    if not block:
        return torch.arange(n), llama_model.causal_mask(n)
    tail = len(ex.query) + len(ex.answer)
    pos, mask = llama_model.block_layout(ex.block_lengths, tail, reencode_positions,
                                         global_blocks)
    return pos[:n], mask[:n, :n]


def make_batch(examples, modes, aux_weight):
    """modes[i]: dict(block=..., reencode_positions=..., global_blocks=...)."""
    t = max(len(ex.seq) for ex in examples) - 1
    b = len(examples)
    tokens = torch.zeros(b, t, dtype=torch.long)
    targets = torch.zeros(b, t, dtype=torch.long)
    weights = torch.zeros(b, t)
    answer_mask = torch.zeros(b, t, dtype=torch.bool)
    positions = torch.zeros(b, t, dtype=torch.long)
    mask = torch.eye(t, dtype=torch.bool).repeat(b, 1, 1)  # padding rows see themselves
    for i, (ex, mode) in enumerate(zip(examples, modes)):
        n = len(ex.seq) - 1
        seq = torch.tensor(ex.seq)
        tokens[i, :n], targets[i, :n] = seq[:-1], seq[1:]
        first_answer = len(ex.prompt) - 1  # input position that predicts answer[0]
        weights[i, :first_answer] = aux_weight
        weights[i, first_answer:n] = 1.0
        answer_mask[i, first_answer:n] = True
        positions[i, :n], mask[i, :n, :n] = layout(ex, **mode)
    return tokens, targets, weights, answer_mask, positions, mask


# ---------------------------------------------------------------------------------------
# Training and evaluation.

def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def exact_match(model, examples, mode, batch=32):
    """Greedy exact match, computed teacher-forced: greedy decoding reproduces the answer
    and its EOS iff every answer position's argmax equals the gold token."""
    model.eval()
    correct = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        tokens, targets, _, answer_mask, positions, mask = make_batch(
            chunk, [mode] * len(chunk), 0.0)
        pred = model(tokens, positions, mask).argmax(-1)
        ok = ((pred == targets) | ~answer_mask).all(dim=1)
        correct += int(ok.sum())
    model.train()
    return correct / len(examples)


FULL = dict(block=False)
BLOCK = dict(block=True)
BLOCK_NO_REENCODE = dict(block=True, reencode_positions=False)


def length_bucketed(stream, batch, rng, window=16):
    """Batches of similar-length examples (less padding), in a seeded random order."""
    batches = []
    for w in range(0, len(stream), batch * window):
        group = sorted(stream[w:w + batch * window], key=lambda ex: len(ex.seq))
        chunk = [group[i:i + batch] for i in range(0, len(group), batch)]
        rng.shuffle(chunk)
        batches += chunk
    return batches


def train_stage(name, model, stream, steps, args, peak_lr, block_fraction, dev, log,
                recite_steps=0):
    rng = np.random.RandomState(args.seed + (1 if name == "stage1" else 2))
    batches = length_bucketed(stream, args.batch, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.98),
                            weight_decay=0.01)
    start, running = time.time(), []
    for step in range(steps):
        chunk = batches[step]
        modes = [BLOCK if rng.rand() < block_fraction else FULL for _ in chunk]
        if step < recite_steps:  # half the batch recites its passages instead
            for i in range(0, len(chunk), 2):
                chunk[i] = Recitation(chunk[i], rng.permutation(len(chunk[i].blocks) - 1))
                modes[i] = FULL
        tokens, targets, weights, answer_mask, positions, mask = make_batch(
            chunk, modes, args.aux_weight)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr, args.warmup)
        logits = model(tokens, positions, mask)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").view_as(weights)
        loss = (losses * weights).sum() / weights.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        qa = answer_mask & torch.tensor([isinstance(ex, Example) for ex in chunk])[:, None]
        running.append(float((losses * qa).sum() / qa.sum()))
        if (step + 1) % args.eval_every == 0 or step + 1 == steps:
            log(f"{name} step {step + 1}/{steps} {time.time() - start:.0f}s "
                f"answer-loss {np.mean(running):.3f} "
                f"dev EM full {exact_match(model, dev, FULL):.3f} "
                f"block {exact_match(model, dev, BLOCK):.3f}")
            running = []
    return time.time() - start


# ---------------------------------------------------------------------------------------
# The parity fixture: PyTorch logits the engine must reproduce.

@torch.no_grad()
def parity_case(model, ex, mode_name, block, reencode_positions=True, global_blocks=0,
                decode_tokens=0):
    """Logits at the last prompt position, then after each of the first `decode_tokens`
    answer tokens is fed back (the engine's DecodeStep)."""
    extra = ex.answer[:decode_tokens]
    seq = ex.prompt + extra
    n = len(seq)
    if block:
        pos, mask = llama_model.block_layout(ex.block_lengths, len(ex.query) + len(extra),
                                             reencode_positions, global_blocks)
    else:
        pos, mask = torch.arange(n), llama_model.causal_mask(n)
    logits = model(torch.tensor([seq]), pos[None], mask[None])[0]
    wanted = range(len(ex.prompt) - 1, n)
    return {
        "name": mode_name,
        "blocks": ex.blocks,
        "query": ex.query,
        "mode": "block" if block else "full",
        "reencode_positions": reencode_positions,
        "global_blocks": global_blocks,
        "decode_tokens": extra,
        "logits": [[float("%.7g" % v) for v in logits[i].tolist()] for i in wanted],
    }


def write_parity_fixture(model, examples, path):
    cases = []
    for ex in examples:
        cases += [
            parity_case(model, ex, "full", block=False, decode_tokens=2),
            parity_case(model, ex, "block", block=True, decode_tokens=2),
            parity_case(model, ex, "block_no_reencode", block=True, reencode_positions=False),
            parity_case(model, ex, "block_global_1", block=True, global_blocks=1),
        ]
    with open(path, "w") as f:
        json.dump({"model": "models/blockserve-tiny-rag", "cases": cases}, f)


# ---------------------------------------------------------------------------------------

MODEL_CARD = """# {name}

A {params:,}-parameter Llama-architecture model (hidden {hidden}, {layers} layers, {heads}
heads over {kv_heads} KV heads, MLP {intermediate}, vocab {vocab}, BF16) trained from scratch
on BlockServe's synthetic RAG task (`training/rag_data.py`): copy the answer to a question
about invented entities from the right passage among distractors.

{how}

Prompt layout (engine/prompt.h): system block = BOS + "{system}", each passage a block,
then the query block "Question: ... Answer:"; the answer is " <value>" followed by EOS.
Reproduce with `training/run.sh`; results in `eval/results/accuracy.md`.
"""


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    log_path = os.path.join(args.work_dir, "train_log.txt")
    log_file = open(log_path, "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    t0 = time.time()
    log(f"args: {vars(args)}")
    pools = rag_data.NamePools(args.seed)
    n_easy = min(args.curriculum_steps, args.stage1_steps) * args.batch
    n_train = (args.stage1_steps + args.stage2_steps) * args.batch - n_easy
    span = dict(min_passages=args.min_passages, max_passages=args.max_passages)
    train_text = rag_data.make_split(pools, "train", args.seed + 9, n_easy, min_passages=1,
                                     max_passages=3, two_hop_fraction=args.two_hop_fraction)
    train_text += rag_data.make_split(pools, "train", args.seed + 10, n_train,
                                      two_hop_fraction=args.two_hop_fraction, **span)
    dev_text = rag_data.make_split(pools, "dev", args.seed + 11, 256,
                                   two_hop_fraction=args.two_hop_fraction, **span)
    tests_text = {
        "test": rag_data.make_split(pools, "test", args.seed + 12, args.test_size,
                                    two_hop_fraction=0.0, **span),
        "test_two_hop": rag_data.make_split(pools, "test", args.seed + 13, args.test_size,
                                            two_hop_fraction=1.0, **span),
        "test_long": rag_data.make_split(pools, "test", args.seed + 14, args.test_size,
                                         min_passages=2 * args.max_passages,
                                         max_passages=3 * args.max_passages,
                                         two_hop_fraction=0.0),
    }

    tokenizer_path = os.path.join(args.work_dir, "tokenizer.json")
    corpus_path = os.path.join(args.work_dir, "corpus.txt")
    with open(corpus_path, "w") as f:
        for ex in train_text:
            f.write(ex["system"] + "".join(ex["passages"]) + ex["query"] + ex["answer"] + "\n")
    run_tool(args.tool, "--mode=train", "--corpus=" + corpus_path, f"--merges={args.merges}",
             "--out=" + tokenizer_path)
    info = json.loads(run_tool(args.tool, "--mode=info", "--tokenizer=" + tokenizer_path))
    eos, bos = info["eos"], info["bos"]
    wd = args.work_dir
    train = encode(args.tool, tokenizer_path, train_text, eos, os.path.join(wd, "train.ids"))
    dev = encode(args.tool, tokenizer_path, dev_text, eos, os.path.join(wd, "dev.ids"))
    tests = {k: encode(args.tool, tokenizer_path, v, eos, os.path.join(wd, k + ".ids"))
             for k, v in tests_text.items()}
    log(f"data + tokenizer: {time.time() - t0:.0f}s, vocab {info['vocab_size']}, "
        f"mean train length {np.mean([len(e.seq) for e in train]):.0f} tokens")

    config = llama_model.Config(info["vocab_size"], args.hidden, args.intermediate, args.layers,
                                args.heads, args.kv_heads, bos_token_id=bos, eos_token_id=eos)
    model = llama_model.LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params} parameters")
    stage1 = train[:args.stage1_steps * args.batch]
    stage2 = train[args.stage1_steps * args.batch:]
    t1 = train_stage("stage1", model, stage1, args.stage1_steps, args, args.lr, 0.0, dev, log,
                     recite_steps=args.recite_steps)
    vanilla_state = {k: v.clone() for k, v in model.state_dict().items()}
    t2 = train_stage("stage2", model, stage2, args.stage2_steps, args, args.stage2_lr,
                     args.block_fraction, dev, log)

    # Export (BF16) and evaluate the exported weights.
    card = dict(params=params, hidden=args.hidden, layers=args.layers, heads=args.heads,
                kv_heads=args.kv_heads, intermediate=args.intermediate,
                vocab=info["vocab_size"], system=rag_data.SYSTEM)
    export.round_model_to_bf16(model)
    vanilla = llama_model.LlamaForCausalLM(config)
    vanilla.load_state_dict(vanilla_state)
    export.round_model_to_bf16(vanilla)
    export.write_model_folder(
        os.path.join(args.models_dir, "blockserve-tiny-rag"), model, tokenizer_path,
        card=MODEL_CARD.format(name="blockserve-tiny-rag", how=(
            f"Stage 1: {args.stage1_steps} steps of causal full-attention SFT; stage 2: "
            f"{args.stage2_steps} steps of Block-Attention fine-tuning "
            f"({args.block_fraction:.0%} block-mask examples with re-encoded positions, "
            "the rest full attention)."), **card))
    export.write_model_folder(
        os.path.join(args.models_dir, "blockserve-tiny-rag-vanilla"), vanilla, tokenizer_path,
        card=MODEL_CARD.format(name="blockserve-tiny-rag-vanilla", how=(
            f"Only stage 1: {args.stage1_steps} steps of causal full-attention SFT (the "
            "paper's vanilla SFT baseline; never trained with the block mask)."), **card))
    for name, rows in tests_text.items():
        write_jsonl(os.path.join(args.eval_dir, "data", name + ".jsonl"), rows)
    write_parity_fixture(model, tests["test"][:2] + tests["test_two_hop"][:1],
                         os.path.join(args.eval_dir, "testdata", "parity.json"))

    summary = {"seconds": {"total": time.time() - t0, "stage1": t1, "stage2": t2},
               "parameters": params, "vocab_size": info["vocab_size"], "accuracy": {}}
    for label, m in [("vanilla", vanilla), ("block_ft", model)]:
        for set_name in ["test", "test_two_hop"]:
            for mode_name, mode in [("full", FULL), ("block", BLOCK),
                                    ("block_no_reencode", BLOCK_NO_REENCODE)]:
                acc = exact_match(m, tests[set_name], mode)
                summary["accuracy"][f"{label}/{set_name}/{mode_name}"] = acc
                log(f"pytorch EM {label} {set_name} {mode_name}: {acc:.3f}")
    with open(os.path.join(args.work_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(f"done in {time.time() - t0:.0f}s (stage 1 {t1:.0f}s, stage 2 {t2:.0f}s)")


if __name__ == "__main__":
    main()
