"""moto_adapter.json_deepcopy's shortcut for the engine's program states: a copy equal to copy.deepcopy's,
sharing nothing mutable; fails loudly if moto makes those classes anything but plain attribute holders."""

from __future__ import annotations

import abc
import copy
import datetime
import inspect

from moto.stepfunctions.parser.asl.eval import program_state as ps
from moto.stepfunctions.parser.asl.eval.environment import Environment

from local.moto_adapter import _program_state_classes, json_deepcopy


def test_every_program_state_class_is_a_plain_attribute_holder() -> None:
    classes = _program_state_classes()
    assert {
        ps.ProgramRunning,
        ps.ProgramEnded,
        ps.ProgramStopped,
        ps.ProgramError,
        ps.ProgramTimedOut,
    } <= classes
    for cls in classes:
        members = {name for klass in cls.__mro__ if klass not in (object, abc.ABC) for name in vars(klass)}
        assert not members & {"__slots__", "__deepcopy__", "__copy__", "__reduce__", "__reduce_ex__"}, cls
        assert "__dict__" in dir(cls)
    # what the shortcut is for: the engine copies its program state through the module's `copy`
    assert "copy.deepcopy(self._program_state)" in inspect.getsource(Environment.program_state)


def test_program_states_copy_like_copy_deepcopy() -> None:
    running = ps.ProgramRunning()
    running.next_state_name = "Authorize"
    running.next_field_name = "Branch"
    error = ps.ProgramError({"error": "States.TaskFailed", "cause": "boom"})
    stopped = ps.ProgramStopped(
        stop_date=datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC), error="E", cause="C"
    )
    for state in (running, error, stopped, ps.ProgramEnded(), ps.ProgramTimedOut()):
        clone = json_deepcopy(state)
        reference = copy.deepcopy(state)
        assert type(clone) is type(state) and clone is not state
        assert clone.__dict__ == reference.__dict__ == state.__dict__
    clone = json_deepcopy(error)
    clone.error["cause"] = "changed"
    assert error.error == {"error": "States.TaskFailed", "cause": "boom"}
    moved = json_deepcopy(running)
    moved.next_state_name = "Capture"
    assert running.next_state_name == "Authorize" and running.next_field_name == "Branch"
