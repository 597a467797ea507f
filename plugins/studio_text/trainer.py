"""The text LoRA trainer: a peft LoRA adapter for a transformers causal LM, from the artist's text.

It uses only the public API: the studio's shared training loop (:class:`studio.FineTuneLoop`)
does the training, the checkpoints, the resume, validation and the rest; this module reads the
files (:mod:`.train_data`), puts a LoRA adapter on the base model, writes samples through the text
generator's decoding, and saves the adapter in the standard peft layout
(``adapter_config.json`` + ``adapter_model.safetensors``) with its training recipe
(``training_recipe.json``), which the text generator applies with ``--lora``.

The base model comes from the shared model cache as its own entry (kind ``causal-lm-train``):
the adapter is injected for the run and taken out afterwards (never merged), so the weights in the
cache stay the base model's, and a generation served while the training waits uses its own entry.

torch, transformers, peft and accelerate are imported inside the functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
    AdapterOutput,
    FineTuneLoop,
    IngestReport,
    InvalidRequest,
    LoopSettings,
    Note,
    PluginEvent,
    Result,
    Sample,
    TextOutput,
    Trainer,
    TrainingRun,
    ingest_dataset,
    quiet_model_loading,
    run_fingerprint,
    split_validation,
)

from .adapters import _strip, has_adapters
from .decoding import Sampling, stream_generate
from .detok import IncrementalDecoder, StopMatcher
from .generator import DEFAULT_MODEL, TextGenerator
from .loading import TextModelInfo, check_memory, estimate_bytes, load_causal_lm, pick_dtype
from .loading import use_info as use_model_info
from .options import TextOptions
from .prompting import PromptPlan, build_prompt
from .train_data import (
    CHAT_SUFFIXES,
    MAX_FILE_BYTES,
    SUFFIXES,
    Example,
    causal_lm_loss,
    chat_example,
    check_chat_file,
    chunk,
    collate,
    encode_document,
    pack,
    parse_chat_line,
    read_text,
)
from .train_options import ALL_LINEAR, COSMETIC_OPTIONS, TextLoraOptions

if TYPE_CHECKING:
    from studio import ResolvedModel, TrainContext

#: Cache kind of the base model a training puts its adapter on (not the generator's entry).
TRAIN_KIND = "causal-lm-train"
#: The training recipe saved next to the adapter.
RECIPE_FILE = "training_recipe.json"
#: Attention projections that ``target_modules = auto`` picks, by family.
_ATTENTION = (("q_proj", "k_proj", "v_proj", "o_proj"), ("qkv_proj", "o_proj"), ("c_attn",))


class TextLoraTrainer(Trainer[TextLoraOptions]):
    """Learns a LoRA adapter from a folder of .txt/.md text or .jsonl chat examples."""

    id: ClassVar[str] = "text-lora"
    name: ClassVar[str] = "Text LoRA"
    modality: ClassVar[Any] = "text"
    default_model: ClassVar[str | None] = DEFAULT_MODEL
    Options: ClassVar[type[TextLoraOptions]] = TextLoraOptions
    description: ClassVar[str] = (
        "Teach a language model your style: a LoRA adapter learnt from your prose, lyrics or "
        "poems (.txt, .md) or chat examples (.jsonl), for the text generator."
    )
    imports: ClassVar[tuple[str, ...]] = ("transformers.modeling_utils", "peft", "accelerate")

    # -- before the run ------------------------------------------------------------------------
    def ingest(self, dataset: Path, options: TextLoraOptions) -> IngestReport:
        """Which files are UTF-8 text or chat examples this trainer can learn from (the others,
        with the reason): the studio's shared ingest, and the chat examples' own checks."""
        return self._ingest(dataset)

    @staticmethod
    def _ingest(dataset: Path, hash_file: Callable[[Path], str] | None = None) -> IngestReport:
        report = ingest_dataset(
            dataset,
            kinds=("text",),
            extensions=SUFFIXES,
            max_file_bytes=MAX_FILE_BYTES,
            hash_file=hash_file,
        )
        for path in list(report.usable):
            if path.suffix.lower() in CHAT_SUFFIXES:
                reason = check_chat_file(path)
                if reason is not None:
                    report.skip(path, reason)
        chats = sum(1 for p in report.usable if p.suffix.lower() in CHAT_SUFFIXES)
        if report.usable:
            report.notes.append(
                f"{len(report.usable) - chats} text file(s) and {chats} chat example file(s)"
            )
        return report

    # -- the run ---------------------------------------------------------------------------------
    def run(
        self, request: TrainingRun[TextLoraOptions], ctx: TrainContext
    ) -> Iterator[PluginEvent]:
        from . import __version__

        opts = _options(request.options)
        assert request.base_model is not None, "the text trainer always has a base model"
        assert ctx.checkpoints is not None, "the studio gives every training a checkpoint store"
        report = self._ingest(request.dataset, ctx.hash_file)
        if not report.usable:
            raise InvalidRequest(f"no usable text in {request.dataset}: {_skipped(report)}")
        for name, reason in list(report.skipped.items())[:20]:
            yield Note(f"skipped {name}: {reason}", level="warning")
        resolved = ctx.resolve_model(request.base_model)
        dataset_hash = report.manifest.sha256
        with use_model_info(ctx, resolved) as info:
            data = prepare_data(info, report.usable, opts, root=report.root)
            prompts = sample_plans(info, opts)
            for message in data.notes:
                yield Note(message)
            dtype = pick_dtype(ctx.device)
            needed = estimate_bytes(resolved, info, dtype, data.sequence_length * opts.batch_size)
            warning = check_memory(ctx, resolved, needed, dtype)
            if warning:
                yield Note(warning, level="warning")
            base_entry = ctx.describe_model(resolved)
            fingerprint = run_fingerprint(
                trainer=self.id,
                trainer_version=__version__,
                base_model=base_entry,
                dataset=dataset_hash,
                options={
                    key: value
                    for key, value in opts.model_dump(mode="json").items()
                    if key not in COSMETIC_OPTIONS
                },
            )
            ctx.check_cancelled()
            with (
                ctx.use_model(
                    resolved,
                    kind=TRAIN_KIND,
                    dtype=dtype,
                    loader=lambda: load_causal_lm(resolved, ctx.device, dtype),
                ) as base,
                lora_attached(base, opts) as (model, targets),
            ):
                loop = FineTuneLoop(
                    ctx,
                    model,
                    train=data.train,
                    validation=data.validation,
                    collate=lambda batch: collate(batch, data.pad_id),
                    loss=causal_lm_loss,
                    settings=loop_settings(opts),
                    fingerprint=fingerprint,
                    sample=Sampler(info, opts, prompts) if prompts else None,
                )
                try:
                    yield from loop.run()
                    result = loop.result.summary()
                    result["perplexity_before"] = perplexity(result["validation_before"])
                    result["perplexity_after"] = perplexity(result["exported_validation"])
                    recipe = {
                        "format": 1,
                        "trainer": self.id,
                        "plugin": "studio_text",
                        "trainer_version": __version__,
                        "base_model": base_entry,
                        "dataset": {"manifest_sha256": dataset_hash, **data.counts()},
                        "options": opts.model_dump(mode="json"),
                        "resolved": {
                            "target_modules": targets,
                            "sequence_length": data.sequence_length,
                            "overlap": data.overlap,
                            "steps": loop.total,
                            "warmup_steps": loop.warmup,
                            "processes": loop.world,
                            "mixed_precision": loop.fingerprint["loop"]["mixed_precision"],
                            "dtype": dtype,
                        },
                        "seed": opts.seed,
                        "result": result,
                        "libraries": _libraries(),
                    }
                    loop.export(
                        request.output_dir,
                        adapter_writer(model, request.base_model, resolved, recipe),
                    )
                finally:
                    loop.close()
        before, after = result["perplexity_before"], result["perplexity_after"]
        if before is not None and after is not None:
            yield Note(f"perplexity on the held-out text: {before:.2f} before, {after:.2f} after")
        yield Result(
            AdapterOutput(
                path=request.output_dir,
                base_model=request.base_model,
                name=request.name,
                modality="text",
                extra={
                    "trainer": self.id,
                    "steps": result["steps"],
                    "validation_loss": result["exported_validation"],
                    "perplexity_before": before,
                    "perplexity_after": after,
                    "stopped_early": result["stopped_early"],
                    "resumed_from": loop.result.resumed_from,
                    "recipe": RECIPE_FILE,
                },
            )
        )


def _options(value: Any) -> TextLoraOptions:
    """The validated Options (the studio passes an instance; a dict is validated here)."""
    if isinstance(value, TextLoraOptions):
        return value
    return TextLoraOptions.model_validate(value or {})


def _skipped(report: IngestReport) -> str:
    if not report.skipped:
        return "the folder is empty"
    shown = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5])
    return f"skipped {shown}"


def loop_settings(opts: TextLoraOptions) -> LoopSettings:
    """The shared loop's settings from the trainer's Options."""
    return LoopSettings(
        steps=opts.steps,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        grad_accumulation=opts.grad_accumulation,
        learning_rate=opts.learning_rate,
        scheduler=opts.scheduler,
        warmup_ratio=opts.warmup,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        seed=opts.seed,
        checkpoint_every=opts.checkpoint_every,
        validate_every=opts.validate_every,
        sample_every=opts.sample_every,
        early_stopping_patience=opts.early_stopping_patience,
        early_stopping_min_delta=opts.early_stopping_min_delta,
        mixed_precision=opts.mixed_precision,
        gradient_checkpointing=opts.gradient_checkpointing,
        export=opts.export,
    )


def perplexity(loss: float | None) -> float | None:
    """``exp`` of a mean token loss (``None`` when there was no validation)."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))


def _libraries() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


# --- data -----------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """The examples of a run, split, and what was decided on the way."""

    train: list[Example]
    validation: list[Example]
    sequence_length: int
    overlap: int
    pad_id: int
    train_files: int = 0
    validation_files: int = 0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "train_files": self.train_files,
            "validation_files": self.validation_files,
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "train_tokens": sum(len(e.input_ids) for e in self.train),
            "validation_tokens": sum(len(e.input_ids) for e in self.validation),
        }


def held_out(count: int, opts: TextLoraOptions, salt: int) -> set[int]:
    """Which of ``count`` examples (of a single file) the seeded validation split holds out (at
    least one when a split is asked for and there are two or more; never all)."""
    if opts.validation_count:
        wanted = opts.validation_count
    elif opts.validation_fraction > 0:
        wanted = max(1, round(count * opts.validation_fraction))
    else:
        return set()
    wanted = min(wanted, count - 1)
    if wanted < 1:
        return set()
    import numpy as np

    order = np.random.default_rng([opts.seed, salt]).permutation(count)
    return {int(i) for i in order[:wanted]}


def prepare_data(
    info: TextModelInfo,
    files: Sequence[Path],
    opts: TextLoraOptions,
    root: Path | None = None,
) -> PreparedData:
    """Tokenize the files, cut them into examples and split off the validation part.

    With two files or more whole files are held out (the studio's seeded split,
    :func:`studio.split_validation`: nothing of them is seen in training); with one, examples of
    it are.
    """
    tokenizer = info.tokenizer
    notes = []
    length = opts.sequence_length
    if info.context is not None and length > info.context:
        length = info.context
        notes.append(f"sequence_length lowered to the model's context: {length} tokens")
    overlap = min(opts.overlap, length // 2)
    if opts.layout == "chunks" and overlap < opts.overlap:
        notes.append(f"overlap lowered to half the sequence length: {overlap} tokens")
    pad_id = info.pad_id if info.pad_id is not None else 0
    eos = tokenizer.eos_token_id
    files = list(files)
    held: set[int] = set()
    if len(files) > 1:
        split = (
            {"count": opts.validation_count}
            if opts.validation_count
            else {"fraction": opts.validation_fraction}
        )
        _, held_files = split_validation(files, seed=opts.seed, root=root, **split)
        held = {files.index(path) for path in held_files}
    documents: dict[bool, list[list[int]]] = {False: [], True: []}
    chats: dict[bool, list[Example]] = {False: [], True: []}
    truncated = 0
    with quiet_model_loading("transformers"):  # "sequence longer than the model's maximum"
        for index, path in enumerate(files):
            is_held = index in held
            text = read_text(path)
            if path.suffix.lower() not in CHAT_SUFFIXES:
                documents[is_held].append(encode_document(tokenizer, text, eos))
                continue
            for line in text.split("\n"):
                if not line.strip():
                    continue
                example = chat_example(tokenizer, parse_chat_line(line), eos)
                if len(example.input_ids) > length:
                    truncated += 1
                    example = Example(example.input_ids[:length], example.labels[:length])
                if example.targets:
                    chats[is_held].append(example)
    if truncated:
        notes.append(
            f"{truncated} chat example(s) longer than {length} tokens were cut to that length"
        )

    def examples(validation: bool) -> list[Example]:
        docs = documents[validation]
        if opts.layout == "packed":
            cut = pack(docs, length)
        else:
            cut = [e for doc in docs for e in chunk(doc, length, overlap)]
        return cut + chats[validation]

    train, validation = examples(False), examples(True)
    if len(files) == 1:
        held_examples = held_out(len(train), opts, salt=2)
        validation = [e for i, e in enumerate(train) if i in held_examples]
        train = [e for i, e in enumerate(train) if i not in held_examples]
    if not train:
        raise InvalidRequest(
            "the files give no example to learn from (chat examples need assistant turns that "
            "fit the sequence length)"
        )
    asked = opts.validation_fraction > 0 or opts.validation_count > 0
    if asked and not validation:
        notes.append("too little text to hold some out: no validation loss (add files or text)")
    data = PreparedData(
        train=train,
        validation=validation,
        sequence_length=length,
        overlap=overlap if opts.layout == "chunks" else 0,
        pad_id=int(pad_id),
        train_files=len(files) - len(held),
        validation_files=len(held),
        notes=notes,
    )
    counts = data.counts()
    notes.append(
        f"{counts['train_examples']} training example(s) ({counts['train_tokens']} tokens) and "
        f"{counts['validation_examples']} for validation, {length} tokens each at most"
    )
    return data


# --- the adapter ----------------------------------------------------------------------------------


def resolve_targets(model: Any, opts: TextLoraOptions) -> list[str] | str:
    """The modules to adapt: the names given (checked), ``"all-linear"``, or for auto the
    attention projections of the model's family (every linear layer when none is known)."""
    linear = _linear_names(model)
    if opts.target_modules == ALL_LINEAR:
        return ALL_LINEAR
    given = opts.target_list()
    if given is not None:
        missing = [name for name in given if name not in linear]
        if missing:
            raise InvalidRequest(
                f"target_modules: this model has no linear layer named {', '.join(missing)}; "
                f"its linear layers are {', '.join(sorted(linear))} (or use auto, all-linear)"
            )
        return given
    for family in _ATTENTION:
        present = [name for name in family if name in linear]
        if present and (family[0] != "q_proj" or {"q_proj", "v_proj"} <= set(present)):
            return present
    return ALL_LINEAR


def _linear_names(model: Any) -> set[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    names.discard("lm_head")
    return names


def _uses_conv1d(model: Any, targets: list[str] | str) -> bool:
    """Whether the adapted layers are GPT-2 style ``Conv1D`` (weights stored transposed)."""
    for name, module in model.named_modules():
        if type(module).__name__ != "Conv1D":
            continue
        if targets == ALL_LINEAR or name.rsplit(".", 1)[-1] in targets:
            return True
    return False


@contextmanager
def lora_attached(base: Any, opts: TextLoraOptions) -> Iterator[tuple[Any, list[str]]]:
    """Put a fresh LoRA adapter (seeded) on ``base`` for the block; take it out afterwards.

    Yields the peft model and the names of the adapted modules. The base model (a cache entry)
    is left as it was: its modules, frozen weights, eval mode and ``use_cache``.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    if has_adapters(base):
        raise RuntimeError("the cached base model already carries adapters")
    targets = resolve_targets(base, opts)
    config = LoraConfig(
        r=opts.rank,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=targets,
        fan_in_fan_out=_uses_conv1d(base, targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    use_cache = getattr(base.config, "use_cache", None)
    peft_model: Any = None
    try:
        torch.manual_seed(opts.seed)  # the adapter's initial weights
        with quiet_model_loading("transformers", "peft"):
            try:
                peft_model = get_peft_model(base, config)
            except ValueError as exc:
                raise InvalidRequest(f"target_modules {opts.target_modules!r}: {exc}") from exc
        adapted = sorted(peft_model.peft_config["default"].target_modules)
        yield peft_model, adapted
    finally:
        if peft_model is not None:
            with quiet_model_loading("transformers", "peft"):
                peft_model.unload()
        if has_adapters(base):
            _strip(base)
        base.eval()
        base.requires_grad_(False)
        if use_cache is not None:
            base.config.use_cache = use_cache


def adapter_writer(
    model: Any, base_model: str, resolved: ResolvedModel, recipe: dict[str, Any]
) -> Any:
    """``write(folder)``: the adapter in peft's layout, and the training recipe beside it."""

    def write(folder: Path) -> None:
        config = model.peft_config["default"]
        config.base_model_name_or_path = base_model  # the reference, not a cache folder
        config.revision = resolved.revision
        with quiet_model_loading("transformers", "peft"):
            model.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)
        text = json.dumps(recipe, indent=2, sort_keys=True) + "\n"
        (folder / RECIPE_FILE).write_text(text, encoding="utf-8")

    return write


# --- samples --------------------------------------------------------------------------------------


def sample_plans(info: TextModelInfo, opts: TextLoraOptions) -> list[PromptPlan]:
    """The sample prompts formatted as the text generator formats them (refused now if one does
    not fit the model's context)."""
    return [
        build_prompt(
            info.tokenizer,
            mode="auto",
            prompt=prompt,
            system_prompt="",
            parent_recipes=[],
            max_new_tokens=opts.sample_max_tokens,
            context=info.context,
        )
        for prompt in opts.sample_prompts
    ]


class Sampler:
    """Writes each sample prompt's text with the model as it is now, through the text
    generator's decoding (its default sampling settings), at the seed ``seed + i``."""

    def __init__(self, info: TextModelInfo, opts: TextLoraOptions, plans: list[PromptPlan]):
        defaults = TextOptions()
        self.info = info
        self.plans = plans
        self.prompts = list(opts.sample_prompts)
        self.seed = opts.seed
        self.sampling = Sampling(
            max_new_tokens=opts.sample_max_tokens,
            temperature=defaults.temperature,
            top_p=defaults.top_p,
            top_k=defaults.top_k,
            repetition_penalty=defaults.repetition_penalty,
        )

    def __call__(self, model: Any, step: int) -> Iterator[PluginEvent]:
        import torch

        # the transformers model itself, its layers carrying the adapter
        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        eos = frozenset(self.info.eos_ids)
        for index, plan in enumerate(self.plans):
            seed = (self.seed + index) % 2**32
            ids = torch.tensor([plan.ids], dtype=torch.long, device=lm.device)
            detok = IncrementalDecoder(self.info.decode, plan.ids)
            stopper = StopMatcher(plan.extra_stops)
            pieces = []
            steps = stream_generate(
                lm,
                ids,
                self.sampling,
                seed=seed,
                eos_token_id=self.info.eos_ids,
                pad_token_id=self.info.pad_id,
            )
            try:
                for token, _done in steps:
                    if token in eos:
                        break
                    pieces.append(stopper.push(detok.push(token)))
                    if stopper.stopped is not None:
                        break
            finally:
                steps.close()
            pieces.append(stopper.push(detok.flush()) + stopper.flush())
            text = "".join(pieces)
            extra = {
                "prompt": self.prompts[index],
                "mode": plan.mode,
                "step": step,
                "generator": TextGenerator.id,  # its decoding wrote the sample (for the recipe)
            }
            yield Sample(step, TextOutput(text=text, seed=seed, index=index, extra=extra))
