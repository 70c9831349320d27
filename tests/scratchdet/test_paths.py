from scratchdet.paths import increment_path


def test_save_dirs_are_incremented_unless_exist_ok(tmp_path):
    base = tmp_path / "runs" / "predict"
    assert increment_path(base) == base and base.is_dir()
    assert increment_path(base) == base.with_name("predict2")
    assert increment_path(base) == base.with_name("predict3")
    assert increment_path(base, exist_ok=True) == base
