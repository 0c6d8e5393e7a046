"""rldiag with the tools the field uses: gymnasium's registry, env checker and vector wrappers, SB3, CleanRL."""

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import GrayscaleObservation, RecordEpisodeStatistics

import rldiag  # noqa: F401  (registers rldiag/<game>-v0)
from rldiag.envs import GAMES, ProcgenEnv, ProcgenVectorEnv


def test_every_game_is_registered_and_the_single_env_passes_check_env():
    assert all(f"rldiag/{g}-v0" in gymnasium.registry for g in GAMES)
    env = gymnasium.make("rldiag/coinrun-v0", distribution_mode="easy", num_levels=10)
    assert isinstance(env.unwrapped, ProcgenEnv) and env.unwrapped.game == "coinrun"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_env reports API problems as warnings: none allowed
        check_env(env.unwrapped)  # also re-makes the env from its spec with render_mode="rgb_array"
    env.close()
    # the module-prefixed id imports rldiag itself (gymnasium 1.x reads no plugin entry points)
    code = "import gymnasium; print(type(gymnasium.make('rldiag:rldiag/maze-v0').unwrapped).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ProcgenEnv"


def test_single_env_episodes_continue_procgen_stream_and_render_frames():
    env = gymnasium.make("rldiag/leaper-v0", distribution_mode="easy", render_mode="rgb_array")
    obs, info = env.reset(seed=5)
    np.testing.assert_array_equal(env.render(), obs)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(400):
        prev = obs
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(15)))
        if terminated or truncated:
            # procgen never renders the terminal state: the last frame of the episode is returned
            np.testing.assert_array_equal(obs, prev)
            with pytest.raises(RuntimeError, match="call reset"):
                env.step(0)
            obs, info = env.reset()
            ended += 1
    assert ended >= 2 and isinstance(info["level_seed"], int)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.unwrapped.step(0)


def test_next_step_autoreset_is_the_same_step_stream_plus_one_reset_step_per_episode():
    """Exact check against SAME_STEP: procgen's state is restored after the reset step's shared act."""
    same = ProcgenVectorEnv("leaper", 1, distribution_mode="easy", seed=3)
    nxt = gymnasium.make_vec("rldiag/leaper-v0", num_envs=1, distribution_mode="easy", seed=3)
    assert isinstance(nxt, ProcgenVectorEnv) and nxt.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs_same, _ = same.reset()
    obs_next, _ = nxt.reset()
    rng = np.random.default_rng(0)
    resetting, episodes = False, 0
    for _ in range(600):
        action = rng.integers(0, 15, 1)
        prev_next = obs_next
        obs_next, r_next, term_next, trunc_next, info_next = nxt.step(action)
        if resetting:  # action ignored; the new episode's first frame, as SAME_STEP gave it
            np.testing.assert_array_equal(obs_next, obs_same)
            assert r_next[0] == 0.0 and not (term_next[0] or trunc_next[0])
            resetting = False
            continue
        obs_same, r_same, term_same, trunc_same, _ = same.step(action)
        np.testing.assert_array_equal(r_next, r_same)
        np.testing.assert_array_equal(term_next, term_same)
        np.testing.assert_array_equal(trunc_next, trunc_same)
        if term_next[0] or trunc_next[0]:
            np.testing.assert_array_equal(obs_next, prev_next)  # the episode's last rendered frame
            resetting, episodes = True, episodes + 1
        else:
            np.testing.assert_array_equal(obs_next, obs_same)
    assert episodes >= 2


def test_next_step_reset_step_leaves_the_other_sub_envs_alone():
    same = ProcgenVectorEnv("leaper", 4, distribution_mode="easy", seed=3)
    nxt = ProcgenVectorEnv("leaper", 4, distribution_mode="easy", seed=3, autoreset_mode="NextStep")
    same.reset(), nxt.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):  # identical until the first episode end
        actions = rng.integers(0, 15, 4)
        obs_same, _, term, trunc, _ = same.step(actions)
        nxt.step(actions)
        if (term | trunc).any():
            break
    done = term | trunc
    assert done.any() and not done.all()
    actions = rng.integers(0, 15, 4)
    obs_next, *_ = nxt.step(actions)
    np.testing.assert_array_equal(obs_next[done], obs_same[done])  # new episodes start where procgen began them
    obs_same, *_ = same.step(actions)
    np.testing.assert_array_equal(obs_next[~done], obs_same[~done])


def test_gymnasium_vector_wrappers_accept_the_registered_vector_env():
    env = gymnasium.make_vec("rldiag/leaper-v0", num_envs=3, distribution_mode="easy", seed=2)
    wrapped = RecordEpisodeStatistics(GrayscaleObservation(env))
    obs, info = wrapped.reset(seed=2)
    assert obs.shape == (3, 64, 64) and info["_level_seed"].all()
    rng = np.random.default_rng(1)
    total, episodes = np.zeros(3), 0
    for _ in range(400):
        obs, reward, terminated, truncated, info = wrapped.step(rng.integers(0, 15, 3))
        total += reward
        if "_episode" in info:
            done = info["_episode"]
            np.testing.assert_allclose(info["episode"]["r"][done], total[done])
            total[done], episodes = 0.0, episodes + done.sum()
    assert episodes >= 2 and obs.shape == (3, 64, 64)
    # rgb_array frames are the observations; after close the error says so
    frames = gymnasium.make_vec("rldiag/maze-v0", num_envs=2, render_mode="rgb_array")
    obs, _ = frames.reset(seed=0)
    np.testing.assert_array_equal(np.stack(frames.render()), obs)
    frames.close()
    with pytest.raises(RuntimeError, match="closed"):
        frames.step(np.zeros(2, dtype=np.int64))
    # rldiag's own episode statistics are an option; with it on, the wrapper's key would clash
    own = ProcgenVectorEnv("maze", 2, episode_statistics=True)
    assert own.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP


def test_sb3_ppo_learns_on_the_adapter_and_on_the_registered_env():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from rldiag.sb3 import ProcgenSB3VecEnv

    venv = ProcgenSB3VecEnv(ProcgenVectorEnv("leaper", 4, distribution_mode="easy"))
    model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps == 256
    # SB3's episode buffer (what its logger reports) holds exactly the adapter's finished episodes
    assert venv.episodes and [e["r"] for e in model.ep_info_buffer] == venv.episodes
    venv.close()
    with pytest.raises(ValueError, match="SAME_STEP"):
        ProcgenSB3VecEnv(ProcgenVectorEnv("starpilot", 2, autoreset_mode="NextStep"))
    # the single registered env goes through SB3's own DummyVecEnv
    model = PPO("CnnPolicy", gymnasium.make("rldiag/starpilot-v0"), n_steps=64, batch_size=64, n_epochs=1, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64


def test_cleanrl_style_loop_on_the_registered_vector_env():
    """CleanRL's loop shape (gymnasium 1.x): RecordEpisodeStatistics, ``next_done``, one PPO update.

    With NEXT_STEP autoreset the step after an end is a reset step (its action is ignored): its
    transitions are masked out of the loss, as gymnasium's autoreset guide (farama.org/Vector-Autoreset-Mode)
    prescribes.
    """
    from rldiag.ppo import compute_gae, ppo_loss

    num_envs, num_steps = 4, 128
    envs = RecordEpisodeStatistics(
        gymnasium.make_vec("rldiag/leaper-v0", num_envs=num_envs, distribution_mode="easy", seed=1)
    )
    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * 64 * 3, 16), torch.nn.ReLU())
    actor, critic = torch.nn.Linear(16, 15), torch.nn.Linear(16, 1)
    params = [*policy.parameters(), *actor.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)

    def act(x, action=None):
        hidden = policy(x.float() / 255.0)
        dist = torch.distributions.Categorical(logits=actor(hidden))
        action = dist.sample() if action is None else action
        return action, dist.log_prob(action), dist.entropy(), critic(hidden).squeeze(-1)

    obs = torch.zeros((num_steps, num_envs, 64, 64, 3), dtype=torch.uint8)
    actions, logprobs, rewards, dones, values = (torch.zeros((num_steps, num_envs)) for _ in range(5))
    next_obs, _ = envs.reset(seed=1)
    next_obs, next_done = torch.as_tensor(next_obs), torch.zeros(num_envs)
    returns_logged = []
    for step in range(num_steps):
        obs[step], dones[step] = next_obs, next_done
        with torch.no_grad():
            action, logprob, _, value = act(next_obs)
        actions[step], logprobs[step], values[step] = action, logprob, value
        next_obs, reward, terminations, truncations, infos = envs.step(action.numpy())
        rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
        next_obs = torch.as_tensor(next_obs)
        next_done = torch.as_tensor(np.logical_or(terminations, truncations), dtype=torch.float32)
        if "_episode" in infos:
            returns_logged += infos["episode"]["r"][infos["_episode"]].tolist()
    with torch.no_grad():
        next_value = act(next_obs)[3]
    # compute_gae takes "step t ended an episode"; CleanRL stores "obs t starts after an end"
    ends = torch.cat([dones[1:], next_done[None]])
    advantages, returns = compute_gae(rewards, values, ends, next_value, 0.99, 0.95)
    valid = dones.reshape(-1) == 0  # obs after an end is the final frame: a reset step, not a transition
    assert 0 < (~valid).sum() < valid.sum()
    _, newlogprob, entropy, newvalue = act(obs.reshape(-1, 64, 64, 3)[valid], actions.reshape(-1)[valid].long())
    loss, stats = ppo_loss(
        newlogprob,
        logprobs.reshape(-1)[valid],
        advantages.reshape(-1)[valid],
        newvalue,
        values.reshape(-1)[valid],
        returns.reshape(-1)[valid],
        entropy,
        clip_coef=0.2,
        clip_vloss=True,
        ent_coef=0.01,
        vf_coef=0.5,
        norm_adv=True,
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert np.isfinite(loss.item()) and stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert envs.episode_count == len(returns_logged) > 0
    envs.close()


def test_next_step_state_round_trip_keeps_a_pending_reset():
    env = ProcgenVectorEnv("leaper", 2, distribution_mode="easy", seed=4, autoreset_mode=AutoresetMode.NEXT_STEP)
    env.reset()
    rng = np.random.default_rng(3)
    for _ in range(400):
        *_, terminated, truncated, _ = env.step(rng.integers(0, 15, 2))
        if (terminated | truncated).any():
            break
    assert (terminated | truncated).any()
    state = env.get_state()  # taken while the next step is a reset step
    actions = rng.integers(0, 15, (20, 2))
    first = [env.step(a)[:2] for a in actions]
    env.set_state(state)
    second = [env.step(a)[:2] for a in actions]
    for (o1, r1), (o2, r2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
