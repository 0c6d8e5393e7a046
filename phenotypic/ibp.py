"""IBP pretraining (and its task-supervised baseline) as one LightningModule.

Inverse Biological Process (IBP, Linsley et al. 2023, arXiv 2309.16773; **reconstructed from the authors'
code, unverified against the paper text**): given one well's profile, classify which of the training
compounds produced it (cross-entropy over one class per compound). Options beyond the published objective:

* ``fingerprint_weight > 0``: also predict the compound's Morgan fingerprint bits (BCE): a variant, not
  "the paper's IBP".
* ``adversarial_weight > 0``: a batch classifier behind gradient reversal strips batch identity from the
  embedding. The reference code instead trains batch/source/well heads toward a uniform distribution and
  concatenates learned batch embeddings; we use gradient reversal because a head trained *toward* uniform
  can satisfy its loss by shrinking its own weights without changing the embedding.

The same module trained with the datamodule's ``label="moa"`` / ``"target"`` is the task-supervised
baseline from scratch (same encoder, optimiser and steps: equal compute).

Hyper-parameters are plain values, so :func:`shared.checkpoints.load_lightning_module` rebuilds it; sizes
known only from data (``in_features``, ``n_classes``, ``n_batches``) are filled in from the datamodule in
:meth:`IBPModule.setup` and saved with the checkpoint.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from phenotypic.models import ImageEncoder, ResidualMLP, grad_reverse

__all__ = ["IBPModule", "topk_accuracy"]


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Share of rows whose true class (or, for multi-hot targets, any true class) is in the top ``k``.

    logits : (batch, n_classes); target : (batch,) class indices or (batch, n_classes) multi-hot.
    """
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    if target.ndim == 1:
        return (top == target[:, None]).any(1).float().mean()
    return target.gather(1, top).amax(1).clamp(max=1).mean()


def _check_settings(**values: float) -> None:
    """Refuse impossible hyper-parameters when the module is built (LightningCLI builds it before any step)."""
    for name in ("width", "depth"):
        if values[name] < 1:
            raise ValueError(f"model.{name} must be >= 1, got {values[name]}")
    if not values["lr"] > 0:
        raise ValueError(f"model.lr must be > 0, got {values['lr']}")
    if not 0 <= values["dropout"] < 1:
        raise ValueError(f"model.dropout must be in [0, 1), got {values['dropout']}")
    for name in ("weight_decay", "fingerprint_bits", "fingerprint_weight", "adversarial_weight"):
        if not values[name] >= 0:
            raise ValueError(f"model.{name} must be >= 0, got {values[name]}")


class IBPModule(L.LightningModule):
    """Encoder + class head (+ optional fingerprint and batch-adversarial heads).

    Parameters
    ----------
    encoder : ``mlp`` (residual MLP on profiles) or ``image`` (registry backbone on crops).
    width, depth, dropout : residual MLP size (the scaling grid's model axis).
    backbone, backbone_config : image encoder registry name and config.
    in_features, n_classes, n_batches, multilabel : data-derived sizes (``None``: read from the datamodule).
    fingerprint_bits, fingerprint_weight : fingerprint prediction head (0 weight disables it).
    adversarial_weight : gradient-reversal batch head weight (0 disables it).
    lr, weight_decay : AdamW (the reference uses 1e-4 / 1e-6 at batch 6000; CPU-scale configs use 1e-3).
    """

    def __init__(
        self,
        encoder: str = "mlp",
        width: int = 256,
        depth: int = 3,
        dropout: float = 0.1,
        backbone: str = "resnet_small",
        backbone_config: dict | None = None,
        in_features: int | None = None,
        n_classes: int | None = None,
        n_batches: int | None = None,
        multilabel: bool = False,
        fingerprint_bits: int = 0,
        fingerprint_weight: float = 0.0,
        adversarial_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
    ) -> None:
        super().__init__()
        if encoder not in ("mlp", "image"):
            raise ValueError(f"encoder must be 'mlp' or 'image', got {encoder!r}")
        if fingerprint_weight > 0 and fingerprint_bits < 1:
            raise ValueError("fingerprint_weight > 0 needs fingerprint_bits >= 1 (and the datamodule's too)")
        _check_settings(
            width=width,
            depth=depth,
            dropout=dropout,
            lr=lr,
            weight_decay=weight_decay,
            fingerprint_bits=fingerprint_bits,
            fingerprint_weight=fingerprint_weight,
            adversarial_weight=adversarial_weight,
        )
        self.save_hyperparameters()
        self.net: nn.ModuleDict | None = None
        if in_features is not None and n_classes is not None:
            self._build()

    def _build(self) -> None:
        h = self.hparams
        enc = (
            ResidualMLP(h.in_features, width=h.width, depth=h.depth, dropout=h.dropout)
            if h.encoder == "mlp"
            else ImageEncoder(h.backbone, in_channels=h.in_features, backbone_config=h.backbone_config)
        )
        heads = {"encoder": enc, "head": nn.Linear(enc.out_features, h.n_classes)}
        if h.fingerprint_weight > 0:
            heads["fingerprint"] = nn.Linear(enc.out_features, h.fingerprint_bits)
        if h.adversarial_weight > 0:
            if not h.n_batches or h.n_batches < 2:
                raise ValueError("adversarial_weight > 0 needs >= 2 batches in the data")
            heads["batch"] = nn.Sequential(nn.Linear(enc.out_features, 64), nn.GELU(), nn.Linear(64, h.n_batches))
        self.net = nn.ModuleDict(heads)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if dm is not None and self.hparams.fingerprint_weight > 0:
            self._check_fingerprints(dm)
        if self.net is not None:
            return
        self.hparams.update(
            in_features=int(dm.n_features),
            n_classes=int(dm.n_classes),
            n_batches=int(dm.n_batches),
            multilabel=bool(dm.multilabel),
        )
        self._build()

    def _check_fingerprints(self, dm) -> None:
        """The fingerprint head needs ``fp`` targets of the same length in every batch: fail here, at setup,
        rather than with a KeyError in the first training step."""
        bits = self.hparams.fingerprint_bits
        fp = getattr(dm, "fp", None)
        have = 0 if fp is None else int(fp.shape[1])
        if have != bits:
            raise ValueError(
                f"model.fingerprint_bits={bits} with fingerprint_weight={self.hparams.fingerprint_weight} needs "
                f"{bits}-bit fingerprints from the data, but the datamodule has "
                f"{'none' if fp is None else f'{have}-bit ones'}; set data.fingerprint_bits={bits} "
                "(--data.fingerprint_bits), or model.fingerprint_weight=0"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: (batch, features) or (batch, 5, rows, columns) -> (batch, embedding_dim)."""
        return self.net["encoder"](x)

    def _losses(self, batch: dict, stage: str) -> torch.Tensor:
        emb = self(batch["x"])
        logits = self.net["head"](emb)
        y = batch["y"]
        loss = (
            F.binary_cross_entropy_with_logits(logits, y.float())
            if self.hparams.multilabel
            else F.cross_entropy(logits, y)
        )
        n = len(y)
        self.log(f"{stage}/class_loss", loss, prog_bar=False, batch_size=n)
        for k in (1, 10):
            self.log(f"{stage}/top{k}", topk_accuracy(logits.detach(), y, k), prog_bar=k == 1, batch_size=n)
        if "fingerprint" in self.net:
            fp_loss = F.binary_cross_entropy_with_logits(self.net["fingerprint"](emb), batch["fp"])
            self.log(f"{stage}/fingerprint_loss", fp_loss, batch_size=n)
            loss = loss + self.hparams.fingerprint_weight * fp_loss
        if "batch" in self.net:
            adv = F.cross_entropy(self.net["batch"](grad_reverse(emb)), batch["batch"])
            self.log(f"{stage}/batch_loss", adv, batch_size=n)
            loss = loss + self.hparams.adversarial_weight * adv
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._losses(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._losses(batch, "val")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # LightningCLI records its instantiator in the hyper-parameters; it is not a constructor argument, and
        # shared.checkpoints.load_lightning_module rebuilds the module from exactly these values.
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            checkpoint.get(key, {}).pop("_instantiator", None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
        """Embeddings in eval mode, in batches: (n, ...) -> (n, embedding_dim) on the CPU."""
        was = self.training
        self.eval()
        out = [self(x[i : i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.net["encoder"].out_features)
