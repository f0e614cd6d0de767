"""While an import runs the cyclic collector passes rarely; afterwards its threshold is restored."""
from __future__ import annotations

import gc
import threading

import pytest

from outbound.lists import importer


@pytest.fixture(autouse=True)
def usual_threshold():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_the_threshold_is_raised_inside_and_restored_after_even_on_error():
    with pytest.raises(RuntimeError):
        with importer.rare_collections():
            assert gc.get_threshold()[0] >= 70_000 and gc.get_threshold()[1:] == (10, 10)
            raise RuntimeError("the import failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_imports_restore_the_threshold_only_when_the_last_one_ends():
    first_inside, release_first = threading.Event(), threading.Event()

    def first_import():
        with importer.rare_collections():
            first_inside.set()
            release_first.wait(5)

    thread = threading.Thread(target=first_import)
    thread.start()
    first_inside.wait(5)
    with importer.rare_collections():
        pass                                    # the second import ends first
    assert gc.get_threshold()[0] >= 70_000     # the first is still running
    release_first.set()
    thread.join(5)
    assert gc.get_threshold() == (700, 10, 10)
