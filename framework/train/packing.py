"""Packing sequences into fixed-length rows with segment ids, and the iterator over packed rows.

A packed batch is ``{"tokens", "segment_ids", "loss_mask"}``, each ``int32[rows, seq_len + 1]``
(``framework.train.step.target_weights`` says which targets count):

* ``segment_ids``: 1, 2, … for the sequences of a row in order, 0 for padding. The model keeps
  attention inside a segment and restarts positions at its start, so a row computes exactly
  what each of its sequences would alone.
* ``loss_mask``: 1 on the tokens to learn (an SFT conversation's assistant tokens; every token
  in pretraining), 0 elsewhere.

:func:`pack_rows` packs whole sequences first-fit (never split: a conversation is learned in
one piece); :func:`segments_after_separator` marks documents in rows cut from a concatenated
token stream (pretraining), where each document ends with the end-of-text token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PackedRows = dict[str, np.ndarray]
OPEN_ROWS = 64  # rows still taking sequences: bounds the first-fit search on large datasets


def pack_rows(sequences: Sequence[tuple[np.ndarray, np.ndarray]], row_length: int) -> PackedRows:
    """Pack ``(token ids, loss mask)`` pairs, in order, first-fit into rows of ``row_length``.

    Each sequence goes into the oldest of the last ``OPEN_ROWS`` rows with room for it, else a
    new row; the rest of every row is padding (segment 0, mask 0). Sequences longer than a row
    are the caller's to reject. Returns ``int32[rows, row_length]`` arrays.
    """
    rows: list[list[int]] = []  # per row: indices into `sequences`
    room: list[int] = []
    first_open = 0
    for index, (ids, _) in enumerate(sequences):
        if len(ids) > row_length:
            raise ValueError(f"sequence {index} has {len(ids)} tokens, more than {row_length}")
        for r in range(first_open, len(rows)):
            if room[r] >= len(ids):
                rows[r].append(index)
                room[r] -= len(ids)
                break
        else:
            rows.append([index])
            room.append(row_length - len(ids))
            first_open = max(first_open, len(rows) - OPEN_ROWS)
    tokens = np.zeros((len(rows), row_length), np.int32)
    segments = np.zeros_like(tokens)
    mask = np.zeros_like(tokens)
    for r, members in enumerate(rows):
        at = 0
        for segment, index in enumerate(members, start=1):
            ids, learn = sequences[index]
            tokens[r, at : at + len(ids)] = ids
            segments[r, at : at + len(ids)] = segment
            mask[r, at : at + len(ids)] = learn
            at += len(ids)
    return {"tokens": tokens, "segment_ids": segments, "loss_mask": mask}


def segments_after_separator(rows: np.ndarray, separator: int) -> PackedRows:
    """Rows of a concatenated token stream as a packed batch: a new segment starts after every
    ``separator`` (end-of-text) token; every token is learned."""
    rows = np.asarray(rows, np.int32)
    starts = np.zeros(rows.shape, np.int32)
    starts[:, 1:] = rows[:, :-1] == separator
    segments = (np.cumsum(starts, axis=1) + 1).astype(np.int32)
    return {"tokens": rows, "segment_ids": segments, "loss_mask": np.ones_like(rows)}


def take_rows(packed: PackedRows, index: np.ndarray) -> PackedRows:
    return {name: array[index] for name, array in packed.items()}


class PackedEpochs:
    """Batches of packed rows, epoch after epoch: epoch ``e`` packs the sequences in the order
    of a permutation seeded by ``(seed, e)`` (no shuffling when ``seed`` is None). The position
    ``{"epoch", "row"}`` is the iterator state, so a resumed run sees the same batches.

    Every process packs the same rows and takes its share of each global batch:
    ``local_batch`` rows at ``process_index * local_batch``.
    """

    def __init__(
        self,
        sequences: Sequence[tuple[np.ndarray, np.ndarray]],
        row_length: int,
        global_batch: int,
        process_index: int = 0,
        process_count: int = 1,
        seed: int | None = 0,
    ):
        if not sequences:
            raise ValueError("no sequences to pack")
        self._sequences = sequences
        self._row_length = row_length
        self._global = global_batch
        self._local = global_batch // process_count
        self._offset = process_index * self._local
        self._seed = seed
        self._epoch, self._row = 0, 0
        self._rows: PackedRows | None = None

    def _epoch_rows(self) -> PackedRows:
        if self._rows is None:
            order = np.arange(len(self._sequences))
            if self._seed is not None:
                rng = np.random.default_rng([int(self._seed) & 0xFFFFFFFF, self._epoch])
                order = rng.permutation(len(self._sequences))
            packed = pack_rows([self._sequences[i] for i in order], self._row_length)
            # an epoch ends on whole global batches: rows that do not fill one are cycled in
            count = -(-len(packed["tokens"]) // self._global) * self._global
            self._rows = take_rows(packed, np.arange(count) % len(packed["tokens"]))
        return self._rows

    def __iter__(self) -> PackedEpochs:
        return self

    def __next__(self) -> PackedRows:
        rows = self._epoch_rows()
        start = self._row + self._offset
        batch = take_rows(rows, np.arange(start, start + self._local))
        self._row += self._global
        if self._row >= len(rows["tokens"]):
            self._epoch, self._row, self._rows = self._epoch + 1, 0, None
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "row": self._row}

    def set_state(self, state: dict[str, Any]) -> None:
        epoch = int(state["epoch"])
        if epoch != self._epoch:
            self._rows = None
        self._epoch, self._row = epoch, int(state["row"])

    @property
    def rows_per_epoch(self) -> int:
        return len(self._epoch_rows()["tokens"])
