"""The one list of event kinds: the two unions in events.py, and what is derived from them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, get_args, get_type_hints

from studio import GenerationRequest, GenerationRun, Generator, RunContext, hookimpl
from studio.core import events
from studio.core.events import (
    CORE_EVENT_TYPES,
    ERROR_KIND,
    EVENT_KINDS,
    PLUGIN_EVENT_TYPES,
    CoreEvent,
    JobEvent,
    JobState,
    PluginEvent,
    event_type,
    kind_of,
)
from studio.core.studio import Studio

WAIT = 30.0  # seconds: an upper bound, never slept


def test_every_kind_comes_from_the_two_unions() -> None:
    assert get_args(PluginEvent) == PLUGIN_EVENT_TYPES
    assert get_args(CoreEvent) == CORE_EVENT_TYPES
    assert list(EVENT_KINDS.values()) == [*PLUGIN_EVENT_TYPES, *CORE_EVENT_TYPES]
    assert set(EVENT_KINDS) == {
        "progress",
        "preview",
        "partial",
        "note",
        "result",
        "trainstep",
        "sample",
        "jobstatechanged",
        "artifactsaved",
    }
    assert ERROR_KIND not in EVENT_KINDS  # a failure's history entry, not an event class
    for kind, cls in EVENT_KINDS.items():
        assert kind_of(cls) == kind
    # what an observer receives is one of them
    assert get_args(get_type_hints(JobEvent, vars(events))["event"]) == tuple(EVENT_KINDS.values())


def test_event_type_names_an_instance_by_its_kind() -> None:
    event = events.Progress(1, 2)
    assert event_type(event) == "progress" and EVENT_KINDS[event_type(event)] is events.Progress
    changed = events.JobStateChanged(JobState.QUEUED)
    assert EVENT_KINDS[event_type(changed)] is events.JobStateChanged


class _Chatty(Generator):
    """Yields something that is not a studio event."""

    id = "chatty"
    name = "Chatty"
    modality = "text"
    task = "chat"
    default_model = "fake/tiny-model"
    prompt_required = False

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[Any]:
        yield "hello"


@hookimpl
def _register_chatty(register: Callable[[type], None]) -> None:
    register(_Chatty)


def test_the_worker_refuses_anything_else_and_names_the_kinds(app: Studio) -> None:
    plugin = ModuleType("chatty")
    plugin.register_generators = _register_chatty  # type: ignore[attr-defined]
    plugin.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    assert app.plugins.register(plugin).error is None
    job_id = app.submit(GenerationRequest(generator="chatty"))
    record = app.wait(job_id, WAIT)
    assert record.state == JobState.FAILED and record.error is not None
    assert "yielded str, not a studio event" in record.error
    assert all(cls.__name__ in record.error for cls in PLUGIN_EVENT_TYPES)
    stored = [e["type"] for e in app.store.job_events(job_id)]
    assert ERROR_KIND in stored and set(stored) - {ERROR_KIND} <= set(EVENT_KINDS)
