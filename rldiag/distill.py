"""Behavioural cloning: learn an expert policy's actions from frames (the perceptual-challenge probe).

With perfect credit assignment (every frame labelled with the expert's action) the only thing left to learn
is to *see* what the expert reacts to. How fast a fresh encoder learns that, from standard pixels, is our
``PLC_bc`` ingredient (:mod:`rldiag.diagnose`).

* :func:`collect_expert_frames` runs the expert in a vector env (it acts by sampling its own policy, so
  the frames follow the expert's state distribution) and labels each frame with the expert's greedy
  action and logits.
* :class:`ExpertFramesDataModule` splits the frames by *sub-environment* (whole trajectories go to
  validation, so neighbouring, near-identical frames never straddle the split).
* :class:`BehaviourCloning` is the LightningModule: an encoder (same names as the agents) and a linear
  head, cross-entropy to the expert's actions (``target="actions"``) or KL to its softened logits
  (``target="logits"``); it logs ``val/agreement`` (top-1 match with the expert) and ``val/loss``.

Example::

    >>> import torch
    >>> model = BehaviourCloning(encoder="nature")
    >>> model(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape
    torch.Size([2, 15])
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium.vector import VectorEnv
from torch.utils.data import DataLoader, TensorDataset

from rldiag.encoders import make_encoder
from shared.validation import check_choice


@torch.inference_mode()
def collect_expert_frames(
    agent: nn.Module,
    envs: VectorEnv,
    num_frames: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress_bar: Any = None,
) -> dict[str, np.ndarray]:
    """Roll out ``agent`` (a :class:`rldiag.ppo.Agent`) and label every frame with its decisions.

    Parameters
    ----------
    agent : nn.Module with ``get_logits(frames)``
    envs : VectorEnv with uint8 image observations
    num_frames : int
        Frames to collect (rounded up to a multiple of ``envs.num_envs``).
    seed : int
        Env seed and the seed of the expert's action sampling.
    progress_bar : tqdm, optional
        Advanced by the frames collected.

    Returns
    -------
    dict with ``frames`` (uint8, (N, H, W, C)), ``actions`` (int64, (N,), the expert's greedy actions),
    ``logits`` (float32, (N, n_actions)) and ``env_index`` (int64, (N,), which sub-env a frame came from).
    """
    agent = agent.to(device).eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    steps = -(-num_frames // envs.num_envs)
    frames, logits = [], []
    for _ in range(steps):
        x = torch.as_tensor(obs, device=device)
        step_logits = agent.get_logits(x).float().cpu()
        frames.append(obs)
        logits.append(step_logits.numpy())
        action = torch.multinomial(F.softmax(step_logits, dim=-1), 1, generator=generator).squeeze(-1)
        obs, *_ = envs.step(action.numpy())
        if progress_bar is not None:
            progress_bar.update(envs.num_envs)
    all_logits = np.concatenate(logits).astype(np.float32)
    return {
        "frames": np.concatenate(frames),
        "actions": all_logits.argmax(-1).astype(np.int64),
        "logits": all_logits,
        "env_index": np.tile(np.arange(envs.num_envs), steps).astype(np.int64),
    }


class ExpertFramesDataModule(L.LightningDataModule):
    """Expert-labelled frames in memory, split into train/validation by sub-environment.

    Parameters
    ----------
    data : dict
        :func:`collect_expert_frames` output.
    val_fraction : float
        Share of sub-environments (whole trajectories) held out for validation (at least one).
    batch_size : int
    """

    def __init__(self, data: dict[str, np.ndarray], val_fraction: float = 0.25, batch_size: int = 64) -> None:
        super().__init__()
        envs = np.unique(data["env_index"])
        if len(envs) < 2:
            raise ValueError("need frames from at least 2 sub-environments to hold some out for validation")
        n_val = min(len(envs) - 1, max(1, round(val_fraction * len(envs))))
        val_mask = np.isin(data["env_index"], envs[:n_val])
        self.data, self.val_mask, self.batch_size = data, val_mask, batch_size

    def _dataset(self, mask: np.ndarray) -> TensorDataset:
        return TensorDataset(
            torch.from_numpy(self.data["frames"][mask]),
            torch.from_numpy(self.data["actions"][mask]),
            torch.from_numpy(self.data["logits"][mask]),
        )

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset(~self.val_mask)
        self.val_set = self._dataset(self.val_mask)

    @property
    def majority_rate(self) -> float:
        """Validation agreement of always predicting the expert's most frequent action (the floor)."""
        actions = self.data["actions"][self.val_mask]
        return float(np.bincount(actions).max() / len(actions))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class BehaviourCloning(L.LightningModule):
    """Clone an expert's actions from frames.

    Parameters
    ----------
    encoder : str
        ``"impala"``, ``"nature"`` or a ``shared`` backbone name (:func:`rldiag.encoders.make_encoder`).
    encoder_config : dict
        Encoder options.
    n_actions : int
    learning_rate : float
        Adam learning rate.
    target : str
        ``"actions"`` (cross-entropy to the expert's greedy action) or ``"logits"`` (KL to the expert's
        action distribution at ``temperature``).
    temperature : float
    """

    def __init__(
        self,
        encoder: str = "impala",
        encoder_config: dict | None = None,
        n_actions: int = 15,
        learning_rate: float = 5e-4,
        target: str = "actions",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice(target, ("actions", "logits"), name="target")
        self.save_hyperparameters()
        self.encoder = make_encoder(encoder, **(encoder_config or {}))
        self.head = nn.Linear(self.encoder.feature_dim, n_actions)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(batch, row, column, channel)`` -> action logits ``(batch, n_actions)``."""
        return self.head(self.encoder(frames))

    def _loss(self, logits: torch.Tensor, actions: torch.Tensor, expert_logits: torch.Tensor) -> torch.Tensor:
        if self.hparams.target == "actions":
            return F.cross_entropy(logits.float(), actions)
        t = self.hparams.temperature
        return F.kl_div(
            F.log_softmax(logits.float() / t, -1),
            F.log_softmax(expert_logits / t, -1),
            log_target=True,
            reduction="batchmean",
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        frames, actions, expert_logits = batch
        loss = self._loss(self(frames), actions, expert_logits)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        frames, actions, expert_logits = batch
        logits = self(frames)
        self.log("val/loss", self._loss(logits, actions, expert_logits))
        self.log("val/agreement", (logits.argmax(-1) == actions).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class AgreementCurve(L.Callback):
    """Record ``(training samples seen, val/agreement)`` at every validation run."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.points: list[tuple[int, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seen = trainer.global_step * self.batch_size
        self.points.append((int(seen), float(trainer.callback_metrics["val/agreement"])))


class _ProgressHook(L.Callback):
    """Advance a tqdm bar by the training samples consumed; show the latest held-out agreement."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.bar.update(len(batch[0]))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar.set_postfix_str(f"agreement {float(trainer.callback_metrics['val/agreement']):.3f}", refresh=False)


def agreement_curve(
    data: dict[str, np.ndarray],
    *,
    encoder: str = "impala",
    encoder_config: dict | None = None,
    epochs: int = 1,
    batch_size: int = 64,
    evaluations: int = 8,
    learning_rate: float = 5e-4,
    seed: int = 0,
    log_dir: str | None = None,
    progress_bar: Any = None,
) -> dict[str, Any]:
    """Train :class:`BehaviourCloning` on expert frames and return its learning curve.

    The x-axis is training samples consumed (frames x epochs, so ``epochs`` > 1 counts repeats). With one
    epoch, validation runs ``evaluations`` times, evenly spaced (else once per epoch), plus once before
    training. ``progress_bar`` (a tqdm bar) is reset to the training samples and advanced through them,
    with the latest held-out agreement.

    Returns
    -------
    dict with ``samples`` (list of int), ``agreement`` (list of float, top-1 agreement with the expert on
    held-out trajectories), ``majority_rate`` (the floor: always predicting the commonest action) and
    ``budget`` (total training samples).
    """
    from shared.devices import lightning_precision

    L.seed_everything(seed, workers=True, verbose=False)
    dm = ExpertFramesDataModule(data, batch_size=batch_size)
    dm.setup("fit")
    if progress_bar is not None:
        progress_bar.reset(total=len(dm.train_set) * epochs)
    model = BehaviourCloning(encoder=encoder, encoder_config=encoder_config, learning_rate=learning_rate)
    n_batches = -(-len(dm.train_set) // batch_size)
    curve = AgreementCurve(batch_size)
    trainer = L.Trainer(
        max_epochs=epochs,
        val_check_interval=max(1, (n_batches * epochs) // evaluations) if epochs == 1 else None,
        check_val_every_n_epoch=1,
        num_sanity_val_steps=0,
        logger=False if log_dir is None else L.pytorch.loggers.CSVLogger(log_dir),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=lightning_precision(),
        callbacks=[curve] if progress_bar is None else [curve, _ProgressHook(progress_bar)],
        deterministic=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a Lightning-internal deprecation
        trainer.validate(model, datamodule=dm, verbose=False)  # the untrained point, at 0 samples
        trainer.fit(model, datamodule=dm)
    budget = len(dm.train_set) * epochs
    return {
        "samples": [min(s, budget) for s, _ in curve.points],
        "agreement": [a for _, a in curve.points],
        "majority_rate": dm.majority_rate,
        "budget": budget,
        "model": model,
    }
