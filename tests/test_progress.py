"""What a run shows while it trains: a bar on a terminal, a line per epoch otherwise, nothing in CI."""

from __future__ import annotations

import io

from conftest import SMALL, run_cli

from rnnlab import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_setting_the_terminal_and_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert progress.mode(None, _Terminal()) == "bar"
    assert progress.mode(None, io.StringIO()) == "lines"
    assert progress.mode(True, io.StringIO()) == "bar" and progress.mode(False, _Terminal()) == "none"
    monkeypatch.setenv("CI", "true")
    assert progress.mode(None, _Terminal()) == "none"


def test_one_line_per_epoch_when_output_is_not_a_terminal(workdir):
    res = run_cli([*SMALL, "trainer.max_epochs=3", "trainer.early_stopping.enabled=false"], workdir, env={"CI": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"], res.stderr
    assert all("val/loss" in line and "train/loss" in line for line in lines)
    assert "left)" in lines[0] and lines[-1].endswith("s)")


def test_nothing_extra_under_ci(workdir):
    res = run_cli([*SMALL], workdir, env={"CI": "true"})
    assert res.returncode == 0 and not [line for line in res.stderr.splitlines() if line.startswith("epoch ")]
