"""Importing a user's own code: only what was named, once per file, with errors that say what failed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prunetune.errors import PrunetuneError
from prunetune.user_code import accepted_keywords, file_module_name, is_file_reference, load_reference


def test_a_file_or_a_module() -> None:
    assert is_file_reference("nets.py") and is_file_reference("dir/nets") and is_file_reference(r"dir\nets")
    assert not is_file_reference("package.module")


def test_a_file_is_imported_once_under_one_name_and_recorded_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nets.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    monkeypatch.chdir(tmp_path)
    inner, recorded = load_reference("nets.py:Outer.Inner", label="model")
    assert recorded == f"{(tmp_path / 'nets.py').resolve()}:Outer.Inner"
    assert inner.__module__ == file_module_name(tmp_path / "nets.py") and inner.__module__ in sys.modules
    again, _ = load_reference(recorded, label="objective")  # another label, the same module
    assert again is inner
    assert str(tmp_path) not in sys.path


def test_a_file_that_fails_is_not_left_half_imported(tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text("VALUE = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(PrunetuneError, match=r"The objective .*: importing .* failed \(RuntimeError: boom, line 2\)"):
        load_reference(f"{source}:VALUE", label="objective")
    assert file_module_name(source) not in sys.modules
    source.write_text("VALUE = 2\n")
    assert load_reference(f"{source}:VALUE", label="objective")[0] == 2


@pytest.mark.parametrize(
    ("reference", "words"),
    [
        ("no_colon", "The model must be named 'module:attribute' or 'path/to/file.py:attribute'"),
        ("os:", "must be named"),
        ("prunetune_absent_xyz:f", "cannot import module 'prunetune_absent_xyz', which is not importable"),
        ("os:path.nope", "os:path has no attribute 'nope'"),
        ("os:sep", "names str 'sep', which is not callable"),
    ],
)
def test_errors_name_the_label_and_what_went_wrong(reference: str, words: str) -> None:
    with pytest.raises(PrunetuneError, match=words):
        load_reference(reference, label="model", callable_only=True)


def test_accepted_keywords() -> None:
    def f(a, /, b, *, c, **rest):
        return None

    assert accepted_keywords(f) == (frozenset({"b", "c"}), True)
    assert accepted_keywords(lambda x: x) == (frozenset({"x"}), False)
    assert accepted_keywords(dict) is None  # no signature: the caller decides
