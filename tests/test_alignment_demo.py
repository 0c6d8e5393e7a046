"""The ``make demo`` part (slow: about 20 s on 2 cores; run with ``-m slow``)."""

import pytest

from shared.report import Report


@pytest.mark.slow
def test_alignment_demo_writes_section_and_figure(tmp_path):
    from shared.alignment.demo import run_demo

    report = Report("demo")
    run_demo(tmp_path / "alignment", report)
    section = report.sections[0]
    scores = section.tables[0][1].set_index("model")
    assert (
        scores.loc["harmonized", "spearman (= score, ceiling 1)"]
        > scores.loc["unharmonized", "spearman (= score, ceiling 1)"]
    )
    assert (tmp_path / "alignment" / "saliency.png").stat().st_size > 0
    assert report.write(tmp_path).exists()
