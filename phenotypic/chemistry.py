"""Chemistry with RDKit: parsing, standardisation, Morgan fingerprints, scaffold splits, bundled molecules.

Every function takes SMILES strings and reports *which rows* are bad instead of failing on the first one,
because a compound table with a few unparsable structures is the normal case in JUMP (some JCP2022 ids
have no structure at all).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from rdkit import Chem, RDConfig, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")  # RDKit prints parse errors to stderr; we raise them with row numbers

__all__ = [
    "InvalidSmilesError",
    "parse_smiles",
    "standardize_smiles",
    "morgan_fingerprints",
    "murcko_scaffolds",
    "scaffold_split",
    "inchikeys",
    "bundled_molecules",
]


class InvalidSmilesError(ValueError):
    """Raised for SMILES RDKit cannot parse; ``rows`` lists ``(row, smiles)`` of every bad entry."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.rows = rows
        shown = ", ".join(f"row {i}: {s!r}" for i, s in rows[:10])
        more = f" (and {len(rows) - 10} more)" if len(rows) > 10 else ""
        super().__init__(f"{len(rows)} invalid SMILES: {shown}{more}")


def parse_smiles(smiles: Sequence[str]) -> list[Chem.Mol]:
    """Parse SMILES into RDKit molecules, raising one error that lists every invalid row.

    Parameters
    ----------
    smiles : sequence of str, length n_compounds.

    Returns
    -------
    mols : list of rdkit.Chem.Mol, length n_compounds.

    Raises
    ------
    InvalidSmilesError
        If any entry is empty, not a string or not parsable; ``err.rows`` holds ``(row, smiles)``.

    Examples
    --------
    >>> [m.GetNumAtoms() for m in parse_smiles(["CCO", "c1ccccc1"])]
    [3, 6]
    """
    mols, bad = [], []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if isinstance(s, str) and s.strip() else None
        if mol is None:
            bad.append((i, str(s)))
        mols.append(mol)
    if bad:
        raise InvalidSmilesError(bad)
    return mols


def standardize_smiles(smiles: Sequence[str]) -> list[str]:
    """Standardise structures: cleanup, keep the largest organic fragment (strips salts and solvents),
    neutralise charges, and write canonical SMILES.

    Parameters
    ----------
    smiles : sequence of str, length n_compounds.

    Returns
    -------
    canonical : list of str, length n_compounds.

    Examples
    --------
    >>> standardize_smiles(["CC(=O)[O-].[Na+]", "OCC"])
    ['CC(=O)O', 'CCO']
    """
    chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    uncharger = rdMolStandardize.Uncharger()
    out = []
    for mol in parse_smiles(smiles):
        mol = rdMolStandardize.Cleanup(mol)
        mol = uncharger.uncharge(chooser.choose(mol))
        out.append(Chem.MolToSmiles(mol))
    return out


def morgan_fingerprints(
    smiles: Sequence[str], *, radius: int = 2, n_bits: int = 2048, counts: bool = False
) -> np.ndarray:
    """Morgan (ECFP-like) fingerprints through RDKit's ``rdFingerprintGenerator`` API.

    Parameters
    ----------
    smiles : sequence of str, length n_compounds.
    radius : Morgan radius (2 ~ ECFP4).
    n_bits : fingerprint length.
    counts : return count fingerprints instead of bits.

    Returns
    -------
    fingerprints : ndarray of shape (n_compounds, n_bits), dtype uint8.

    Examples
    --------
    >>> morgan_fingerprints(["CCO"], n_bits=64).shape
    (1, 64)
    """
    if radius < 0 or n_bits < 1:
        raise ValueError(f"radius must be >= 0 and n_bits >= 1, got {radius} and {n_bits}")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    mols = parse_smiles(smiles)
    fp = gen.GetCountFingerprintAsNumPy if counts else gen.GetFingerprintAsNumPy
    return (
        np.stack([np.minimum(fp(m), 255).astype(np.uint8) for m in mols]) if mols else np.zeros((0, n_bits), np.uint8)
    )


def inchikeys(smiles: Sequence[str]) -> list[str]:
    """InChIKeys (the identity JUMP joins compounds on) for each SMILES."""
    return [Chem.MolToInchiKey(m) for m in parse_smiles(smiles)]


def murcko_scaffolds(smiles: Sequence[str]) -> list[str]:
    """Bemis-Murcko scaffold SMILES per compound (empty string for acyclic molecules)."""
    return [MurckoScaffold.MurckoScaffoldSmiles(mol=m) for m in parse_smiles(smiles)]


def scaffold_split(
    smiles: Sequence[str], *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[np.ndarray]:
    """Split compounds so that no Murcko scaffold is shared between parts.

    Scaffold groups are shuffled (seeded) and assigned greedily, largest groups first, to the part that is
    furthest below its target size, so the parts hit ``fractions`` closely.

    Parameters
    ----------
    smiles : sequence of str, length n_compounds.
    fractions : target fraction of compounds per part; must sum to 1.
    seed : shuffling seed (ties between equal-size scaffold groups).

    Returns
    -------
    parts : list of int ndarrays (row indices), one per fraction.

    Examples
    --------
    >>> parts = scaffold_split(["c1ccccc1C", "c1ccccc1CC", "C1CCCCC1O", "CCO"], fractions=(0.5, 0.5))
    >>> sorted(np.concatenate(parts).tolist())
    [0, 1, 2, 3]
    """
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(murcko_scaffolds(smiles)):
        groups.setdefault(s, []).append(i)
    rng = np.random.default_rng(seed)
    keys = list(groups)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))  # stable: shuffled order among equal sizes
    n = len(smiles)
    parts: list[list[int]] = [[] for _ in fractions]
    for k in keys:
        deficit = fractions * n - np.array([len(p) for p in parts])
        parts[int(np.argmax(deficit))].extend(groups[k])
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def bundled_molecules(n: int | None = None, *, seed: int = 0) -> list[str]:
    """Real molecules shipped with RDKit (``RDConfig.RDDataDir/NCI/first_5K.smi``, NCI open set),
    standardised and de-duplicated, shuffled by ``seed``; the first ``n`` are returned.

    Returns
    -------
    smiles : list of str, canonical SMILES.
    """
    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    raw = [line.split()[0] for line in open(path, encoding="utf-8") if line.strip()]
    order = np.random.default_rng(seed).permutation(len(raw))
    out: list[str] = []
    seen: set[str] = set()
    chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    for i in order:
        mol = Chem.MolFromSmiles(raw[i])
        if mol is None:
            continue
        mol = chooser.choose(mol)
        if mol.GetNumHeavyAtoms() < 6:  # solvents and ions are not screening compounds
            continue
        s = Chem.MolToSmiles(mol)
        if s in seen:
            continue
        seen.add(s)
        out.append(s)
        if n is not None and len(out) == n:
            break
    if n is not None and len(out) < n:
        raise ValueError(f"RDKit ships only {len(out)} usable molecules, asked for {n}")
    return out
