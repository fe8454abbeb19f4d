"""The output rule of latentfast._io (refuse an existing target unless overwrite; atomic; the umask respected;
errors name the flag and the user's path) and the image formats of the image outputs (issue 10)."""
import os
import stat

import pytest
from PIL import Image

from latentfast import _io, cli


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_outputs_respect_the_umask(tmp_path, umask_027):
    f = _io.atomic_write_bytes(tmp_path / "f.bin", b"x", name="--out")
    assert _mode(f) == 0o640  # 0666 & ~027, as open() would give (tempfile alone gives 0600)
    with _io.atomic_output_dir(tmp_path / "d", name="--out") as tmp:
        (tmp / "a").write_bytes(b"")
    assert _mode(tmp_path / "d") == 0o750
    os.umask(0o022)
    g = _io.atomic_write_bytes(tmp_path / "g.bin", b"x", name="--out")
    assert _mode(g) == 0o644 and (tmp_path / "g.bin").read_bytes() == b"x"


def test_one_rule_for_files_and_directories(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"user data")
    with pytest.raises(ValueError, match=r"--out: .*f.bin exists; .*--overwrite"):
        _io.atomic_write_bytes(f, b"new", name="--out")
    assert f.read_bytes() == b"user data"
    _io.atomic_write_bytes(f, b"new", overwrite=True, name="--out")
    assert f.read_bytes() == b"new"
    with pytest.raises(ValueError, match="--out: .* is a directory"):
        _io.atomic_write_bytes(tmp_path, b"new", overwrite=True, name="--out")
    with pytest.raises(ValueError, match="--out: .* is not a directory"):
        with _io.atomic_output_dir(f, overwrite=True, name="--out"):
            pass
    (tmp_path / "empty").mkdir()
    with _io.atomic_output_dir(tmp_path / "empty", name="--out") as tmp:  # an empty directory holds no data
        (tmp / "a").write_bytes(b"1")
    with pytest.raises(ValueError, match="not empty"):
        with _io.atomic_output_dir(tmp_path / "empty", name="--out"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "f.bin"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_failures_leave_the_old_target_and_no_temporary(tmp_path, exc):
    f = tmp_path / "f.bin"
    f.write_bytes(b"user data")
    with pytest.raises(exc):
        with _io.atomic_output_file(f, overwrite=True, name="--out") as tmp:
            tmp.write_bytes(b"half")
            raise exc()
    d = tmp_path / "d"
    d.mkdir()
    (d / "old").write_text("user data")
    with pytest.raises(exc):
        with _io.atomic_output_dir(d, overwrite=True, name="--out") as tmp:
            (tmp / "new").write_text("half")
            raise exc()
    assert f.read_bytes() == b"user data" and [p.name for p in d.iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]


def test_write_errors_name_the_flag_and_the_users_path(tmp_path):
    target = tmp_path / "curve.pt"
    with pytest.raises(ValueError) as info:
        with _io.atomic_output_file(target, name="--out") as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    msg = str(info.value)
    assert msg.startswith("--out: could not write") and str(target) in msg and "No space left" in msg
    assert ".tmp" not in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_traverse_writes_the_format_its_suffix_names(tmp_path, tiny_generator, suffix, fmt):
    out = tmp_path / f"t{suffix}"
    assert cli.main(["traverse", "-k", "1", "--frames", "2", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == fmt
    assert cli.main(["traverse", "-k", "1", "--frames", "2", "--out", str(out)]) == 2  # exists
    assert cli.main(["traverse", "-k", "1", "--frames", "2", "--out", str(out), "--overwrite"]) == 0
