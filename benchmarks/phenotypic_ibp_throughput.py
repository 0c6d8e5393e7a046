"""IBP training throughput on the CPU (or CUDA when present): profiles/s and images/s.

    .venv/bin/python benchmarks/phenotypic_ibp_throughput.py [--steps 30] [--threads 2]

Times full optimiser steps (forward, losses, backward, AdamW) of ``IBPModule``: the residual MLP on
whitened profiles (batch 256, 300 features, 2000 compound classes) and the ``resnet_small`` image encoder on
5-channel 48x48 crops (batch 32), each after 3 warm-up steps; also with the fingerprint and gradient-reversal
batch heads on.
"""

from __future__ import annotations

import argparse
import time

import torch

from phenotypic.ibp import IBPModule
from shared.devices import default_device


def throughput(model: IBPModule, batch: dict, steps: int) -> float:
    device = default_device()
    model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = model.configure_optimizers()
    model.log = lambda *a, **k: None  # no trainer attached: logging is a no-op here
    for i in range(steps + 3):
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad()
        model.training_step(batch, i).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(batch["y"]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, oversubscribed 2-core machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_cls, n_batches = 2000, 4
    print(f"device {default_device()}, torch threads {torch.get_num_threads()}")
    for width, depth in ((256, 3), (1024, 6)):
        for heads in (False, True):
            model = IBPModule(
                width=width,
                depth=depth,
                in_features=300,
                n_classes=n_cls,
                n_batches=n_batches,
                fingerprint_bits=256 if heads else 0,
                fingerprint_weight=0.5 if heads else 0.0,
                adversarial_weight=0.5 if heads else 0.0,
            )
            batch = {
                "x": torch.randn(256, 300),
                "y": torch.randint(0, n_cls, (256,)),
                "batch": torch.randint(0, n_batches, (256,)),
                "fp": torch.rand(256, 256).round(),
            }
            rate = throughput(model, batch, args.steps)
            print(
                f"profiles  MLP width {width:>4} depth {depth:>2} heads={'fp+adv' if heads else 'none':<6}: "
                f"{rate:>9.0f} profiles/s"
            )
    model = IBPModule(
        encoder="image",
        in_features=5,
        n_classes=n_cls,
        n_batches=n_batches,
        backbone_config={"stem_channels": 16, "widths": [16, 32, 64]},
    )
    batch = {
        "x": torch.randn(32, 5, 48, 48),
        "y": torch.randint(0, n_cls, (32,)),
        "batch": torch.randint(0, n_batches, (32,)),
    }
    rate = throughput(model, batch, max(5, args.steps // 3))
    print(f"images    resnet_small 5x48x48 crops                : {rate:>9.0f} images/s")


if __name__ == "__main__":
    main()
