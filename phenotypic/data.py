"""Loaders for the JUMP Cell Painting (cpg0016) layouts: per-plate and assembled profiles, older CSV
profiles, ``load_data`` image indexes with illumination files, and the metadata tables.

Layout (Cell Painting Gallery, mirrored locally under one root)::

    <root>/cpg0016-jump/<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet   (or .csv / .csv.gz)
    <root>/cpg0016-jump/<source>/workspace/load_data_csv/<batch>/<plate>/load_data_with_illum.csv
    <root>/cpg0016-jump/<source>/images/<batch>/images/<plate>/<tiff files>
    <root>/cpg0016-jump/<source>/images/<batch>/illum/<plate>/<plate>_Illum<Channel>.npy
    <metadata>/plate.csv.gz, well.csv.gz, compound.csv.gz, perturbation_control.csv   (jump datasets repo)

Columns starting with ``Metadata_`` are metadata and are read as strings (plate names can look numeric);
every other column is a feature. Paths that start with ``s3://cellpainting-gallery/`` are mapped onto a
local root with :func:`map_remote_path`, so a ``load_data`` CSV copied from the gallery works unchanged.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

__all__ = [
    "CHANNELS",
    "NEGCON_JCP2022",
    "REMOTE_PREFIX",
    "ProfileError",
    "map_remote_path",
    "split_columns",
    "read_profile_table",
    "plate_profile_path",
    "load_plate_profiles",
    "read_metadata",
    "annotate_wells",
    "validate_profiles",
    "load_jump_profiles",
    "read_load_data",
    "read_site_image",
]

CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
NEGCON_JCP2022 = "JCP2022_033924"  # DMSO in cpg0016
REMOTE_PREFIX = "s3://cellpainting-gallery/"
WELL_KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]


class ProfileError(ValueError):
    """Bad profile or metadata input; the message says what and where."""


def map_remote_path(path: str | Path, *, local_root: str | Path | None, remote_prefix: str = REMOTE_PREFIX) -> Path:
    """Map ``s3://cellpainting-gallery/<key>`` onto ``<local_root>/<key>``; local paths pass through.

    Examples
    --------
    >>> map_remote_path("s3://cellpainting-gallery/cpg0016-jump/source_1/x.csv", local_root="/data").as_posix()
    '/data/cpg0016-jump/source_1/x.csv'
    """
    text = str(path)
    if text.startswith(remote_prefix):
        if local_root is None:
            raise ProfileError(f"{text} is a remote path; pass local_root= to map it onto your download")
        return Path(local_root) / text[len(remote_prefix) :]
    if "://" in text:
        raise ProfileError(f"unsupported remote path {text!r}; only {remote_prefix!r} can be mapped")
    return Path(text)


def split_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(metadata_columns, feature_columns)``: ``Metadata_*`` versus everything else."""
    meta = [c for c in frame.columns if str(c).startswith("Metadata_")]
    return meta, [c for c in frame.columns if not str(c).startswith("Metadata_")]


def _as_profile_frame(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    meta, feats = split_columns(frame)
    bad = [c for c in feats if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ProfileError(f"{source}: feature columns must be numeric; non-numeric: {bad[:10]}")
    # a stored index (parquet keeps one; it may repeat after a concat) means nothing here and would make
    # column-wise concatenation fail on repeated labels
    frame = frame.reset_index(drop=True)
    metadata = frame[meta].astype("string").astype(object)
    return pd.concat([metadata, frame[feats].astype(np.float32)], axis=1)


def read_profile_table(path: str | Path, *, local_root: str | Path | None = None) -> pd.DataFrame:
    """Read one profile table (parquet, CSV or gzipped CSV): metadata as strings, features as float32.

    Parameters
    ----------
    path : file path or ``s3://cellpainting-gallery/...`` key (mapped with ``local_root``).

    Returns
    -------
    profiles : DataFrame of shape (n_wells, n_metadata + n_features).
    """
    p = map_remote_path(path, local_root=local_root)
    if not p.is_file():
        raise FileNotFoundError(f"profile file not found: {p}")
    name = p.name.lower()
    if name.endswith(".parquet"):
        frame = pd.read_parquet(p)
    elif name.endswith((".csv", ".csv.gz")):
        header = pd.read_csv(p, nrows=0).columns
        frame = pd.read_csv(p, dtype={c: str for c in header if c.startswith("Metadata_")})
    else:
        raise ProfileError(f"{p}: unknown profile format (expected .parquet, .csv or .csv.gz)")
    return _as_profile_frame(frame, p)


def plate_profile_path(root: str | Path, source: str, batch: str, plate: str) -> Path:
    """Path of one per-plate profile file: ``<root>/<source>/workspace/profiles/<batch>/<plate>/<plate>.*``
    (parquet preferred, then the older ``.csv.gz`` / ``.csv``). ``root`` is the ``cpg0016-jump`` folder."""
    folder = Path(root) / source / "workspace" / "profiles" / batch / plate
    for ext in (".parquet", ".csv.gz", ".csv"):
        if (folder / f"{plate}{ext}").is_file():
            return folder / f"{plate}{ext}"
    raise FileNotFoundError(f"no profile for plate {plate!r} in {folder} (.parquet, .csv.gz or .csv)")


def load_plate_profiles(root: str | Path, plates: pd.DataFrame, *, progress: bool = True) -> pd.DataFrame:
    """Load and concatenate per-plate profiles for the rows of a plate table.

    Parameters
    ----------
    root : the ``cpg0016-jump`` folder (or a local mirror of it).
    plates : DataFrame with ``Metadata_Source``, ``Metadata_Batch``, ``Metadata_Plate``.

    Returns
    -------
    profiles : DataFrame of shape (n_wells, n_columns) with ``Metadata_Batch`` added.
    """
    _require(plates, ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"], "plate table")
    frames = []
    rows = plates[["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]].itertuples(index=False)
    for source, batch, plate in tqdm(list(rows), desc="plates", disable=not progress):
        path = plate_profile_path(root, source, batch, plate)
        frame = read_profile_table(path)
        _require(frame, WELL_KEYS, f"profiles of plate {plate}")
        repeated = _duplicated_wells(frame, str(path))
        if repeated:
            raise ProfileError(repeated)
        frames.append(
            pd.concat(
                [
                    frame[WELL_KEYS[:1]],
                    pd.DataFrame({"Metadata_Batch": [batch] * len(frame)}),
                    frame.drop(columns=WELL_KEYS[:1]),
                ],
                axis=1,
            )
        )
    if not frames:
        raise ProfileError("the plate table selects no plates")
    return pd.concat(frames, ignore_index=True)


def _duplicated_wells(frame: pd.DataFrame, what: str) -> str | None:
    """None, or a message naming each plate with repeated (source, plate, well) rows and its wells."""
    dup = frame.duplicated(WELL_KEYS, keep=False)
    if not dup.any():
        return None
    rows = frame.loc[dup, WELL_KEYS].drop_duplicates()
    per_plate = rows.groupby("Metadata_Plate", sort=True)["Metadata_Well"].agg(lambda w: sorted(w))
    shown = "; ".join(
        f"plate {plate}: wells {', '.join(wells[:8])}{' ...' if len(wells) > 8 else ''}"
        for plate, wells in list(per_plate.items())[:5]
    )
    return (
        f"{what} has {int(dup.sum())} rows for {len(rows)} repeated wells ({shown}); each (source, plate, well) "
        "must appear once"
    )


def _check_unique(frame: pd.DataFrame, key: str, what: str) -> None:
    dup = frame[key].duplicated(keep=False)
    if dup.any():
        ids = sorted(frame.loc[dup, key].unique())
        raise ProfileError(
            f"{what} lists {len(ids)} {key} value(s) more than once, e.g. {ids[:5]}; each must appear once"
        )


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ProfileError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)[:12]}...")


_TABLES = {
    "plate": ("plate.csv.gz", ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_PlateType"]),
    "well": ("well.csv.gz", ["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_JCP2022"]),
    "compound": ("compound.csv.gz", ["Metadata_JCP2022", "Metadata_InChIKey", "Metadata_SMILES"]),
    "perturbation_control": ("perturbation_control.csv", ["Metadata_JCP2022", "Metadata_pert_type"]),
}


def read_metadata(metadata_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read the JUMP metadata tables (all columns as strings).

    Returns
    -------
    tables : dict with ``plate``, ``well``, ``compound`` and, when present, ``perturbation_control`` and
        ``compound_annotation`` (``Metadata_JCP2022``, ``Metadata_moa``, ``Metadata_target``; targets are
        ``|``-separated).
    """
    d = Path(metadata_dir)
    tables = {}
    for key, (fname, cols) in _TABLES.items():
        path = d / fname
        if not path.is_file():
            if key == "perturbation_control":
                continue
            raise FileNotFoundError(f"metadata table {fname} not found in {d}")
        try:
            tables[key] = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError as err:
            raise ProfileError(f"metadata table {path} is empty (not even a header)") from err
        _require(tables[key], cols, fname)
        if key != "perturbation_control" and tables[key].empty:
            raise ProfileError(f"metadata table {path} has a header but no rows")
    if (d / "compound_annotation.csv").is_file():
        tables["compound_annotation"] = pd.read_csv(d / "compound_annotation.csv", dtype=str, keep_default_na=False)
        _require(
            tables["compound_annotation"],
            ["Metadata_JCP2022", "Metadata_moa", "Metadata_target"],
            "compound_annotation.csv",
        )
    return tables


def annotate_wells(profiles: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Join well -> JCP2022 -> InChIKey/SMILES, control type and (if given) MoA/target annotations.

    ``Metadata_pert_type`` is ``negcon``/``poscon``/``empty`` from ``perturbation_control`` and ``trt``
    otherwise. Wells missing from the well table are an error (listed).
    """
    _require(profiles, WELL_KEYS, "profiles")
    well = tables["well"][WELL_KEYS + ["Metadata_JCP2022"]]
    repeated = _duplicated_wells(well, "the well table (well.csv.gz)")
    if repeated:
        raise ProfileError(repeated)
    _check_unique(tables["compound"], "Metadata_JCP2022", "the compound table (compound.csv.gz)")
    if "compound_annotation" in tables:
        _check_unique(tables["compound_annotation"], "Metadata_JCP2022", "compound_annotation.csv")
    out = profiles.drop(columns=[c for c in ("Metadata_JCP2022",) if c in profiles.columns])
    out = out.merge(well, on=WELL_KEYS, how="left", validate="many_to_one")
    missing = out["Metadata_JCP2022"].isna()
    if missing.any():
        shown = out.loc[missing, WELL_KEYS].head(5).to_dict("records")
        raise ProfileError(f"{int(missing.sum())} wells are not in the well table, e.g. {shown}")
    comp = tables["compound"][["Metadata_JCP2022", "Metadata_InChIKey", "Metadata_SMILES"]]
    unknown = sorted(set(out["Metadata_JCP2022"]) - set(comp["Metadata_JCP2022"]))
    if unknown:  # not fatal: real releases may hold wells of perturbations listed elsewhere
        warnings.warn(
            f"{len(unknown)} perturbations of the well table are not in the compound table "
            f"(compound.csv.gz), e.g. {unknown[:5]}; their structure (SMILES, InChIKey) is left empty",
            stacklevel=2,
        )
    out = out.merge(comp, on="Metadata_JCP2022", how="left", validate="many_to_one")
    ctrl = tables.get("perturbation_control")
    pert = (
        dict(zip(ctrl["Metadata_JCP2022"], ctrl["Metadata_pert_type"], strict=True))
        if ctrl is not None
        else {NEGCON_JCP2022: "negcon"}
    )
    out["Metadata_pert_type"] = out["Metadata_JCP2022"].map(pert).fillna("trt")
    ann = tables.get("compound_annotation")
    if ann is not None:
        out = out.merge(
            ann[["Metadata_JCP2022", "Metadata_moa", "Metadata_target"]],
            on="Metadata_JCP2022",
            how="left",
            validate="many_to_one",
        )
        out[["Metadata_moa", "Metadata_target"]] = out[["Metadata_moa", "Metadata_target"]].fillna("")
    out = out.fillna({"Metadata_InChIKey": "", "Metadata_SMILES": ""})
    meta, feats = split_columns(out)
    return pd.concat([out[meta], out[feats]], axis=1)


def validate_profiles(
    profiles: pd.DataFrame, *, require_negcon: bool = True, drop_nonfinite: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Check annotated well profiles before processing.

    Checks: required columns, duplicated wells (same source, plate, well), plates without negative-control
    wells, NaN or infinite feature values.

    Parameters
    ----------
    profiles : DataFrame of shape (n_wells, n_columns), annotated (``Metadata_pert_type``).
    require_negcon : raise for plates with no ``negcon`` wells (per-plate normalisation needs them).
    drop_nonfinite : ``None`` raises on non-finite values (the default: never drop silently);
        ``"features"`` drops the affected feature columns; ``"wells"`` drops the affected wells.

    Returns
    -------
    profiles : the checked (and possibly reduced) DataFrame.
    report : dict with ``n_wells``, ``n_features``, ``nonfinite_features`` and ``dropped_wells``.
    """
    if drop_nonfinite not in (None, "features", "wells"):
        raise ValueError(f"drop_nonfinite must be None, 'features' or 'wells', got {drop_nonfinite!r}")
    _require(profiles, WELL_KEYS + ["Metadata_pert_type"], "profiles")
    meta, feats = split_columns(profiles)
    if not feats:
        raise ProfileError("profiles have no feature columns (every column starts with 'Metadata_')")
    repeated = _duplicated_wells(profiles, "the profiles")
    if repeated:
        raise ProfileError(repeated)
    if require_negcon:
        has = profiles.groupby("Metadata_Plate")["Metadata_pert_type"].agg(lambda s: (s == "negcon").any())
        if not has.all():
            raise ProfileError(
                f"plates with no negative-control wells: {sorted(has.index[~has])[:10]}; "
                "per-plate normalisation against DMSO needs them"
            )
    values = profiles[feats].to_numpy()
    bad = ~np.isfinite(values)
    report = {"n_wells": len(profiles), "n_features": len(feats), "nonfinite_features": {}, "dropped_wells": 0}
    if bad.any():
        cols = np.flatnonzero(bad.any(0))
        report["nonfinite_features"] = {feats[j]: int(bad[:, j].sum()) for j in cols}
        if drop_nonfinite is None:
            shown = dict(list(report["nonfinite_features"].items())[:5])
            raise ProfileError(
                f"{int(bad.any(1).sum())} wells have NaN/inf in {len(cols)} features "
                f"(e.g. {shown}); pass drop_nonfinite='features' or 'wells' to drop them"
            )
        if drop_nonfinite == "features":
            profiles = profiles.drop(columns=[feats[j] for j in cols])
        else:
            report["dropped_wells"] = int(bad.any(1).sum())
            profiles = profiles.loc[~bad.any(1)].reset_index(drop=True)
    report["n_wells"], report["n_features"] = len(profiles), len(split_columns(profiles)[1])
    return profiles, report


def load_jump_profiles(
    release_root: str | Path,
    *,
    metadata_dir: str | Path | None = None,
    plate_types: Sequence[str] = ("COMPOUND",),
    sources: Sequence[str] | None = None,
    drop_nonfinite: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Load, annotate and validate per-plate JUMP profiles.

    Parameters
    ----------
    release_root : folder holding ``cpg0016-jump/`` (and ``metadata/`` unless ``metadata_dir`` is given).
    plate_types : ``Metadata_PlateType`` values to keep.
    sources : optional subset of ``Metadata_Source``.
    drop_nonfinite : see :func:`validate_profiles`.

    Returns
    -------
    profiles : DataFrame of shape (n_wells, n_metadata + n_features).
    """
    root = Path(release_root)
    tables = read_metadata(metadata_dir or root / "metadata")
    plates = tables["plate"]
    plates = plates[plates["Metadata_PlateType"].isin(list(plate_types))]
    if sources is not None:
        plates = plates[plates["Metadata_Source"].isin(list(sources))]
    profiles = annotate_wells(load_plate_profiles(root / "cpg0016-jump", plates, progress=progress), tables)
    return validate_profiles(profiles, drop_nonfinite=drop_nonfinite)[0]


def read_load_data(
    path: str | Path, *, local_root: str | Path | None = None, channels: Sequence[str] = CHANNELS
) -> pd.DataFrame:
    """Read a ``load_data`` image index (CSV, CSV.gz or parquet) into one row per site with resolved paths.

    Accepts ``FileName_Orig<Ch>``/``PathName_Orig<Ch>`` pairs (cpg0016) or ``URL_Orig<Ch>`` (pilots), and
    ``FileName_Illum<Ch>``/``PathName_Illum<Ch>`` when present. Remote paths map onto ``local_root``.

    Returns
    -------
    index : DataFrame with the ``Metadata_*`` columns plus ``path_<Ch>`` and, if present, ``illum_<Ch>``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_data file not found: {p}")
    raw = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, dtype=str, keep_default_na=False)
    raw = raw.astype(str)
    meta = [c for c in raw.columns if c.startswith("Metadata_")]
    out = raw[meta].copy()
    for ch in channels:
        if f"FileName_Orig{ch}" in raw and f"PathName_Orig{ch}" in raw:
            out[f"path_{ch}"] = [
                str(map_remote_path(d.rstrip("/") + "/" + f, local_root=local_root))
                for d, f in zip(raw[f"PathName_Orig{ch}"], raw[f"FileName_Orig{ch}"], strict=True)
            ]
        elif f"URL_Orig{ch}" in raw:
            out[f"path_{ch}"] = [str(map_remote_path(u, local_root=local_root)) for u in raw[f"URL_Orig{ch}"]]
        else:
            raise ProfileError(
                f"{p}: no image columns for channel {ch!r} (FileName_Orig{ch}/PathName_Orig{ch} or URL_Orig{ch})"
            )
        if f"FileName_Illum{ch}" in raw and f"PathName_Illum{ch}" in raw:
            out[f"illum_{ch}"] = [
                str(map_remote_path(d.rstrip("/") + "/" + f, local_root=local_root))
                for d, f in zip(raw[f"PathName_Illum{ch}"], raw[f"FileName_Illum{ch}"], strict=True)
            ]
    return out


@functools.lru_cache(maxsize=64)
def _illum(path: str) -> np.ndarray:
    field = np.load(path, allow_pickle=False).astype(np.float32)
    if np.any(field <= 0) or not np.all(np.isfinite(field)):
        raise ProfileError(f"illumination function {path} has non-positive or non-finite values")
    return field


def read_site_image(row: pd.Series | dict, *, channels: Sequence[str] = CHANNELS, illum: bool = True) -> np.ndarray:
    """Read one site's channels from a :func:`read_load_data` row, divided by the illumination functions.

    Returns
    -------
    image : ndarray of shape (n_channels, n_rows, n_columns), float32 (raw intensity units / illum).
    """
    import tifffile
    from skimage.io import imread

    planes = []
    for ch in channels:
        path = row[f"path_{ch}"]
        plane = tifffile.imread(path) if path.lower().endswith((".tif", ".tiff")) else imread(path)
        plane = plane.astype(np.float32)
        if illum and f"illum_{ch}" in row and row[f"illum_{ch}"]:
            field = _illum(str(row[f"illum_{ch}"]))
            if field.shape != plane.shape:
                raise ProfileError(
                    f"illumination {row[f'illum_{ch}']} has shape {field.shape}, image {path} has {plane.shape}"
                )
            plane = plane / field
        planes.append(plane)
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise ProfileError(f"channels of one site differ in shape: {sorted(shapes)}")
    return np.stack(planes)
