"""Help, --quiet and `latentfast bench` (issue 10, "Commands and README")."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentfast import _progress, cli
from latentfast.cli import _common, bench

REPO = Path(__file__).resolve().parents[2]


def _parsers(p, name="latentfast"):
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sp in a.choices.items():
                yield from _parsers(sp, f"{name} {sub_name}")


def test_every_option_has_help_with_its_default():
    seen = 0
    for name, p in _parsers(cli.build_parser()):
        text = p.format_help()
        assert text.strip(), name
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            seen += 1
            assert a.help, (name, a.option_strings)
            helped = p._get_formatter()._get_help_string(a)
            assert a.required or "default" in helped, (name, a.option_strings, helped)
    assert seen > 40


def test_quiet_silences_the_progress_bars(tmp_path, tiny_generator, monkeypatch):
    monkeypatch.setattr(_progress, "_quiet", False)
    monkeypatch.delenv("LATENTFAST_QUIET", raising=False)
    assert cli.main(["basis", "--num", "1", "-k", "1", "--out", str(tmp_path / "b")]) == 0
    assert not _progress.is_quiet()
    seen = []
    monkeypatch.setattr(_common, "save_directions", lambda *a, **k: seen.append(_progress.is_quiet()))
    assert cli.main(["basis", "--num", "1", "-k", "1", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert seen == [True]  # every bar of the command is silenced while it runs ...
    assert not _progress.is_quiet()  # ... and the process's setting is restored afterwards


def test_bench_help_is_not_empty(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("--quick", "--only", "--out", "--device", "--threads", "default"):
        assert word in out


def test_bench_runs_from_outside_the_repository(tmp_path):
    """From another directory the checkout's benchmarks/ is still found (here: it runs and refuses --only)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "latentfast.cli", "bench", "--quick", "--only", "NOPE"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "NOPE" in r.stderr and "No module named" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_bench_from_an_installed_package_says_it_needs_a_checkout(monkeypatch, capsys):
    monkeypatch.setattr(bench, "source_checkout", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "source checkout" in err and "python -m benchmarks" in err


def test_python_m_benchmarks_does_not_overwrite_the_committed_results(monkeypatch, tmp_path):
    sys.path.insert(0, str(REPO))
    from benchmarks import run

    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(run.workloads, "WORKLOADS", {"LB": lambda sizes, device: {"error": "stand-in"}})
    monkeypatch.setattr(run, "markdown", lambda report: "")
    monkeypatch.setattr(run.workloads, "TARGETS", {"cpu": [], "cuda": []})
    monkeypatch.setattr(run, "bar_plot", lambda report, path: path.write_bytes(b""))
    committed = {p: p.stat().st_mtime_ns for p in (REPO / "benchmarks" / "results").glob("latest_*")}
    assert run.main(["--quick", "--device", "cpu"]) == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.endswith("_cpu_quick") and (made / "latest_cpu_quick.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in (REPO / "benchmarks" / "results").glob("latest_*")} == committed
