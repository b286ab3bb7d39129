"""The vocabulary's record of which words the training splits hold: built, saved, read back, refused when damaged,
and absent from models written before it."""
import json
from pathlib import Path

import pytest

from mtl_tagger.errors import InputError
from mtl_tagger.vocab import Vocab

TRAIN = [["Acme", "gold", "chain"], ["gold", "ring"]]


def test_training_words_come_first_and_are_told_apart() -> None:
    vocab = Vocab.build(TRAIN, {"T": [["B-brand", "B-color", "O"], ["B-color", "O"]]}, ["silver", "gold", "brass"])
    assert vocab.train_words == 4 and set(vocab.words[2:6]) == {"Acme", "gold", "chain", "ring"}
    assert vocab.words[6:] == ["silver", "brass"]
    assert vocab.trained(["gold", "silver", "Zyxq", "ring", "<unk>", "<pad>"]).tolist() == [
        True, False, False, True, False, False]


def test_saved_and_read_back_and_old_files_know_nothing(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    vocab = Vocab.build(TRAIN, {"T": [["O"] * 3, ["O"] * 2]}, ["silver"])
    vocab.save(path)
    assert Vocab.load(path).train_words == 4 and Vocab.load(path).trained(["silver"]).tolist() == [False]
    data = json.loads(path.read_text())
    del data["train_words"]
    path.write_text(json.dumps(data))
    assert Vocab.load(path).train_words is None and Vocab.load(path).trained(["silver", "x"]).tolist() == [True, True]
    for bad in (-1, 6, 2.0, "4", True):
        path.write_text(json.dumps({**data, "train_words": bad}))
        with pytest.raises(InputError, match="train_words must be a whole number from 0 to 5"):
            Vocab.load(path)
