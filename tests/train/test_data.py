"""Input sources: packing, host split, resumable state, text split, bytes per token."""

import json

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from framework.core.errors import InputError
from framework.train import input as data


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    docs = {"train": [], "validation": []}
    for split, n in (("train", 40), ("validation", 6)):
        (tmp_path / split).mkdir()
        writer = ArrayRecordWriter(str(tmp_path / split / "00000.array_record"), "group_size:1")
        for _ in range(n):
            doc = np.append(rng.integers(0, 100, rng.integers(3, 30)), 100).astype("<u2")
            docs[split].append(doc)
            writer.write(doc.tobytes())
        writer.close()
    manifest = {"tokenizer": None, "dtype": "uint16", "vocab_size": 101, "eot_id": 100, "splits": {
        s: {"documents": len(d), "tokens": int(sum(map(len, d))), "bytes": 3 * int(sum(map(len, d))),
            "shards": [f"{s}/00000.array_record"]} for s, d in docs.items()}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "COMPLETED").write_text("")
    return tmp_path, docs


def test_token_shards_pack_every_token_once_per_epoch(shards):
    path, docs = shards
    src = data.TokenShards(str(path))
    total = sum(len(d) for d in docs["train"])
    it = src.train_iterator(batch_size=2, seq_len=7, seed=3)
    rows = np.concatenate([next(it) for _ in range(total // 16)])
    assert rows.shape[1] == 8 and rows.dtype == np.int32
    # packing concatenates whole shuffled documents: the first epoch's multiset of tokens is
    # a prefix-multiset of all training tokens, and EOT separators survive
    flat = rows.reshape(-1)
    assert np.count_nonzero(flat == 100) >= len(docs["train"]) * len(flat) // total - 2
    assert np.isin(flat, np.concatenate(docs["train"])).all()
    assert src.bytes_per_token() == 3.0


def test_token_shards_state_resumes_the_same_batches(shards):
    path, _ = shards
    src = data.TokenShards(str(path))
    it = src.train_iterator(4, 9, seed=1)
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(6)]
    again = src.train_iterator(4, 9, seed=1)
    again.set_state(state)
    for a, b in zip(expected, [next(again) for _ in range(6)], strict=True):
        np.testing.assert_array_equal(a, b)


def test_hosts_read_disjoint_documents(shards):
    path, _ = shards
    src = data.TokenShards(str(path))
    a = src._dataset("train", 0, 0, 2)
    b = src._dataset("train", 0, 1, 2)
    first = {a[i]["tokens"].tobytes() for i in range(20)}
    second = {b[i]["tokens"].tobytes() for i in range(20)}
    assert not first & second
    assert src.train_iterator(4, 9, 0, process_index=1, process_count=2).__next__().shape == (2, 10)


def test_missing_manifest_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="manifest.json not found"):
        data.TokenShards(str(tmp_path)).train_iterator(2, 4, 0)


class _Bytes:
    vocab_size, eot_id = 257, 256

    def encode(self, text, **_):
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids):
        return bytes(ids)


def test_text_file_splits_90_10_and_counts_bytes(tmp_path):
    text = "héllo wörld " * 200
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    src = data.TextFile(str(tmp_path / "t.txt"), tokenizer=_Bytes())
    n = len(text.encode("utf-8"))
    it = src.train_iterator(4, 16, seed=0)
    batch = next(it)
    assert batch.shape == (4, 17)
    train_bytes = text.encode("utf-8")[: int(n * 0.9)]
    for row in batch:  # every row is a window of the training 90%
        assert bytes(row.tolist()) in train_bytes
    assert src.bytes_per_token() == 1.0
    val = src.eval_batches(4, 16, 2)
    assert bytes(val[0][0].tolist()) in text.encode("utf-8")[int(n * 0.9) :]


def test_synthetic_is_a_function_of_seed_and_step():
    src = data.Synthetic(vocab_size=50)
    a, b = src.train_iterator(4, 8, 0), src.train_iterator(4, 8, 0)
    next(a)
    b.set_state(a.get_state())
    np.testing.assert_array_equal(next(a), next(b))
    assert next(a).max() < 50


def test_token_shards_with_segment_ids_keep_documents_apart(shards):
    path, _ = shards
    plain = data.TokenShards(str(path)).train_iterator(batch_size=2, seq_len=31, seed=3)
    packed = data.TokenShards(str(path), segment_ids=True).train_iterator(2, 31, seed=3)
    for _ in range(5):
        rows, batch = next(plain), next(packed)
        assert np.array_equal(batch["tokens"], rows)  # the same rows, now with segments
        for row, segments in zip(rows, batch["segment_ids"], strict=True):
            # a new segment starts right after each end-of-text token (id 100), nowhere else
            starts = np.flatnonzero(np.diff(segments)) + 1
            assert np.array_equal(starts, np.flatnonzero(row[:-1] == 100) + 1)
        assert batch["loss_mask"].all()
