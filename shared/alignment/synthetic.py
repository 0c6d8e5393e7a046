"""Data with known answers, for tests, the demo and the notebook (nothing here is downloaded).

* :func:`pathfinder_with_maps`: Pathfinder images whose "human map" is the true path(s) and markers
  (:mod:`shared.data.pathfinder`): the evidence a perfectly aligned model must use;
* :func:`synthetic_neural_assembly`: responses ``Y = f(X) W + noise`` with repetitions, whose split-half
  reliability (the ceiling) is known in closed form;
* :func:`planted_correctness`: two observers' trial correctness with chosen accuracies and an exact
  Cohen's kappa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.data.pathfinder import PathfinderConfig, generate_pathfinder


@dataclass
class MappedImages:
    """Images with a label and a human map each.

    Attributes
    ----------
    images : ndarray of shape (n_images, 1, rows, columns), float32 in [0, 1].
    labels : ndarray of shape (n_images,), int64.
    human_maps : ndarray of shape (n_images, rows, columns), float32 (1 on the path(s) and markers).
    """

    images: np.ndarray
    labels: np.ndarray
    human_maps: np.ndarray


def pathfinder_with_maps(
    n: int, *, image_size: int = 48, contour_length: int = 6, geometry_scale: float = 0.35, seed: int = 0
) -> MappedImages:
    """Pathfinder images with their path masks as human maps (CPU-sized defaults: 48 x 48, 6 paddles).

    Examples
    --------
    >>> d = pathfinder_with_maps(4, image_size=48)
    >>> d.images.shape, d.human_maps.shape
    ((4, 1, 48, 48), (4, 48, 48))
    """
    cfg = PathfinderConfig(image_size=image_size, contour_length=contour_length, geometry_scale=geometry_scale)
    data = generate_pathfinder(n, config=cfg, seed=seed)
    return MappedImages(data.images, data.labels.astype(np.int64), data.path_masks[:, 0].astype(np.float32))


@dataclass
class NeuralAssembly:
    """A synthetic neural recording with a known answer.

    Attributes
    ----------
    stimuli_features : ndarray of shape (n_stimuli, n_features), the latent X.
    signal : ndarray of shape (n_stimuli, n_neurons), the noiseless f(X) W.
    responses : ndarray of shape (n_repetitions, n_stimuli, n_neurons), signal + independent noise.
    categories : ndarray of shape (n_stimuli,), int labels to stratify cross-validation on.
    reliability : ndarray of shape (n_neurons,), the true reliability of the repetition mean,
        var(signal) / (var(signal) + noise_sd**2 / n_repetitions), what the Spearman-Brown split-half
        estimate targets.
    """

    stimuli_features: np.ndarray
    signal: np.ndarray
    responses: np.ndarray
    categories: np.ndarray
    reliability: np.ndarray

    @property
    def mean_responses(self) -> np.ndarray:
        """Repetition-averaged responses, shape (n_stimuli, n_neurons)."""
        return self.responses.mean(axis=0)

    @property
    def expected_ceiling(self) -> float:
        """Median over neurons of the true reliability."""
        return float(np.median(self.reliability))


def synthetic_neural_assembly(
    n_stimuli: int = 200,
    n_neurons: int = 40,
    *,
    n_features: int = 16,
    n_repetitions: int = 4,
    noise_sd: float = 1.0,
    n_categories: int = 4,
    nonlinearity: str = "relu",
    seed: int = 0,
) -> NeuralAssembly:
    """``Y_r = f(X) W + noise_r`` for repetitions r, with X ~ N(0, 1), W ~ N(0, 1/n_features).

    ``f`` is ``"relu"``, ``"tanh"`` or ``"identity"``. A model whose features are f(X) (or any invertible
    linear map of them) predicts the signal perfectly, so its ceiled predictivity should be ~1.
    """
    funcs = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z}
    if nonlinearity not in funcs:
        raise ValueError(f"nonlinearity must be one of {sorted(funcs)}; got {nonlinearity!r}")
    if min(n_stimuli, n_neurons, n_features, n_repetitions, n_categories) < 1 or n_repetitions < 2:
        raise ValueError("sizes must be >= 1 and n_repetitions >= 2 (the ceiling splits repetitions)")
    rng = np.random.default_rng(seed)
    categories = np.arange(n_stimuli) % n_categories
    x = rng.standard_normal((n_stimuli, n_features)) + categories[:, None] * 0.5
    w = rng.standard_normal((n_features, n_neurons)) / np.sqrt(n_features)
    signal = funcs[nonlinearity](x) @ w
    responses = signal[None] + noise_sd * rng.standard_normal((n_repetitions, n_stimuli, n_neurons))
    var_s = signal.var(axis=0)
    reliability = var_s / (var_s + noise_sd**2 / n_repetitions)
    return NeuralAssembly(x, signal, responses, categories, reliability)


def planted_correctness(
    n_trials: int, accuracy_a: float, accuracy_b: float, kappa: float, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two correctness vectors with exact accuracies and (up to rounding to whole trials) Cohen's kappa.

    The joint table has p_obs = p_exp + kappa (1 - p_exp), p_exp = a b + (1 - a)(1 - b), so
    P(both correct) = (p_obs + a + b - 1) / 2; counts are rounded and the trials shuffled.

    Returns
    -------
    correct_a, correct_b : bool ndarrays of shape (n_trials,).

    Raises
    ------
    ValueError
        If the kappa is impossible for these accuracies.
    """
    a, b = accuracy_a, accuracy_b
    p_exp = a * b + (1 - a) * (1 - b)
    p_obs = p_exp + kappa * (1 - p_exp)
    p11 = (p_obs + a + b - 1) / 2
    p10, p01 = a - p11, b - p11
    p00 = 1 - p11 - p10 - p01
    if min(p11, p10, p01, p00) < -1e-12:
        raise ValueError(f"kappa {kappa} is impossible with accuracies {a} and {b}")
    counts = np.round(np.array([p11, p10, p01, max(p00, 0.0)]) * n_trials).astype(int)
    counts[-1] = n_trials - counts[:-1].sum()
    ca = np.repeat([True, True, False, False], counts)
    cb = np.repeat([True, False, True, False], counts)
    perm = np.random.default_rng(seed).permutation(n_trials)
    return ca[perm], cb[perm]


def add_label_shortcut(images: np.ndarray, labels: np.ndarray, *, size: int = 4, value: float = 1.0) -> np.ndarray:
    """Plant a shortcut: a bright ``size`` x ``size`` square in the top-left corner for label 1 and the
    top-right corner for label 0 (one pixel from the border).

    A model can then classify from the corner alone, so an unharmonized model's saliency leaves the path,
    while the human map (the path) still says where the task's evidence is: a known-answer test of the
    harmonizer. Returns a copy of ``images`` (n_images, channels, rows, columns).
    """
    out = np.array(images, copy=True)
    cols = out.shape[-1]
    if size < 1 or size + 2 > min(out.shape[-2:]) // 2:
        raise ValueError(f"size must be in [1, {min(out.shape[-2:]) // 2 - 2}], got {size}")
    for i, label in enumerate(np.asarray(labels)):
        c0 = 1 if label else cols - 1 - size
        out[i, :, 1 : 1 + size, c0 : c0 + size] = value
    return out
