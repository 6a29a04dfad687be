"""PyTorch baseline of kiln's training benchmark (benches/train.rs writes the rows).

The same Qwen2 configuration through transformers' Qwen2ForCausalLM, f32 on CPU, or on
a GPU f32 master weights under bf16 autocast (as kiln trains there), AdamW with the same
hyper-parameters (fused on the GPU), gradient clipping, and the same packed rows and
labels. Attention is transformers' SDPA over each whole row with the causal fast path:
less work than masking each document, so the comparison favours PyTorch.

usage: python train_torch.py ROWS.json  ->  prints "tokens_per_s <value>"
"""
import json
import os
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def main():
    spec = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    m = spec["model"]
    config = Qwen2Config(
        vocab_size=spec["vocab_size"], hidden_size=m["hidden"], intermediate_size=m["intermediate"],
        num_hidden_layers=m["layers"], num_attention_heads=m["heads"], num_key_value_heads=m["kv_heads"],
        rope_theta=m["rope_theta"], rms_norm_eps=m["rms_norm_eps"], tie_word_embeddings=m["tie_embeddings"],
        max_position_embeddings=m["max_positions"], attn_implementation="sdpa", use_cache=False,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Qwen2ForCausalLM(config).float().to(device).train()
    o = spec["optimizer"]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
        lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], fused=(device == "cuda"),
    )
    rows = spec["rows"]
    batch = spec["batch_rows"]
    steps = len(rows) // batch
    warmup = spec["warmup_steps"]
    tokens = 0
    for step in range(steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = 0
        chunk = rows[step * batch:(step + 1) * batch]
        ids = torch.tensor([r["input_ids"] for r in chunk], device=device)
        labels = torch.tensor([r["labels"] for r in chunk], device=device)
        positions = torch.tensor([r["position_ids"] for r in chunk], device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=(device == "cuda")):
            loss = model(input_ids=ids, position_ids=positions, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += ids.numel()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"tokens_per_s {tokens / elapsed}")


if __name__ == "__main__":
    main()
