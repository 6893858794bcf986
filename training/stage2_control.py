"""Is block fine-tuning's gain the block mask, or only more training? A controlled stage 2.

Continues the shipped vanilla model (models/blockserve-tiny-rag-vanilla) for train.py's
stage 2: the same prompts (in another order), learning rate and retrieval supervision,
with --block_fraction of the prompts under the block mask. Run it with the default 0.5
(what the shipped model had) and with 0 (full attention only, the control): the
difference between the two is what the block mask itself is worth. Writes the held-out
exact match (PyTorch, teacher-forced as train.py scores it) before and after, in full
and block mode, to --out as JSON, and prints it.

    /usr/bin/python3 training/stage2_control.py --tool <tokenizer_tool> --block_fraction 0 \
        --out /tmp/control_0.json

The vanilla folder holds BF16 weights, so this starts from the rounded weights the
shipped stage 2 started from in float32: the 0.5 run is close to the shipped model, not
bit-identical.
"""

import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_model  # noqa: E402
import train  # noqa: E402


def load_model(folder):
    """A model folder written by export.py (BF16 safetensors, tied embeddings)."""
    with open(os.path.join(folder, "config.json")) as f:
        hf = json.load(f)
    config = llama_model.Config(
        hf["vocab_size"], hf["hidden_size"], hf["intermediate_size"], hf["num_hidden_layers"],
        hf["num_attention_heads"], hf["num_key_value_heads"], bos_token_id=hf["bos_token_id"],
        eos_token_id=hf["eos_token_id"], tie_word_embeddings=hf["tie_word_embeddings"])
    model = llama_model.LlamaForCausalLM(config)
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    with torch.no_grad():
        for name, p in model.named_parameters():
            entry = header[name]
            if entry["dtype"] != "BF16":
                raise ValueError(f"{folder}: {name} is {entry['dtype']}, expected BF16")
            begin, end = entry["data_offsets"]
            bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
            p.copy_(torch.from_numpy(bits.view(np.float32).reshape(entry["shape"])))
    return model


def held_out_accuracy(model, tests):
    return {f"{name}/{mode_name}": train.exact_match(model, examples, mode)
            for name, examples in tests.items()
            for mode_name, mode in [("full", train.FULL), ("block", train.BLOCK)]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tool", required=True, help="the //training:tokenizer_tool binary")
    p.add_argument("--start",
                   default=os.path.join(train.REPO, "models/blockserve-tiny-rag-vanilla"))
    p.add_argument("--block_fraction", type=float, default=0.5)
    p.add_argument("--work_dir", default="/tmp/blockserve-stage2-control")
    p.add_argument("--out", required=True, help="JSON file to write")
    own, rest = p.parse_known_args()
    args = train.parse_args(["--tool", own.tool, "--block_fraction", str(own.block_fraction)] +
                            rest)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(own.work_dir, exist_ok=True)
    t0 = time.time()

    # train.py's rows: stage 2 takes the training prompts after stage 1's.
    _, rows, dev_rows, test_rows = train.task_rows(args)
    rows = rows[args.stage1_steps * args.batch:]
    del test_rows["test_long"]
    tokenizer = os.path.join(own.start, "tokenizer.json")
    info = json.loads(train.run_tool(own.tool, "--mode=info", "--tokenizer=" + tokenizer))
    wd = own.work_dir
    stage2 = train.encode(own.tool, tokenizer, rows, info["eos"], os.path.join(wd, "stage2.ids"))
    dev = train.encode(own.tool, tokenizer, dev_rows, info["eos"], os.path.join(wd, "dev.ids"))
    tests = {k: train.encode(own.tool, tokenizer, v, info["eos"], os.path.join(wd, k + ".ids"))
             for k, v in test_rows.items()}

    model = load_model(own.start)
    result = {"start": own.start, "block_fraction": own.block_fraction,
              "steps": args.stage2_steps, "before": held_out_accuracy(model, tests)}
    rng = np.random.RandomState(args.seed)
    batches = train.length_bucketed(stage2, args.batch, rng)
    train.train_stage("stage2", model, batches, args, args.stage2_lr, own.block_fraction, dev,
                      print)
    train.export.round_model_to_bf16(model)
    result["after"] = held_out_accuracy(model, tests)
    result["seconds"] = time.time() - t0
    print(json.dumps(result, indent=2))
    with open(own.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
