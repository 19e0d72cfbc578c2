"""Templates shared by the HTML report (`abflow report`) and the web dashboard (`abflow web`).

One Jinja2 environment over `abflow/reporting/templates` (autoescaped) and the web app's own
templates; the report's sections are rendered by `abflow.report` and placed into the same layout
by both, so there is one report code path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")


@lru_cache(maxsize=4)
def environment(*extra_dirs: str) -> Environment:
    """The autoescaping environment over the shared templates (and any extra directories)."""
    from abflow import report

    env = Environment(
        loader=FileSystemLoader([*extra_dirs, str(TEMPLATES)]),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=report.pct, num=report.num, p_fmt=report.p_fmt, date=report.format_date)
    return env


def render(template: str, **context: Any) -> str:
    """Render one shared template."""
    return environment().get_template(template).render(**context)
