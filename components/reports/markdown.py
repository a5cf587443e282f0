"""The one Markdown writer of the reports: text escaped for markdown-to-jsx, the KFP UI's renderer.

The KFP UI renders `system.Markdown` with markdown-to-jsx (6.11 up to the 2.15 frontend, 7.x
from 2.17; kubeflow/pipelines `frontend/src/components/viewers/MarkdownViewer.tsx`). Unlike
CommonMark it reads an intraword `_` as emphasis (`dropoff_census_tract` shows as
dropoff<em>census</em>tract), `==x==` as a highlight (7.x), `&amp;` as an entity and a bare
`http://` as a link whose text keeps any backslash. Every value written through `text()` is
therefore backslash-escaped wherever markdown-to-jsx would read it as markup, and
`tests/components/test_markdown.py` renders the result with both pinned versions.
"""

import dataclasses
import re
from collections.abc import Iterable, Sequence

# Characters markdown-to-jsx reads as markup anywhere in a line: emphasis and strong (`*`, `_`),
# code (backtick), strikethrough and highlight (`~`, `=`), links, images and footnotes (`[`,
# `]`, `!`, `^`), tables (`|`), HTML and autolinks (`<`, `>`), entities (`&`) and the escape
# itself. Both versions drop the backslash before any ASCII punctuation.
_INLINE = re.compile(r"([\\`*_~=\[\]!^|<>&])")
# At the start of a block: headings, block quotes and list items (escape the marker), numbered
# list items (escape the `.` or `)`: a backslash before a digit stays visible).
_BLOCK_START = re.compile(r"^([#>+-])")
_NUMBERED = re.compile(r"^(\d+)([.)])")
# `scheme://`: a bare http(s) URL becomes a link whose text keeps the backslashes of escapes
# inside it; `\:` stops the link detection and renders as `:`.
_SCHEME = re.compile(r"(?<=[A-Za-z]):(?=//)")


@dataclasses.dataclass(frozen=True)
class Inline:
    """Markdown that is already safe to place inline (escaped text, code, bold)."""

    markdown: str


Part = str | int | float | Inline | None
# A table cell or list item: one part, or several parts (a list or tuple) joined.
Parts = Part | list[Part] | tuple[Part, ...]


def text(value: object) -> Inline:
    """Any value as literal text: whitespace runs folded to one space, markup escaped."""
    folded = re.sub(r"\s+", " ", str(value))
    return Inline(_SCHEME.sub(r"\\:", _INLINE.sub(r"\\\1", folded)))


def _block(markdown: str) -> str:
    # A block's first characters decide whether it is a heading, quote or list item.
    stripped = markdown.strip()
    return _NUMBERED.sub(r"\1\\\2", _BLOCK_START.sub(r"\\\1", stripped))


def code(value: object) -> Inline:
    """A value in a code span (names, paths, settings); escaped text if it holds a backtick."""
    folded = " ".join(str(value).split())
    if not folded or "`" in folded:
        return text(folded)
    return Inline(f"`{folded}`")


def bold(*parts: Part) -> Inline:
    """Strong text."""
    inner = inline(*parts).markdown
    return Inline(f"**{inner}**") if inner else Inline("")


def inline(*parts: Part) -> Inline:
    """Parts joined without separators; plain values are escaped, None is left out."""
    return Inline("".join(_md(p) for p in parts if p is not None))


def _parts(value: Parts) -> str:
    if isinstance(value, list | tuple):
        return inline(*value).markdown
    return _md(value)


def _md(part: Part) -> str:
    if part is None:
        return ""
    return part.markdown if isinstance(part, Inline) else text(part).markdown


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: its heading and whether its cells are numbers (right-aligned)."""

    heading: str
    numeric: bool = False


class Document:
    """A Markdown document built block by block; `str(document)` is the Markdown."""

    def __init__(self) -> None:
        self._blocks: list[str] = []

    def heading(self, *parts: Part, level: int = 1) -> "Document":
        """A heading (`#` to `######`)."""
        if not 1 <= level <= 6:
            raise ValueError(f"Markdown heading level must be 1 to 6, got {level}")
        self._blocks.append("#" * level + " " + _block(inline(*parts).markdown))
        return self

    def paragraph(self, *parts: Part) -> "Document":
        """A paragraph of inline parts (plain values are escaped)."""
        self._blocks.append(_block(inline(*parts).markdown))
        return self

    def bullets(self, items: Iterable[Parts]) -> "Document":
        """A bullet list, one item per value (a sequence of parts for a mixed item)."""
        lines = ["- " + _block(_parts(item)) for item in items]
        if lines:
            self._blocks.append("\n".join(lines))
        return self

    def table(self, columns: Sequence[Column | str], rows: Iterable[Sequence[Parts]]) -> "Document":
        """A table; a cell is a value, an `Inline`, or a sequence of parts.

        Raises:
          ValueError: If a row has another number of cells than there are columns.
        """
        cols = [c if isinstance(c, Column) else Column(c) for c in columns]
        lines = [
            "| " + " | ".join(_block(text(c.heading).markdown) for c in cols) + " |",
            "|" + "|".join("---:" if c.numeric else "---" for c in cols) + "|",
        ]
        for row in rows:
            if len(row) != len(cols):
                raise ValueError(
                    f"Markdown table row has {len(row)} cells for {len(cols)} columns "
                    f"({[c.heading for c in cols]}): {row!r}"
                )
            cells = [_block(_parts(cell)) for cell in row]
            # An empty cell needs a space to stay a cell for markdown-to-jsx 6.
            lines.append("| " + " | ".join(cell or " " for cell in cells) + " |")
        self._blocks.append("\n".join(lines))
        return self

    def __str__(self) -> str:
        return "\n\n".join(self._blocks) + "\n"
