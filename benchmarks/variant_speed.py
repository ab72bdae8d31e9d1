"""Training-step time of a preset against variants of it, timed in turn in one process.

Each variant is a name and ``--set`` overrides. For each, the real training step
(``soundformer.train.TrainStep`` forward, backward and AdamW; the model placed as training places
it) runs on a batch of random audio of the length the training loader gives it
(``soundformer.train.loader_length``: the training crop, or whole windows with
``augment.member_crops``, each member then cutting its own crops). Variants run in turn for
``--rounds`` rounds, so that a drifting machine affects them alike, after one untimed round (the
process's first model pays for warming it up); each round times ``--steps`` steps after two warm-up
steps. Prints the median and mean step time per variant and its ratio to the first (the preset as
it is).

Per-step time leaves out what a whole fold also pays (evaluation, checkpoints), so a ratio here is a
lower bound on a fold's: the fifty-first session's wider encoder timed +6.6 % per step and trained
its fold 1.12x slower (docs/RESULTS.md).

    python benchmarks/variant_speed.py [--preset logmel-transformer] [--batch 32] [--rounds 2] [--steps 5]
        [--threads 2] [--set KEY=VALUE ...] --variant heads8 model.heads=8 --variant depth6 model.depth=6 ...

``--set`` applies to every variant, the preset's row included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import build

from soundformer.config import load_config
from soundformer.errors import SoundformerError
from soundformer.runtime import place_model
from soundformer.train import TrainStep, loader_length, make_optimizer


def time_steps(preset: str, overrides: list[str], *, batch: int, steps: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    cfg, model = build(preset, overrides)
    place_model(model, torch.device("cpu"))
    step, optimizer = TrainStep(model, cfg), make_optimizer(cfg, model)
    wav = torch.randn(batch, loader_length(cfg)) * 0.1  # (B, N)
    n_classes = 10
    target = F.one_hot(torch.randint(0, n_classes, (batch,)), n_classes).float()  # (B, C)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss, _, _ = step(wav, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:  # two warm-up steps: kernels planned, buffers allocated
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="logmel-transformer")
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                    help="a variant: its name, then its --set overrides (repeatable)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every variant")
    args = ap.parse_args()
    names = [v[0] for v in args.variant]
    if "preset" in names or len(set(names)) < len(names):
        ap.error(f"variant names must differ from each other and from 'preset', got {' '.join(names)}")
    variants = {"preset": []} | {v[0]: v[1:] for v in args.variant}
    for name, overrides in variants.items():  # every setting checked before any timing
        try:
            load_config(args.preset, args.set + overrides)
        except SoundformerError as e:
            ap.error(f"{name}: {e}")
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds + 1):  # round 0 warms the process up (the first model pays for it) and is dropped
        for name, overrides in variants.items():
            ts = time_steps(args.preset, args.set + overrides, batch=args.batch, steps=args.steps)
            if round_:
                times[name] += ts
    base = statistics.median(times["preset"])
    print(f"{args.preset}, batch {args.batch}, {args.threads} threads, {args.rounds} rounds x {args.steps} steps")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>12}: median {med:.3f} s/step, mean {statistics.mean(ts):.3f}, {med / base:.2f}x "
              f"({' '.join(variants[name]) or 'as it is'})")


if __name__ == "__main__":
    main()
