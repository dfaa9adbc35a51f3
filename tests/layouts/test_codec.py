"""The entity state's codec: compressed when that is smaller, raw otherwise, and both read
back; corrupt or foreign bytes are refused, never guessed at."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import lz4.block
import pytest

from state.codec import CODEC_VERSION, MAX_DECODED_BYTES, RAW_VERSION, decode, encode
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_767_225_600_000


def _young() -> dict[str, object]:
    det = EntityDetector("e", DetectorConfig(), with_features=False)
    for i in range(3):
        det.on_event(Event("e", T0 + i * 60_000, {f"m{j}": 10.0 + j + 0.1 * i for j in range(4)}))
    snap: dict[str, object] = det.snapshot()
    return snap


def test_a_detectors_state_is_stored_compressed_and_reads_back_equal() -> None:
    snap = _young()
    data = encode(snap)
    raw = pickle.dumps(snap, protocol=5)
    assert data[0] == CODEC_VERSION
    assert len(data) < len(raw)
    assert decode(data) == snap


def test_incompressible_state_is_stored_raw_and_never_grows() -> None:
    noise = {"version": 6, "noise": os.urandom(4_096)}
    data = encode(noise)
    assert data[0] == RAW_VERSION
    assert len(data) == len(pickle.dumps(noise, protocol=5)) + 1
    assert decode(data) == noise


def test_state_written_raw_by_an_earlier_release_still_reads() -> None:
    golden = (GOLDEN / "layout6-e392f74.bin").read_bytes()
    assert golden[0] == RAW_VERSION
    snap = decode(golden)
    assert isinstance(snap, dict) and snap["version"] == 6
    assert decode(encode(snap)) == snap


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "codec version None"),
        (b"\x07abc", "codec version 7"),
        (bytes((CODEC_VERSION,)) + b"\x10\x00", "truncated"),
        (bytes((CODEC_VERSION,)) + lz4.block.compress(pickle.dumps({"a": 1}, 5))[:-3], "corrupt"),
    ],
)
def test_foreign_or_corrupt_bytes_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode(data)


def test_a_value_that_inflates_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import state.codec

    data = encode({"version": 6, "zeros": bytes(1_000_000)})
    assert len(data) < 10_000 and decode(data)["zeros"] == bytes(1_000_000)
    monkeypatch.setattr(state.codec, "MAX_DECODED_BYTES", 100_000)
    with pytest.raises(ValueError, match="too large"):  # (said by its size, before inflating)
        state.codec.decode(data)
    assert MAX_DECODED_BYTES >= 1 << 30
