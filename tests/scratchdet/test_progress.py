import logging

from scratchdet import progress as progress_module
from scratchdet.progress import progress


def test_not_a_tty_logs_plain_lines_instead_of_redraws(monkeypatch, caplog):
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="scratchdet.progress"):
        items = []
        for item in (bar := progress(range(50), desc="work", interval=3600)):
            items.append(item)
            bar.set_postfix(loss=f"{item:.3f}")  # must not force a line per step
    assert items == list(range(50))
    lines = [r.getMessage() for r in caplog.records]
    # the interval is an hour: only the first draw and the closing line, not 50 redraws
    assert 1 <= len(lines) <= 2, lines
    assert lines[-1].startswith("work: 50/50 [") and lines[-1].endswith("loss=49.000]"), lines
    assert all("\r" not in line for line in lines)


def test_a_tty_gets_an_ordinary_tqdm_bar(monkeypatch, caplog):
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True)
    with caplog.at_level(logging.INFO, logger="scratchdet.progress"):
        bar = progress(range(3), desc="work")
        assert list(bar) == [0, 1, 2]
    assert not caplog.records
    assert bar.fp is not None and not isinstance(bar.fp, progress_module._LogLines)
