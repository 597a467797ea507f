"""The text LoRA trainer on tiny random-weight models: the trainer contract, data preparation
(chunks, packing, chat turns), learning (perplexity falls), the adapter in the text generator,
exact resume after a pause, a preemption and a stop, a refused mismatched resume, non-finite
losses rolled back, and the adapter's files.

Models are built once per module; nothing is downloaded. Adapters of two runs are compared
exactly: both trainings run on the studio's worker thread with the same thread count.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import studio_text.trainer as trainer_module
from studio import BaseOptions, GenerationRun, Generator, Result, RunContext, TextOutput
from studio.core.checkpoints import CheckpointStore
from studio.core.errors import InvalidRequest
from studio.core.events import JobState, JobStateChanged, Note, Sample, TrainStep
from studio.core.generator import GenerationRequest
from studio.core.options import validate_options
from studio.core.studio import Studio
from studio.core.training import TrainingRequest
from studio.testing.contract import (
    TrainerContract,
    adapter_content,
    registered,
    run_generator,
    run_trainer,
)
from studio.testing.fake_plugin import open_fake_studio
from studio.testing.fakes import EventRecorder, wait_until
from studio.testing.models_text import (
    REPETITIVE_LINES,
    make_tiny_causal_lm,
    tiny_tokenizer,
    write_chat_corpus,
    write_text_corpus,
)
from studio_text import TextGenerator, TextLoraOptions, TextLoraTrainer
from studio_text.train_data import (
    IGNORE,
    Example,
    chat_example,
    check_chat_file,
    chunk,
    collate,
    pack,
)
from studio_text.trainer import RECIPE_FILE, TRAIN_KIND, held_out, resolve_targets

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

#: Small, fast settings: 6 steps of 2 windows of 32 tokens, checkpoints every 2 steps, dropout
#: on (so that the RNGs matter to the result).
FAST: dict[str, Any] = {
    "steps": 6,
    "batch_size": 2,
    "sequence_length": 32,
    "overlap": 8,
    "rank": 4,
    "alpha": 8,
    "dropout": 0.1,
    "learning_rate": 0.01,
    "checkpoint_every": 2,
    "validate_every": 3,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-models")
    return {
        "gpt2": make_tiny_causal_lm(root / "gpt2", "gpt2", seed=0),
        "llama": make_tiny_causal_lm(root / "llama", "llama", seed=0),
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_text_corpus(tmp_path / "corpus", files=3, repeats=4)


def _request(dataset: Path, model: Path, name: str = "my style", **options: Any) -> TrainingRequest:
    return TrainingRequest(
        trainer=TextLoraTrainer.id,
        base_model=str(model),
        dataset=dataset,
        name=name,
        options={**FAST, **options},
    )


def _losses(events: list[Any]) -> dict[int, float]:
    return {e.step: e.loss for e in events if isinstance(e, TrainStep)}


def _recipe(adapter: Path) -> dict[str, Any]:
    return json.loads((Path(adapter) / RECIPE_FILE).read_text(encoding="utf-8"))


# --- the contract ---------------------------------------------------------------------------------


class TestTextLoraContract(TrainerContract):
    trainer_cls = TextLoraTrainer
    options: ClassVar[dict[str, Any]] = {**FAST, "steps": 4, "checkpoint_every": 1}

    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Path:
        return write_text_corpus(tmp_path / "dataset", files=2, repeats=3)

    @pytest.fixture
    def base_model_ref(self, models: dict[str, Path]) -> str:
        return str(models["gpt2"])


# --- files and examples ---------------------------------------------------------------------------


def test_ingest_skips_what_it_cannot_learn_from_with_reasons(tmp_path: Path) -> None:
    folder = write_text_corpus(tmp_path / "data", files=1)
    write_chat_corpus(folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "poem.md").write_text("Roses are red.\n", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "blank.md").write_text("  \n\n", encoding="utf-8")
    (folder / "picture.png").write_bytes(b"\x89PNG")
    (folder / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (folder / "notjson.jsonl").write_text("hello\n")
    (folder / ".hidden.txt").write_text("secret")
    report = TextLoraTrainer().ingest(folder, TextLoraOptions())
    assert sorted(p.relative_to(folder).as_posix() for p in report.usable) == [
        "chats.jsonl",
        "sub/poem.md",
        "text-1.txt",
    ]
    skipped = report.skipped
    assert skipped["empty.txt"].startswith("empty file")
    assert "not UTF-8" in skipped["latin1.txt"]
    assert "white space" in skipped["blank.md"]
    assert "this trainer takes text" in skipped["picture.png"]
    assert skipped["notjson.jsonl"].startswith("line 1 is not JSON")
    assert skipped["bad.jsonl"] == "line 1: no assistant message to learn from"  # its own check
    assert ".hidden.txt" not in skipped
    assert "2 text file(s) and 1 chat example file(s)" in report.notes
    # the shared summary counts what is left after the trainer's own check
    assert report.notes[0].startswith("3 usable files (3 text), ")
    assert f"{len(skipped)} files skipped (see the reasons)" in report.notes
    assert [e.path for e in report.manifest.entries] == ["chats.jsonl", "sub/poem.md", "text-1.txt"]


def test_check_file_names_the_bad_line_of_chat_examples(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    good = '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'
    path.write_text(good + "\n\n" + '{"messages": [{"role": "robot", "content": "x"}]}\n')
    reason = check_chat_file(path)
    assert reason is not None and reason.startswith("line 3: message 1 needs a role")


def test_chunks_overlap_and_learn_every_token_once() -> None:
    ids = list(range(100, 150))
    windows = chunk(ids, length=16, overlap=4)
    assert all(len(w.input_ids) <= 16 for w in windows)
    assert windows[0].labels == windows[0].input_ids
    assert windows[1].input_ids[:4] == windows[0].input_ids[-4:]
    assert windows[1].labels[:4] == (IGNORE,) * 4
    learnt = [t for w in windows for t in w.labels if t != IGNORE]
    assert learnt == ids


def test_packing_fills_windows_across_documents() -> None:
    windows = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], length=4)
    assert [w.input_ids for w in windows] == [(1, 2, 3, 4), (5, 6, 7, 8)]  # (9,) is too short
    assert all(w.labels == w.input_ids for w in windows)


def test_collate_pads_on_the_right_and_learns_no_padding() -> None:
    batch = collate([Example((1, 2, 3), (1, 2, 3)), Example((4,), (IGNORE,))], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, 3], [IGNORE, IGNORE, IGNORE]]


def _learnt_text(tokenizer: Any, example: Example) -> str:
    ids = [t for t in example.labels if t != IGNORE]
    return str(tokenizer.decode(ids))


def test_chat_examples_learn_the_assistant_turns_only() -> None:
    tokenizer = tiny_tokenizer("llama")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is green?"},
        {"role": "assistant", "content": "Spring."},
        {"role": "user", "content": "And blue?"},
        {"role": "assistant", "content": "The sea."},
    ]
    example = chat_example(tokenizer, messages, tokenizer.eos_token_id)
    learnt = _learnt_text(tokenizer, example)
    assert "Spring." in learnt and "The sea." in learnt
    assert "green" not in learnt and "blue" not in learnt and "Be brief" not in learnt
    assert learnt.count("<|im_end|>") == 2  # each assistant turn ends, as the model must learn
    assert "assistant" not in learnt  # the turn's header is given, not learnt


def test_chat_examples_without_a_template_use_the_generator_transcript() -> None:
    tokenizer = tiny_tokenizer("gpt2")
    messages = [
        {"role": "user", "content": "Hello world!"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "I am fine."},
    ]
    example = chat_example(tokenizer, messages, tokenizer.eos_token_id)
    text = str(tokenizer.decode(list(example.input_ids)))
    assert text.startswith("User: Hello world!\nAssistant:")
    learnt = _learnt_text(tokenizer, example)
    assert learnt == " Hello!\n I am fine.<|endoftext|>"


def test_the_validation_split_is_seeded_and_never_takes_everything() -> None:
    opts = TextLoraOptions(validation_fraction=0.25, seed=3)
    assert held_out(8, opts, salt=1) == held_out(8, opts, salt=1)
    assert len(held_out(8, opts, salt=1)) == 2
    assert len(held_out(2, opts, salt=1)) == 1  # at least one
    assert held_out(1, opts, salt=1) == set()  # never all
    assert len(held_out(8, TextLoraOptions(validation_count=3), salt=1)) == 3
    assert held_out(8, TextLoraOptions(validation_fraction=0), salt=1) == set()


def test_target_modules_per_family_and_checked(models: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    gpt2 = AutoModelForCausalLM.from_pretrained(models["gpt2"])
    llama = AutoModelForCausalLM.from_pretrained(models["llama"])
    assert resolve_targets(gpt2, TextLoraOptions()) == ["c_attn"]
    assert resolve_targets(llama, TextLoraOptions()) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert resolve_targets(llama, TextLoraOptions(target_modules="all-linear")) == "all-linear"
    assert resolve_targets(llama, TextLoraOptions(target_modules="q_proj, v_proj")) == [
        "q_proj",
        "v_proj",
    ]
    with pytest.raises(InvalidRequest, match="no linear layer named c_attn; its linear layers"):
        resolve_targets(llama, TextLoraOptions(target_modules="c_attn"))


def test_options_defaults_follow_peers_and_bad_values_are_named() -> None:
    opts = TextLoraOptions()
    assert (opts.rank, opts.alpha, opts.learning_rate, opts.scheduler) == (16, 32, 2e-4, "cosine")
    with pytest.raises(Exception, match="target_modules"):
        validate_options(TextLoraOptions, {"target_modules": "q_proj;v_proj"})


# --- training -------------------------------------------------------------------------------


def test_perplexity_falls_on_a_repetitive_corpus(
    studio_app: Studio, models: dict[str, Path], tmp_path: Path
) -> None:
    corpus = write_text_corpus(tmp_path / "corpus", files=3, repeats=6)
    options = {
        **FAST,
        "steps": 30,
        "batch_size": 4,
        "learning_rate": 0.02,
        "target_modules": "all-linear",
        "validate_every": 10,
        "checkpoint_every": 10,
        "warmup": 0.1,
    }
    events, [adapter] = run_trainer(
        TextLoraTrainer, corpus, studio_app, options=options, base_model=str(models["gpt2"])
    )
    validation = [
        e.validation_loss
        for e in events
        if isinstance(e, TrainStep) and e.validation_loss is not None
    ]
    assert len(validation) == 3 and validation == sorted(validation, reverse=True)
    before, after = adapter.extra["perplexity_before"], adapter.extra["perplexity_after"]
    assert after < 0.9 * before, (before, after)
    assert any(
        isinstance(e, Note) and "perplexity on the held-out text" in e.message for e in events
    )
    result = _recipe(adapter.path)["result"]
    assert result["perplexity_before"] == before and result["perplexity_after"] == after
    assert result["validation_before"] > result["validation_last"]
    assert math.isclose(math.exp(result["validation_last"]), after)


def test_the_adapter_has_the_peft_layout_and_its_recipe(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    from safetensors.torch import load_file

    _, [adapter] = run_trainer(
        TextLoraTrainer, corpus, studio_app, options=FAST, base_model=str(models["gpt2"])
    )
    folder = Path(adapter.path)
    assert {"adapter_config.json", "adapter_model.safetensors", RECIPE_FILE} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["base_model_name_or_path"] == str(models["gpt2"])
    assert config["fan_in_fan_out"] is True  # GPT-2's Conv1D layers
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert tensors and all(bool(t.isfinite().all()) for t in tensors.values())
    recipe = _recipe(folder)
    assert recipe["trainer"] == "text-lora" and recipe["seed"] == 0
    assert recipe["base_model"]["ref"] == str(models["gpt2"])
    assert len(recipe["base_model"]["sha256"]) == 64
    assert len(recipe["dataset"]["manifest_sha256"]) == 64
    assert recipe["dataset"]["train_files"] == 2 and recipe["dataset"]["validation_files"] == 1
    assert recipe["options"]["rank"] == 4
    assert recipe["resolved"]["target_modules"] == ["c_attn"]
    assert recipe["resolved"]["mixed_precision"] == "no" and recipe["resolved"]["steps"] == 6
    assert recipe["result"]["steps"] == 6 and recipe["result"]["nonfinite_steps"] == 0
    assert adapter.base_model == str(models["gpt2"]) and adapter.modality == "text"


def test_the_adapter_loads_in_the_text_generator_and_changes_its_output(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    options = {**FAST, "steps": 20, "learning_rate": 0.05, "target_modules": "all-linear"}
    _, [adapter] = run_trainer(
        TextLoraTrainer, corpus, studio_app, options=options, base_model=str(models["gpt2"])
    )
    settings = {"temperature": 0, "max_new_tokens": 12}

    def generate(loras: list[str]) -> tuple[str, dict[str, Any]]:
        _, [artifact] = run_generator(
            TextGenerator, "The painter", str(models["gpt2"]), settings, 1, studio_app, loras=loras
        )
        return Path(artifact.path).read_text(encoding="utf-8"), artifact.recipe

    plain, _ = generate([])
    adapted, recipe = generate([str(adapter.path)])
    assert adapted != plain
    # what it learnt shows: the plain random model writes no word of the corpus
    words = {w.strip(".,").lower() for line in REPETITIVE_LINES for w in line.split()}
    assert not words & set(plain.lower().split())
    assert words & set(adapted.lower().split()), adapted
    assert [a["ref"] for a in recipe["adapters"]] == [str(adapter.path)]
    again, _ = generate([])
    assert again == plain  # the adapter was applied for its run only


def test_chat_examples_train_a_chat_model(
    studio_app: Studio, models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "chats"
    write_chat_corpus(folder, "a.jsonl", repeats=3)
    write_chat_corpus(folder, "b.jsonl", repeats=2)
    events, [adapter] = run_trainer(
        TextLoraTrainer,
        folder,
        studio_app,
        options={
            **FAST,
            "steps": 3,
            "sequence_length": 128,
            "sample_prompts": ["What is green?"],
            "sample_every": 2,
            "sample_max_tokens": 8,
        },
        base_model=str(models["llama"]),
    )
    assert [e.step for e in events if isinstance(e, TrainStep)] == [1, 2, 3]
    samples = [e for e in events if isinstance(e, Sample)]
    assert [s.step for s in samples] == [2, 3]  # every 2 steps, and at the end
    output = samples[0].output
    assert isinstance(output, TextOutput) and output.extra["mode"] == "chat"
    assert output.extra["prompt"] == "What is green?" and output.seed == 0
    # each sample is in the library, its recipe naming the training and the generator used
    saved = studio_app.artifacts(job_id=adapter.job_id)
    assert sorted(a.recipe["training"]["step"] for a in saved) == [2, 3]
    for artifact in saved:
        assert artifact.is_sample and artifact.generator == TextGenerator.id
        assert artifact.prompt == "What is green?" and artifact.model == str(models["llama"])
        assert artifact.recipe["training"]["trainer"] == TextLoraTrainer.id
        text = artifact.path.read_text(encoding="utf-8")
        assert text in {s.output.text for s in samples if isinstance(s.output, TextOutput)}
    recipe = _recipe(adapter.path)
    assert recipe["resolved"]["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert recipe["dataset"]["train_examples"] > 0 and recipe["dataset"]["validation_examples"] > 0


def test_the_cached_base_model_is_left_clean(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    from studio_text.adapters import has_adapters

    options = {**FAST, "gradient_checkpointing": True}
    base = str(models["gpt2"])
    run_trainer(TextLoraTrainer, corpus, studio_app, options=options, base_model=base)
    entries = [e for e in studio_app.cache.stats().entries if e.key.kind == TRAIN_KIND]
    assert len(entries) == 1 and entries[0].pins == 0

    def fail() -> Any:
        raise AssertionError("not cached")

    with studio_app.cache.acquire(entries[0].key, fail) as model:
        assert not has_adapters(model)
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
        assert not getattr(model, "is_gradient_checkpointing", False)


def test_gradient_checkpointing_saves_memory_not_results(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    """Non-reentrant checkpointing recomputes with the same dropout masks: the same adapter."""
    adapters = [
        run_trainer(
            TextLoraTrainer,
            corpus,
            studio_app,
            options={**FAST, "steps": 3, "gradient_checkpointing": on},
            base_model=str(models["llama"]),
        )[1][0]
        for on in (False, True)
    ]
    weights = [adapter_content(Path(a.path) / "adapter_model.safetensors") for a in adapters]
    assert weights[0] == weights[1]


# --- identity after interruptions ------------------------------------------------------------


class HungryOptions(BaseOptions):
    pass


class RandomNumbersGenerator(Generator):
    """A model-free generator that reseeds and draws from every global RNG: what a careless
    generation served at a training's step boundary might do."""

    id = "test-random-numbers"
    name = "Random numbers"
    modality = "text"
    task = "test"
    uses_model = False
    Options = HungryOptions
    prompt_required = False

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[Any]:
        import numpy as np
        import torch

        torch.manual_seed(12345)
        values = torch.rand(64).tolist()
        random.seed(3)
        np.random.seed(4)
        yield Result(TextOutput(text=f"{values[0]:.6f} {random.random()} {np.random.rand()}"))


def test_paused_and_preempted_run_equals_the_uninterrupted_one(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    request = _request(corpus, models["gpt2"])
    recorder = EventRecorder()
    unsubscribe = studio_app.subscribe(recorder)
    generations: list[str] = []

    def interrupt(job_id: str, event: Any) -> None:
        if isinstance(event, TrainStep) and event.step == 2:
            generations.append(
                studio_app.submit(
                    GenerationRequest(generator=RandomNumbersGenerator.id, prompt="", seed=1)
                )
            )
            generations.append(
                studio_app.submit(
                    GenerationRequest(
                        generator=TextGenerator.id,
                        prompt="Once upon",
                        model=str(models["gpt2"]),
                        seed=2,
                        options={"max_new_tokens": 4},
                    )
                )
            )
        elif isinstance(event, TrainStep) and event.step == 4:
            studio_app.pause(job_id)
        elif isinstance(event, JobStateChanged) and event.state == JobState.PAUSED:
            studio_app.resume(job_id)  # held at the boundary now (a no-op while lending it)

    try:
        with (
            registered(studio_app, TextLoraTrainer),
            registered(studio_app, RandomNumbersGenerator),
            registered(studio_app, TextGenerator),
        ):
            whole_id = studio_app.submit_training(request)
            whole = studio_app.wait(whole_id, timeout=120)
            assert whole.state == JobState.SUCCEEDED, whole.error

            def on_event(event: Any) -> None:
                interrupt(event.job_id, event.event)

            stop = studio_app.subscribe(on_event)
            try:
                job_id = studio_app.submit_training(request)
                record = studio_app.wait(job_id, timeout=120)
            finally:
                stop()
    finally:
        unsubscribe()
    assert record.state == JobState.SUCCEEDED, record.error
    assert len(generations) == 2
    for generation in generations:
        assert studio_app.store.get_job(generation).state == JobState.SUCCEEDED
    timeline = recorder.timeline()
    # the generations ran while the training waited between its steps 2 and 3
    steps = [i for i, (j, label) in enumerate(timeline) if j == job_id and label == "trainstep"]
    for generation in generations:
        done = timeline.index((generation, "succeeded"))
        assert steps[1] < done < steps[2]
    assert JobState.PAUSED in recorder.states(job_id)
    assert _losses(recorder.of(job_id)) == _losses(recorder.of(whole_id))
    adapters = {a.job_id: a for a in studio_app.adapters()}
    assert adapter_content(adapters[job_id].path) == adapter_content(adapters[whole_id].path)


def test_paused_then_closed_resumes_from_the_paused_step_to_the_same_adapter(
    studio_home: Path, models: dict[str, Path], corpus: Path
) -> None:
    """Paused after step 3 (its last periodic checkpoint is step 2), the studio closed and opened
    again: the resume goes on from step 3 and ends with the uninterrupted run's adapter."""
    request = _request(corpus, models["gpt2"])
    held_with: list[int | None] = []

    def pause_at_3(event: Any) -> None:
        inner = event.event
        if isinstance(inner, TrainStep) and inner.step == 3:
            app.pause(event.job_id)
        elif isinstance(inner, JobStateChanged) and inner.state == JobState.PAUSED:
            held_with.append(app.checkpoint_step(event.job_id))

    app = open_fake_studio(studio_home)
    try:
        with registered(app, TextLoraTrainer):
            whole_id = app.submit_training(request)
            assert app.wait(whole_id, timeout=120).state == JobState.SUCCEEDED
            whole = {a.job_id: a for a in app.adapters()}[whole_id]
            app.subscribe(pause_at_3)
            job_id = app.submit_training(request)
            assert wait_until(lambda: app.job(job_id).state == JobState.PAUSED, 120)
    finally:
        app.close()  # the window closed while the training waits
    assert held_with == [3]

    again = open_fake_studio(studio_home)
    recorder = EventRecorder()
    again.subscribe(recorder)
    try:
        assert again.job(job_id).state == JobState.INTERRUPTED
        with registered(again, TextLoraTrainer):
            assert again.resume(job_id)
            record = again.wait(job_id, timeout=120)
        assert record.state == JobState.SUCCEEDED, record.error
        events = recorder.of(job_id)
        assert any(
            isinstance(e, Note) and e.message.startswith("resumed from the checkpoint of step 3")
            for e in events
        )
        assert [e.step for e in events if isinstance(e, TrainStep)] == [4, 5, 6]
        adapter = {a.job_id: a for a in again.adapters()}[job_id]
        assert adapter_content(adapter.path) == adapter_content(whole.path)
    finally:
        again.close()


def test_transformers_says_nothing_of_loss_type_while_training(
    studio_app: Studio, models: dict[str, Path], corpus: Path
) -> None:
    """GPT-2 has no loss type transformers knows by its class name: its first loss logs a
    warning about it (once a process). The studio drops that one, and only that one."""
    import logging

    from transformers.utils import logging as hf_logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    hf_logging.warning_once.cache_clear()  # as in a fresh process
    try:
        run_trainer(
            TextLoraTrainer,
            corpus,
            studio_app,
            options={**FAST, "steps": 1},
            base_model=str(models["gpt2"]),
        )
        module_logger = logging.getLogger("transformers.modeling_utils")
        module_logger.warning("`loss_type=ForSomething` was set in the config but it is odd")
        module_logger.error("`loss_type=None` was set in the config but it is unrecognized.")
    finally:
        logger.removeHandler(handler)
    messages = [(r.levelno, r.getMessage()) for r in records]
    assert not [m for m in messages if m[0] < logging.ERROR and "loss_type=None" in m[1]]
    assert (logging.WARNING, "`loss_type=ForSomething` was set in the config but it is odd") in (
        messages
    )
    assert (logging.ERROR, "`loss_type=None` was set in the config but it is unrecognized.") in (
        messages
    )


def _stop_after_a_checkpoint(studio_app: Studio) -> Any:
    stopped: list[int] = []

    def on_event(event: Any) -> None:
        inner = event.event
        if stopped or not isinstance(inner, TrainStep) or inner.step >= inner.total:
            return
        if CheckpointStore(studio_app.paths.checkpoints / event.job_id).latest() is not None:
            stopped.append(inner.step)
            studio_app.cancel(event.job_id)

    return on_event


@pytest.mark.parametrize("change", ["dataset", "base model"])
def test_a_resume_after_a_change_is_refused_with_what_differs(
    studio_app: Studio, models: dict[str, Path], corpus: Path, tmp_path: Path, change: str
) -> None:
    model = make_tiny_causal_lm(tmp_path / "model", "gpt2", seed=0)
    with registered(studio_app, TextLoraTrainer):
        stop = studio_app.subscribe(_stop_after_a_checkpoint(studio_app))
        try:
            job_id = studio_app.submit_training(_request(corpus, model))
            first = studio_app.wait(job_id, timeout=120)
        finally:
            stop()
        assert first.state == JobState.CANCELLED
        if change == "dataset":
            (corpus / "text-1.txt").write_text("Something else entirely.\n" * 20)
        else:
            make_tiny_causal_lm(model, "gpt2", seed=1)  # other weights in the same folder
        assert studio_app.resume(job_id)
        second = studio_app.wait(job_id, timeout=120)
    assert second.state == JobState.FAILED
    assert second.error is not None
    if change == "dataset":  # the studio itself may notice first; either way, it says so
        assert "dataset" in second.error and "changed" in second.error
    else:
        assert "cannot resume from the checkpoint of step 2" in second.error
        assert "base_model.sha256" in second.error
    assert not [a for a in studio_app.adapters() if a.job_id == job_id]


def test_non_finite_losses_are_skipped_then_rolled_back(
    studio_app: Studio, models: dict[str, Path], corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = trainer_module.causal_lm_loss
    calls = {"training": 0}

    def flaky(model: Any, batch: Any) -> Any:
        loss, weight = real(model, batch)
        if model.training:
            calls["training"] += 1
            # step 2 fails once; then steps 1-3 are done, and step 4 fails three times in a row
            if calls["training"] in (2, 5, 6, 7):
                loss = loss * float("nan")
        return loss, weight

    monkeypatch.setattr(trainer_module, "causal_lm_loss", flaky)
    events, [adapter] = run_trainer(
        TextLoraTrainer,
        corpus,
        studio_app,
        options={**FAST, "steps": 8},
        base_model=str(models["gpt2"]),
    )
    warnings = [e.message for e in events if isinstance(e, Note) and e.level == "warning"]
    assert sum("the loss was not finite; the update was skipped" in w for w in warnings) == 4
    assert any("rolled back to step 2 with the learning rate times 0.5" in w for w in warnings)
    result = _recipe(adapter.path)["result"]
    assert (result["nonfinite_steps"], result["rollbacks"], result["lr_scale"]) == (4, 1, 0.5)
    assert result["steps"] == 8
    from safetensors.torch import load_file

    tensors = load_file(str(Path(adapter.path) / "adapter_model.safetensors"))
    assert all(bool(t.isfinite().all()) for t in tensors.values())
