"""Reports: read run folders, compute every number, draw figures, write HTML / Markdown / JSON."""

from .build import build_report

__all__ = ["build_report"]
