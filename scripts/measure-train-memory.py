#!/usr/bin/env python
"""Peak host memory (RSS) of two optimizer steps of a random-initialised Qwen3-0.6B, per method,
on CPU in bfloat16: the weights + gradients + AdamW states part of a training job's memory,
from which profiles/slurm is sized (README, "Cluster (SLURM)").
  .venv/bin/python scripts/measure-train-memory.py full|lora|dora|vera [rank] [tokens]
One method per process (peak RSS is per process). Takes a minute or two on 2 cores."""
import resource
import sys
import time

import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from peftlab.config import resolve_config
from peftlab.methods.registry import attach_method

method = sys.argv[1]
rank = int(sys.argv[2]) if len(sys.argv) > 2 else 256
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 128
torch.manual_seed(0)
torch.set_num_threads(2)
# Qwen/Qwen3-0.6B's config.json (architecture only; the weights are random)
config = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                     num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     rope_theta=1000000, rms_norm_eps=1e-6, tie_word_embeddings=True, dtype="bfloat16")
start = time.time()
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model = attach_method(model, resolve_config(overrides={"method": method, "rank": rank, "base_model": "tiny"}))
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
total = sum(p.numel() for p in model.parameters())
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
ids = torch.randint(0, 151936, (1, tokens))
for _ in range(2):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{method} r{rank}: total {total / 1e6:.1f} M, trainable {trainable / 1e6:.1f} M parameters; "
      f"peak RSS after loading {rss_model:.0f} MiB, after 2 steps of {tokens} tokens {peak:.0f} MiB "
      f"({time.time() - start:.0f} s)")
