"""Loaders, simulator, chemistry and profile processing for phenotypic/."""

import json

import numpy as np
import pandas as pd
import pytest

from phenotypic.chemistry import (
    InvalidSmilesError,
    bundled_molecules,
    morgan_fingerprints,
    parse_smiles,
    scaffold_split,
    standardize_smiles,
)
from phenotypic.data import (
    ProfileError,
    load_jump_profiles,
    map_remote_path,
    read_load_data,
    read_metadata,
    read_profile_table,
    read_site_image,
    validate_profiles,
)
from phenotypic.profiles import fit_whitening, normalize_per_plate, process_profiles
from phenotypic.simulate import simulate_release


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return simulate_release(
        tmp_path_factory.mktemp("sim"),
        n_compounds=60,
        plates_per_batch=2,
        n_batches=2,
        replicates=4,
        n_features=40,
        images=True,
        image_plates=1,
        image_size=32,
        progress=False,
    )


def test_simulator_writes_jump_layout_deterministically(release, tmp_path):
    plates = read_metadata(release / "metadata")["plate"]
    assert len(plates) == 4 and plates["Metadata_Plate"].map(type).eq(str).all()
    row = plates.iloc[0]
    path = (
        release
        / "cpg0016-jump"
        / row.Metadata_Source
        / "workspace"
        / "profiles"
        / row.Metadata_Batch
        / row.Metadata_Plate
        / f"{row.Metadata_Plate}.parquet"
    )
    first = read_profile_table(path)
    assert first.shape[0] == 384 and first["Metadata_Well"].iloc[0][0] in "ABCDEFGHIJKLMNOP"
    again = simulate_release(
        tmp_path / "again", n_compounds=60, plates_per_batch=2, n_batches=2, replicates=4, n_features=40, progress=False
    )
    second = read_profile_table(str(path).replace(str(release), str(again)))
    pd.testing.assert_frame_equal(first, second)
    truth = json.loads((release / "simulation.json").read_text())
    assert len(set(truth["moa"].values())) == 6
    assembled = read_profile_table(
        release
        / "cpg0016-jump-assembled"
        / "source_all"
        / "workspace"
        / "profiles_assembled"
        / "COMPOUND"
        / "v1.0"
        / "profiles.parquet"
    )
    assert len(assembled) == 4 * 384


def test_load_profiles_annotates_controls_and_strings(release):
    df = load_jump_profiles(release, progress=False)
    counts = df.groupby("Metadata_Plate")["Metadata_pert_type"].value_counts().unstack()
    assert (counts["negcon"] >= 16).all() and (counts["poscon"] == 8).all()
    assert df["Metadata_Plate"].map(type).eq(str).all()
    assert df["Metadata_SMILES"].str.len().gt(0).all()
    ann = df.loc[df["Metadata_moa"] != "", "Metadata_target"]
    assert len(ann) > 0 and ann.str.len().gt(0).all()


def test_simulate_cli_and_older_csv_profiles_load(tmp_path):
    from phenotypic.cli import main

    root = tmp_path / "rel"
    argv = ["simulate", "--out", str(root), "--n-compounds", "30", "--plates-per-batch", "1", "--n-features", "20"]
    assert main([*argv, "--profile-format", "csv.gz"]) == 0
    assert list((root / "cpg0016-jump").rglob("*.csv.gz"))
    assert len(load_jump_profiles(root, progress=False)) == 384


def test_load_data_images_with_illumination(release):
    index = sorted((release / "cpg0016-jump").rglob("load_data_with_illum.csv"))
    assert len(index) == 1
    raw = pd.read_csv(index[0])
    assert raw["PathName_OrigDNA"].iloc[0].startswith("s3://cellpainting-gallery/")
    sites = read_load_data(index[0], local_root=release)
    img = read_site_image(sites.iloc[0])
    assert img.shape == (5, 32, 32) and img.dtype == np.float32
    raw_only = read_site_image(sites.iloc[0], illum=False)
    assert not np.allclose(img, raw_only)  # divided by the stored illumination function
    with pytest.raises(ProfileError, match="local_root"):
        read_load_data(index[0])


def test_remote_prefix_maps_to_local_root():
    assert map_remote_path("s3://cellpainting-gallery/a/b.parquet", local_root="/x").as_posix() == "/x/a/b.parquet"
    with pytest.raises(ProfileError, match="unsupported"):
        map_remote_path("s3://other-bucket/a", local_root="/x")


def test_validation_errors(release):
    df = load_jump_profiles(release, progress=False)
    feat = [c for c in df.columns if not c.startswith("Metadata_")][0]
    with pytest.raises(ProfileError, match="rows for 1 repeated wells"):
        validate_profiles(pd.concat([df, df.iloc[:1]]))
    no_ctrl = df[~((df["Metadata_Plate"] == df["Metadata_Plate"].iloc[0]) & (df["Metadata_pert_type"] == "negcon"))]
    with pytest.raises(ProfileError, match="no negative-control"):
        validate_profiles(no_ctrl)
    bad = df.copy()
    bad.loc[3, feat] = np.nan
    bad.loc[5, feat] = np.inf
    with pytest.raises(ProfileError, match="NaN/inf"):
        validate_profiles(bad)
    dropped, report = validate_profiles(bad, drop_nonfinite="wells")
    assert report["dropped_wells"] == 2 and len(dropped) == len(df) - 2
    dropped, report = validate_profiles(bad, drop_nonfinite="features")
    assert feat not in dropped and report["nonfinite_features"] == {feat: 2}
    with pytest.raises(ProfileError, match="missing column"):
        validate_profiles(df.drop(columns=["Metadata_Well"]))


def test_chemistry():
    assert standardize_smiles(["C[NH3+].[Cl-]", "OCC.O"]) == ["CN", "CCO"]
    with pytest.raises(InvalidSmilesError) as err:
        parse_smiles(["CCO", "C1CC", "", "c1ccccc1"])
    assert [r for r, _ in err.value.rows] == [1, 2]
    fp = morgan_fingerprints(["CCO", "CCO", "c1ccccc1"], n_bits=128)
    assert fp.shape == (3, 128) and (fp[0] == fp[1]).all() and (fp[0] != fp[2]).any()
    mols = bundled_molecules(40)
    parts = scaffold_split(mols, fractions=(0.6, 0.2, 0.2), seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(40))
    from phenotypic.chemistry import murcko_scaffolds

    scaf = np.array(murcko_scaffolds(mols))
    assert not set(scaf[parts[0]]) & set(scaf[parts[2]])


def test_normalisation_matches_pycytominer_and_whitening(release):
    import pycytominer

    df = load_jump_profiles(release, progress=False)
    norm = normalize_per_plate(df)
    plate = df[df["Metadata_Plate"] == df["Metadata_Plate"].iloc[0]]
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    ref = pycytominer.normalize(plate, features=feats, samples="Metadata_pert_type == 'negcon'", method="mad_robustize")
    np.testing.assert_allclose(norm.loc[plate.index, feats].to_numpy(), ref[feats].to_numpy(), rtol=1e-5)
    dmso = norm[norm["Metadata_pert_type"] == "negcon"]
    assert np.abs(dmso.groupby("Metadata_Plate")[feats].median().to_numpy()).max() < 1e-5
    processed = process_profiles(df)
    x = processed[[c for c in processed.columns if not c.startswith("Metadata_")]].to_numpy()
    assert np.abs(x).max() <= 30
    pca = fit_whitening(x, variance=0.99)
    z = pca.transform(x)
    np.testing.assert_allclose(z.std(0, ddof=1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="NaN"):
        fit_whitening(np.array([[np.nan, 1.0], [1.0, 2.0]]))


def _stamps(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".job" not in p.parts}


def test_simulate_never_replaces_a_release_it_did_not_make(tmp_path, capsys):
    import shutil

    from phenotypic.cli import main

    root = tmp_path / "rel"
    argv = ["simulate", "--out", str(root), "--n-compounds", "30", "--plates-per-batch", "1", "--n-features", "20"]
    assert main(argv) == 0
    before = _stamps(root)
    compound = (root / "metadata" / "compound.csv.gz").read_bytes()
    assert main(argv) == 0  # the same command: its own job, already finished; nothing is rewritten
    assert _stamps(root) == before
    assert main([*argv, "--seed", "1"]) == 2
    assert "other settings (seed: 0 -> 1); choose another output folder, or pass --overwrite" in capsys.readouterr().err
    shutil.rmtree(root / ".job")  # a release made before the job layer, or copied without its bookkeeping
    assert main([*argv, "--seed", "1"]) == 2
    assert "exists and was not written by this `phenotypic simulate` job" in capsys.readouterr().err
    assert _stamps(root) == before
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (root / "metadata" / "compound.csv.gz").read_bytes() != compound
    (tmp_path / "file").write_text("x")
    assert main(["simulate", "--out", str(tmp_path / "file")]) == 2
    assert main(["simulate", "--out", str(tmp_path / "new"), "--n-features", "100000"]) == 2
    assert "n_features must be <=" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_repeated_wells_and_empty_tables_are_named(release, tmp_path):
    import shutil

    copy = tmp_path / "rel"
    shutil.copytree(release, copy, ignore=shutil.ignore_patterns("images"))
    plate = sorted(copy.rglob("SIM*.parquet"))[0]
    frame = pd.read_parquet(plate)
    pd.concat([frame, frame.head(2)]).to_parquet(plate)  # keeps a repeated index: used to be InvalidIndexError
    with pytest.raises(ProfileError, match=rf"{plate.stem}: wells A01, A24\); each \(source, plate, well\)"):
        load_jump_profiles(copy, progress=False)
    frame.to_parquet(plate, index=False)
    well = copy / "metadata" / "well.csv.gz"
    table = pd.read_csv(well, dtype=str)
    pd.concat([table, table.head(1)]).to_csv(well, index=False)
    with pytest.raises(ProfileError, match=r"the well table \(well.csv.gz\) has 2 rows for 1 repeated wells"):
        load_jump_profiles(copy, progress=False)
    table.to_csv(well, index=False)
    compound = copy / "metadata" / "compound.csv.gz"
    pd.read_csv(compound, dtype=str).head(0).to_csv(compound, index=False)
    with pytest.raises(ProfileError, match="compound.csv.gz has a header but no rows"):
        load_jump_profiles(copy, progress=False)
    compound.write_bytes(b"")
    with pytest.raises(ProfileError, match=r"compound.csv.gz is empty \(not even a header\)"):
        load_jump_profiles(copy, progress=False)


def test_interrupted_simulation_resumes_to_the_same_release(tmp_path, monkeypatch):
    import gzip

    import phenotypic.simulate as sim
    from shared.jobs import JobIncompleteError

    settings = dict(
        n_compounds=30, plates_per_batch=2, n_features=20, images=True, image_plates=1, image_size=32, progress=False
    )
    write_plate = sim._write_plate

    def flaky(job, cfg, plate, render):
        write_plate(job, cfg, plate, render)
        if plate["plate"].endswith("001"):  # fails after writing its files: the rerun may replace them
            raise OSError("disk full")

    monkeypatch.setattr(sim, "_write_plate", flaky)
    with pytest.raises(JobIncompleteError, match=r"1 of 2 units failed .*plate-SIM101001: OSError: disk full"):
        simulate_release(tmp_path / "resumed", **settings)
    assert not (tmp_path / "resumed" / "metadata").exists()  # metadata waits for every plate
    monkeypatch.setattr(sim, "_write_plate", write_plate)
    simulate_release(tmp_path / "resumed", **settings)  # retries the failed plate only
    simulate_release(tmp_path / "whole", **settings)
    for path in sorted((tmp_path / "whole").rglob("*")):
        if path.is_file() and ".job" not in path.parts:
            twin = tmp_path / "resumed" / path.relative_to(tmp_path / "whole")
            if path.suffix == ".parquet":
                pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(twin))
            elif path.suffix == ".gz":  # the gzip header holds a time stamp
                assert gzip.decompress(path.read_bytes()) == gzip.decompress(twin.read_bytes()), path
            else:
                assert path.read_bytes() == twin.read_bytes(), path
