"""CI smoke test of the benchmark harness (issue 6): the quick run, in-process, writes its JSON / markdown / PNG
with the expected keys and every correctness check passes.  No timing is asserted."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ lives beside the package, not inside it

run = pytest.importorskip("benchmarks.run")


def test_quick_benchmark_writes_results(tmp_path):
    rc = run.main(["--quick", "--threads", "1", "--device", "cpu", "--out", str(tmp_path)])
    js = tmp_path / "latest_cpu_quick.json"
    md = tmp_path / "latest_cpu_quick.md"
    png = tmp_path / "latest_cpu_quick.png"
    assert js.exists() and md.exists() and png.exists()
    report = json.loads(js.read_text())
    for key in ("git_commit", "torch", "numpy", "python", "cpu_model", "torch_threads", "device", "date",
                "load_average_start"):
        assert key in report["provenance"], key
    assert report["provenance"]["torch_threads"] == 1
    assert set(report["workloads"]) == {"LB", "ITER", "SEG", "FIT", "GRASS", "PULLBACK"}
    for name, w in report["workloads"].items():
        assert "error" not in w, (name, w.get("error"))
        assert w["shapes"] and w["dtype"] == "float32"
        kinds = [r["kind"] for r in w["rows"]]
        assert "baseline" in kinds, name
        assert any(k in ("reference", "backend") for k in kinds), name
        for r in w["rows"]:
            for key in ("seconds_per_item_median", "seconds_per_item_min", "seconds_per_item_max", "timed_on"):
                assert r[key] >= 0 if key != "timed_on" else r[key] >= 1, (name, r["name"], key)
            if r["kind"] != "baseline":
                assert r["ratio_to_baseline"] > 0
        failed = {c: v for c, v in w["checks"].items() if not v["passed"]}
        assert not failed, (name, failed)
    assert report["all_checks_passed"] is True and rc == 0
    assert {t["workload"] for t in report["targets"]} == {"LB", "SEG", "FIT", "GRASS", "PULLBACK"}
    for t in report["targets"]:
        assert t["status"] in ("MET", "MISSED", "not measured")
        if t["status"] == "MISSED":
            assert t["missed_by"] > 1
    text = md.read_text()
    for heading in ("## Targets", "## LB", "## ITER", "## SEG", "## FIT", "## GRASS", "## PULLBACK"):
        assert heading in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importing_the_package_does_not_import_benchmarks():
    import subprocess

    code = "import sys, latentfast; print('benchmarks' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert out.stdout.strip() == "False", out.stderr
