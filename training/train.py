"""Trains BlockServe's tiny RAG models and writes everything the evaluation needs.

    training/run.sh          (builds the C++ tokenizer tool, runs this, then //eval:rag_eval)

1. Generates the synthetic RAG task (rag_data.py) from --seed: training prompts, a dev
   set, and held-out test sets about unseen entities (eval/data/*.jsonl).
2. Trains a byte-level BPE on the training text and tokenizes every example with
   BlockServe's own C++ tokenizer and block layout (//training:tokenizer_tool).
3. Stage 1, "vanilla SFT": a copy warm-up (random stretches of passage text repeated,
   which forms induction heads in a few hundred steps), then causal full-attention SFT.
4. Stage 2, "Block-Attention fine-tuning" from stage 1: --block_fraction of the prompts
   use the block mask (each passage attends only to itself, the question and answer to
   everything) with re-encoded positions, exactly as the engine computes them; the rest
   keep full attention, as in the paper.
5. Exports both as Hugging Face folders (BF16) to models/, and writes the parity fixture
   eval/testdata/parity.json: PyTorch's logits for a few held-out prompts, computed with
   the exported (bf16-rounded) weights, which the engine must reproduce.

Each training prompt carries several questions on the same passages. They are packed
into one sequence after the passages; question j attends to the passages and to itself
only and sits at the positions right after the passages, so every question is computed
exactly as if it were the only one (the same logits as a separate prompt), and one pass
scores several answers. The loss is cross-entropy on answer tokens and EOS, plus
--aux_weight times the next-token loss inside passages and questions, plus
--retrieval_weight times the retrieval supervision.

Retrieval supervision (training only; the exported model is a plain Llama): without it a
model this small, in the steps two CPU cores allow, learns which kind of value to copy but
not from whose passage (it plateaus at the score of a random pick of the asked kind; see
training/README.md). The circuit that answers needs three attentions to line up before
any of them pays off, so each gets its own target, on head 0 of one layer:
  --gather_layer: each stated value attends to the subject heading its passage, and each
                  answer position to the name in its question;
  --bridge_layer: a two-hop question's answer attends to the employer in the person's
                  passage;
  --copy_layer:   answer token j attends to token j of the answer where it is stated.
Each adds -log(attention mass on the target positions), averaged over the targets.
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=20240923)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (the shipped model was trained with 1: bitwise reproducible)")
    p.add_argument("--work_dir", default="/tmp/blockserve-training")
    p.add_argument("--tool", default=os.path.join(REPO, "bazel-bin/training/tokenizer_tool"))
    p.add_argument("--models_dir", default=os.path.join(REPO, "models"))
    p.add_argument("--eval_dir", default=os.path.join(REPO, "eval"))
    p.add_argument("--merges", type=int, default=3000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=384)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv_heads", type=int, default=2)
    p.add_argument("--tie_embeddings", type=int, default=1,
                   help="1: the LM head is the embedding matrix (copying forms much sooner)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--copy_steps", type=int, default=1000)
    p.add_argument("--copy_window", type=int, default=40)
    p.add_argument("--copy_alphabet", type=int, default=0,
                   help="tokens per random copy string (half the warm-up rows); 0: passage text only")
    p.add_argument("--curriculum_steps", type=int, default=800,
                   help="first stage-1 answer steps use prompts of 1..min_passages passages")
    p.add_argument("--stage1_steps", type=int, default=5000,
                   help="stage-1 SFT steps on full-size prompts (after the copy warm-up and curriculum)")
    p.add_argument("--stage2_steps", type=int, default=1200)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--stage2_lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--aux_weight", type=float, default=0.1)
    p.add_argument("--retrieval_weight", type=float, default=1.0,
                   help="weight of the retrieval supervision (see the module docstring); 0: off")
    p.add_argument("--copy_layer", type=int, default=-1,
                   help="layer whose head 0 is taught to attend to the answer in its passage")
    p.add_argument("--gather", type=int, default=1,
                   help="1: also supervise the gather head (values to their subject, answers "
                        "to the question's name)")
    p.add_argument("--gather_layer", type=int, default=0)
    p.add_argument("--bridge_layer", type=int, default=1,
                   help="layer whose head 0 is taught, on two-hop questions, to attend to the "
                        "employer in the person's passage")
    p.add_argument("--block_fraction", type=float, default=0.5)
    p.add_argument("--two_hop_fraction", type=float, default=0.5,
                   help="share of training prompts that include an answerable two-hop question")
    p.add_argument("--questions", type=int, default=12, help="questions per training prompt")
    p.add_argument("--min_passages", type=int, default=2)
    p.add_argument("--max_passages", type=int, default=5)
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--test_size", type=int, default=1000)
    p.add_argument("--data_only", action="store_true",
                   help="only write the held-out sets to <eval_dir>/data and exit")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# Data: text examples -> token ids (through the C++ tool) -> padded batches.

def run_tool(tool, *flags):
    return subprocess.run([tool, *flags], check=True, capture_output=True, text=True).stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def occurrences(tokens, sub):
    return [i for i in range(len(tokens) - len(sub) + 1) if tokens[i:i + len(sub)] == sub]


class Example:
    """Tokenized passages (system block first) and one or more (query, answer + EOS).

    A training prompt also carries its retrieval targets (`gold`: per question, the
    passages that answer it; the tool's "subjects" and "bridges": the person asked about
    and, for two-hop questions, the employer). Each target is (head, position, positions):
    the head should attend from `position` to `positions`.
      copy:   answer token j is predicted while attending to token j of the answer where
              its passage states it;
      bridge: a two-hop question's first answer token, to the employer in the person's
              passage (the company whose passage holds the answer);
      gather: a stated value, to the subject heading its passage (so the value carries
              whom it is about), and every answer position to the name in its question.
    Query-side positions are offsets into the question's own query + answer
    (self.query_targets[i]); context positions are absolute (self.context_targets)."""

    def __init__(self, encoded, eos, gold=None):
        self.blocks = encoded["blocks"]
        queries = encoded.get("queries", [encoded.get("query")])
        answers = encoded.get("answers", [encoded.get("answer")])
        self.qas = [(q, a + [eos]) for q, a in zip(queries, answers)]
        self.block_lengths = [len(b) for b in self.blocks]
        self.context = [t for b in self.blocks for t in b]
        self.length = len(self.context) + sum(len(q) + len(a) for q, a in self.qas)
        self.query_targets = [[] for _ in self.qas]
        self.context_targets = []
        if gold is not None:
            self._find_targets(gold, encoded["subjects"], encoded["bridges"], answers)

    def _find_targets(self, gold, subjects, bridges, answers):
        starts = np.cumsum([0] + self.block_lengths)
        headings = {}  # value position -> the positions of its passage's subject

        def spans(block_index, ids):
            offset = int(starts[block_index])
            return [offset + k + j for k in occurrences(self.blocks[block_index], ids)
                    for j in range(len(ids))]

        for i, (passages, subject, bridge, answer) in enumerate(
                zip(gold, subjects, bridges, answers)):
            (q, _), targets = self.qas[i], self.query_targets[i]
            stated = [(p + 1, k) for p in passages
                      for k in occurrences(self.blocks[p + 1], answer)]
            for j in range(len(answer)):
                where = [int(starts[b]) + k + j for b, k in stated]
                if where:
                    targets.append(("copy", len(q) - 1 + j, where))
            named = [k + j for k in occurrences(q, subject) for j in range(len(subject))]
            targets += [("gather", len(q) - 1 + j, named) for j in range(len(answer) + 1)
                        if named]
            # The subject heading the passage that states the answer: the person, or for
            # a two-hop question the company (its name is the bridge).
            for b, k in stated:
                heading = spans(b, bridge if bridge else subject)[:len(bridge or subject)]
                for j in range(len(answer)):
                    headings[int(starts[b]) + k + j] = heading
            if bridge:
                person = [p + 1 for p in passages if (p + 1) not in {b for b, _ in stated}]
                where = [t for b in person for t in spans(b, bridge)]
                if where:
                    targets.append(("bridge", len(q) - 1, where))
                    named_there = [t for b in person for t in spans(b, subject)]
                    for t in where:
                        headings[t] = named_there[:len(subject)]
        self.context_targets = [("gather", pos, where) for pos, where in sorted(headings.items())
                                if where and where[0] < pos]

    # The single-question view (evaluation sets).
    @property
    def query(self):
        return self.qas[0][0]

    @property
    def answer(self):
        return self.qas[0][1]

    @property
    def prompt(self):
        return self.context + self.query

    def arrays(self, block, reencode_positions, aux_weight):
        """tokens, targets, weights, answer flags, positions [T], mask [T, T], and the
        retrieval targets as (head: "copy", "bridge" or "gather", position, positions)."""
        tokens = self.context + [t for q, a in self.qas for t in q + a]
        n, p = len(tokens), len(self.context)
        targets = torch.zeros(n, dtype=torch.long)
        weights = torch.zeros(n)
        is_answer = torch.zeros(n, dtype=torch.bool)
        if block:
            positions, mask = llama_model.block_layout(self.block_lengths, 0, reencode_positions)
            positions = torch.cat([positions, torch.zeros(n - p, dtype=torch.long)])
            full_mask = torch.zeros(n, n, dtype=torch.bool)
            full_mask[:p, :p] = mask
            mask = full_mask
        else:
            positions = torch.arange(n)
            mask = torch.zeros(n, n, dtype=torch.bool)
            mask[:p, :p] = llama_model.causal_mask(p)
        start, retrieval = 0, list(self.context_targets)
        for length in self.block_lengths:  # next-token targets inside each block
            targets[start:start + length - 1] = torch.tensor(tokens[start + 1:start + length])
            weights[start:start + length - 1] = aux_weight
            start += length
        for i, (q, a) in enumerate(self.qas):  # each question: the passages, then itself
            m = len(q) + len(a)
            mask[start:start + m, :p] = True
            mask[start:start + m, start:start + m] = llama_model.causal_mask(m)
            positions[start:start + m] = p + torch.arange(m)
            targets[start:start + m - 1] = torch.tensor(tokens[start + 1:start + m])
            weights[start:start + len(q) - 1] = aux_weight
            weights[start + len(q) - 1:start + m - 1] = 1.0
            is_answer[start + len(q) - 1:start + m - 1] = True
            retrieval += [(head, start + pos, [start + w if head == "gather" else w
                                               for w in where])
                          for head, pos, where in self.query_targets[i]]
            start += m
        return torch.tensor(tokens), targets, weights, is_answer, positions, mask, retrieval


class CopyWarmup:
    """A stretch of passage text followed by itself, scored on the repetition: the densest
    signal for induction heads (find the earlier occurrence, copy what came next), which
    answer-only training would take far longer to form."""

    def __init__(self, stretch):
        self.length = 2 * len(stretch)
        self.stretch = stretch

    def arrays(self, block, reencode_positions, aux_weight):
        tokens = torch.tensor(self.stretch + self.stretch)
        n, half = self.length, len(self.stretch)
        targets = torch.zeros(n, dtype=torch.long)
        targets[:-1] = tokens[1:]
        weights = torch.zeros(n)
        weights[half - 1:n - 1] = 1.0
        return (tokens, targets, weights, weights > 0, torch.arange(n),
                llama_model.causal_mask(n), [])


def encode(tool, tokenizer_path, rows, eos, path):
    write_jsonl(path + ".in", rows)
    run_tool(tool, "--mode=encode", "--tokenizer=" + tokenizer_path, "--in=" + path + ".in",
             "--out=" + path)
    with open(path) as f:
        examples = [Example(json.loads(line), eos, row.get("gold") if "queries" in row else None)
                    for line, row in zip(f, rows)]
    for ex, row in zip(examples, rows):
        ex.kind = row.get("kind")
    return examples


def make_batch(examples, modes, aux_weight):
    """Pads examples' arrays to one length; padding attends to itself and is not scored.
    modes[i]: dict(block=..., reencode_positions=...). The last item lists the retrieval
    targets as (head, row, query position, context positions)."""
    parts = [ex.arrays(m.get("block", False), m.get("reencode_positions", True), aux_weight)
             for ex, m in zip(examples, modes)]
    t, b = max(len(p[0]) for p in parts), len(parts)
    tokens = torch.zeros(b, t, dtype=torch.long)
    targets = torch.zeros(b, t, dtype=torch.long)
    weights = torch.zeros(b, t)
    is_answer = torch.zeros(b, t, dtype=torch.bool)
    positions = torch.zeros(b, t, dtype=torch.long)
    mask = torch.eye(t, dtype=torch.bool).repeat(b, 1, 1)
    retrieval = []
    for i, (tok, tgt, w, ans, pos, m, ret) in enumerate(parts):
        n = len(tok)
        tokens[i, :n], targets[i, :n], weights[i, :n] = tok, tgt, w
        is_answer[i, :n], positions[i, :n], mask[i, :n, :n] = ans, pos, m
        retrieval += [(head, i, query, where) for head, query, where in ret]
    return tokens, targets, weights, is_answer, positions, mask, retrieval


# ---------------------------------------------------------------------------------------
# Training and evaluation.

FULL = dict(block=False)
BLOCK = dict(block=True)
BLOCK_NO_REENCODE = dict(block=True, reencode_positions=False)


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def exact_match(model, examples, mode, batch=32, by_kind=None):
    """Greedy exact match per question, computed teacher-forced: greedy decoding yields
    the answer and its EOS iff every answer position's argmax is the gold token."""
    model.eval()
    correct = total = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        tokens, targets, _, is_answer, positions, mask, _ = make_batch(
            chunk, [mode] * len(chunk), 0)
        wrong = (model(tokens, positions, mask).argmax(-1) != targets) & is_answer
        for row, ex in enumerate(chunk):
            start = len(ex.context)
            for q, a in ex.qas:
                m = len(q) + len(a)
                ok = int(not wrong[row, start:start + m].any())
                correct += ok
                total += 1
                if by_kind is not None:
                    by_kind.setdefault(ex.kind, []).append(ok)
                start += m
    model.train()
    return correct / total


def length_bucketed(stream, batch, rng, window=16):
    """Batches of similar-length examples (less padding), in a seeded random order."""
    batches = []
    for w in range(0, len(stream), batch * window):
        group = sorted(stream[w:w + batch * window], key=lambda ex: ex.length)
        chunk = [group[i:i + batch] for i in range(0, len(group), batch)]
        rng.shuffle(chunk)
        batches += chunk
    return batches


def copy_batches(examples, steps, batch, window, alphabet, rng):
    """Copy warm-up rows: stretches of passage text. With `alphabet` > 0 every other row is
    instead a random string over `alphabet` tokens of a passage, where every token and most
    pairs recur, so only a match on the last three or more tokens finds the place to copy
    from: the long-context induction that matching a name a few tokens back needs."""
    texts = [ex.context[len(ex.blocks[0]):] for ex in examples]
    out = []
    for _ in range(steps):
        rows = []
        for i in range(batch):
            text = texts[rng.randint(len(texts))]
            if alphabet and i % 2:
                letters = rng.choice(text, size=alphabet)
                rows.append(CopyWarmup([int(t) for t in rng.choice(letters, size=window)]))
                continue
            start = rng.randint(max(1, len(text) - window))
            rows.append(CopyWarmup(text[start:start + window]))
        out.append(rows)
    return out


def supervised_layers(args):
    heads = {"copy": args.copy_layer, "bridge": args.bridge_layer}
    if args.gather:
        heads["gather"] = args.gather_layer
    return heads


def retrieval_loss(model, retrieval, args):
    """Mean over retrieval targets of -log(the attention mass that head 0 of the target's
    layer (supervised_layers) puts on the target positions, from the target's position)."""
    layers = model.model.layers
    probs = {head: layers[index].self_attn.probs[:, 0]
             for head, index in supervised_layers(args).items()}
    terms = [probs[head][row, query, where].sum() for head, row, query, where in retrieval
             if head in probs]
    if not terms:
        return torch.zeros(())
    return -torch.log(torch.stack(terms).clamp_min(1e-9)).mean()


def train_stage(name, model, batches, args, peak_lr, block_fraction, dev, log):
    rng = np.random.RandomState(args.seed + (1 if name == "stage1" else 2))
    supervise = args.retrieval_weight > 0
    for index in supervised_layers(args).values():
        model.model.layers[index].self_attn.keep_probs = supervise
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.98),
                            weight_decay=0.01)
    start, running, attending, steps = time.time(), [], [], len(batches)
    for step, chunk in enumerate(batches):
        modes = [BLOCK if rng.rand() < block_fraction else FULL for _ in chunk]
        tokens, targets, weights, is_answer, positions, mask, retrieval = make_batch(
            chunk, modes, args.aux_weight)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr, args.warmup)
        logits = model(tokens, positions, mask)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").view_as(weights)
        loss = (losses * weights).sum() / weights.sum()
        if supervise and retrieval:
            attend = retrieval_loss(model, retrieval, args)
            loss = loss + args.retrieval_weight * attend
            attending.append(float(attend))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running.append(float((losses * is_answer).sum() / is_answer.sum()))
        copying = isinstance(chunk[0], CopyWarmup)
        if (step + 1) % args.eval_every == 0 or step + 1 == steps or (
                copying and not isinstance(batches[min(step + 1, steps - 1)][0], CopyWarmup)):
            msg = (f"{name} step {step + 1}/{steps} {time.time() - start:.0f}s "
                   f"{'copy' if copying else 'answer'}-loss {np.mean(running):.3f}")
            if attending:
                msg += f" retrieval-loss {np.mean(attending):.3f}"
            if not copying:
                kinds = {}
                msg += (f" dev EM full {exact_match(model, dev, FULL, by_kind=kinds):.3f}"
                        f" block {exact_match(model, dev, BLOCK):.3f} (full by kind: " +
                        " ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(kinds.items())) + ")")
            log(msg)
            running, attending = [], []
    for layer in model.model.layers:
        layer.self_attn.keep_probs, layer.self_attn.probs = False, None
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
            parity_case(model, ex, "block_no_reencode", block=True, reencode_positions=False,
                        decode_tokens=1),
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


def task_rows(args):
    """The task's rows from --seed: (pools, training prompts for stage 1 then stage 2, the
    dev set, the held-out test sets by name)."""
    pools = rag_data.NamePools(args.seed)
    span = dict(min_passages=args.min_passages, max_passages=args.max_passages)
    train_rows = rag_data.make_training_prompts(
        pools, args.seed + 10, (args.stage1_steps + args.stage2_steps) * args.batch,
        two_hop_fraction=args.two_hop_fraction, max_questions=args.questions, **span)
    dev_rows = rag_data.make_split(pools, "dev", args.seed + 11, 256, two_hop_fraction=0.3,
                                   **span)
    test_rows = {
        "test": rag_data.make_split(pools, "test", args.seed + 12, args.test_size,
                                    two_hop_fraction=0.0, **span),
        "test_two_hop": rag_data.make_split(pools, "test", args.seed + 13, args.test_size,
                                            two_hop_fraction=1.0, **span),
        "test_long": rag_data.make_split(pools, "test", args.seed + 14, args.test_size,
                                         min_passages=2 * args.max_passages,
                                         max_passages=3 * args.max_passages,
                                         two_hop_fraction=0.0),
    }
    return pools, train_rows, dev_rows, test_rows


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    log_file = open(os.path.join(args.work_dir, "train_log.txt"), "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    t0 = time.time()
    log(f"args: {vars(args)}")
    pools, train_rows, dev_rows, test_rows = task_rows(args)

    if args.data_only:
        os.makedirs(os.path.join(args.eval_dir, "data"), exist_ok=True)
        for name, rows in test_rows.items():
            write_jsonl(os.path.join(args.eval_dir, "data", name + ".jsonl"), rows)
        log(f"wrote the held-out sets to {args.eval_dir}/data")
        return

    wd = args.work_dir
    tokenizer_path, corpus_path = os.path.join(wd, "tokenizer.json"), os.path.join(wd, "corpus.txt")
    with open(corpus_path, "w") as f:
        for row in train_rows:
            f.write(row["system"] + "".join(row["passages"]) + "".join(
                q + a + "\n" for q, a in zip(row["queries"], row["answers"])))
    run_tool(args.tool, "--mode=train", "--corpus=" + corpus_path, f"--merges={args.merges}",
             "--out=" + tokenizer_path)
    info = json.loads(run_tool(args.tool, "--mode=info", "--tokenizer=" + tokenizer_path))
    eos, bos = info["eos"], info["bos"]
    train = encode(args.tool, tokenizer_path, train_rows, eos, os.path.join(wd, "train.ids"))
    dev = encode(args.tool, tokenizer_path, dev_rows, eos, os.path.join(wd, "dev.ids"))
    tests = {k: encode(args.tool, tokenizer_path, v, eos, os.path.join(wd, k + ".ids"))
             for k, v in test_rows.items()}
    log(f"data + tokenizer: {time.time() - t0:.0f}s, vocab {info['vocab_size']}, "
        f"mean training prompt {np.mean([ex.length for ex in train]):.0f} tokens with "
        f"{np.mean([len(ex.qas) for ex in train]):.1f} questions")
    counts = {}
    for ex in train[:2000]:
        for head, _, _ in ex.context_targets + [t for ts in ex.query_targets for t in ts]:
            counts[head] = counts.get(head, 0) + 1
    questions = sum(len(ex.qas) for ex in train[:2000])
    log(f"retrieval targets in the first 2000 training prompts ({questions} questions): " +
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    config = llama_model.Config(info["vocab_size"], args.hidden, args.intermediate, args.layers,
                                args.heads, args.kv_heads, bos_token_id=bos, eos_token_id=eos,
                                tie_word_embeddings=bool(args.tie_embeddings))
    model = llama_model.LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params} parameters")

    rng = np.random.RandomState(args.seed)
    n1 = args.stage1_steps * args.batch
    curriculum = []
    if args.curriculum_steps:
        rows = rag_data.make_training_prompts(
            pools, args.seed + 15, args.curriculum_steps * args.batch, min_passages=1,
            max_passages=args.min_passages, two_hop_fraction=args.two_hop_fraction,
            max_questions=args.questions)
        curriculum = encode(args.tool, tokenizer_path, rows, eos, os.path.join(wd, "curriculum.ids"))
    stage1 = copy_batches(train[:n1], args.copy_steps, args.batch, args.copy_window,
                          args.copy_alphabet, rng) + \
        length_bucketed(curriculum, args.batch, rng) + length_bucketed(train[:n1], args.batch, rng)
    stage2 = length_bucketed(train[n1:], args.batch, rng)
    t1 = train_stage("stage1", model, stage1, args, args.lr, 0.0, dev, log)
    vanilla_state = {k: v.clone() for k, v in model.state_dict().items()}
    t2 = train_stage("stage2", model, stage2, args, args.stage2_lr, args.block_fraction, dev, log)

    # Export (BF16) and evaluate the exported weights.
    card = dict(params=params, hidden=args.hidden, layers=args.layers, heads=args.heads,
                kv_heads=args.kv_heads, intermediate=args.intermediate,
                vocab=info["vocab_size"], system=rag_data.SYSTEM)
    stage1_how = (f"Stage 1 (vanilla SFT): {args.copy_steps} copy warm-up steps, "
                  f"{args.curriculum_steps} curriculum steps on 1-{args.min_passages} passages, "
                  f"then {args.stage1_steps} steps of causal full-attention SFT. Every step "
                  "after the warm-up adds the retrieval supervision (weight "
                  f"{args.retrieval_weight:g}; training/README.md).")
    export.round_model_to_bf16(model)
    vanilla = llama_model.LlamaForCausalLM(config)
    vanilla.load_state_dict(vanilla_state)
    export.round_model_to_bf16(vanilla)
    export.write_model_folder(
        os.path.join(args.models_dir, "blockserve-tiny-rag"), model, tokenizer_path,
        card=MODEL_CARD.format(name="blockserve-tiny-rag", how=(
            f"{stage1_how} Stage 2 (Block-Attention fine-tuning): {args.stage2_steps} steps, "
            f"{args.block_fraction:.0%} of the prompts under the block mask with re-encoded "
            "positions, the rest full attention."), **card))
    export.write_model_folder(
        os.path.join(args.models_dir, "blockserve-tiny-rag-vanilla"), vanilla, tokenizer_path,
        card=MODEL_CARD.format(name="blockserve-tiny-rag-vanilla", how=(
            f"{stage1_how} Never trained with the block mask (the paper's vanilla SFT "
            "baseline)."), **card))
    os.makedirs(os.path.join(args.eval_dir, "data"), exist_ok=True)
    os.makedirs(os.path.join(args.eval_dir, "testdata"), exist_ok=True)
    for name, rows in test_rows.items():
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
    with open(os.path.join(wd, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(f"done in {time.time() - t0:.0f}s (stage 1 {t1:.0f}s, stage 2 {t2:.0f}s)")


if __name__ == "__main__":
    main()
