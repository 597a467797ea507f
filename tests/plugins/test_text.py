"""The text generator on tiny random-weight models: continuation, chat, streaming, stop strings,
cancel, candidates and regenerate, adapters, context and memory checks, hub ids offline, the CLI.

Models are built once per session (tokenizers trained in memory, weights random, saved in the
transformers layout); nothing is downloaded. Random weights write noise, so the checks compare
with bare ``model.generate`` on the same model, seed and settings, and look at events, recipes,
errors and state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import studio_text
from studio.core.cache import ModelCache
from studio.core.context import RunContext
from studio.core.errors import Cancelled, InvalidRequest
from studio.core.events import (
    ArtifactSaved,
    JobState,
    Note,
    Partial,
    Result,
    TextOutput,
)
from studio.core.generator import GenerationRequest, GenerationRun, LoraSpec
from studio.core.refs import sha256_file
from studio.core.settings import Settings
from studio.testing.contract import GeneratorContract, artifact_content
from studio.testing.models_text import (
    make_tiny_causal_lm,
    make_tiny_lora,
    save_tiny_causal_lm_to_hub,
)
from studio_text import TextGenerator, TextOptions
from studio_text.adapters import has_adapters
from studio_text.loading import MODEL_KIND

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    found = {
        "gpt2": make_tiny_causal_lm(root / "gpt2", "gpt2", seed=0),
        "llama": make_tiny_causal_lm(root / "llama", "llama", seed=0),
    }
    found["lora_a"] = make_tiny_lora(found["llama"], root / "lora-a", rank=4, seed=1)
    found["lora_b"] = make_tiny_lora(
        found["llama"], root / "lora-b", rank=2, seed=2, target_modules=["k_proj", "o_proj"]
    )
    found["lora_gpt2"] = make_tiny_lora(found["gpt2"], root / "lora-gpt2", seed=3)
    return found


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext(
        job_id="test",
        device="cpu",
        cache=ModelCache(),
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test.text"),
        hash_file=sha256_file,
    )


def _request(
    model: Path | str,
    prompt: str = "Once upon a time",
    seed: int = 11,
    loras: list[LoraSpec] | None = None,
    parent: list[dict[str, Any]] | None = None,
    **options: Any,
) -> GenerationRun:
    return GenerationRun(
        generator=TextGenerator.id,
        prompt=prompt,
        model=str(model),
        seed=seed,
        options=TextOptions(**options),
        loras=loras or [],
        parent_recipes=parent or [],
    )


def _run(request: GenerationRun, ctx: RunContext) -> list[Any]:
    return list(TextGenerator().run(request, ctx))


def _results(events: list[Any]) -> list[TextOutput]:
    return [e.output for e in events if isinstance(e, Result) and isinstance(e.output, TextOutput)]


def _streamed(events: list[Any], index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, Partial) and e.index == index)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch CPU thread on this thread, for the generator and the bare call alike.

    Tokens are compared exactly with a bare ``generate``: that holds only when both sides run
    with the same thread count (float sums split over other threads round differently, which
    can change a greedy or sampled token). Both run here, on this thread: pinning its count
    makes that a fact of the test rather than a coincidence. The previous count comes back.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bare(folder: Path, ids: list[int], seed: int | None = None, **kwargs: Any) -> str:
    """Bare ``model.generate`` on the same folder: the decoded new tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    input_ids = torch.tensor([ids])
    if seed is not None:
        torch.manual_seed(seed)
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    new = [t for t in out[0, len(ids) :].tolist() if t not in {tok.eos_token_id}]
    return str(tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def _cached_model(ctx: RunContext) -> Any:
    entries = [e for e in ctx.cache.stats().entries if e.key.kind == MODEL_KIND]
    assert len(entries) == 1
    assert entries[0].pins == 0, "the model is still pinned after the run"

    def fail() -> None:
        raise AssertionError("not cached")

    with ctx.cache.acquire(entries[0].key, fail) as model:
        return model


# --- continuation, sampling, candidates --------------------------------------------------------


def test_continuation_greedy_matches_bare_generate(models, ctx, one_thread):
    from transformers import AutoTokenizer

    events = _run(_request(models["gpt2"], temperature=0, max_new_tokens=24), ctx)
    (out,) = _results(events)
    ids = AutoTokenizer.from_pretrained(models["gpt2"])("Once upon a time")["input_ids"]
    assert out.text == _bare(models["gpt2"], ids, do_sample=False, max_new_tokens=24)
    assert out.text == _streamed(events)
    assert out.extra["mode"] == "continuation" and out.extra["finish_reason"] in ("length", "eos")
    assert out.extra["document"] == "Once upon a time" + out.text
    assert out.extra["prompt_tokens"] == len(ids)
    assert ctx.recipe.dtype == "float32" and ctx.recipe.model["source"] == "folder"
    assert ctx.recipe.model["sha256"] == sha256_file(models["gpt2"] / "model.safetensors")


def test_candidates_are_sampled_with_seed_plus_index(models, ctx, one_thread):
    from transformers import AutoTokenizer

    settings: dict[str, Any] = {
        "temperature": 0.9,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.2,
    }
    events = _run(
        _request(models["gpt2"], seed=100, candidates=3, max_new_tokens=16, **settings), ctx
    )
    outs = _results(events)
    assert [o.index for o in outs] == [0, 1, 2]
    assert [o.seed for o in outs] == [100, 101, 102]
    ids = AutoTokenizer.from_pretrained(models["gpt2"])("Once upon a time")["input_ids"]
    for out in outs:
        bare = _bare(
            models["gpt2"], ids, seed=out.seed, do_sample=True, max_new_tokens=16, **settings
        )
        assert out.text == bare, f"candidate {out.index} differs from bare generate"
    assert len({o.text for o in outs}) > 1
    # candidate 2 alone, from its own seed, is the same text (regenerate of one candidate)
    (alone,) = _results(
        _run(_request(models["gpt2"], seed=102, max_new_tokens=16, **settings), ctx)
    )
    assert alone.text == outs[2].text


def test_streaming_order_and_completeness(models, ctx):
    events = _run(_request(models["llama"], candidates=2, max_new_tokens=30), ctx)
    kinds = [
        (type(e).__name__, getattr(e, "index", getattr(getattr(e, "output", None), "index", None)))
        for e in events
    ]
    first_result = kinds.index(("Result", 0))
    assert all(i == 0 for k, i in kinds[:first_result] if k == "Partial")
    assert all(i == 1 for k, i in kinds[first_result:] if k == "Partial")
    assert kinds[-2][0] == "Result" and kinds[-2][1] == 1
    for out in _results(events):
        pieces = [e.text for e in events if isinstance(e, Partial) and e.index == out.index]
        assert "".join(pieces) == out.text == out.extra["reply"]
        assert all(pieces), "empty pieces are not streamed"
        assert len(pieces) >= out.extra["new_tokens"] // 3, "the text did not stream token-wise"


# --- chat --------------------------------------------------------------------------------------


def test_chat_uses_the_model_template_and_system_prompt(models, ctx, one_thread):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["llama"])
    events = _run(
        _request(
            models["llama"],
            prompt="Tell me a story",
            temperature=0,
            system_prompt="You are terse.",
            max_new_tokens=12,
        ),
        ctx,
    )
    (out,) = _results(events)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me a story"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert out.extra["mode"] == "chat"
    assert out.extra["prompt_tokens"] == len(ids)
    assert out.extra["messages"] == [*messages, {"role": "assistant", "content": out.text}]
    assert out.text == _bare(models["llama"], ids, do_sample=False, max_new_tokens=12)


def test_chat_continues_a_conversation_from_the_parent_recipe(models, ctx):
    first = _results(_run(_request(models["llama"], prompt="Hi", max_new_tokens=6), ctx))[0]
    parent = {"modality": "text", "prompt": "Hi", "extra": dict(first.extra)}
    second = _results(
        _run(_request(models["llama"], prompt="And then?", max_new_tokens=6, parent=[parent]), ctx)
    )[0]
    roles = [m["role"] for m in second.extra["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert second.extra["messages"][1]["content"] == first.text
    assert second.extra["prompt_tokens"] > first.extra["prompt_tokens"]


def test_chat_without_template_notes_the_fallback(models, ctx):
    events = _run(_request(models["gpt2"], mode="chat", max_new_tokens=4), ctx)
    assert any(isinstance(e, Note) and "no chat template" in e.message for e in events)
    assert _results(events)[0].extra["mode"] == "chat"


# --- stop strings and cancel -------------------------------------------------------------------


def test_stop_string_ends_the_text(models, ctx):
    (base,) = _results(_run(_request(models["gpt2"], temperature=0, max_new_tokens=40), ctx))
    text = base.text
    stop = next(text[i : i + 2] for i in range(8, len(text) - 2) if text[i : i + 2].strip())
    expected = text[: text.find(stop)]
    events = _run(_request(models["gpt2"], temperature=0, max_new_tokens=40, stop=[stop]), ctx)
    (out,) = _results(events)
    assert out.text == expected == _streamed(events)
    assert out.extra["finish_reason"] == "stop" and out.extra["stop_string"] == stop
    assert out.extra["new_tokens"] < base.extra["new_tokens"]


def test_cancel_stops_within_one_token(models, ctx):
    lora = LoraSpec(ref=str(models["lora_a"]))
    run = TextGenerator().run(_request(models["llama"], loras=[lora], max_new_tokens=80), ctx)
    partials_after_cancel = 0
    with pytest.raises(Cancelled):
        for event in run:
            if isinstance(event, Partial):
                if ctx.cancel_event.is_set():
                    partials_after_cancel += 1
                ctx.cancel_event.set()
    assert partials_after_cancel == 0
    model = _cached_model(ctx)  # released (not pinned) and clean
    assert not has_adapters(model)


# --- context and memory checks -----------------------------------------------------------------


def test_context_overflow_is_refused_before_loading_weights(models, ctx):
    prompt = "The quick brown fox jumps over the lazy dog. " * 8
    with pytest.raises(InvalidRequest) as info:
        _run(_request(models["gpt2"], prompt=prompt, max_new_tokens=100), ctx)
    message = str(info.value)
    assert "more than the model's context of 128 tokens" in message
    assert "max_new_tokens (100)" in message
    assert not any(e.key.kind == MODEL_KIND for e in ctx.cache.stats().entries)


def test_memory_larger_than_the_device_is_refused(models, ctx, monkeypatch):
    import studio

    # the plugin reads the public helper at call time (it imports nothing from studio.core)
    monkeypatch.setattr(studio, "host_memory_total", lambda: 1000)
    with pytest.raises(
        InvalidRequest,
        match=r"needs about [\d.]+ [kMGT]?B in \w+ .* more than the [\d.]+ [kMGT]?B of",
    ):
        _run(_request(models["gpt2"], max_new_tokens=4), ctx)
    assert not any(e.key.kind == MODEL_KIND for e in ctx.cache.stats().entries)


def test_memory_over_the_cache_budget_warns_and_runs(models, ctx):
    ctx.cache.set_budgets(device_budget=None, host_budget=1000)
    events = _run(_request(models["gpt2"], max_new_tokens=4), ctx)
    warnings = [e for e in events if isinstance(e, Note) and e.level == "warning"]
    assert warnings and "host_budget_gb" in warnings[0].message
    assert _results(events)


# --- adapters ----------------------------------------------------------------------------------


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_adapters_apply_and_unload_restores_the_base(models, ctx):
    import torch

    greedy: dict[str, Any] = {"temperature": 0, "max_new_tokens": 20}
    (base,) = _results(_run(_request(models["llama"], **greedy), ctx))
    model = _cached_model(ctx)
    before_state = _state(model)
    before_modules = [type(m).__name__ for m in model.modules()]

    lora_a = LoraSpec(ref=str(models["lora_a"]), weight=1.0)
    (with_a,) = _results(_run(_request(models["llama"], loras=[lora_a], **greedy), ctx))
    assert with_a.text != base.text
    assert ctx.recipe.adapters[-1] == {
        "ref": str(models["lora_a"]),
        "weight": 1.0,
        "sha256": sha256_file(models["lora_a"] / "adapter_model.safetensors"),
    }

    model = _cached_model(ctx)
    assert not has_adapters(model)
    assert [type(m).__name__ for m in model.modules()] == before_modules
    after = _state(model)
    assert after.keys() == before_state.keys()
    assert all(torch.equal(after[k], before_state[k]) for k in after)
    assert not any(p.requires_grad for p in model.parameters())
    (again,) = _results(_run(_request(models["llama"], **greedy), ctx))
    assert again.text == base.text

    zero = LoraSpec(ref=str(models["lora_a"]), weight=0.0)
    (with_zero,) = _results(_run(_request(models["llama"], loras=[zero], **greedy), ctx))
    assert with_zero.text == base.text  # weight 0 scales the update away

    lora_b = LoraSpec(ref=str(models["lora_b"] / "adapter_model.safetensors"), weight=0.7)
    (with_b,) = _results(_run(_request(models["llama"], loras=[lora_b], **greedy), ctx))
    (both,) = _results(_run(_request(models["llama"], loras=[lora_a, lora_b], **greedy), ctx))
    assert len({base.text, with_a.text, with_b.text, both.text}) == 4
    assert [a["weight"] for a in ctx.recipe.adapters[-2:]] == [1.0, 0.7]
    assert not has_adapters(_cached_model(ctx))


def test_adapter_for_another_model_fails_cleanly(models, ctx):
    wrong = LoraSpec(ref=str(models["lora_gpt2"]))
    with pytest.raises(InvalidRequest, match="does not fit this model"):
        _run(_request(models["llama"], loras=[wrong], max_new_tokens=4), ctx)
    assert not has_adapters(_cached_model(ctx))
    events = _run(_request(models["llama"], max_new_tokens=4), ctx)
    assert _results(events)


def test_adapter_folder_must_be_a_peft_adapter(models, ctx, tmp_path):
    with pytest.raises(InvalidRequest, match=r"adapter_config\.json"):
        _run(_request(models["llama"], loras=[LoraSpec(ref=str(tmp_path))], max_new_tokens=4), ctx)
    with pytest.raises(InvalidRequest, match="no such file"):
        TextGenerator().check(_request(models["llama"], loras=[LoraSpec(ref="./missing")]))


def test_check_refuses_local_models_that_are_not_transformers_folders(models, tmp_path):
    with pytest.raises(InvalidRequest, match="single file"):
        TextGenerator().check(_request(models["llama"] / "model.safetensors"))
    with pytest.raises(InvalidRequest, match=r"no config\.json"):
        TextGenerator().check(_request(tmp_path))
    TextGenerator().check(_request(models["llama"]))  # a model folder passes


# --- through the studio: hub ids, artifacts, regenerate, conversations, cancel, CLI -----------


@pytest.fixture
def app(studio_app, register_plugin):
    register_plugin(studio_text, name="text-under-test")
    return studio_app


def _submit(app, **fields: Any) -> tuple[str, list[Any]]:
    events: list[Any] = []
    unsubscribe = app.subscribe(lambda e: events.append(e))
    try:
        job = app.submit(GenerationRequest(generator=TextGenerator.id, **fields))
        record = app.wait(job, timeout=120)
    finally:
        unsubscribe()
    assert record.state == JobState.SUCCEEDED, record.error
    return job, [e.event for e in events if e.job_id == job]


def test_hub_id_resolves_offline_and_is_recorded(app, hub_cache):
    snapshot = save_tiny_causal_lm_to_hub(hub_cache, "studio-tests/tiny-llama", "llama")
    _, events = _submit(
        app, prompt="Hello", model="studio-tests/tiny-llama", seed=3, options={"max_new_tokens": 12}
    )
    (saved,) = [e for e in events if isinstance(e, ArtifactSaved)]
    recipe = saved.recipe
    assert recipe["model"]["ref"] == "studio-tests/tiny-llama"
    assert recipe["model"]["source"] == "hub" and recipe["model"]["revision"] == snapshot.name
    assert recipe["model"]["sha256"] == sha256_file(snapshot / "model.safetensors")
    assert Path(saved.path).read_text(encoding="utf-8") == _streamed(events)
    sidecar = json.loads(Path(str(saved.path) + ".json").read_text(encoding="utf-8"))
    assert sidecar["extra"]["reply"] == _streamed(events)
    assert sidecar["generator"] == "text-generation" and sidecar["task"] == "text-generation"


def test_regenerate_one_candidate_reproduces_it(app, models):
    _, events = _submit(
        app,
        prompt="Once",
        model=str(models["gpt2"]),
        seed=42,
        options={"max_new_tokens": 16, "candidates": 3, "temperature": 1.0},
    )
    saved = [e for e in events if isinstance(e, ArtifactSaved)]
    assert [s.recipe["seed"] for s in saved] == [42, 43, 44]
    job = app.regenerate(saved[1].artifact_id)
    record = app.wait(job, timeout=120)
    assert record.state == JobState.SUCCEEDED, record.error
    (again,) = [app.store.get_artifact(a) for a in record.artifact_ids]
    assert again.recipe["index"] == 1 and again.recipe["seed"] == 43
    assert artifact_content(again.path, "text") == artifact_content(saved[1].path, "text")
    # the other candidates were not generated at all
    streamed = [e for e in app.store.job_events(job) if e["type"] == "partial"]
    assert streamed and {e["payload"]["index"] for e in streamed} == {1}


def test_conversation_through_the_artifact_chain(app, models):
    _, first = _submit(
        app,
        prompt="Hi there",
        model=str(models["llama"]),
        seed=1,
        options={"max_new_tokens": 8, "system_prompt": "Be brief."},
    )
    (turn1,) = [e for e in first if isinstance(e, ArtifactSaved)]
    _, second = _submit(
        app,
        prompt="Why?",
        model=str(models["llama"]),
        seed=1,
        parent=turn1.artifact_id,
        options={"max_new_tokens": 8},
    )
    (turn2,) = [e for e in second if isinstance(e, ArtifactSaved)]
    messages = turn2.recipe["extra"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "Be brief."
    assert messages[2]["content"] == Path(turn1.path).read_text(encoding="utf-8")
    assert messages[4]["content"] == Path(turn2.path).read_text(encoding="utf-8")


def test_cancel_a_running_job(app, models):
    events: list[Any] = []
    job_ids: list[str] = []

    def on_event(e: Any) -> None:
        events.append(e)
        if isinstance(e.event, Partial) and job_ids:
            app.cancel(job_ids[0])

    unsubscribe = app.subscribe(on_event)
    try:
        job_ids.append(
            app.submit(
                GenerationRequest(
                    generator=TextGenerator.id,
                    prompt="Go",
                    model=str(models["llama"]),
                    options={"max_new_tokens": 80},
                )
            )
        )
        record = app.wait(job_ids[0], timeout=120)
    finally:
        unsubscribe()
    assert record.state == JobState.CANCELLED
    assert not record.artifact_ids
    partials = [e for e in events if isinstance(e.event, Partial)]
    assert 1 <= len(partials) <= 2  # the one that triggered the cancel (and one in flight)


def test_adapter_hash_in_the_recipe(app, models):
    _, events = _submit(
        app,
        prompt="Hi",
        model=str(models["llama"]),
        seed=5,
        loras=[LoraSpec(ref=str(models["lora_a"]), weight=0.5)],
        options={"max_new_tokens": 6},
    )
    (saved,) = [e for e in events if isinstance(e, ArtifactSaved)]
    (adapter,) = saved.recipe["adapters"]
    assert adapter["weight"] == 0.5
    assert adapter["sha256"] == sha256_file(models["lora_a"] / "adapter_model.safetensors")


def test_cli_streams_text_and_writes_the_artifact(studio_home, models, capsys, monkeypatch):
    from studio.cli import main

    monkeypatch.setenv("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "text")
    out_dir = studio_home / "cli-out"
    code = main(
        [
            "generate",
            "text-generation",
            "--prompt",
            "Once upon a time",
            "--model",
            str(models["gpt2"]),
            "--seed",
            "9",
            "--set",
            "max_new_tokens=12",
            "--set",
            "temperature=0",
            "--out",
            str(out_dir),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    (artifact,) = doc["artifacts"]
    text = Path(artifact["path"]).read_text(encoding="utf-8")
    assert Path(artifact["path"]).parent == out_dir
    code = main(
        [
            "generate",
            "text-generation",
            "--prompt",
            "Once upon a time",
            "--model",
            str(models["gpt2"]),
            "--seed",
            "9",
            "--set",
            "max_new_tokens=12",
            "--set",
            "temperature=0",
            "--out",
            str(out_dir),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert text in captured.err  # streamed to the terminal as it was generated


# --- the shared generator contract -------------------------------------------------------------


class TestTextGeneratorContract(GeneratorContract):
    generator_cls = TextGenerator
    options = {"max_new_tokens": 8}
    prompt = "A short story about a fox"

    @pytest.fixture
    def model_ref(self, models) -> str:
        return str(models["llama"])


# --- CUDA (skipped without a GPU) ---------------------------------------------------------------


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_cuda_half_precision_with_adapters(models, tmp_path):
    import torch

    ctx = RunContext(
        job_id="gpu",
        device="cuda:0",
        cache=ModelCache(),
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test.text.gpu"),
    )
    greedy: dict[str, Any] = {"temperature": 0, "max_new_tokens": 16}
    events = _run(_request(models["llama"], **greedy), ctx)
    (base,) = _results(events)
    assert base.text == _streamed(events)
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert ctx.recipe.dtype == expected
    model = _cached_model(ctx)
    assert str(next(model.parameters()).dtype) == f"torch.{expected}"
    assert next(model.parameters()).device.type == "cuda"
    before = _state(model)
    lora = LoraSpec(ref=str(models["lora_a"]))
    (adapted,) = _results(_run(_request(models["llama"], loras=[lora], **greedy), ctx))
    assert adapted.text != base.text
    after = _state(_cached_model(ctx))
    assert all(torch.equal(after[k], before[k]) for k in before)
    sampled = _results(_run(_request(models["llama"], candidates=2, max_new_tokens=16), ctx))
    again = _results(_run(_request(models["llama"], candidates=2, max_new_tokens=16), ctx))
    assert [o.text for o in sampled] == [o.text for o in again]
