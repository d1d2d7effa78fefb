"""docs/cli.md's table of failure classes is true: each example command exits with the code the row says
(and never as an internal error), each error class named exits with that code, and every error class of
vlora_core.errors has a row."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vlora_core import errors
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
TABLE = re.search(r"<!-- failures:begin -->\n(.*?)<!-- failures:end -->", (ROOT / "docs" / "cli.md").read_text(),
                  re.S).group(1)
ROWS = [[cell.strip() for cell in line.strip("|").split("|")] for line in TABLE.splitlines()[2:]]


def _unquote(cell: str) -> str:
    return cell.strip("`")


def test_every_error_class_has_a_row_with_its_own_exit_code():
    classes = {name: cls for name, cls in vars(errors).items()
               if isinstance(cls, type) and issubclass(cls, errors.VloraError)}
    named = {_unquote(row[1]): int(row[3]) for row in ROWS if row[1]}
    bases = {"VloraError", "SpecError", "ResolutionError"}  # raised only through their subclasses
    assert set(classes) - bases <= set(named), set(classes) - bases - set(named)
    for name, code in named.items():
        assert classes[name].exit_code == code, f"{name} exits {classes[name].exit_code}, the table says {code}"
    assert {int(row[3]) for row in ROWS} == set(errors.EXIT_MEANINGS)


@pytest.mark.parametrize("row", [r for r in ROWS if r[2]], ids=lambda r: _unquote(r[2])[6:60])
def test_each_example_exits_as_the_table_says(row, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(_unquote(row[2]))
    assert argv[0] == "vlora"
    try:
        code = main(argv[1:])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == int(row[3]), f"{row[2]}: exit {code}, the table says {row[3]}\n{out}{err}"
    assert "internal error" not in out + err and "Traceback" not in out + err
