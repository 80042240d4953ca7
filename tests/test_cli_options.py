"""The eventsim command's surface: --version, a help text on every option, the cache folder command."""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version

import pytest

from eventsim.cli import main, parser


def _options(p: argparse.ArgumentParser, path: str = "eventsim"):
    """Every option of ``p`` and of its subcommands, with the command it belongs to."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_option_has_help_with_its_default_shown_once():
    seen = list(_options(parser()))
    assert {path for path, _ in seen} >= {f"eventsim {c}" for c in
                                          ("train", "eval", "inspect", "plot", "convert", "conform", "run", "bench")}
    for path, action in seen:
        where = f"{path} {action.option_strings[0]}"
        assert action.help and action.help.strip(), f"{where} has no help"
        shown = action.help % {"default": action.default, "prog": path} if "%(" in action.help else action.help
        assert len(re.findall(r"\(default", shown)) <= 1, f"{where}: {shown}"
        assert "(default: None)" not in shown, f"{where}: {shown}"


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"eventsim {version('eventsim')}"


def test_data_cache_prints_its_folder_and_clears_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "eventsim" / "cache"
    folder.mkdir(parents=True)
    (folder / "nmnist-train-0123.h5").write_bytes(b"x" * 2048)
    (tmp_path / "eventsim" / "NMNIST").mkdir()  # data beside the cache is not the cache's to clear
    assert main(["data", "cache"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out and "2.0 kB" in out and "1 file" in out
    assert main(["data", "cache", "--clear"]) == 0
    assert not folder.exists() and (tmp_path / "eventsim" / "NMNIST").exists()
    assert "removed" in capsys.readouterr().out
    assert main(["data", "cache"]) == 0  # an absent cache is an empty one
    assert "0 files" in capsys.readouterr().out
