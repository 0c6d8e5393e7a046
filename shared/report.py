"""The demo report: one HTML page with a section per subsystem, figures as PNG files beside it.

Each subsystem's ``demo.run_demo(out_dir, report)`` adds a :class:`Section`; ``scripts/demo.py`` writes the
page. Tables are pandas DataFrames or lists of dicts; figures are PNG paths inside the report folder.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.jobs import atomic_write_text


@dataclass
class Section:
    """One part of the report: a title, prose, tables and figures."""

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    seconds: float | None = None

    def add_table(self, caption: str, table: pd.DataFrame | list[dict]) -> None:
        self.tables.append((caption, table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)))

    def add_figure(self, caption: str, png: str | Path) -> None:
        self.figures.append((caption, Path(png)))


class Report:
    """Collects sections and writes them as a self-contained folder (``report.html`` + PNGs).

    Examples
    --------
    >>> import tempfile
    >>> r = Report("demo")
    >>> s = r.section("Pathfinder")
    >>> s.add_table("accuracy", [{"model": "hgru", "accuracy": 0.9}])
    >>> path = r.write(Path(tempfile.mkdtemp()))
    >>> path.name
    'report.html'
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[Section] = []
        self._started = time.perf_counter()

    def section(self, title: str, text: str = "") -> Section:
        s = Section(title, text)
        self.sections.append(s)
        return s

    def write(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
            "text-align:right}img{max-width:100%;border:1px solid #ddd}figcaption{color:#444}</style>",
            f"</head><body><h1>{html.escape(self.title)}</h1>",
            "<ul>"
            + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(self.sections))
            + "</ul>",
        ]
        for i, s in enumerate(self.sections):
            parts.append(f"<h2 id='s{i}'>{html.escape(s.title)}</h2>")
            if s.seconds is not None:
                parts.append(f"<p><small>took {s.seconds:.1f} s</small></p>")
            if s.text:
                parts.extend(f"<p>{html.escape(p)}</p>" for p in s.text.strip().split("\n\n"))
            for caption, table in s.tables:
                parts.append(f"<h3>{html.escape(caption)}</h3>")
                parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
            for caption, png in s.figures:
                rel = png.resolve().relative_to(out_dir.resolve()) if png.is_absolute() else png
                parts.append(
                    f"<figure><img src='{html.escape(str(rel))}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        total = time.perf_counter() - self._started
        parts.append(f"<hr><p><small>generated in {total:.0f} s</small></p></body></html>")
        # atomic: a reader never sees a half-written report
        return atomic_write_text(out_dir / "report.html", "\n".join(parts))
