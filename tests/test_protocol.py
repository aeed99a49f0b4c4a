"""The wire protocol: frames survive any split, reports and warnings survive the trip."""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings

from pytest_procpar import framing, reports


def test_frames_round_trip_in_order_through_a_pipe() -> None:
    read_fd, write_fd = os.pipe()
    messages = [("item", i, [("logstart", ("f.py", i, "t"))]) for i in range(200)]
    messages.append(("big", "x" * 300_000))  # larger than a pipe buffer and than one read

    def write_all() -> None:
        for message in messages:
            framing.send(write_fd, message)
        os.close(write_fd)

    writer = threading.Thread(target=write_all)
    writer.start()
    reader = framing.FrameReader(read_fd)
    received: list[tuple[object, ...]] = []
    while not reader.eof:
        received += reader.receive(block=True)
    writer.join()
    os.close(read_fd)
    assert received == messages


def test_a_cut_frame_is_not_delivered() -> None:
    read_fd, write_fd = os.pipe()
    reader = framing.FrameReader(read_fd)
    framing.send(write_fd, ("whole",))
    os.write(write_fd, b"\x00\x00\x01\x00partial")  # a worker killed mid-write
    os.close(write_fd)
    received = reader.receive(block=True)
    while not reader.eof:
        received += reader.receive(block=True)
    os.close(read_fd)
    assert received == [("whole",)]


class CustomWarning(UserWarning):
    pass


def record(category: type[Warning], text: str) -> warnings.WarningMessage:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(text, category, stacklevel=1)
    return caught[0]


def test_warning_keeps_category_message_and_place() -> None:
    original = record(DeprecationWarning, "old api")
    copy = reports.decode_warning(reports.encode_warning(original))
    assert copy.category is DeprecationWarning
    assert str(copy.message) == "old api"
    assert (copy.filename, copy.lineno) == (original.filename, original.lineno)


def test_warning_of_unimportable_category_becomes_user_warning_naming_it() -> None:
    data = reports.encode_warning(record(CustomWarning, "custom"))
    data["category_module"] = "no_such_module_for_procpar"
    copy = reports.decode_warning(data)
    assert copy.category is UserWarning
    assert "no_such_module_for_procpar.CustomWarning: custom" in str(copy.message)


def test_a_message_with_unpicklable_values_arrives_with_their_reprs() -> None:
    """What pickle cannot take travels as its saferepr, which also repr()s as that text."""
    lock = threading.Lock()
    message = ("item", 0, [("report", {"kwargs": {"f": lambda: 1, "n": 1}, "props": [lock]})], 0.5)
    read_fd, write_fd = os.pipe()
    framing.send(write_fd, message)
    os.close(write_fd)
    reader = framing.FrameReader(read_fd)
    (received,) = reader.receive(block=True)
    os.close(read_fd)
    kind, index, [(event, data)], seconds = received
    assert (kind, index, event, seconds) == ("item", 0, "report", 0.5)
    assert data["kwargs"]["n"] == 1
    assert repr(data["kwargs"]["f"]).startswith("<function ")
    assert repr(data["props"][0]).startswith("<unlocked _thread.lock object")


def test_picklable_keeps_dataclasses_and_containers() -> None:
    @dataclasses.dataclass(frozen=True)
    class Context:
        msg: str
        kwargs: dict[str, object]

    made = framing.picklable(Context("m", {"lock": threading.Lock(), "n": (1, {2})}))
    assert isinstance(made, Context)
    assert made.msg == "m"
    assert made.kwargs["n"] == (1, {2})
    assert str(made.kwargs["lock"]).startswith("<unlocked _thread.lock object")
