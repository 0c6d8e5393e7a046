"""rldiag.ppo and rldiag.encoders: GAE, the PPO loss, reward normalisation, training, checkpoint/resume."""

import csv
import dataclasses

import gymnasium
import numpy as np
import pytest
import torch

from rldiag.encoders import frames_to_tensor, list_encoders, make_encoder
from rldiag.ppo import (
    PPOConfig,
    RewardNormalizer,
    compute_gae,
    load_agent,
    ppo_loss,
    train,
)
from shared.checkpoints import load_checkpoint


def test_gae_matches_hand_computation_and_cuts_at_episode_ends():
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [0.0]])
    ends = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([3.0])
    adv, ret = compute_gae(rewards, values, ends, last, gamma, lam)
    d2 = 2.0 + gamma * 3.0 - 0.0  # last step bootstraps from last_value
    d1 = 0.0 - 1.0  # step 1 ended an episode: no bootstrap, no carry-over
    d0 = 1.0 + gamma * 1.0 - 0.5
    expected = torch.tensor([[d0 + gamma * lam * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_ppo_loss_terms_and_clipping():
    n = 4
    zeros, ones = torch.zeros(n), torch.ones(n)
    adv = torch.tensor([1.0, -1.0, 2.0, -2.0])
    # identical policies: ratio 1, no KL, nothing clipped; value loss 0.5 * mean squared error
    loss, stats = ppo_loss(
        zeros,
        zeros,
        adv,
        ones,
        ones,
        3 * ones,
        0.5 * ones,
        clip_coef=0.2,
        clip_vloss=False,
        ent_coef=0.1,
        vf_coef=0.5,
        norm_adv=False,
    )
    assert stats["approx_kl"] == pytest.approx(0.0) and stats["clipfrac"] == 0.0
    assert stats["policy_loss"] == pytest.approx(-adv.mean().item())
    assert stats["value_loss"] == pytest.approx(0.5 * 4.0)
    assert loss.item() == pytest.approx(stats["policy_loss"] - 0.1 * 0.5 + 0.5 * 2.0)
    # ratio e^1 > 1.2: positive advantages are clipped at 1.2, negative ones are not
    new = torch.ones(n)
    _, stats = ppo_loss(
        new,
        zeros,
        adv,
        ones,
        ones,
        ones,
        zeros,
        clip_coef=0.2,
        clip_vloss=True,
        ent_coef=0.0,
        vf_coef=0.5,
        norm_adv=False,
    )
    e = np.e
    expected = np.mean([-1.0 * 1.2, 1.0 * e, -2.0 * 1.2, 2.0 * e])
    assert stats["policy_loss"] == pytest.approx(expected, rel=1e-5)
    assert stats["clipfrac"] == 1.0 and stats["approx_kl"] == pytest.approx((e - 1) - 1, rel=1e-5)
    # value clipping keeps the larger of clipped and unclipped errors
    _, stats = ppo_loss(
        zeros,
        zeros,
        adv,
        2 * ones,
        ones,
        2 * ones,
        zeros,
        clip_coef=0.2,
        clip_vloss=True,
        ent_coef=0.0,
        vf_coef=0.5,
        norm_adv=False,
    )
    assert stats["value_loss"] == pytest.approx(0.5 * 0.8**2)


def test_reward_normalizer_scales_by_return_std_and_round_trips():
    norm = RewardNormalizer(2, gamma=0.99, clip=10.0)
    rng = np.random.default_rng(0)
    out = [norm(rng.normal(0, 100, 2), np.array([False, True])) for _ in range(500)]
    assert np.abs(np.concatenate(out)).max() <= 10.0
    assert np.std(np.concatenate(out)) < 5.0
    copy = RewardNormalizer(2, gamma=0.99, clip=10.0)
    copy.load_state_dict(norm.state_dict())
    r = np.array([3.0, -1.0])
    np.testing.assert_allclose(copy(r, np.zeros(2, bool)), norm(r, np.zeros(2, bool)))


def test_encoders_by_name_including_shared_backbones():
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    impala = make_encoder("impala")
    assert impala(x).shape == (2, 256)
    n_params = sum(p.numel() for p in impala.parameters()) + 256 * 15 + 15 + 256 + 1
    assert n_params == 626_256  # CleanRL ppo_procgen's IMPALA agent
    assert make_encoder("nature")(x).shape == (2, 512)
    assert "resnet_small" in list_encoders()
    backbone = make_encoder("resnet_small", widths=[8, 16], stem_channels=8, hidden=32)
    assert backbone(x).shape == (2, 32)
    with pytest.raises(ValueError, match="unknown encoder 'vit'.*impala, nature"):
        make_encoder("vit")


def test_frames_reach_the_convolutions_channels_last():
    # the layout is where most of the CPU speed over NCHW-transposing tools comes from (BENCHMARKS.md)
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    t = frames_to_tensor(x)
    assert t.shape == (2, 3, 64, 64) and t.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(t, x.permute(0, 3, 1, 2).contiguous().float() / 255)


def _tiny_cfg(**kw):
    base = dict(
        game="coinrun",
        encoder="nature",
        encoder_config={"hidden": 64},
        num_envs=4,
        num_steps=16,
        num_minibatches=2,
        update_epochs=1,
        total_timesteps=128,
        tensorboard=False,
        checkpoint_every=1,
        seed=3,
    )
    return PPOConfig(**{**base, **kw})


def test_train_logs_cleanrl_metrics_and_checkpoint_loads_weights_only(tmp_path):
    cfg = _tiny_cfg(tensorboard=True, video_every=2)
    result = train(cfg, tmp_path)
    assert result.global_step == 128
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [int(r["global_step"]) for r in rows] == [64, 128]
    for name in (
        "charts/SPS",
        "charts/episodic_return",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "losses/value_loss",
        "losses/policy_loss",
        "losses/entropy",
    ):
        assert name in rows[0]
    assert (tmp_path / "videos" / "iteration_000002.gif").stat().st_size > 0
    assert any((tmp_path / "tensorboard").iterdir())
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["iteration"] == 2 and ckpt["global_step"] == 128
    agent, saved_cfg = load_agent(tmp_path / "checkpoint.pt")
    assert saved_cfg == cfg
    for (k, v), w in zip(agent.state_dict().items(), result.agent.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_resume_continues_exactly_and_rejects_a_different_config(tmp_path):
    straight = train(_tiny_cfg(total_timesteps=192), tmp_path / "a")
    train(_tiny_cfg(total_timesteps=64), tmp_path / "b")
    resumed = train(_tiny_cfg(total_timesteps=192), tmp_path / "b")
    assert resumed.global_step == 192
    for (k, v), w in zip(straight.agent.state_dict().items(), resumed.agent.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)
    assert straight.episodes == resumed.episodes
    with pytest.raises(ValueError, match="learning_rate: checkpoint 0.0005 vs now 0.001"):
        train(_tiny_cfg(total_timesteps=256, learning_rate=1e-3), tmp_path / "b")


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="less than one rollout"):
        _tiny_cfg(total_timesteps=10).validate()
    with pytest.raises(ValueError, match="divisible by num_minibatches"):
        _tiny_cfg(num_minibatches=5).validate()


class _BlinkEnv(gymnasium.Env):
    """A tiny image env: reward 1 for action 1 when the frame is bright, else 0; 8-step episodes."""

    observation_space = gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.bright = 0, bool(self.np_random.integers(2))
        return self._obs(), {}

    def _obs(self):
        return np.full((16, 16, 3), 255 if self.bright else 0, np.uint8)

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        self.bright = bool(self.np_random.integers(2))
        return self._obs(), reward, False, self.t >= 8, {}


def test_ppo_learns_on_any_gymnasium_vector_env_with_truncation(tmp_path):
    from gymnasium.vector import AutoresetMode, SyncVectorEnv
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    envs = RecordEpisodeStatistics(SyncVectorEnv([_BlinkEnv for _ in range(4)], autoreset_mode=AutoresetMode.SAME_STEP))
    cfg = _tiny_cfg(
        total_timesteps=4 * 16 * 12,
        num_steps=16,
        update_epochs=4,
        learning_rate=3e-3,
        checkpoint_every=0,
        normalize_reward=False,
        encoder="impala",
        encoder_config={"depths": [8], "hidden": 32},
    )
    result = train(cfg, tmp_path, envs=envs)
    returns = [r for _, r, _ in result.episodes]
    assert len(returns) == 4 * 16 * 12 // 8
    assert np.mean(returns[-8:]) > np.mean(returns[:8]) + 1.0  # it learns to read the frame
    with pytest.raises(ValueError, match="SAME_STEP"):
        train(cfg, tmp_path / "x", envs=SyncVectorEnv([_BlinkEnv] * 4))


def test_config_is_a_plain_dataclass_of_hyperparameters():
    names = {f.name for f in dataclasses.fields(PPOConfig)}
    assert {"gamma", "gae_lambda", "clip_coef", "ent_coef", "vf_coef", "normalize_reward", "encoder"} <= names
    assert "batch_size" not in names  # derived sizes are properties, never flags
    assert PPOConfig(num_envs=4, num_steps=8).batch_size == 32


def test_cpu_bfloat16_is_opt_in_and_changes_numerics_only_slightly(tmp_path):
    assert PPOConfig().cpu_bf16 is False  # the default stays float32-exact
    f32 = train(_tiny_cfg(total_timesteps=64), tmp_path / "f32")
    bf16 = train(_tiny_cfg(total_timesteps=64, cpu_bf16=True), tmp_path / "bf16")
    assert bf16.global_step == 64 and load_agent(tmp_path / "bf16" / "checkpoint.pt")[1].cpu_bf16
    deltas = [
        (v - w).abs().max().item() for v, w in zip(f32.agent.state_dict().values(), bf16.agent.state_dict().values())
    ]
    assert 0 < max(deltas) < 1e-2  # one Adam step at lr 5e-4 moves a weight by at most ~5e-4 per step
    with pytest.raises(ValueError, match="cpu_bf16: checkpoint True vs now False"):
        train(_tiny_cfg(total_timesteps=128), tmp_path / "bf16")
