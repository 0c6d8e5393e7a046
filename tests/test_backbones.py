"""The backbone registry: every registered model runs forward and backward, configs and inputs are validated,
and the recurrent cells are correct by construction (symmetric kernels, chrono init with the real T)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.backbones import HGRUCell, create, list_models, model_info
from shared.backbones.cells import FGRUCell, SymmetricConv, chrono_bias_

# Tiny configs and input shapes per model, so the sweep stays fast. A model missing here is swept with its
# default config on a small input.
TINY: dict[str, tuple[dict, tuple[int, ...]]] = {
    "unet2d": ({"features": (4, 8)}, (2, 1, 16, 16)),
    "unet3d": ({"features": (4, 8), "downsample": ((1, 2, 2),)}, (2, 1, 4, 16, 16)),
    "resnet_small": ({"in_channels": 1, "stem_channels": 4, "widths": (4, 8)}, (2, 1, 32, 32)),
    "hgru": ({"hidden_channels": 4, "kernel_size": 5, "frontend_kernel": 3, "timesteps": 3}, (2, 1, 12, 12)),
    "fgru2d": ({"hidden_channels": 4, "kernel_size": 5, "timesteps": 3}, (2, 1, 12, 12)),
    "fgru3d": ({"hidden_channels": 3, "kernel_size": (3, 5, 5), "timesteps": 3}, (2, 1, 3, 10, 10)),
    "gammanet2d": ({"features": (4, 6, 8), "timesteps": 3}, (2, 1, 16, 16)),
    "gammanet3d": ({"features": (3, 4, 6), "downsample": ((1, 2, 2), (2, 2, 2)), "timesteps": 3}, (2, 1, 4, 16, 16)),
    # video classifiers (input_kind "video"): (batch, 3, frame, row, column) -> logits (batch, 1); the recurrent
    # ones settle 2 steps on the last frame so that mode="crbp" has a fixed drive
    "int": ({"channels": 4, "kernel_size": 3, "settle_steps": 2}, (2, 3, 4, 12, 12)),
    "cvrnn": ({"channels": 4, "kernel_size": 3, "settle_steps": 2}, (2, 3, 4, 12, 12)),
    "convgru": ({"channels": 4, "hidden_channels": 4, "kernel_size": 3, "settle_steps": 2}, (2, 3, 4, 12, 12)),
    "r3d_small": ({"stem_channels": 4, "widths": (4, 8)}, (2, 3, 4, 16, 16)),
    "spacetime_transformer": ({"image_size": 16, "embed_dim": 16, "heads": 2, "depth": 1}, (2, 3, 4, 16, 16)),
}
MODES = ("bptt", "truncated", "crbp")


def tiny(name: str) -> tuple[dict, tuple[int, ...]]:
    if name in TINY:
        return dict(TINY[name][0]), TINY[name][1]
    dims = model_info(name).spatial_dims
    return {}, (2, 1) + (8,) * (dims - 2) + (32, 32)


def sweep_cases() -> list:
    cases = []
    for name in list_models():
        modes = MODES if model_info(name).recurrent else (None,)
        cases += [pytest.param(name, mode, id=f"{name}-{mode}" if mode else name) for mode in modes]
    return cases


@pytest.mark.filterwarnings("ignore:C-RBP:RuntimeWarning")
@pytest.mark.parametrize("name, mode", sweep_cases())
def test_registry_sweep_forward_backward(name, mode):
    torch.manual_seed(0)
    config, shape = tiny(name)
    if mode is not None:
        config.update(mode=mode, truncate_k=2)
    config.setdefault("in_channels", shape[1])
    net = create(name, **config)
    x = torch.rand(shape)
    out = net(x, return_steps=True)
    y = out.output
    info = model_info(name)
    video = info.input_kind == "video"
    if video:  # a video classifier: one logit per video; recurrent ones step once per frame, then settle
        assert y.shape == (shape[0], net.out_channels) == (shape[0], 1)
        expected_steps = shape[2] + config.get("settle_steps", 0)
    else:
        stride = net.output_stride
        assert y.shape == (shape[0], net.out_channels, *(math.ceil(s / stride) for s in shape[2:]))
        expected_steps = config.get("timesteps", net.timesteps) if info.recurrent else 1
    assert torch.isfinite(y).all()
    if info.recurrent:
        assert len(out.steps) == expected_steps
        assert all(s.shape == y.shape for s in out.steps)
        assert len(out.stats.residuals) == expected_steps
        assert net.last_stats is out.stats
    else:
        assert len(out.steps) == 1
    loss = y.square().mean()
    for value in out.aux.values():  # per-frame maps (attention, phase) are differentiable outputs too
        assert value.shape[:2] == (shape[0], shape[2]) and torch.isfinite(value).all()
        if value.requires_grad:
            loss = loss + value.square().mean()
    if out.stats is not None and out.stats.penalty is not None:
        loss = loss + out.stats.penalty
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    if mode in ("truncated", "crbp"):  # layers that only see frame 0 run without a graph in these modes
        missing = [n for n in missing if not n.startswith(getattr(net, "first_frame_only", ()))]
    assert not missing, f"{name} parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    if mode == "crbp":
        assert out.stats.neumann_iterations is not None and out.stats.contractive is not None


@pytest.mark.parametrize("name", list_models())
def test_unknown_config_key_is_named(name):
    with pytest.raises(TypeError, match="not_a_key"):
        create(name, not_a_key=3)


@pytest.mark.parametrize("name", list_models())
def test_bad_in_channels_value_is_named(name):
    with pytest.raises(ValueError, match="in_channels"):
        create(name, in_channels=0)


def recurrent_models(*, video: bool) -> list[str]:
    return [n for n in list_models(recurrent=True) if (model_info(n).input_kind == "video") == video]


@pytest.mark.parametrize("name", recurrent_models(video=False))
@pytest.mark.parametrize(
    "key, value, error",
    [
        ("timesteps", 0, ValueError),
        ("timesteps", 2.5, TypeError),
        ("mode", "rbp", ValueError),
        ("truncate_k", 0, ValueError),
        ("neumann_iters", -1, ValueError),
        ("neumann_damping", 1.5, ValueError),
        ("penalty_lambda", 0.0, ValueError),
        ("norm", "layer", ValueError),
        ("out_channels", 0, ValueError),
    ],
)
def test_bad_recurrent_values_are_named(name, key, value, error):
    with pytest.raises(error, match=key):
        create(name, **{key: value})


@pytest.mark.parametrize("name", recurrent_models(video=True))
@pytest.mark.parametrize(
    "key, value, error",
    [
        ("mode", "rbp", ValueError),
        ("truncate_k", 0, ValueError),
        ("neumann_iters", -1, ValueError),
        ("neumann_damping", 1.5, ValueError),
        ("penalty_lambda", 0.0, ValueError),
        ("settle_steps", -1, ValueError),
        ("settle_steps", 1.5, TypeError),
        ("mode", "crbp", ValueError),  # C-RBP without a settle phase: no fixed point
    ],
)
def test_bad_video_recurrent_values_are_named(name, key, value, error):
    with pytest.raises(error, match="settle_steps" if value == "crbp" else key):
        create(name, **{key: value})


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("hgru", "kernel_size", 4),
        ("hgru", "hidden_channels", 0),
        ("fgru3d", "kernel_size", (1, 4, 5)),
        ("gammanet2d", "features", ()),
        ("gammanet2d", "kernel_sizes", (3, 3)),
        ("gammanet3d", "downsample", ((1, 2, 2),)),
        ("gammanet3d", "kernel_sizes", ((1, 9, 9), (3, 6, 7), 3)),
    ],
)
def test_bad_architecture_values_are_named(name, key, value):
    with pytest.raises(ValueError, match=key.replace("(", r"\(")):
        create(name, **{key: value})


def test_crbp_rejects_per_timestep_norm():
    with pytest.raises(ValueError, match="batch_per_step"):
        create("hgru", mode="crbp", norm="batch_per_step")
    net = create("hgru", hidden_channels=2, kernel_size=3, timesteps=2, norm="batch_per_step")
    net(torch.rand(2, 1, 8, 8)).sum().backward()  # allowed for BPTT
    net.mode = "crbp"
    with pytest.raises(ValueError, match="batch_per_step"):
        net(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("name", ["hgru", "gammanet3d"])
def test_bad_inputs_raise_clear_errors(name):
    config, shape = tiny(name)
    net = create(name, **config)
    wrong_channels = (shape[0], 3, *shape[2:])
    with pytest.raises(ValueError, match="channel"):
        net(torch.rand(wrong_channels))
    with pytest.raises(ValueError, match="axes"):
        net(torch.rand(shape[1:]))
    bad = torch.rand(shape)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(bad)
    with pytest.raises(TypeError, match="dtype"):
        net(torch.zeros(shape, dtype=torch.int64))


def test_horizontal_kernels_stay_symmetric_after_optimiser_step():
    torch.manual_seed(0)
    net = create("gammanet2d", features=(3, 4), timesteps=2, out_channels=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.rand(2, 1, 12, 12)
    for _ in range(2):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    convs = [m for m in net.modules() if isinstance(m, SymmetricConv)]
    assert len(convs) == 2 * 2 + 2 * 1  # inh + exc per horizontal and top-down fGRU
    for m in convs:
        w = m.weight
        assert torch.equal(w, w.transpose(0, 1))
    # the free parameter is not symmetric: symmetry comes from the parameterisation, not from the init
    assert not torch.allclose(convs[0].A, convs[0].A.transpose(0, 1))


def test_chrono_bias_uses_the_real_number_of_timesteps():
    torch.manual_seed(0)
    short, long = HGRUCell(64, kernel_size=3, timesteps=3), HGRUCell(64, kernel_size=3, timesteps=64)
    for cell, T in ((short, 3), (long, 64)):
        for bias in (cell.gain_bias, cell.mix_bias):
            values = (-bias.detach()).exp()  # b = -log u  ->  u = exp(-b) must lie in [1, T - 1]
            assert values.min() >= 1 - 1e-6 and values.max() <= T - 1 + 1e-4
    assert float(long.mix_bias.detach().min()) < -math.log(2) - 1.0  # far below anything U[1, 2] can give
    assert float(short.mix_bias.detach().min()) >= -math.log(2) - 1e-6
    assert torch.count_nonzero(FGRUCell(2, 8, timesteps=2).gain_bias) == 0  # U[1, 1]: log 1 = 0
    b = torch.zeros(4)
    chrono_bias_(b, 10, sign=1.0)
    assert bool((b > 0).all())  # written in place (the PyTorch ports' chrono init was a no-op)


def test_cells_expose_gates_and_intermediate_maps():
    torch.manual_seed(0)
    cell = HGRUCell(3, kernel_size=3, timesteps=4)
    drive, h = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    new, maps = cell.step(drive, h, 1)
    assert torch.equal(new, cell(drive, h, 1))
    assert {"g1", "h1", "g2", "candidate"} <= set(maps)
    g2 = maps["g2"]
    expected = torch.nn.functional.softplus((1 - g2) * h + g2 * maps["candidate"])  # the documented update
    torch.testing.assert_close(new, expected)
    fcell = FGRUCell(2, 3, kernel_size=3, timesteps=4, norm="none")
    new, maps = fcell.step(drive, h, 0)
    torch.testing.assert_close(new, (1 - maps["g2"]) * h + maps["g2"] * maps["candidate"])


def test_crbp_options_reach_the_engine():
    net = create(
        "hgru",
        hidden_channels=2,
        kernel_size=3,
        timesteps=2,
        mode="crbp",
        neumann_g_limit=None,
        neumann_iters=7,
        neumann_damping=0.9,
        neumann_stopping=False,
        penalty_lambda=0.5,
    )
    assert (net.crbp.neumann_g_limit, net.crbp.neumann_iters, net.crbp.neumann_damping) == (None, 7, 0.9)
    assert not net.crbp.neumann_stopping and net.crbp.penalty_lambda == 0.5
    with pytest.raises(ValueError, match="neumann_g_limit"):
        create("hgru", neumann_g_limit=-1.0)


def test_recurrent_config_and_engine_share_one_vocabulary():
    """Every engine option is a RecurrentConfig field of the same name and type (issue 15)."""
    import dataclasses
    import typing

    from shared.backbones import RecurrentConfig
    from shared.recurrence import CRBPConfig

    config_hints, engine_hints = typing.get_type_hints(RecurrentConfig), typing.get_type_hints(CRBPConfig)
    for f in dataclasses.fields(CRBPConfig):
        assert config_hints.get(f.name) == engine_hints[f.name], f.name
        assert getattr(RecurrentConfig(), f.name) == f.default, f.name
    net = create("hgru", hidden_channels=2, kernel_size=3, timesteps=2, neumann_tol=1e-3, neumann_stop_on_growth=False)
    assert net.crbp.neumann_tol == 1e-3 and not net.crbp.neumann_stop_on_growth


def test_forward_states_gives_every_hidden_state():
    net = create("gammanet2d", features=(3, 4), timesteps=3, out_channels=2)
    states = net.forward_states(torch.rand(1, 1, 12, 12), timesteps=5)
    assert len(states) == 5 and [s.shape[1:] for s in states[-1]] == [(3, 12, 12), (4, 6, 6)]
    assert not states[-1][0].requires_grad and len(net.last_stats.residuals) == 5


def test_running_longer_than_trained_and_model_stats():
    net = create("fgru2d", hidden_channels=3, kernel_size=3, timesteps=3, mode="crbp")
    net.eval()
    with torch.no_grad():
        net.timesteps = 7
        out = net(torch.rand(1, 1, 10, 10), return_steps=True)
    assert len(out.steps) == 7 and out.stats.penalty is None and not out.output.requires_grad


@pytest.mark.parametrize("name", recurrent_models(video=False))
def test_hidden_state_stays_in_float16_range_at_initialisation(name):
    # Before the circuits' norms started at scale 0.1 (as in the published cells), gamma-Net's state grew
    # ~1e9-fold in 6 steps at initialisation, which overflows float16 under AMP (NaN affinities on a GPU).
    torch.manual_seed(0)
    config, shape = tiny(name)
    config["timesteps"] = 12
    net = create(name, **config)
    shape = shape[:-2] + (32, 32)
    states = net.forward_states(torch.rand(shape), timesteps=12)
    peak = max(float(t.abs().max()) for step in states for t in (step if isinstance(step, tuple) else (step,)))
    assert math.isfinite(peak) and peak < 1e3


def test_circuit_norms_start_at_the_published_scale():
    cell = FGRUCell(2, 4, kernel_size=3, timesteps=4, norm="instance")
    assert torch.allclose(cell.norm_exc.norms[0].weight, torch.full((4,), 0.1))
    hgru_cell = HGRUCell(4, kernel_size=3, timesteps=4)
    assert torch.allclose(hgru_cell.norm_inh.norms[0].weight, torch.full((4,), 0.1))
