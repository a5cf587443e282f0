"""The Markdown writer's text survives markdown-to-jsx (the KFP UI's renderer) letter for letter."""

import random
import string

import pytest

from components.reports import markdown
from tests.support.markdown_render import render_text

_NAMES = ["dropoff_census_tract", "trip_start_hour", "__init__", "a*b*c", "x_y_z|w", "tfx-taxi_kfp"]
_AWKWARD = [
    "1. first",
    "2) second",
    "- dash",
    "+ plus",
    "# hash",
    "> quote",
    "http://host/a_b_c",
    "see https://x.y/p_q?r=s_t&u=v.",
    "gs://bucket/serving_model/chicago_taxi",
    "&amp; &lt;b&gt;",
    "<b>bold</b>",
    "[link](target) ![img](x.png) [^1]",
    "~~gone~~ ==marked==",
    "`tick` and ``double``",
    "trailing backslash \\",
    "a\\_b",
    "≤ 0.1 and ≥ 0.99",
    "---",
    "***",
    "*",
    "_",
]


def _random_texts(count: int) -> list[str]:
    alphabet = string.ascii_letters[:6] + string.digits[:3] + string.punctuation + "  "
    rng = random.Random(15)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def _cases() -> list[str]:
    return _NAMES + _AWKWARD + _random_texts(300)


def test_text_renders_letter_for_letter_in_paragraphs_headings_cells_and_lists():
    cases = _cases()
    documents = []
    for value in cases:
        doc = markdown.Document()
        doc.heading(value)
        doc.paragraph(value)
        doc.table(["value", markdown.Column("n", numeric=True)], [(value, 1)])
        doc.bullets([value])
        documents.append(str(doc))
    for frontend, rendered in render_text(documents).items():
        for value, (seen, tags) in zip(cases, rendered, strict=True):
            folded = " ".join(value.split())
            assert seen == f"{folded} {folded} value n {folded} 1 {folded}", (frontend, value)
            assert not {"em", "strong", "code", "a", "del", "mark", "img"} & set(tags), (
                frontend,
                value,
                tags,
            )


def test_code_spans_and_bold_keep_their_text():
    names = [*_NAMES, "a`b", ""]
    documents = [
        str(
            markdown.Document()
            .paragraph(markdown.bold(name), " in ", markdown.code(name))
            .table(["name"], [[markdown.code(name)]])
        )
        for name in names
    ]
    for frontend, rendered in render_text(documents).items():
        for name, (seen, tags) in zip(names, rendered, strict=True):
            expected = f"{name} in {name} name {name}".split()
            assert seen.split() == expected, (frontend, name)
            assert "em" not in tags, (frontend, name)
            if name and "`" not in name:
                assert tags.count("code") == 2, (frontend, name, tags)


def test_a_row_with_the_wrong_cell_count_is_refused():
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        markdown.Document().table(["only"], [("a", "b")])
