"""The lexical channel: analysis, BM25 scoring, persistence and reconciliation with the store."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hei_nw_plugin.lexical import LexicalIndex, analyze, entities, term_ids
from hei_nw_plugin.memory import HEIMemory

SEED = 7


def ids(text: str) -> np.ndarray:
    return term_ids(analyze(text), SEED)


def test_analyze_stems_and_drops_stopwords_and_possessives() -> None:
    assert analyze("Where is Mary's football? She journeyed to the kitchens before 5 pm.") == \
        ["mari", "footbal", "journei", "kitchen", "5", "pm"]
    assert analyze("the and of") == []


def test_entities_are_capitalised_names_not_boilerplate() -> None:
    assert entities("Mary went to the kitchen. Thanks, John!") == {"mari", "john"}
    assert entities("Where is the football? I think so.") == set()
    assert entities("Caroline: Hey Mel! Good to see you.") == {"carolin", "mel"}


def test_bm25_matches_the_okapi_formula_and_ranks_rare_terms_higher() -> None:
    docs = ["Mary went to the kitchen.", "John went to the kitchen.", "Mary picked up the football.", "Daniel slept."]
    lex = LexicalIndex(k1=1.2, b=0.75)
    lex.add([10, 11, 12, 13], [ids(d) for d in docs], [0.0, 1.0, 2.0, 3.0])
    hits = lex.search(ids("Where is the football Mary?"), 10)
    assert hits.seqs.tolist()[0] == 12 and set(hits.seqs.tolist()) == {10, 12}
    # Score of doc 12 by hand: terms mari (df 2) and footbal (df 1), each tf 1, doc length 3, average 2.5.
    n, avg, dl = 4, (3 + 3 + 3 + 2) / 4, 3

    def part(df: int) -> float:
        return math.log1p((n - df + 0.5) / (df + 0.5)) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * dl / avg))

    assert abs(hits.best - (part(2) + part(1))) < 1e-5
    np.testing.assert_allclose(lex.score(ids("Where is the football Mary?"), [12, 13, 99]), [hits.best, 0.0, 0.0], rtol=1e-5)


def test_remove_updates_frequencies_and_compaction_keeps_results() -> None:
    lex = LexicalIndex()
    docs = [f"note {i} about topic{i % 7}" for i in range(200)]
    lex.add(list(range(1, 201)), [ids(d) for d in docs], [float(i) for i in range(200)])
    before = lex.search(ids("topic3"), 5).seqs.tolist()
    lex.remove(range(1, 150))  # compacts: fewer than half the rows stay alive
    assert len(lex) == 51 and lex.document_frequency(int(ids("note")[0])) == 51
    after = lex.search(ids("topic3"), 100).seqs.tolist()
    assert all(s > 149 for s in after) and set(after) == {s for s in range(150, 201) if (s - 1) % 7 == 3}
    assert before and all(lex.time_of(s) == s - 1 for s in after)


def test_save_load_round_trip_and_a_corrupt_file_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "x.lex.npz"
    lex = LexicalIndex(path=path)
    lex.add([1, 2], [ids("alpha beta beta"), ids("gamma")], [5.0, 6.0])
    lex.save()
    again = LexicalIndex(path=path)
    assert again.loaded_from_disk and again.terms_of(1) == lex.terms_of(1) and again.time_of(2) == 6.0
    assert again.search(ids("beta"), 3).seqs.tolist() == [1]
    path.write_bytes(b"not an npz")
    broken = LexicalIndex(path=path)
    assert not broken.loaded_from_disk and len(broken) == 0


def test_a_deleted_trace_leaves_the_lexical_file_and_reopening_reconciles(mem_factory: Callable[..., HEIMemory],
                                                                          tmp_path: Path) -> None:
    mem = mem_factory(data_dir=tmp_path)
    a = mem.write({"text": "The zeppelin manual sits in the attic.", "force": True}, namespace="n")
    mem.write({"text": "Groceries: lemons and basil.", "force": True}, namespace="n")
    mem.delete(a.trace_id, namespace="n")
    files = list(tmp_path.rglob("*.lex.npz"))
    assert len(files) == 1
    with np.load(files[0]) as data:
        assert int(ids("zeppelin")[0]) not in set(data["terms"].tolist())
    mem.close()
    files[0].unlink()  # a lost index file is rebuilt from the store
    again = mem_factory(data_dir=tmp_path)
    hits = again.recall("lemons basil", k=1, namespace="n")
    assert hits.traces[0].trace.text.startswith("Groceries") and hits.traces[0].lexical_score > 0
