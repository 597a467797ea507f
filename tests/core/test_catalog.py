"""The curated catalog: every built-in task has a default model entry with size and licence."""

from studio.core.catalog import catalog, catalog_entry, for_task


def test_catalog_entries_are_complete() -> None:
    entries = catalog()
    assert entries
    for e in entries:
        assert e.id and e.name and e.licence and e.size_bytes > 0
        assert e.modality in ("text", "image", "audio")
    assert len({e.id for e in entries}) == len(entries)


def test_every_builtin_task_has_a_catalog_model() -> None:
    for task in (
        "text-to-image",
        "image-to-image",
        "inpainting",
        "text-generation",
        "text-to-speech",
        "text-to-music",
        "text-to-audio",
    ):
        assert for_task(task), task
    assert catalog_entry("no/such-model") is None
