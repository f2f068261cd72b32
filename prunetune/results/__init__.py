"""A run folder's readers and writers: its trials and front (``Run``), the reports (terminal, CSV,
JSON, Markdown, PNG, HTML) and the export of a chosen trial as a real, smaller model.

Reads what the search engine stored; never parses experiment files (the saved experiment is read as
plain data) and never runs a search.
"""

from __future__ import annotations

from prunetune.results.export import ExportResult, export_trial, select_trial
from prunetune.results.runs import Run, load_run
from prunetune.results.settings import Settings

__all__ = ["ExportResult", "Run", "Settings", "export_trial", "load_run", "select_trial"]
