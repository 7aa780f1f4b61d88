"""``graphnet export``: arguments (the translation itself is tested in tests/export)."""
from __future__ import annotations


def test_output_that_is_a_directory_is_named_and_refused(run_cli, specs_dir, tmp_path):
    status, out, err = run_cli("export", specs_dir / "lenet5.toml", "-o", tmp_path)
    assert status == 2 and "Traceback" not in err
    assert str(tmp_path) in err and "directory" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


def _read(path):
    return path.read_bytes() if path.is_file() else None


def test_output_over_a_file_the_export_reads_is_refused_and_the_file_kept(run_cli, specs_dir,
                                                                          tmp_path):
    """`graphnet export net.toml -o net.toml` replaced the spec by its PyTorch translation;
    so did an -o naming the spec through a link, the --plugin file or (--to onnx) the
    checkpoint the parameters come from."""
    import shutil

    spec = shutil.copy(specs_dir / "lenet5.toml", tmp_path / "net.toml")
    plugin = shutil.copy(specs_dir.parent / "plugins" / "examples" / "prelu.py",
                         tmp_path / "prelu.py")
    (tmp_path / "link.py").symlink_to("net.toml")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"the parameters of a finished run")
    cases = [(["-o", spec], spec, "spec"), (["-o", tmp_path / "link.py"], spec, "spec"),
             (["-o", plugin, "--plugin", plugin], plugin, "plugin"),
             (["--to", "onnx", "--checkpoint", run_dir, "-o", run_dir / "checkpoint.npz"],
              run_dir / "checkpoint.npz", "checkpoint")]
    for flags, kept, what in cases:
        before = _read(kept)
        status, out, err = run_cli("export", spec, *flags)
        assert status == 2 and "Traceback" not in err and err.count("error:") == 1, err
        assert f"field '-o': the output is a file this command reads: expected a file other " \
               f"than the {what}, found {kept}" in err
        assert _read(kept) == before
    assert (tmp_path / "link.py").is_symlink()
