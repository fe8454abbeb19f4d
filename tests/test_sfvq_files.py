"""SFVQ files: format version 2 with a sha256 checksum and the training log; every damaged or foreign file is one
ValueError naming the user's path (issue 10 "Files", issue 12 provenance)."""
import os
import pickle

import pytest
import torch

from latentfast import SFVQ, _io
from latentfast.sfvq import _files


@pytest.fixture(scope="module")
def fitted():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = SFVQ(8, 4)
    model.fit(torch.randn(300, 4, generator=torch.Generator().manual_seed(0)), epochs_per_stage=1,
              progress=False, generator=torch.Generator().manual_seed(1))
    torch.set_num_threads(before)
    return model


def _one_line_naming(err, path):
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert "weights_only" not in msg and ".tmp" not in msg, msg


def test_save_load_keeps_training_log(fitted, tmp_path):
    path = tmp_path / "curve.pt"
    fitted.save(path)
    loaded = SFVQ.load(path)
    assert torch.equal(loaded.vertices, fitted.vertices)
    a, b = fitted.training_log, loaded.training_log
    assert b.mean_distance_sq == a.mean_distance_sq and b.runs == a.runs and b.world_size == 1
    assert b.rows_per_rank == [64] and b.init == "data" and b.scale_log2 == 0
    assert [s.loss for s in b.stages] == [s.loss for s in a.stages]
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa.final_vertices, sb.final_vertices) and torch.equal(sa.segment_counts, sb.segment_counts)
    assert SFVQ.from_vertices(torch.randn(3, 2)).training_log is None


def test_flipped_bit_in_a_vertex_is_detected(fitted, tmp_path):
    path = tmp_path / "curve.pt"
    fitted.save(path)
    data = bytearray(path.read_bytes())
    at = data.find(fitted.vertices.detach().numpy().tobytes())
    assert at > 0  # the vertex bytes are stored as they are: this flips a bit of vertex 2
    data[at + 2 * 4 * 4 + 1] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum") as err:
        SFVQ.load(path)
    _one_line_naming(err, path)


@pytest.mark.parametrize("cut", ["empty", "first100", "half", "last10"])
def test_truncated_or_empty_file(fitted, tmp_path, cut):
    path = tmp_path / "curve.pt"
    fitted.save(path)
    data = path.read_bytes()
    data = {"empty": b"", "first100": data[:100], "half": data[: len(data) // 2], "last10": data[:-10]}[cut]
    path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        SFVQ.load(path)
    _one_line_naming(err, path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_unsafe_and_foreign_files_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "latentfast.SFVQ", "x": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="refused") as err:
        SFVQ.load(evil)
    _one_line_naming(err, evil)
    assert not (tmp_path / "pwned").exists()
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError) as err:
        SFVQ.load(text)
    _one_line_naming(err, text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="latentfast.SFVQ") as err:
        SFVQ.load(other)
    _one_line_naming(err, other)


def test_version_rule(tmp_path):
    v = torch.randn(5, 3)
    old = tmp_path / "v1.pt"  # latentfast before checksums: loads, unverified, without a log
    torch.save({"format": "latentfast.SFVQ", "version": 1, "vertices": v}, old)
    loaded = SFVQ.load(old)
    assert torch.equal(loaded.vertices, v) and loaded.training_log is None
    stripped = tmp_path / "v2-no-checksum.pt"
    torch.save({"format": "latentfast.SFVQ", "version": 2, "vertices": v, "training_log": None}, stripped)
    with pytest.raises(ValueError, match="without its checksum"):
        SFVQ.load(stripped)
    newer = tmp_path / "v3.pt"
    payload = {"format": "latentfast.SFVQ", "version": 3, "vertices": v}
    torch.save(dict(payload, checksum=_files.checksum(payload)), newer)
    with pytest.raises(ValueError, match="version 3"):
        SFVQ.load(newer)
    bad = tmp_path / "nan.pt"
    payload = {"format": "latentfast.SFVQ", "version": 2, "vertices": torch.full((3, 2), float("nan")),
               "training_log": None}
    torch.save(dict(payload, checksum=_files.checksum(payload)), bad)
    with pytest.raises(ValueError, match="invalid curve") as err:
        SFVQ.load(bad)
    _one_line_naming(err, bad)


def test_save_goes_through_the_shared_atomic_writer(tmp_path, monkeypatch):
    calls = []
    real = _io.atomic_write_bytes

    def spy(path, data, *, overwrite=False, name):
        calls.append((str(path), name, overwrite))
        return real(path, data, overwrite=overwrite, name=name)

    monkeypatch.setattr(_io, "atomic_write_bytes", spy)
    SFVQ.from_vertices(torch.randn(3, 2)).save(tmp_path / "c.pt")
    SFVQ.from_vertices(torch.ones(3, 2)).save(tmp_path / "c.pt")  # a library save replaces, as torch.save does
    assert calls == [(str(tmp_path / "c.pt"), "path", True)] * 2
    assert torch.equal(SFVQ.load(tmp_path / "c.pt").vertices, torch.ones(3, 2))


def test_save_errors_name_the_users_path(tmp_path):
    model = SFVQ.from_vertices(torch.randn(3, 2))
    with pytest.raises(ValueError, match="is a directory") as err:
        model.save(tmp_path)
    _one_line_naming(err, tmp_path)
    missing = tmp_path / "no" / "c.pt"
    with pytest.raises(ValueError, match="does not exist") as err:
        model.save(missing)
    assert ".tmp" not in str(err.value) and "c.pt" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == []
