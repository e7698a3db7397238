"""mirror/lfsfill.FillingStore's bounds: a reader cannot make a slave ask its master for
made-up objects without limit (the read-through itself runs against a real master in
tests/cluster/test_mirror_edges.py)."""

from __future__ import annotations

import hashlib
import os

from gitserve.lfs.store import LfsStore
from gitserve.mirror import lfsfill


def test_a_request_fetches_at_most_max_fills_and_misses_are_remembered(tmp_path) -> None:
    asked: list[str] = []
    real = os.urandom(1000)
    real_oid = hashlib.sha256(real).hexdigest()

    def master(oid: str, store: LfsStore) -> None:  # has one object, the others not
        asked.append(oid)
        if oid == real_oid:
            store.receive(oid, len(real), [real])

    made_up = [hashlib.sha256(os.urandom(8)).hexdigest() for _ in range(150)]
    store = lfsfill.FillingStore(tmp_path / "a", 0, master)
    assert [store.size(o) for o in made_up] == [None] * 150
    assert len(asked) == lfsfill.MAX_FILLS
    asked.clear()
    again = lfsfill.FillingStore(tmp_path / "a", 0, master)  # the next request
    assert [again.size(o) for o in made_up[:lfsfill.MAX_FILLS]] == [None] * lfsfill.MAX_FILLS
    assert asked == []  # the master said no a moment ago
    assert again.size(real_oid) == len(real) and asked == [real_oid]
    assert again.size(real_oid) == len(real) and asked == [real_oid]  # stored: asked once
