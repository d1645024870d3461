"""Training input: data sources (plugin kind ``data``) that yield packed token batches.

Every source yields, per host, ``int32[local_batch, seq_len + 1]`` arrays (inputs are
``[:, :-1]``, targets ``[:, 1:]``), or packed batches (a dict of such arrays with segment ids
and a loss mask, ``framework/train/packing.py``) when the source's ``packed`` is true, from an
iterator whose position is a JSON-able state saved in each checkpoint, so a resumed run sees
exactly the batches an uninterrupted one would. ``local_batch = global_batch / process_count``;
the trainer assembles the global array with ``jax.make_array_from_process_local_data``.

Sources (select in gin with ``DATA = @data.NAME()``):

* ``token_shards`` — the output of ``deepdive tokenize``: ArrayRecord shards (one record = one
  document's token ids, ``eot_id`` appended) read with grain: globally shuffled per epoch,
  split across hosts, concatenated and split into rows of ``seq_len + 1`` (no padding),
  batched. Validation comes from the ``validation`` split, bits per byte from the manifest.
* ``synthetic`` — uniformly random tokens (as MaxText's synthetic dataset) for throughput runs.
* ``text_file`` — a small text file tokenized in memory; the first ``train_fraction`` of the
  tokens train, the rest validate (nanoGPT's Shakespeare recipe); batches are random windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.core.registry import DATA
from framework.train import packing

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str | Path) -> Any:
    """A data path: a bucket URL as given (an ``epath.Path``); a local one absolute, else relative
    to the working directory, else to the repository."""
    if paths.is_url(path):
        return paths.as_path(path)
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    candidate = REPO_ROOT / p
    return candidate if candidate.exists() else p


def _seed_rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def local_batch_size(batch_size: int, process_count: int) -> int:
    if batch_size % process_count:
        raise ConfigError(
            f"batch size {batch_size} is not divisible by the {process_count} processes"
        )
    return batch_size // process_count


class BatchIterator:
    """Base class: ``next(it)`` is ``int32[local_batch, seq_len+1]``; ``get_state``/``set_state``
    save and restore the position (JSON-able dicts)."""

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class _CountedIterator(BatchIterator):
    """A stateless batch function of (seed, index): the state is the index."""

    def __init__(self, make_batch, seed: int):
        self._make_batch, self._seed, self._index = make_batch, seed, 0

    def __next__(self) -> np.ndarray:
        batch = self._make_batch(self._seed, self._index)
        self._index += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"index": self._index}

    def set_state(self, state: dict[str, Any]) -> None:
        self._index = int(state["index"])


class DataSource:
    """What the trainer asks of an input source (see the module docstring)."""

    packed: bool = False  # batches are packing.py's dicts (segment ids, loss mask)

    tokenizer: Any = None  # a tokenizer object to copy into MODEL_DIR/tokenizer, when known
    tokenizer_path: str | None = None  # or a tokenizer directory to copy
    vocab_size: int | None = None

    def train_iterator(
        self,
        batch_size: int,
        seq_len: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        vocab_size: int | None = None,
    ) -> BatchIterator:
        raise NotImplementedError

    def eval_batches(
        self,
        batch_size: int,
        seq_len: int,
        num_batches: int,
        process_index: int = 0,
        process_count: int = 1,
        vocab_size: int | None = None,
    ) -> list[np.ndarray]:
        raise NotImplementedError

    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the validation split (None: bits per byte not defined)."""
        return None

    def describe(self) -> str:
        return type(self).__name__


# -- synthetic ------------------------------------------------------------------------------------


@DATA.register("synthetic")
class Synthetic(DataSource):
    """Uniform random tokens in ``[0, vocab_size)`` (the model's vocabulary when not given)."""

    def __init__(self, vocab_size: int | None = None, seed_offset: int = 0):
        self.vocab_size = vocab_size
        self.seed_offset = seed_offset

    def _vocab(self, vocab_size: int | None) -> int:
        vocab = self.vocab_size or vocab_size
        if not vocab:
            raise ConfigError("data.synthetic: vocab_size unknown (set data.synthetic.vocab_size)")
        return int(vocab)

    def _iterator(self, batch_size, seq_len, seed, process_index, process_count, vocab_size):
        local = local_batch_size(batch_size, process_count)
        vocab = self._vocab(vocab_size)

        def make(seed: int, index: int) -> np.ndarray:
            rng = _seed_rng(seed, self.seed_offset, index, process_index)
            return rng.integers(0, vocab, size=(local, seq_len + 1), dtype=np.int32)

        return _CountedIterator(make, seed)

    def train_iterator(self, batch_size, seq_len, seed, process_index=0, process_count=1,
                       vocab_size=None) -> BatchIterator:  # fmt: skip
        return self._iterator(batch_size, seq_len, seed, process_index, process_count, vocab_size)

    def eval_batches(self, batch_size, seq_len, num_batches, process_index=0, process_count=1,
                     vocab_size=None) -> list[np.ndarray]:  # fmt: skip
        it = self._iterator(batch_size, seq_len, 10_007, process_index, process_count, vocab_size)
        return [next(it) for _ in range(num_batches)]

    def describe(self) -> str:
        return f"synthetic random tokens (vocab {self.vocab_size or 'of the model'})"


# -- text file ------------------------------------------------------------------------------------


@DATA.register("text_file")
class TextFile(DataSource):
    """A text file tokenized in memory; the first ``train_fraction`` of tokens train, the rest
    validate; each batch row is a random window of ``seq_len + 1`` tokens (nanoGPT style)."""

    def __init__(self, path: str = "", tokenizer: Any = None, train_fraction: float = 0.9):
        if not path:
            raise ConfigError("data.text_file: path is not set")
        if tokenizer is None:
            raise ConfigError("data.text_file: tokenizer is not set (e.g. @tokenizers.bytes())")
        if not 0.0 < train_fraction < 1.0:
            raise ConfigError(f"data.text_file: train_fraction {train_fraction} not in (0, 1)")
        self.path = resolve_path(path)
        if isinstance(tokenizer, str | Path):
            self.tokenizer_path, self.tokenizer = str(tokenizer), None
        else:
            self.tokenizer = tokenizer
        self.train_fraction = train_fraction
        self._splits: dict[str, np.ndarray] | None = None
        self._val_bytes = 0

    def _load(self) -> dict[str, np.ndarray]:
        if self._splits is None:
            if not self.path.is_file():
                raise InputError(f"data.text_file: {self.path} not found")
            if self.tokenizer is None:
                from framework.tokenize.files import load_tokenizer

                self.tokenizer = load_tokenizer(self.tokenizer_path)
            text = self.path.read_text(encoding="utf-8")
            ids = np.asarray(self.tokenizer.encode(text), dtype=np.int32)
            cut = int(len(ids) * self.train_fraction)
            self._splits = {"train": ids[:cut], "validation": ids[cut:]}
            self.vocab_size = int(self.tokenizer.vocab_size)
            val = self._splits["validation"].tolist()
            if hasattr(self.tokenizer, "decode_bytes"):
                self._val_bytes = len(self.tokenizer.decode_bytes(val))
            else:
                self._val_bytes = len(self.tokenizer.decode(val).encode("utf-8"))
        return self._splits

    def _windows(self, split, batch_size, seq_len, seed, process_index, process_count):
        tokens = self._load()[split]
        local = local_batch_size(batch_size, process_count)
        if len(tokens) < seq_len + 2:
            raise InputError(
                f"data.text_file: the {split} split of {self.path} has {len(tokens)} tokens, "
                f"fewer than seq_len + 2 = {seq_len + 2}"
            )
        high = len(tokens) - seq_len - 1

        def make(seed: int, index: int) -> np.ndarray:
            starts = _seed_rng(seed, index, process_index).integers(0, high + 1, size=local)
            return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int32)

        return _CountedIterator(make, seed)

    def train_iterator(self, batch_size, seq_len, seed, process_index=0, process_count=1,
                       vocab_size=None) -> BatchIterator:  # fmt: skip
        return self._windows("train", batch_size, seq_len, seed, process_index, process_count)

    def eval_batches(self, batch_size, seq_len, num_batches, process_index=0, process_count=1,
                     vocab_size=None) -> list[np.ndarray]:  # fmt: skip
        it = self._windows("validation", batch_size, seq_len, 1337, process_index, process_count)
        return [next(it) for _ in range(num_batches)]

    def bytes_per_token(self) -> float | None:
        splits = self._load()
        return self._val_bytes / max(1, len(splits["validation"]))

    def describe(self) -> str:
        return f"text file {self.path} ({self.train_fraction:.0%} train)"


# -- token shards (grain over ArrayRecord) --------------------------------------------------------


class _GrainIterator(BatchIterator):
    def __init__(self, dataset, separator: int | None = None):
        self._dataset = dataset
        self._it = iter(dataset)
        self._separator = separator  # documents as segments after this token (packing.py)

    def __next__(self) -> Any:
        rows = np.asarray(next(self._it)["tokens"], dtype=np.int32)
        if self._separator is None:
            return rows
        return packing.segments_after_separator(rows, self._separator)

    def get_state(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._it.get_state(), default=_json_default))

    def set_state(self, state: dict[str, Any]) -> None:
        self._it.set_state(state)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot save {type(value).__name__} in the iterator state")


@DATA.register("token_shards")
class TokenShards(DataSource):
    """Token shards written by ``deepdive tokenize`` (``path`` = its OUTPUT_DIR with
    ``manifest.json``). ``segment_ids``: keep the documents that share a row apart (attention
    stops and positions restart after each end-of-text token) instead of letting a document
    attend to the previous one, as nanoGPT does; batches are then packed batches
    (``framework.train.packing``)."""

    def __init__(self, path: str = "", shuffle: bool = True, segment_ids: bool = False):
        if not path:
            raise ConfigError("data.token_shards: path is not set")
        self.path = resolve_path(path)
        self.shuffle = shuffle
        self.packed = segment_ids
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            path = self.path / "manifest.json"
            if not path.exists():
                raise InputError(f"data.token_shards: {path} not found (run deepdive tokenize)")
            try:
                self._manifest = json.loads(path.read_text())
                self._manifest["splits"]["train"]["shards"]
            except (ValueError, KeyError) as error:
                raise InputError(f"{path}: malformed manifest ({error})") from None
            if not (self.path / "COMPLETED").exists():
                raise InputError(f"data.token_shards: {self.path} has no COMPLETED marker")
            self.vocab_size = int(self._manifest["vocab_size"])
            self.tokenizer_path = self._manifest.get("tokenizer")
        return self._manifest

    def _dataset(self, split: str, seed: int | None, process_index: int, process_count: int):
        import grain

        manifest = self.manifest
        info = manifest["splits"].get(split)
        if not info or not info.get("shards"):
            raise InputError(f"data.token_shards: {self.path} has no {split} shards")
        paths = [str(self.path / s) for s in info["shards"]]
        dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        source = grain.sources.ArrayRecordDataSource(paths)
        if len(source) < process_count:
            raise InputError(
                f"data.token_shards: {split} has {len(source)} documents, fewer than the "
                f"{process_count} processes"
            )
        ds = grain.MapDataset.source(source)
        if seed is not None:
            ds = ds.shuffle(seed=int(seed) & 0xFFFFFFFF)
        ds = ds.repeat(None)
        ds = ds[process_index::process_count]
        return ds.map(
            lambda record: {"tokens": np.frombuffer(record, dtype=dtype).astype(np.int32)}
        )

    def _packed(self, split, batch_size, seq_len, seed, process_index, process_count):
        from grain import experimental as gx

        local = local_batch_size(batch_size, process_count)
        ds = self._dataset(split, seed, process_index, process_count).to_iter_dataset()
        ds = gx.ConcatThenSplitIterDataset(ds, length_struct={"tokens": seq_len + 1})
        return ds.batch(local, drop_remainder=True)

    def train_iterator(self, batch_size, seq_len, seed, process_index=0, process_count=1,
                       vocab_size=None) -> BatchIterator:  # fmt: skip
        seed = seed if self.shuffle else None
        return _GrainIterator(
            self._packed("train", batch_size, seq_len, seed, process_index, process_count),
            self._separator(),
        )

    def eval_batches(self, batch_size, seq_len, num_batches, process_index=0, process_count=1,
                     vocab_size=None) -> list[np.ndarray]:  # fmt: skip
        it = _GrainIterator(
            self._packed("validation", batch_size, seq_len, None, process_index, process_count),
            self._separator(),
        )
        return [next(it) for _ in range(num_batches)]

    def _separator(self) -> int | None:
        if not self.packed:
            return None
        if "eot_id" not in self.manifest:
            raise InputError(f"data.token_shards: {self.path}/manifest.json has no eot_id")
        return int(self.manifest["eot_id"])

    def bytes_per_token(self) -> float | None:
        info = self.manifest["splits"].get("validation") or {}
        if not info.get("tokens") or not info.get("bytes"):
            return None
        return float(info["bytes"]) / float(info["tokens"])

    def describe(self) -> str:
        return f"token shards {self.path}"
