"""rldiag.distill: behavioural cloning of an expert's actions from frames."""

import lightning as L
import numpy as np
import pytest
import torch

from rldiag.distill import BehaviourCloning, ExpertFramesDataModule, agreement_curve, collect_expert_frames
from rldiag.encoders import make_encoder
from rldiag.envs import ProcgenVectorEnv
from rldiag.ppo import Agent
from shared.checkpoints import load_lightning_module


def _synthetic_frames(n=768, n_envs=8, seed=0):
    """Frames whose colour channel encodes the expert's action (0, 1 or 2): learnable from pixels."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 3, n)
    frames = rng.integers(0, 60, (n, 64, 64, 3)).astype(np.uint8)
    frames[np.arange(n), :, :, actions] = 250
    logits = np.full((n, 15), -5.0, np.float32)
    logits[np.arange(n), actions] = 5.0
    return {
        "frames": frames,
        "actions": actions.astype(np.int64),
        "logits": logits,
        "env_index": np.tile(np.arange(n_envs), n // n_envs),
    }


def test_collect_expert_frames_labels_with_the_experts_greedy_actions():
    torch.manual_seed(0)
    agent = Agent(make_encoder("nature", hidden=32), 15)
    data = collect_expert_frames(agent, ProcgenVectorEnv("bigfish", 4), 10, seed=1)
    assert data["frames"].shape == (12, 64, 64, 3) and data["frames"].dtype == np.uint8
    with torch.no_grad():
        expected = agent.get_logits(torch.from_numpy(data["frames"])).argmax(-1).numpy()
    np.testing.assert_array_equal(data["actions"], expected)
    np.testing.assert_array_equal(data["env_index"][:8], [0, 1, 2, 3, 0, 1, 2, 3])


def test_datamodule_holds_out_whole_trajectories():
    dm = ExpertFramesDataModule(_synthetic_frames(), val_fraction=0.25)
    dm.setup("fit")
    assert len(dm.val_set) == 768 // 4 and len(dm.train_set) == 768 * 3 // 4
    assert 0.2 < dm.majority_rate < 0.5
    with pytest.raises(ValueError, match="at least 2 sub-environments"):
        ExpertFramesDataModule({**_synthetic_frames(n=16), "env_index": np.zeros(16, int)})


def test_behaviour_cloning_learns_the_experts_actions_and_reloads(tmp_path):
    curve = agreement_curve(
        _synthetic_frames(),
        encoder="nature",
        encoder_config={"hidden": 32},
        epochs=2,
        batch_size=32,
        learning_rate=2e-3,
        seed=0,
    )
    assert curve["samples"][0] == 0 and curve["samples"][-1] == curve["budget"] == 576 * 2
    assert curve["agreement"][-1] > 0.9 > curve["majority_rate"]
    model = curve["model"]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "bc.ckpt")
    reloaded = load_lightning_module(BehaviourCloning, tmp_path / "bc.ckpt")
    x = torch.from_numpy(_synthetic_frames(n=8)["frames"])
    torch.testing.assert_close(reloaded(x), model.eval()(x))


def test_kl_target_and_bad_target():
    model = BehaviourCloning(encoder="nature", encoder_config={"hidden": 16}, target="logits")
    batch = tuple(torch.from_numpy(v[:4]) for k, v in _synthetic_frames(n=8).items() if k != "env_index")
    frames, actions, logits = batch
    assert model._loss(model(frames), actions, logits).item() > 0
    with pytest.raises(ValueError, match="target must be one of"):
        BehaviourCloning(target="values")
