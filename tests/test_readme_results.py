"""README.md's benchmark figures come from benchmarks/results/, rendered by
benchmarks/render_readme.py: nobody edits them by hand, and a results file that changes
without a re-render fails here."""

from __future__ import annotations

from benchmarks.render_readme import BLOCK, README, RENDERERS, render


def test_readme_benchmark_figures_are_their_rendered_form():
    text = README.read_text()
    assert render(text) == text, ("README.md's benchmark figures differ from benchmarks/results/: "
                                  "run `python benchmarks/render_readme.py` (never edit them by hand)")


def test_every_benchmark_has_its_block_in_the_readme():
    assert {m.group("name") for m in BLOCK.finditer(README.read_text())} == set(RENDERERS)
