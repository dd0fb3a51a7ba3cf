"""The lessons' drawings say what they claim: shapes to scale, counts from the formula."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from ftcourse.course.plots import lora_diagram  # noqa: E402


def test_lora_diagram_draws_the_shapes_to_scale_and_counts_by_the_formula():
    ax = lora_diagram(d_in=576, d_out=192, r=8)
    w, a, b = ax.patches
    assert w.get_width() / w.get_height() == pytest.approx(576 / 192)
    assert a.get_width() == pytest.approx(w.get_width()) and b.get_height() == pytest.approx(w.get_height())
    text = " ".join(t.get_text() for t in ax.texts)
    assert "= 6,144" in text and "= 110,592" in text and "W  192×576" in text
