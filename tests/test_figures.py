"""The figures written beside the results of `connectomics star` and `python -m shared.alignment score` (issue 16).

`phenotypic evaluate`'s and the scaling grid's figures are checked in tests/test_phenotypic_scaleout.py and
tests/test_phenotypic_ibp.py.
"""

from connectomics.star import write_results
from tests.figure_checks import assert_png


def test_star_writes_its_figure_beside_the_table(tmp_path):
    rows = [
        {
            "model": m,
            "parameters": 10,
            "data_fraction": f,
            "threshold": 0.5,
            "in_source_arand": a - 0.1,
            "held_out_arand": a,
            "held_out_voi_split": 1.2 * a,
            "held_out_voi_merge": 0.4,
            "held_out_cremi": a + 0.2,
            "train_seconds": 1.0,
        }
        for m, base in (("gammanet", 0.5), ("unet", 0.6))
        for f, a in ((1.0, base), (0.1, base + 0.15))
    ]
    table = write_results(tmp_path, rows, held_out="retina", train_sources=["sstem"], volumes={})
    assert len(table) == 4 and {p.name for p in tmp_path.iterdir()} == {
        f"results.{e}" for e in ("csv", "json", "md", "png")
    }
    assert_png(tmp_path / "results.png", min_size=(1000, 300), software="connectomics star")
