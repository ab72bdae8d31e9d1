"""Training-step time of a preset when the crop length changes from batch to batch.

``augment.crop_spread`` gives every training batch its own crop length. The mean work per step
is that of the mean length, but on a CPU each new input shape can cost more than its share
(convolution kernels are planned per shape; buffers change size). This times the real training
step (``soundformer.train.TrainStep``, backward, AdamW; the model placed as training places it)
on random audio of batch x length, for three ways of choosing the length:

  fixed      every step at ``crop_fraction`` of the window (the preset as it is)
  shortest   every step at crop_fraction - spread; longest: crop_fraction + spread (their mean
             against fixed shows how far the step's cost bends with length: any spread pays that)
  continuous each step a length drawn uniformly from crop_fraction +- spread, to the sample
  grid K     each step one of K evenly spaced lengths over the same range

Each policy runs its steps as one block (after warm-up steps), and the blocks repeat in turn
(``--rounds``) so that a drifting machine affects them alike. Prints median and mean step time,
clips/s, and the mean crop length per policy.

    python benchmarks/crop_speed.py [--preset logmel-transformer] [--spread 0.3] [--grid 7]
                                    [--steps 20] [--rounds 2] [--batch 32] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import build

from soundformer.evaluate import crop_length, crop_length_range
from soundformer.runtime import place_model
from soundformer.train import TrainStep, make_optimizer, window_samples


def policy_lengths(policy: str, *, shortest: int, longest: int, mean: int, grid: int,
                   steps: int, rng: np.random.Generator) -> list[int]:
    """The crop length (samples) of each of ``steps`` steps under ``policy``."""
    if policy in ("fixed", "shortest", "longest"):
        return [{"fixed": mean, "shortest": shortest, "longest": longest}[policy]] * steps
    if policy == "continuous":
        return rng.integers(shortest, longest + 1, steps).tolist()
    values = np.linspace(shortest, longest, grid).round().astype(int)
    return rng.choice(values, steps).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="logmel-transformer")
    ap.add_argument("--spread", type=float, default=0.3, help="crop share range: crop_fraction +- spread")
    ap.add_argument("--grid", type=int, default=7, help="K evenly spaced lengths for the grid policy")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per policy and round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    cfg, model = build(args.preset, args.overrides)
    window = window_samples(cfg)
    fraction = cfg.augment.crop_fraction
    if not (0 < fraction - args.spread and fraction + args.spread <= 1 + 1e-9):
        ap.error(f"crop_fraction {fraction:g} +- --spread {args.spread:g} leaves (0, 1]")
    if args.grid < 2:
        ap.error("--grid needs two or more lengths")
    cfg.augment.crop_spread = 0.0  # the benchmark chooses each step's length itself
    shortest, longest = crop_length_range(window, fraction, args.spread)
    mean = crop_length(window, fraction)
    place_model(model, torch.device("cpu"))
    step = TrainStep(model, cfg)
    optimizer = make_optimizer(cfg, model)
    n_classes = 10  # common.build's default
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    def train_step(length: int) -> None:
        wav = torch.randn(args.batch, length) * 0.1
        target = F.one_hot(torch.randint(0, n_classes, (args.batch,)), n_classes).float()
        loss, _, _ = step(wav, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    policies = ["fixed", "shortest", "longest", "continuous", f"grid {args.grid}"]
    times: dict[str, list[float]] = {p: [] for p in policies}
    lengths: dict[str, list[int]] = {p: [] for p in policies}
    model.train()
    for _ in range(args.rounds):
        for policy in policies:
            todo = policy_lengths(policy.split()[0], shortest=shortest, longest=longest, mean=mean,
                                  grid=args.grid, steps=args.warmup + args.steps, rng=rng)
            for i, length in enumerate(todo):
                t0 = time.perf_counter()
                train_step(length)
                if i >= args.warmup:
                    times[policy].append(time.perf_counter() - t0)
                    lengths[policy].append(length)
    print(f"{args.preset}, batch {args.batch}, window {window} samples; crops {shortest}-{longest} samples "
          f"({fraction - args.spread:g}-{fraction + args.spread:g} of the window), fixed {mean}; "
          f"{args.rounds} rounds x {args.steps} steps, torch threads {torch.get_num_threads()}\n")
    print("| length policy | median step (s) | mean step (s) | clips/s (mean) | mean length (samples) | vs fixed "
          "| per sample vs fixed |")
    print("|---|---|---|---|---|---|---|")
    base = statistics.mean(times["fixed"])
    for policy in policies:
        m, n = statistics.mean(times[policy]), statistics.mean(lengths[policy])
        print(f"| {policy} | {statistics.median(times[policy]):.3f} | {m:.3f} | {args.batch / m:.1f} | "
              f"{n:,.0f} | {m / base:.2f}x | {m / n / (base / mean):.2f}x |")


if __name__ == "__main__":
    main()
