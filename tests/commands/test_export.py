"""``graphnet export``: arguments (the translation itself is tested in tests/export)."""
from __future__ import annotations


def test_output_that_is_a_directory_is_named_and_refused(run_cli, specs_dir, tmp_path):
    status, out, err = run_cli("export", specs_dir / "lenet5.toml", "-o", tmp_path)
    assert status == 2 and "Traceback" not in err
    assert str(tmp_path) in err and "directory" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []
