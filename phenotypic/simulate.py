"""A miniature JUMP-style Cell Painting release on real molecules, written in the real layouts.

Generative model (hidden truth, saved to ``simulation.json``):

1. Real molecules from RDKit's bundled NCI set; Morgan count fingerprints -> a fixed random projection ->
   ``tanh`` gives a compound latent ``z`` (n_compounds, latent_dim): similar molecules look alike, so the
   inverse biological process (which molecule made this profile?) is learnable from structure.
2. Mechanisms of action = k-means clusters of ``z``; each MoA has a direction in latent space and 1-2 gene
   targets (some compounds get an extra, off-MoA target: polypharmacology, for multi-label deconvolution).
3. A compound's phenotype = potency * (MoA direction + compound-specific ``z``); 10% of compounds are
   inactive (potency 0.05).
4. Well profile = base + (phenotype @ (W + batch perturbation)) * feature scale + noise, then a per-plate
   multiplicative and additive drift and a per-batch/per-source shift (batch effects that DMSO-based
   per-plate normalisation removes only partly).
5. Optional 5-channel images (DNA, ER, RNA, AGP, Mito) rendered from the same phenotype: nucleus and cell
   size, per-channel intensities and mitochondrial puncta; multiplied by a per-plate illumination field that
   is stored beside the images, as in JUMP.

Plates are 384-well (16 rows x 24 columns) with 16 DMSO and 8 positive-control wells; compounds fill the
rest as ``replicates`` wells per plate map, and plate maps repeat across plates, batches and sources.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from phenotypic.chemistry import bundled_molecules, inchikeys, morgan_fingerprints
from phenotypic.data import CHANNELS, NEGCON_JCP2022, REMOTE_PREFIX
from phenotypic.simulate_settings import MOA_NAMES, SimulationConfig
from shared.jobs import Job, open_job

__all__ = ["SimulationConfig", "simulate_release", "feature_names", "render_site"]

ROWS, COLS = 16, 24
DMSO_WELLS = [(r, c) for r in range(0, 16, 2) for c in (0, 23)]
POSCON_WELLS = [(r, 12) for r in range(1, 16, 2)]
POSCON_NAMES = ["AMG900", "dexamethasone", "FK-866", "LY2109761", "NVS-PAK1-1", "quinidine", "TC-S-7004", "aloxistatin"]
GENES = [
    "MTOR",
    "HDAC1",
    "HDAC2",
    "TUBB",
    "TUBA1A",
    "EGFR",
    "ERBB2",
    "CDK2",
    "CDK4",
    "AURKA",
    "AURKB",
    "PLK1",
    "HSP90AA1",
    "BRD4",
    "BRD2",
    "TOP2A",
    "TOP1",
    "PSMB5",
    "NR3C1",
    "KDR",
    "FLT1",
    "ABL1",
    "PIK3CA",
    "PIK3CD",
    "MAP2K1",
    "MAP2K2",
    "ATP1A1",
    "DHFR",
    "MAPK14",
    "JAK1",
    "JAK2",
    "PARP1",
    "ROCK1",
    "SRC",
    "ADRB2",
    "ADRA1A",
    "PAK1",
    "TGFBR1",
]


def feature_names(n_features: int) -> list[str]:
    """``n_features`` CellProfiler-style names (``Cells_``/``Cytoplasm_``/``Nuclei_`` x measurement x channel),
    spread evenly over the full list so every compartment and channel is represented."""
    names = []
    for comp in ("Cells", "Cytoplasm", "Nuclei"):
        names += [
            f"{comp}_AreaShape_{m}"
            for m in (
                "Area",
                "Perimeter",
                "FormFactor",
                "Eccentricity",
                "Solidity",
                "Extent",
                "MajorAxisLength",
                "Zernike_2_0",
            )
        ]
        for ch in CHANNELS:
            names += [
                f"{comp}_Intensity_{m}_{ch}"
                for m in ("MeanIntensity", "IntegratedIntensity", "StdIntensity", "MedianIntensity")
            ]
            names += [f"{comp}_Texture_{m}_{ch}_3_00_256" for m in ("Contrast", "Entropy", "Correlation")]
            names += [f"{comp}_Granularity_{k}_{ch}" for k in range(1, 5)]
            names += [f"{comp}_RadialDistribution_FracAtD_{ch}_{k}of4" for k in range(1, 5)]
        names += [f"{comp}_Correlation_Correlation_{a}_{b}" for i, a in enumerate(CHANNELS) for b in CHANNELS[i + 1 :]]
    if n_features > len(names):
        raise ValueError(f"n_features must be <= {len(names)}, got {n_features}")
    idx = np.linspace(0, len(names) - 1, n_features).round().astype(int)
    return [names[i] for i in idx]


def _well(r: int, c: int) -> str:
    return f"{chr(ord('A') + r)}{c + 1:02d}"


def _compound_truth(cfg: SimulationConfig, rng: np.random.Generator) -> dict:
    from sklearn.cluster import KMeans

    smiles = bundled_molecules(cfg.n_compounds + len(POSCON_NAMES), seed=cfg.seed)
    fp = morgan_fingerprints(smiles, radius=2, n_bits=1024, counts=True).astype(np.float64)
    proj = rng.normal(size=(fp.shape[1], cfg.latent_dim))
    fpn = np.log1p(fp)
    fpn = (fpn - fpn.mean(0)) / (fpn.std(0) + 1e-6)
    z = np.tanh(fpn @ proj / np.sqrt(fp.shape[1]) * 1.5)
    z = (z - z.mean(0)) / (z.std(0) + 1e-6)
    trt = slice(0, cfg.n_compounds)
    moa = KMeans(cfg.n_moa, n_init=4, random_state=cfg.seed).fit_predict(z[trt])
    moa_dir = rng.normal(size=(cfg.n_moa, cfg.latent_dim))
    moa_dir *= np.sqrt(cfg.latent_dim) / np.linalg.norm(moa_dir, axis=1, keepdims=True)
    genes = rng.permutation(GENES)
    moa_targets = [
        [genes[(2 * k) % len(genes)]] + ([genes[(2 * k + 1) % len(genes)]] if k % 2 else []) for k in range(cfg.n_moa)
    ]
    potency = np.where(rng.random(cfg.n_compounds) < 0.1, 0.05, rng.uniform(0.7, 1.3, cfg.n_compounds))
    pheno = potency[:, None] * (cfg.moa_strength * moa_dir[moa] + cfg.compound_strength * z[trt])
    pc_pheno = 3.0 * rng.normal(size=(len(POSCON_NAMES), cfg.latent_dim))  # strong, distinct poscons
    targets = []
    for i in range(cfg.n_compounds):
        t = list(moa_targets[moa[i]])
        if rng.random() < 0.2:
            t.append(genes[rng.integers(len(genes))])
        targets.append("|".join(dict.fromkeys(t)))
    return {
        "smiles": smiles,
        "moa": moa,
        "targets": targets,
        "potency": potency,
        "pheno": np.concatenate([pheno, pc_pheno]),
        "z": z,
    }


def _plate_maps(cfg: SimulationConfig, rng: np.random.Generator) -> list[dict[str, int]]:
    """Plate maps: well -> compound index (-1 DMSO, -2 - k poscon k)."""
    trt_wells = [
        (r, c) for r in range(ROWS) for c in range(COLS) if (r, c) not in DMSO_WELLS and (r, c) not in POSCON_WELLS
    ]
    per_map = len(trt_wells) // cfg.replicates
    order = rng.permutation(cfg.n_compounds)
    maps = []
    for start in range(0, cfg.n_compounds, per_map):
        group = order[start : start + per_map]
        slots = np.repeat(group, cfg.replicates)
        slots = np.concatenate([slots, -np.ones(len(trt_wells) - len(slots), int)])  # leftovers: DMSO
        slots = rng.permutation(slots)
        layout = {_well(r, c): -1 for r, c in DMSO_WELLS}
        layout.update({_well(r, c): -2 - k for k, (r, c) in enumerate(POSCON_WELLS)})
        layout.update({_well(r, c): int(s) for (r, c), s in zip(trt_wells, slots, strict=True)})
        maps.append(layout)
    return maps


def render_site(phenotype: np.ndarray, *, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one Cell Painting site from a phenotype vector.

    Cells are placed at random; the phenotype's first seven entries set nucleus size, cell size, and the
    DNA, ER, RNA and AGP intensities and the number of mitochondrial puncta.

    Parameters
    ----------
    phenotype : ndarray of shape (latent_dim,), latent_dim >= 7.
    size : rows and columns of the site.

    Returns
    -------
    image : ndarray of shape (5, size, size), float32 in about [0, 1]; channel order DNA, ER, RNA, AGP, Mito.
    """
    from scipy.ndimage import gaussian_filter

    p = np.clip(np.asarray(phenotype, float)[:7], -4, 4) / 2.0
    scale = size / 64.0
    n_cells = int(rng.integers(4, 8) * scale**2)
    rn = 4.0 * scale * np.exp(0.12 * p[0]) * rng.uniform(0.9, 1.1, n_cells)
    rc = rn * 2.0 * np.exp(0.12 * p[1])
    cy, cx = rng.uniform(0, size, (2, n_cells))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.sqrt((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2)
    nuc = 1 / (1 + np.exp(-(rn[:, None, None] - d) / 0.7))
    cell = 1 / (1 + np.exp(-(rc[:, None, None] - d) / 1.0))
    gain = np.exp(0.2 * p[2:6])
    dna = (nuc.max(0)) * gain[0]
    er = (np.exp(-(((d - 1.3 * rn[:, None, None]) / (0.4 * rn[:, None, None])) ** 2)) * cell).max(0) * gain[1]
    rna = (0.3 * cell + 0.6 * nuc * np.exp(-((d / (0.5 * rn[:, None, None])) ** 2))).max(0) * gain[2]
    agp = (np.exp(-(((d - rc[:, None, None]) / 1.2) ** 2)) + 0.15 * cell).max(0) * gain[3]
    mito = np.zeros((size, size), np.float32)
    n_puncta = rng.poisson(12 * np.exp(0.3 * p[6]), n_cells)
    for i in range(n_cells):
        ang = rng.uniform(0, 2 * np.pi, n_puncta[i])
        rad = rng.uniform(rn[i] * 1.1, rc[i] * 0.95, n_puncta[i])
        py = np.clip((cy[i] + rad * np.sin(ang)).astype(int), 0, size - 1)
        px = np.clip((cx[i] + rad * np.cos(ang)).astype(int), 0, size - 1)
        np.add.at(mito, (py, px), 1.0)
    mito = gaussian_filter(mito, 0.8) * 3.0
    img = np.stack([dna, er, rna, agp, mito]).astype(np.float32)
    img += 0.02 + 0.02 * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img / 1.5, 0, 1)


def _illum_field(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    cy, cx = rng.uniform(-0.15, 0.15, 2)
    return (1.0 - 0.8 * ((yy - cy) ** 2 + (xx - cx) ** 2)).astype(np.float32)


def _write_plate(job: Job, cfg: SimulationConfig, plate: dict, render: bool) -> None:
    """One resumable unit: a plate's profile file and, if ``render``, its images, illumination and load_data."""
    import tifffile

    source, batch, name = plate["source"], plate["batch"], plate["plate"]
    ext = ".parquet" if cfg.profile_format == "parquet" else ".csv.gz"
    tree = Path("cpg0016-jump") / source
    profile = tree / "workspace" / "profiles" / batch / name / f"{name}{ext}"
    img_dir, ill_dir = tree / "images" / batch / "images" / name, tree / "images" / batch / "illum" / name
    load_data = tree / "workspace" / "load_data_csv" / batch / name / "load_data_with_illum.csv"
    job.claim(profile, *((img_dir, ill_dir, load_data) if render else ()))  # one fsynced record for all
    job.write_table(profile, plate["frame"])
    if not render:
        return
    rng = np.random.default_rng([cfg.seed, 1, *plate["position"]])
    img_dir, ill_dir = job.root / img_dir, job.root / ill_dir
    img_dir.mkdir(parents=True, exist_ok=True)
    ill_dir.mkdir(parents=True, exist_ok=True)
    fields = {ch: _illum_field(cfg.image_size, rng) for ch in CHANNELS}
    for ch, f in fields.items():
        np.save(ill_dir / f"{name}_Illum{ch}.npy", f)
    remote = f"{REMOTE_PREFIX}cpg0016-jump/{source}/images/{batch}"
    rows = []
    for w, ph_w in zip(plate["wells"], plate["phenotypes"], strict=True):
        r, c = ord(w[0]) - ord("A") + 1, int(w[1:])
        for site in range(1, cfg.sites_per_well + 1):
            img = render_site(ph_w, size=cfg.image_size, rng=rng)
            row = {
                "Metadata_Source": source,
                "Metadata_Batch": batch,
                "Metadata_Plate": name,
                "Metadata_Well": w,
                "Metadata_Site": str(site),
            }
            for k, ch in enumerate(CHANNELS):
                fname = f"r{r:02d}c{c:02d}f{site:02d}p01-ch{k + 1}sk1fk1fl1.tiff"
                tifffile.imwrite(img_dir / fname, (img[k] * fields[ch] * 4000 + 100).astype(np.uint16))
                row[f"FileName_Orig{ch}"] = fname
                row[f"PathName_Orig{ch}"] = f"{remote}/images/{name}/"
                row[f"FileName_Illum{ch}"] = f"{name}_Illum{ch}.npy"
                row[f"PathName_Illum{ch}"] = f"{remote}/illum/{name}/"
            rows.append(row)
    job.write_table(load_data, pd.DataFrame(rows))


def simulate_release(
    out_dir: str | Path,
    config: SimulationConfig | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    wait: bool = False,
    **overrides,
) -> Path:
    """Write a simulated JUMP-style release under ``out_dir`` and return it.

    Writes ``cpg0016-jump/<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet``, the
    ``load_data_with_illum.csv`` indexes, TIFF images and ``.npy`` illumination functions (``images=True``),
    ``metadata/{plate,well,compound}.csv.gz``, ``metadata/perturbation_control.csv``,
    ``metadata/compound_annotation.csv`` (annotated compounds only), an assembled
    ``cpg0016-jump-assembled/source_all/workspace/profiles_assembled/COMPOUND/v1.0/profiles.parquet`` and the
    hidden truth in ``simulation.json``.

    The release is a resumable :mod:`shared.jobs` job (one unit per plate, then the metadata): rerunning with
    the same settings finishes an interrupted release, or does nothing; other settings, or files it did not
    write, are refused unless ``overwrite``.

    Parameters
    ----------
    out_dir : release root.
    config : a :class:`SimulationConfig`; keyword ``overrides`` replace its fields.
    overwrite : replace files this job did not write, or a release made with other settings.
    wait : wait for another run writing into ``out_dir`` instead of refusing.

    Examples
    --------
    >>> import tempfile
    >>> root = simulate_release(tempfile.mkdtemp(), n_compounds=30, plates_per_batch=1, progress=False)
    >>> sorted(p.name for p in (root / "metadata").iterdir())[:2]
    ['compound.csv.gz', 'compound_annotation.csv']
    """
    cfg = SimulationConfig(**{**asdict(config or SimulationConfig()), **overrides})
    with open_job(out_dir, "phenotypic simulate", asdict(cfg), overwrite=overwrite, wait=wait) as job:
        rng = np.random.default_rng(cfg.seed)
        truth = _compound_truth(cfg, rng)
        maps = _plate_maps(cfg, rng)
        names = feature_names(cfg.n_features)
        w_feat = rng.normal(size=(cfg.latent_dim, cfg.n_features)) / np.sqrt(cfg.latent_dim)
        base = rng.lognormal(3.0, 1.0, cfg.n_features)
        scale = base * rng.uniform(0.05, 0.2, cfg.n_features)
        jcp = [f"JCP2022_{100001 + i:06d}" for i in range(cfg.n_compounds + len(POSCON_NAMES))]
        keys = inchikeys(truth["smiles"])
        dmso = {
            "Metadata_JCP2022": NEGCON_JCP2022,
            "Metadata_InChIKey": "IAZDPXIOMUYVGZ-UHFFFAOYSA-N",
            "Metadata_InChI": "",
            "Metadata_SMILES": "CS(C)=O",
        }
        compound = pd.DataFrame(
            {
                "Metadata_JCP2022": jcp,
                "Metadata_InChIKey": keys,
                "Metadata_InChI": "",
                "Metadata_SMILES": truth["smiles"],
            }
        )
        compound = pd.concat([compound, pd.DataFrame([dmso])], ignore_index=True)
        control = pd.DataFrame(
            {
                "Metadata_JCP2022": [NEGCON_JCP2022] + jcp[cfg.n_compounds :],
                "Metadata_pert_type": ["negcon"] + ["poscon"] * len(POSCON_NAMES),
                "Metadata_Name": ["DMSO"] + POSCON_NAMES,
            }
        )
        annotated = np.sort(
            rng.permutation(cfg.n_compounds)[: max(cfg.n_moa, round(cfg.annotated_fraction * cfg.n_compounds))]
        )
        annotation = pd.DataFrame(
            {
                "Metadata_JCP2022": [jcp[i] for i in annotated],
                "Metadata_InChIKey": [keys[i] for i in annotated],
                "Metadata_moa": [MOA_NAMES[truth["moa"][i]] for i in annotated],
                "Metadata_target": [truth["targets"][i] for i in annotated],
            }
        )
        plates, wells, units = [], [], {}
        source_shift = rng.normal(size=(cfg.n_sources, cfg.n_features)) * cfg.batch_strength
        positions = [
            (s, b, p) for s in range(cfg.n_sources) for b in range(cfg.n_batches) for p in range(cfg.plates_per_batch)
        ]
        # every plate's profiles are computed (cheap, and needed for the metadata); writing them and
        # rendering images are the resumable units
        for plate_index, (s, b, p) in enumerate(positions):
            source, batch = f"source_{s + 1}", f"{2021 + b}_0{s + 1}_{b + 1:02d}_Batch{b + 1}"
            plate = f"SIM{s + 1}{b + 1:02d}{p + 1:03d}"
            layout = maps[plate_index % len(maps)]
            prng = np.random.default_rng([cfg.seed, 2, s, b, p])
            batch_mix = prng.normal(size=w_feat.shape) * cfg.batch_strength * 0.3 / np.sqrt(cfg.latent_dim)
            batch_shift = np.random.default_rng([cfg.seed, 3, s, b]).normal(size=cfg.n_features) * cfg.batch_strength
            plate_gain = 1 + 0.05 * prng.normal(size=cfg.n_features)
            plate_off = 0.3 * prng.normal(size=cfg.n_features)
            well_ids = list(layout)
            comp = np.array([layout[w] for w in well_ids])
            ph = np.zeros((len(well_ids), cfg.latent_dim))
            treated = comp >= 0
            ph[treated] = truth["pheno"][comp[treated]]
            pc = comp <= -2
            ph[pc] = truth["pheno"][cfg.n_compounds + (-2 - comp[pc])]
            signal = ph @ (w_feat + batch_mix) + prng.normal(size=(len(well_ids), cfg.n_features)) * cfg.noise
            signal += batch_shift + source_shift[s] + plate_off
            values = (base + scale * signal) * plate_gain
            frame = pd.DataFrame(values.astype(np.float32), columns=names)
            frame.insert(0, "Metadata_Well", well_ids)
            frame.insert(0, "Metadata_Plate", plate)
            frame.insert(0, "Metadata_Source", source)
            plates.append(
                {
                    "Metadata_Source": source,
                    "Metadata_Batch": batch,
                    "Metadata_Plate": plate,
                    "Metadata_PlateType": "COMPOUND",
                }
            )
            ids = np.where(comp >= 0, comp, np.where(comp == -1, -1, cfg.n_compounds + (-2 - comp)))
            wells += [
                {
                    "Metadata_Source": source,
                    "Metadata_Plate": plate,
                    "Metadata_Well": w,
                    "Metadata_JCP2022": NEGCON_JCP2022 if i < 0 else jcp[i],
                }
                for w, i in zip(well_ids, ids, strict=True)
            ]
            spec = {
                "source": source,
                "batch": batch,
                "plate": plate,
                "position": (s, b, p),
                "frame": frame,
                "wells": well_ids,
                "phenotypes": ph,
            }
            render = cfg.images and (cfg.image_plates is None or plate_index < cfg.image_plates)
            units[f"plate-{plate}"] = (spec, render)

        def write_plate(key: str) -> None:
            _write_plate(job, cfg, *units[key])

        bar = (lambda keys: tqdm(keys, desc="simulate plates")) if progress else None
        job.run_units(list(units), write_plate, progress=bar).raise_if_incomplete()

        def write_metadata(_: str) -> None:
            from phenotypic.data import load_jump_profiles

            job.write_table("metadata/plate.csv.gz", pd.DataFrame(plates))
            job.write_table("metadata/well.csv.gz", pd.DataFrame(wells))
            job.write_table("metadata/compound.csv.gz", compound)
            job.write_table("metadata/perturbation_control.csv", control)
            job.write_table("metadata/compound_annotation.csv", annotation)
            job.write_table(
                "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/COMPOUND/v1.0/profiles.parquet",
                load_jump_profiles(job.root, progress=False),
            )
            job.write_json(
                "simulation.json",
                {
                    "config": asdict(cfg),
                    "moa": {jcp[i]: MOA_NAMES[m] for i, m in enumerate(truth["moa"])},
                    "target": {jcp[i]: t for i, t in enumerate(truth["targets"])},
                    "potency": {jcp[i]: float(v) for i, v in enumerate(truth["potency"])},
                },
            )

        job.run_units(["metadata"], write_metadata, stop_after=None).raise_if_incomplete()
        return job.root
