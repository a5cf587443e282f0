"""Renders Markdown with markdown-to-jsx as the KFP UI pins it (node, devtools/markdown_render)."""

import html.parser
import json
import os
import shutil
import subprocess

ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "devtools", "markdown_render"
)
# The KFP frontends whose package-lock.json pins are copied in devtools/markdown_render/<name>.
FRONTENDS = ("kfp-2.15", "kfp-2.17")
_TIMEOUT_S = 120


class RendererMissingError(AssertionError):
    """node or the pinned packages are missing: the message says which make target installs them."""


def render_html(documents: list[str], frontend: str) -> list[str]:
    """HTML of each document as the given KFP frontend's Markdown viewer renders it.

    Raises:
      RendererMissingError: If node is missing or `npm ci` has not run (`make markdown-render`).
    """
    node = shutil.which("node")
    if node is None:
        raise RendererMissingError(
            "node is not on PATH: install Node 20, then run `make markdown-render`"
        )
    modules = os.path.join(ROOT, frontend, "node_modules", "markdown-to-jsx")
    if not os.path.isdir(modules):
        raise RendererMissingError(
            f"{modules} is missing: run `make markdown-render` (npm ci of the pinned renderer)"
        )
    done = subprocess.run(
        [node, os.path.join(ROOT, "render.js"), frontend],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"render.js {frontend} failed ({done.returncode}): {done.stderr}")
    rendered: list[str] = json.loads(done.stdout)
    return rendered


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        # Block and cell boundaries separate words.
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible(rendered: str) -> tuple[str, list[str]]:
    """(The text a reader sees, whitespace folded; the HTML tags used, in order)."""
    parser = _Text()
    parser.feed(rendered)
    parser.close()
    return " ".join("".join(parser.parts).split()), parser.tags


def render_text(documents: list[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """Frontend -> (visible text, tags) of each document, for every pinned frontend."""
    return {
        frontend: [visible(h) for h in render_html(documents, frontend)] for frontend in FRONTENDS
    }
