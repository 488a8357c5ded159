"""The README stays true: its compatibility table, its exit codes and its two commands."""

from pathlib import Path

from flruntime.exit_codes import ExitCode
from flruntime.graph.aliases import markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_compatibility_table_lists_every_alias():
    assert markdown_table() in README, "regenerate the README table with flruntime.graph.aliases.markdown_table()"


def test_exit_codes_are_documented():
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` | {code.help} |" in README


def test_the_two_commands_exist():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "make main-job" in README and "main-job:" in makefile
    assert "make test" in README and "\ntest:" in makefile
