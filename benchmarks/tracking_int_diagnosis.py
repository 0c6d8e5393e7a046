"""Why InT scores exactly 0.500 on the demo's PathTracker at CPU scale (issue 17 follow-up).

Trains InT on the demo's data (:data:`shared.tracking.demo.DEMO_DATA`: 16 frames at speed 4, 2 distractors,
256 training videos, batch 16) with plain Adam(W) and prints, at chosen steps, the loss, the spread of the
logits across the batch, the gradient norm of every parameter group and the readout's dense weight and bias;
before training, the activation scales per frame (x, i, e, e^ and the gates); after training, the test
accuracy per condition with the spread of the test logits. A test set scored "exactly 0.500" while the
logit spread is far below the drift of the readout bias means one sign for every video (the label prior).

    OMP_NUM_THREADS=1 python benchmarks/tracking_int_diagnosis.py --seed 0 --lr 1e-3 --steps 150
    OMP_NUM_THREADS=1 python benchmarks/tracking_int_diagnosis.py --readout-pool goal --lr 3e-3 --steps 600

Data are generated under ``--data`` (one folder per seed, reused).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--readout-pool", choices=("mean", "goal"), default="mean")
    parser.add_argument("--norm-scale", type=float, default=0.1)
    parser.add_argument("--data", default="/tmp/tracking_int_diagnosis")
    args = parser.parse_args()

    import lightning as L
    import torch
    import torch.nn.functional as F

    from shared.backbones import create
    from shared.tracking.datamodule import TrackingDataModule
    from shared.tracking.demo import DEMO_DATA

    dm = TrackingDataModule(root=str(Path(args.data) / f"seed{args.seed}"), seed=args.seed, **DEMO_DATA)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(args.seed, verbose=False)
    net = create(
        "int", in_channels=3, channels=8, kernel_size=5, readout_pool=args.readout_pool, norm_scale=args.norm_scale
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)

    rng = torch.random.get_rng_state()  # the probe's shuffle must not change the training batches
    batch = next(iter(dm.train_dataloader()))
    torch.random.set_rng_state(rng)
    frames = []
    cell_step = net.cell.step

    def recording_step(x, i, e, attention):
        new_i, new_e, maps = cell_step(x, i, e, attention)
        frames.append((x, new_i, new_e, maps))
        return new_i, new_e, maps

    net.cell.step = recording_step
    with torch.no_grad():
        net(batch["video"])
    del net.cell.step
    print("activations at initialisation (one batch):")
    for t in sorted({0, len(frames) // 4, len(frames) // 2, len(frames) - 1}):
        x, i, e, maps = frames[t]
        print(
            f"  frame {t:2d}: x {x.mean():.3f}+/-{x.std():.3f}  i {i.mean():.3f}+/-{i.std():.3f}  "
            f"e {e.mean():.3f}, spatial std {e.std(dim=(2, 3)).mean():.1e}, across-video std of its "
            f"spatial mean {e.mean(dim=(2, 3)).std(0).mean():.1e}  e^ {maps['e_hat'].mean():.3f}+/-"
            f"{maps['e_hat'].std():.1e}  g_e {maps['g_e'].mean():.3f}  g_i {maps['g_i'].mean():.3f}"
        )

    def grad_norms() -> str:
        sums: dict[str, float] = {}
        for name, p in net.named_parameters():
            parts = name.split(".")
            group = ".".join(parts[:2]) if parts[0] == "cell" else parts[0]
            if p.grad is not None:
                sums[group] = sums.get(group, 0.0) + float(p.grad.pow(2).sum())
        return " ".join(f"{k} {math.sqrt(v):.1e}" for k, v in sums.items())

    report_at = {0, 1, 10, 50, 100, args.steps // 2, args.steps - 1}
    step, start = 0, time.process_time()
    while step < args.steps:
        for batch in dm.train_dataloader():
            logits = net(batch["video"]).reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logits, batch["label"].float())
            optimiser.zero_grad()
            loss.backward()
            if step in report_at:
                print(
                    f"step {step}: loss {loss.item():.4f}  logits {logits.mean():.3f}, spread (std) "
                    f"{logits.std():.1e}  dense w {net.head.dense.weight.item():.3f} b "
                    f"{net.head.dense.bias.item():.3f}\n  grad norms: {grad_norms()}"
                )
            optimiser.step()
            step += 1
            if step >= args.steps:
                break
    print(f"training: {time.process_time() - start:.0f} s CPU")

    dm.setup("test")
    net.eval()
    scores: dict[str, list] = {}
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits = net(batch["video"]).reshape(-1)
            for c in batch["condition"].unique().tolist():
                sel = batch["condition"] == c
                scores.setdefault(dm.condition_names[c], []).append(
                    (((logits[sel] > 0).long() == batch["label"][sel]).float(), logits[sel])
                )
    band = 1.96 * 0.5 / math.sqrt(DEMO_DATA["n_test"])
    for name, parts in scores.items():
        correct = torch.cat([p[0] for p in parts])
        logits = torch.cat([p[1] for p in parts])
        print(
            f"test {name}: accuracy {correct.mean():.3f} (n={len(correct)}, chance band 0.5 +/- {band:.3f}), "
            f"logit spread {logits.std():.1e}"
        )


if __name__ == "__main__":
    main()
