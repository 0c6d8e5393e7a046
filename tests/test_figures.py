"""The figures written beside the results of `connectomics star` and `python -m shared.alignment score` (issue 16).

`phenotypic evaluate`'s and the scaling grid's figures are checked in tests/test_phenotypic_scaleout.py and
tests/test_phenotypic_ibp.py.
"""

import pandas as pd

from connectomics.star import plot_star
from tests.figure_checks import assert_png


def test_star_figure_shows_every_model_and_fraction(tmp_path):
    rows = [{"model": m, "data_fraction": f, "in_source_arand": a - 0.1, "held_out_arand": a,
             "held_out_voi_split": 1.2 * a, "held_out_voi_merge": 0.4, "held_out_cremi": a + 0.2}
            for m, base in (("gammanet", 0.5), ("unet", 0.6)) for f, a in ((1.0, base), (0.1, base + 0.15))]
    png = plot_star(pd.DataFrame(rows), tmp_path / "results.png", held_out="retina")
    assert_png(png, min_size=(1000, 300), software="connectomics star")
