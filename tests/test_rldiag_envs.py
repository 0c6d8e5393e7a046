"""rldiag.envs: the gymnasium VectorEnv adapter over procgen's gym3 env."""

import numpy as np
import pytest

from rldiag.envs import (
    DISTRIBUTION_MODES,
    GAMES,
    PRIVILEGED_STATE_GAMES,
    ProcgenVectorEnv,
    make_vector_env,
    procgen_game_names,
)


def _rollout(env, actions):
    obs, _ = env.reset(seed=7)
    frames, rewards, infos = [obs], [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs)
        rewards.append(r)
        infos.append(info)
    return np.stack(frames), np.stack(rewards), infos


def test_game_list_matches_installed_procgen():
    assert procgen_game_names() == GAMES
    assert len(GAMES) == 16
    assert all("easy" in DISTRIBUTION_MODES[g] and "hard" in DISTRIBUTION_MODES[g] for g in GAMES)


def test_bad_names_and_options_list_valid_choices():
    with pytest.raises(ValueError, match="game must be one of .*'coinrun'"):
        ProcgenVectorEnv("coinrunn", 2)
    with pytest.raises(ValueError, match="distribution_mode for bigfish must be one of 'easy', 'hard'"):
        ProcgenVectorEnv("bigfish", 2, distribution_mode="memory")
    with pytest.raises(ValueError, match="num_levels"):
        ProcgenVectorEnv("maze", 2, num_levels=-1)
    with pytest.raises(ValueError, match="env id prefix"):
        make_vector_env("atari:pong", 2)
    env = ProcgenVectorEnv("maze", 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.int64))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 15\)"):
        env.step(np.array([0, 15]))
    assert PRIVILEGED_STATE_GAMES == ()


def test_spaces_and_seeded_trajectories_reproduce():
    actions = np.random.default_rng(0).integers(0, 15, (60, 3))
    a = ProcgenVectorEnv("starpilot", 3, distribution_mode="easy")
    b = ProcgenVectorEnv("starpilot", 3, distribution_mode="easy")
    assert a.single_observation_space.shape == (64, 64, 3) and a.single_action_space.n == 15
    fa, ra, ia = _rollout(a, actions)
    fb, rb, ib = _rollout(b, actions)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ra, rb)
    assert fa.dtype == np.uint8 and fa.shape == (61, 3, 64, 64, 3)
    other, _ = b.reset(seed=8)
    assert not np.array_equal(other, fa[0])
    np.testing.assert_array_equal(ia[0]["level_seed"], ib[0]["level_seed"])


def test_level_range_and_simplified_rendering():
    env = ProcgenVectorEnv("coinrun", 4, num_levels=1, start_level=5)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(4, dtype=np.int64))
    assert set(info["level_seed"].tolist()) == {5}
    plain = ProcgenVectorEnv("coinrun", 4, num_levels=1, start_level=5, simplified=True)
    obs_plain, _ = plain.reset(seed=0)
    obs_std, _ = env.reset(seed=0)
    # no background and monochrome sprites: far fewer distinct colours in the simplified frame
    colours = lambda o: len(np.unique(o[0].reshape(-1, 3), axis=0))
    assert colours(obs_plain) < colours(obs_std) / 2


def test_episode_statistics_and_truncation_at_timeout():
    # maze times out after 500 steps; a no-op agent never reaches the cheese
    env = ProcgenVectorEnv("maze", 2, distribution_mode="easy", num_levels=1, start_level=3)
    env.reset(seed=1)
    noop = np.full(2, 4, dtype=np.int64)
    for step in range(1, 501):
        _, reward, terminated, truncated, info = env.step(noop)
        if step < 500:
            assert not (terminated.any() or truncated.any())
    assert truncated.all() and not terminated.any()
    np.testing.assert_array_equal(info["episode"]["l"], [500, 500])
    np.testing.assert_array_equal(info["episode"]["r"], [0.0, 0.0])
    assert info["_episode"].all()


def test_episode_return_is_sum_of_rewards_and_ends_terminated():
    env = ProcgenVectorEnv("starpilot", 4, distribution_mode="easy")
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    total, length, seen = np.zeros(4), np.zeros(4, dtype=int), 0
    for _ in range(1500):
        _, reward, terminated, truncated, info = env.step(rng.integers(0, 15, 4))
        total += reward
        length += 1
        done = terminated | truncated
        if done.any():
            np.testing.assert_allclose(info["episode"]["r"][done], total[done])
            np.testing.assert_array_equal(info["episode"]["l"][done], length[done])
            assert terminated[done & (length < 1000)].all()
            total[done], length[done], seen = 0.0, 0, seen + done.sum()
    assert seen > 0


def test_get_state_set_state_replays_identically():
    env = ProcgenVectorEnv("chaser", 2, distribution_mode="easy")
    env.reset(seed=4)
    for _ in range(10):
        env.step(np.ones(2, dtype=np.int64))
    state = env.get_state()
    assert len(state["procgen"]) == 2 and all(isinstance(s, bytes) for s in state["procgen"])
    actions = np.random.default_rng(2).integers(0, 15, (40, 2))
    first = [env.step(a)[:2] for a in actions]
    obs0 = env.set_state(state)
    second = [env.step(a)[:2] for a in actions]
    assert obs0.shape == (2, 64, 64, 3)
    for (o1, r1), (o2, r2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
    with pytest.raises(ValueError, match="sub-env states"):
        ProcgenVectorEnv("chaser", 3).set_state(state)


def test_other_gymnasium_vector_envs_report_episodes_the_same_way():
    env = make_vector_env("gymnasium:CartPole-v1", 2, seed=0)
    env.reset(seed=0)
    for _ in range(100):
        *_, info = env.step(np.zeros(2, dtype=np.int64))
        if "_episode" in info:
            break
    assert info["_episode"].any() and info["episode"]["l"][info["_episode"]].min() > 0
    assert "final_obs" in info
