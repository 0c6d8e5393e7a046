"""The settings of a simulated release (:class:`SimulationConfig`), apart from the simulator
(:mod:`phenotypic.simulate`: pandas, RDKit) so that ``phenotypic simulate --help`` builds its options fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MOA_NAMES = [
    "mTOR inhibitor",
    "HDAC inhibitor",
    "tubulin polymerization inhibitor",
    "EGFR inhibitor",
    "CDK inhibitor",
    "Aurora kinase inhibitor",
    "PLK inhibitor",
    "HSP inhibitor",
    "bromodomain inhibitor",
    "topoisomerase inhibitor",
    "proteasome inhibitor",
    "glucocorticoid receptor agonist",
    "VEGFR inhibitor",
    "Bcr-Abl kinase inhibitor",
    "PI3K inhibitor",
    "MEK inhibitor",
    "ATPase inhibitor",
    "dihydrofolate reductase inhibitor",
    "p38 MAPK inhibitor",
    "JAK inhibitor",
    "PARP inhibitor",
    "ROCK inhibitor",
    "SRC inhibitor",
    "adrenergic receptor antagonist",
]


@dataclass
class SimulationConfig:
    """Sizes and effect strengths of a simulated release; every field is a ``phenotypic simulate`` option
    (its docstring is the option's help). Plates = n_sources x n_batches x plates_per_batch."""

    n_sources: int = 1
    """data-generating sites (sources); each has its own offset"""
    n_batches: int = 1
    """batches per source; each has its own shift and effect mixing"""
    plates_per_batch: int = 2
    """384-well plates per batch"""
    n_compounds: int = 90
    """treatment compounds (real NCI molecules shipped with RDKit)"""
    replicates: int = 4
    """wells per compound per plate map (360 treatment wells per plate)"""
    n_moa: int = 6
    """hidden mechanisms of action (k-means clusters of the compound latent)"""
    annotated_fraction: float = 0.6
    """share of compounds with MoA/target annotations (the rest only have a structure, as most JUMP
    compounds do)"""
    n_features: int = 120
    """CellProfiler-like features per well"""
    latent_dim: int = 16
    """dimension of the compound latent"""
    moa_strength: float = 1.5
    """size of the MoA effect (feature SDs)"""
    compound_strength: float = 1.0
    """size of the compound-specific effect (feature SDs)"""
    noise: float = 0.6
    """well-level noise (feature SDs)"""
    batch_strength: float = 0.4
    """size of batch/source effects (feature SDs)"""
    images: bool = False
    """also render 5-channel TIFF images, illumination files and load_data CSVs"""
    image_plates: int | None = None
    """render images for only the first this many plates (none: all)"""
    image_size: int = 64
    """site side in pixels (>= 32)"""
    sites_per_well: int = 1
    """imaged sites per well"""
    profile_format: Literal["parquet", "csv.gz"] = "parquet"
    """per-plate profile format: parquet (cpg0016) or csv.gz (older releases)"""
    seed: int = 0
    """random seed (the release is deterministic given it)"""

    def __post_init__(self) -> None:
        for name in (
            "n_sources",
            "n_batches",
            "plates_per_batch",
            "n_compounds",
            "n_moa",
            "n_features",
            "latent_dim",
            "image_size",
            "sites_per_well",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.replicates <= 360:
            raise ValueError(f"replicates must be in [1, 360], got {self.replicates}")
        if not 0 < self.annotated_fraction <= 1:
            raise ValueError(f"annotated_fraction must be in (0, 1], got {self.annotated_fraction}")
        if self.n_moa > len(MOA_NAMES) or self.n_moa > self.n_compounds:
            raise ValueError(f"n_moa must be <= {len(MOA_NAMES)} and <= n_compounds, got {self.n_moa}")
        if self.profile_format not in ("parquet", "csv.gz"):
            raise ValueError(f"profile_format must be 'parquet' or 'csv.gz', got {self.profile_format!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 pixels, got {self.image_size}")
        if self.image_plates is not None and self.image_plates < 0:
            raise ValueError(f"image_plates must be >= 0 or none, got {self.image_plates}")
        for name in ("moa_strength", "compound_strength", "noise", "batch_strength"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        from phenotypic.simulate import feature_names  # the simulator's names; loaded once a config is made

        feature_names(self.n_features)  # raises when there are not that many feature names
