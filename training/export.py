"""Writes a Hugging Face model folder: config.json, model.safetensors, tokenizer.json.

safetensors layout: an 8-byte little-endian header length N, N bytes of JSON header
{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
(offsets relative to the end of the header), then the tensors' raw little-endian bytes.
"""

import json
import os
import shutil
import struct

import numpy as np
import torch


def bf16_bits(x):
    """float32 array -> uint16 bfloat16 bits, rounded to nearest even (as torch does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def round_to_bf16(x):
    """float32 array -> float32 array holding the nearest bfloat16 values."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, float32 numpy array); dtype "BF16" or "F32"."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in tensors:
        data = bf16_bits(array).tobytes() if dtype == "BF16" else \
            np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)


def state_arrays(model):
    """The model's parameters as (HF name, float32 array), in a stable order."""
    return [(name, p.detach().to(torch.float32).numpy()) for name, p in model.named_parameters()]


def round_model_to_bf16(model):
    """Rounds every parameter to bfloat16 in place (so PyTorch computes with exactly the
    weights the exported BF16 file holds)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(round_to_bf16(p.numpy())))


def write_model_folder(out_dir, model, tokenizer_json_path, dtype="BF16", card=None):
    os.makedirs(out_dir, exist_ok=True)
    torch_dtype = "bfloat16" if dtype == "BF16" else "float32"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.config.hf_json(torch_dtype), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), state_arrays(model), dtype)
    shutil.copyfile(tokenizer_json_path, os.path.join(out_dir, "tokenizer.json"))
    if card:
        with open(os.path.join(out_dir, "README.md"), "w") as f:
            f.write(card)
