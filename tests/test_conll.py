"""CoNLL reading/writing: the format contract, BIO repair and splitting, and errors that name file:line."""
import random
from pathlib import Path

import pytest

from mtl_tagger import conll
from mtl_tagger.conll import ReadStats, Sentence, chunks, read_columns, read_conll, repair_bio, write_conll
from mtl_tagger.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "conll"


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The absl warnings read_conll logs, formatted."""
    seen: list[str] = []
    monkeypatch.setattr(conll.logging, "warning", lambda msg, *args: seen.append(msg % args))
    return seen


def _file(tmp_path: Path, data: bytes, name: str = "data.conll") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_fixture_separators_lines_and_repair(warnings: list[str]) -> None:
    stats = ReadStats()
    got = read_conll(FIXTURES / "sample.conll", stats=stats)
    assert [s.line for s in got] == [1, 8, 11, 16, 20]
    assert got[0] == Sentence(
        ("Levi", "slim", "fit", "jeans"), ("B-brand", "B-fit-type", "I-fit-type", "O"), 1)
    assert got[2].tags == ("B-fabric", "I-fabric", "O")  # dangling I- at the start repaired
    assert got[4] == Sentence(("single",), ("O",), 20)  # last sentence without a trailing newline
    assert stats == ReadStats(sentences=5, tokens=12, repaired=1, split=0)
    assert len(warnings) == 1 and "sample.conll" in warnings[0] and "repaired 1 " in warnings[0]


def test_stats_accumulate_across_files() -> None:
    stats = ReadStats()
    read_conll(FIXTURES / "sample.conll", stats=stats)
    read_conll(FIXTURES / "sample.conll", stats=stats)
    assert stats == ReadStats(sentences=10, tokens=24, repaired=2, split=0)


def test_round_trip_and_layout(tmp_path: Path) -> None:
    sents = [(["a", "b-c", "é"], ["B-x-y", "I-x-y", "O"]), (["d"], ["I-z"])]
    path = tmp_path / "out.conll"
    write_conll(path, sents)
    got = read_conll(path)
    assert [(list(s.tokens), list(s.tags)) for s in got[:1]] == sents[:1]
    assert got[1] == Sentence(("d",), ("B-z",), 5)
    assert path.read_text(encoding="utf-8") == "a\tB-x-y\nb-c\tI-x-y\né\tO\n\nd\tI-z\n\n"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_write_three_columns(tmp_path: Path) -> None:
    path = tmp_path / "pred.conll"
    write_conll(path, [(("a", "b"), ("B-x", "O"), ("O", "O"))])
    assert path.read_text(encoding="utf-8") == "a\tB-x\tO\nb\tO\tO\n\n"


@pytest.mark.parametrize("cols", [
    [("a", "b"), ("O",)],  # columns of different lengths
    [(), ()],  # empty sentence
    [("a\tb",), ("O",)],  # a tab inside a cell
    [(" ",), ("O",)],  # blank token
])
def test_write_rejects_unreadable_output_and_keeps_old_file(tmp_path: Path, cols: list) -> None:
    path = _file(tmp_path, b"old\tO\n")
    with pytest.raises(ValueError):
        write_conll(path, [cols])
    assert path.read_bytes() == b"old\tO\n"
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("data, line, words", [
    (b"a\tO\nb O\n", 2, ["1 tab-separated", "TAB", "space-separated"]),
    (b"a\tO\n\n\nb\tO\tO\n", 4, ["3 tab-separated", "TAB"]),
    (b"a\tO\n\tO\n", 2, ["empty token"]),
    (b"a\tO\n  \tO\n", 2, ["empty token"]),
    (b"a\tX-a\n", 1, ["malformed tag 'X-a'"]),
    (b"a\tO\nb\tB-\n", 2, ["malformed tag 'B-'"]),
    (b"a\tb-x\n", 1, ["malformed tag"]),
    (b"a\tI-\n", 1, ["malformed tag"]),
    (b"a\to\n", 1, ["malformed tag"]),
    (b"a\t\n", 1, ["malformed tag ''"]),
    (b"a\tB-x y\n", 1, ["malformed tag"]),
    (b"a\tO\n\nb\xff\tO\n", 3, ["UTF-8"]),
    (b"a\tO\r\nb\xc3\tO\r\n", 2, ["UTF-8"]),
])
def test_errors_name_file_line_and_problem(tmp_path: Path, data: bytes, line: int, words: list[str]) -> None:
    path = _file(tmp_path, data, "bad_input.conll")
    with pytest.raises(InputError) as e:
        read_conll(path)
    msg = str(e.value)
    assert f"bad_input.conll:{line}: " in msg
    for word in words:
        assert word in msg


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    path = _file(tmp_path, data, "empty.conll")
    with pytest.raises(InputError, match=r"empty\.conll: no sentences"):
        read_conll(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.conll: .*not found"):
        read_conll(tmp_path / "nowhere.conll")


@pytest.mark.parametrize("data, line, where", [
    (b"a\tO\nb\tI-x\n", 2, "I-x after O"),
    (b"a\tO\n\nb\tI-x\n", 3, "I-x at the start"),
    (b"a\tB-y\nb\tI-x\n", 2, "I-x after B-y"),
    (b"a\tB-x\nb\tI-x\nc\tI-y\n", 3, "I-y after I-x"),
])
def test_strict_bio_rejects_dangling_inside(tmp_path: Path, data: bytes, line: int, where: str) -> None:
    path = _file(tmp_path, data, "strict.conll")
    with pytest.raises(InputError) as e:
        read_conll(path, strict_bio=True)
    assert f"strict.conll:{line}: {where}" in str(e.value) and "B-" in str(e.value)


def test_strict_bio_accepts_valid_bio_and_names_fixture_line(tmp_path: Path) -> None:
    path = _file(tmp_path, b"a\tB-x\nb\tI-x\nc\tB-y\n\nd\tO\n")
    assert read_conll(path, strict_bio=True) == read_conll(path)
    with pytest.raises(InputError, match=r"sample\.conll:11: I-fabric at the start"):
        read_conll(FIXTURES / "sample.conll", strict_bio=True)


@pytest.mark.parametrize("tags, want, count", [
    ([], [], 0),
    (["O", "B-a", "I-a"], ["O", "B-a", "I-a"], 0),
    (["I-a", "I-a"], ["B-a", "I-a"], 1),
    (["O", "I-a", "O", "I-a"], ["O", "B-a", "O", "B-a"], 2),
    (["B-a", "I-b", "I-b", "I-a"], ["B-a", "B-b", "I-b", "B-a"], 2),
    (["B-x-y", "I-x-y", "I-x"], ["B-x-y", "I-x-y", "B-x"], 1),
])
def test_repair_bio(tags: list[str], want: list[str], count: int) -> None:
    assert repair_bio(tags) == (want, count)


def test_max_len_split(tmp_path: Path, warnings: list[str]) -> None:
    rows = [("t1", "B-a"), ("t2", "I-a"), ("t3", "I-a"), ("t4", "O"),
            ("t5", "I-b"), ("t6", "I-b"), ("t7", "O")]
    data = b"x\tO\n\n" + "".join(f"{t}\t{g}\n" for t, g in rows).encode()
    stats = ReadStats()
    got = read_conll(_file(tmp_path, data, "long.conll"), max_len=2, stats=stats)
    assert [s.tokens for s in got] == [("x",), ("t1", "t2"), ("t3", "t4"), ("t5", "t6"), ("t7",)]
    assert [s.tags for s in got] == [("O",), ("B-a", "I-a"), ("B-a", "O"), ("B-b", "I-b"), ("O",)]
    assert [s.line for s in got] == [1, 3, 5, 7, 9]
    # t5's I-b dangles in the file (repaired); t3's I-a only starts a piece (counted by the split).
    assert stats == ReadStats(sentences=5, tokens=8, repaired=1, split=1)
    assert len(warnings) == 2 and all("long.conll" in w for w in warnings)
    assert any("split 1 sentence" in w for w in warnings)


def test_max_len_not_reached_keeps_sentences(warnings: list[str]) -> None:
    stats = ReadStats()
    got = read_conll(FIXTURES / "sample.conll", max_len=4, stats=stats)
    assert len(got) == 5 and stats.split == 0 and not any("split" in w for w in warnings)


def test_max_len_must_be_positive() -> None:
    with pytest.raises(InputError, match="max_len"):
        read_conll(FIXTURES / "sample.conll", max_len=0)


def test_crlf_and_bom(tmp_path: Path) -> None:
    path = _file(tmp_path, b"\xef\xbb\xbfa\tB-x\r\nb\tI-x\r\n\r\n\r\nc\tO\r\n")
    assert read_conll(path) == [Sentence(("a", "b"), ("B-x", "I-x"), 1), Sentence(("c",), ("O",), 5)]


@pytest.mark.parametrize("tags, want", [
    ([], []),
    (["O", "O"], []),
    (["B-a", "I-a", "O"], [("a", 0, 2)]),
    (["O", "I-a", "I-a"], [("a", 1, 3)]),  # I- after O starts a chunk, chunk at sentence end
    (["I-a"], [("a", 0, 1)]),  # I- at the start
    (["B-a", "I-b"], [("a", 0, 1), ("b", 1, 2)]),
    (["I-a", "I-b"], [("a", 0, 1), ("b", 1, 2)]),
    (["B-a", "B-a", "I-a"], [("a", 0, 1), ("a", 1, 3)]),
    (["B-a", "I-a", "B-b", "O", "B-c"], [("a", 0, 2), ("b", 2, 3), ("c", 4, 5)]),
    (["B-x-y", "I-x-y", "I-x"], [("x-y", 0, 2), ("x", 2, 3)]),
])
def test_chunks(tags: list[str], want: list[tuple[str, int, int]]) -> None:
    assert chunks(tags) == want


def test_repair_keeps_conlleval_chunks() -> None:
    rng = random.Random(0)
    for _ in range(200):
        tags = [rng.choice(["O", "B-a", "I-a", "B-b", "I-b"]) for _ in range(rng.randint(0, 8))]
        repaired, _ = repair_bio(tags)
        assert chunks(repaired) == chunks(tags) and repair_bio(repaired) == (repaired, 0)


def test_chunks_rejects_malformed_tag() -> None:
    with pytest.raises(ValueError, match="malformed"):
        chunks(["B-a", "X"])


def test_columns_read_back_what_write_conll_wrote(tmp_path: Path) -> None:
    sentences = [(["a", "b"], ["B-x", "O"], ["B-x", "I-x"]), (["c"], ["O"], ["O"])]
    write_conll(tmp_path / "p.conll", sentences)
    assert read_columns(tmp_path / "p.conll") == [tuple(list(c) for c in s) for s in sentences]
    (tmp_path / "bad.conll").write_text("a\tO\tO\n\nb\tO\tO\nc\tO\n")
    with pytest.raises(InputError, match=r"bad\.conll:4: 2 tab-separated cells where line 3 has 3"):
        read_columns(tmp_path / "bad.conll")
