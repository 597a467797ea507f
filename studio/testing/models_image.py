"""Tiny random-weight diffusers pipelines for tests and benchmarks, built offline from configs.

Everything here is built from configs with seeded random weights, in the spirit of diffusers'
``get_dummy_components``: the outputs are noise, but shapes, determinism, metadata, events and
state can be asserted on. Nothing is downloaded: even the CLIP tokenizer is written by the factory
(a byte-level BPE vocabulary with a few merges).

Layouts written:

- :func:`save_tiny_sd` / :func:`save_tiny_sdxl`: a diffusers folder (``model_index.json`` + one
  folder per component, safetensors weights);
- :func:`save_tiny_sd_to_hub`: the same folder inside a Hugging Face hub cache, to test hub ids;
- :func:`save_single_file`: one ``.safetensors`` checkpoint with the original Stable Diffusion
  (LDM) key names, as shared on model sites;
- :func:`save_kohya_lora` / :func:`save_diffusers_lora`: LoRA adapters for the tiny models, in the
  kohya format of model sites and in the diffusers/peft format.

torch, diffusers and transformers are imported inside the functions, so importing this module is
cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

Preset = Literal["tiny", "small"]

#: Words that get whole-word BPE merges in the tiny tokenizer (other words split into letters).
_WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    "red",
    "blue",
    "green",
    "portrait",
    "landscape",
    "painting",
    "oil",
    "watercolor",
    "sky",
    "sea",
    "tree",
    "house",
    "city",
    "night",
    "day",
    "sun",
    "moon",
    "light",
    "dark",
    "style",
    "art",
    "detailed",
    "high",
    "quality",
    "best",
    "masterpiece",
    "beautiful",
    "woman",
    "man",
    "girl",
    "boy",
    "forest",
    "mountain",
    "river",
    "flower",
    "castle",
]

_SPECIAL_BOS = "<|startoftext|>"
_SPECIAL_EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode table (the base alphabet of byte-level BPE)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_clip_tokenizer(folder: Path) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and configs of a tiny CLIP tokenizer into ``folder``.

    The alphabet is the full byte-level one (so any text tokenizes), plus whole-word merges for a
    few common prompt words; every other word is split into characters, which makes long prompts
    easy to produce in tests.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    known = set(vocab_list)
    for word in _WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for nxt in pieces[1:]:
            merges.append(f"{current} {nxt}")
            current = current + nxt
            if current not in known:
                known.add(current)
                vocab_list.append(current)
    vocab_list += [_SPECIAL_BOS, _SPECIAL_EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    unique_merges = list(dict.fromkeys(merges))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(unique_merges) + "\n", encoding="utf-8"
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": _SPECIAL_BOS,
                "eos_token": _SPECIAL_EOS,
                "pad_token": _SPECIAL_EOS,
                "unk_token": _SPECIAL_EOS,
            }
        ),
        encoding="utf-8",
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": _SPECIAL_BOS,
                "eos_token": _SPECIAL_EOS,
                "pad_token": _SPECIAL_EOS,
                "unk_token": _SPECIAL_EOS,
                "do_lower_case": True,
            }
        ),
        encoding="utf-8",
    )
    return folder


def tiny_clip_tokenizer(folder: Path) -> Any:
    """Write the tiny tokenizer files into ``folder`` and load them as a ``CLIPTokenizer``."""
    from transformers import CLIPTokenizer

    write_tiny_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def _text_encoder_config(
    vocab_size: int, eos_id: int, bos_id: int, hidden: int, projection_dim: int | None = None
) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        hidden_size=hidden,
        intermediate_size=37 if hidden == 32 else hidden * 4,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        projection_dim=projection_dim or hidden,
    )


def tiny_sd_components(tokenizer_dir: Path, *, seed: int = 0, preset: Preset = "tiny") -> dict:
    """Components of a Stable Diffusion 1.x-style pipeline with random weights.

    ``tiny`` (tests): 64x64 native size, a few thousand parameters per model, milliseconds a step.
    ``small`` (benchmarks): 128x128 native size, wider blocks, so that a step costs enough for
    overhead ratios to mean something.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    vocab = tokenizer.get_vocab()
    unet_channels: tuple[int, ...]
    vae_channels: tuple[int, ...]
    if preset == "tiny":
        unet_channels, vae_channels, groups, cross, sample = (4, 8), (4, 8), 2, 32, 32
    else:
        unet_channels, vae_channels, groups, cross, sample = (32, 64, 64), (16, 32, 32), 8, 64, 32
    torch.manual_seed(seed)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=1 if preset == "tiny" else 2,
        sample_size=sample,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cross,
        norm_num_groups=groups,
        attention_head_dim=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=list(vae_channels),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(vae_channels),
        latent_channels=4,
        norm_num_groups=groups if preset == "tiny" else 8,
        sample_size=sample * 2 ** (len(vae_channels) - 1),
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        _text_encoder_config(len(vocab), vocab[_SPECIAL_EOS], vocab[_SPECIAL_BOS], cross)
    )
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def make_tiny_sd_pipeline(tokenizer_dir: Path, *, seed: int = 0, preset: Preset = "tiny") -> Any:
    """A ``StableDiffusionPipeline`` from :func:`tiny_sd_components` (on the CPU, float32)."""
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        **tiny_sd_components(tokenizer_dir, seed=seed, preset=preset),
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sd(folder: Path, *, seed: int = 0, preset: Preset = "tiny") -> Path:
    """Save a tiny SD 1.x-style pipeline in diffusers layout (safetensors) into ``folder``."""
    folder = Path(folder)
    scratch = folder.parent / f".{folder.name}-tokenizer"
    pipe = make_tiny_sd_pipeline(scratch, seed=seed, preset=preset)
    pipe.save_pretrained(folder, safe_serialization=True)
    _copy_tokenizer_files(scratch, folder / "tokenizer")
    return folder


def tiny_sdxl_components(tokenizer_dir: Path, *, seed: int = 0) -> dict:
    """Components of an SDXL-style pipeline (two text encoders, micro-conditioning), tiny."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    vocab = tokenizer.get_vocab()
    eos, bos = vocab[_SPECIAL_EOS], vocab[_SPECIAL_BOS]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 * 8 time ids + 32 pooled text
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_encoder_config(len(vocab), eos, bos, 32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(
        _text_encoder_config(len(vocab), eos, bos, 32, projection_dim=32)
    )
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer,
        "image_encoder": None,
        "feature_extractor": None,
    }


def save_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny SDXL-style pipeline in diffusers layout into ``folder``."""
    from diffusers import StableDiffusionXLPipeline

    folder = Path(folder)
    scratch = folder.parent / f".{folder.name}-tokenizer"
    pipe: Any = StableDiffusionXLPipeline(**tiny_sdxl_components(scratch, seed=seed))
    pipe.save_pretrained(folder, safe_serialization=True)
    _copy_tokenizer_files(scratch, folder / "tokenizer")
    _copy_tokenizer_files(scratch, folder / "tokenizer_2")
    return folder


def _copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Put the plain vocab/merges next to what save_pretrained wrote (classic CLIP layout)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(Path(src) / name, dst / name)


def save_tiny_sd_to_hub(
    cache_dir: Path,
    repo_id: str = "studio-tests/tiny-sd",
    *,
    seed: int = 0,
    folder: Path | None = None,
) -> Path:
    """Put a tiny SD pipeline into a hub cache (``cache_dir``) as ``repo_id``; return the snapshot.

    ``folder`` reuses an already saved diffusers folder instead of building a new model.
    """
    from studio.testing.hub import save_to_hub_cache

    cache_dir = Path(cache_dir)
    if folder is None:
        folder = save_tiny_sd(cache_dir.parent / f".{repo_id.replace('/', '--')}-src", seed=seed)
    return save_to_hub_cache(folder, repo_id, cache_dir)


# --- single-file (original Stable Diffusion / LDM key names) -------------------------------------

_UNET_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def _unet_to_ldm(unet: Any) -> dict[str, Any]:
    """Rename a diffusers SD 1.x UNet state dict to the original ``model.diffusion_model`` keys.

    The inverse of diffusers' ``convert_ldm_unet_checkpoint`` for any number of blocks and
    layers per block (the original script assumes SD 1.x's four blocks of two).
    """
    cfg = unet.config
    per = cfg.layers_per_block
    n = len(cfg.block_out_channels)
    rename: dict[str, str] = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for b in range(n):
        for j in range(per):
            ldm = 1 + b * (per + 1) + j
            rename[f"down_blocks.{b}.resnets.{j}."] = f"input_blocks.{ldm}.0."
            rename[f"down_blocks.{b}.attentions.{j}."] = f"input_blocks.{ldm}.1."
        if b < n - 1:
            rename[f"down_blocks.{b}.downsamplers.0.conv."] = (
                f"input_blocks.{1 + b * (per + 1) + per}.0.op."
            )
        has_attention = "CrossAttn" in cfg.up_block_types[b]
        for j in range(per + 1):
            ldm = b * (per + 1) + j
            rename[f"up_blocks.{b}.resnets.{j}."] = f"output_blocks.{ldm}.0."
            rename[f"up_blocks.{b}.attentions.{j}."] = f"output_blocks.{ldm}.1."
        if b < n - 1:
            last = b * (per + 1) + per
            rename[f"up_blocks.{b}.upsamplers.0.conv."] = (
                f"output_blocks.{last}.{2 if has_attention else 1}.conv."
            )
    rename["mid_block.resnets.0."] = "middle_block.0."
    rename["mid_block.attentions.0."] = "middle_block.1."
    rename["mid_block.resnets.1."] = "middle_block.2."

    out = {}
    for key, value in unet.state_dict().items():
        prefix = max((p for p in rename if key.startswith(p)), key=len, default=None)
        if prefix is None:
            raise ValueError(f"no LDM name for UNet key {key}")
        rest = key[len(prefix) :]
        if ".resnets." in prefix:
            for new, old in _UNET_RESNET:
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
        out["model.diffusion_model." + rename[prefix] + rest] = value
    return out


def _vae_to_ldm(vae: Any) -> dict[str, Any]:
    """Rename a diffusers AutoencoderKL state dict to the original ``first_stage_model`` keys."""
    n = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        new = key
        for b in range(n):
            new = new.replace(f"encoder.down_blocks.{b}.resnets.", f"encoder.down.{b}.block.")
            new = new.replace(
                f"encoder.down_blocks.{b}.downsamplers.0.", f"encoder.down.{b}.downsample."
            )
            new = new.replace(f"decoder.up_blocks.{b}.resnets.", f"decoder.up.{n - 1 - b}.block.")
            new = new.replace(
                f"decoder.up_blocks.{b}.upsamplers.0.", f"decoder.up.{n - 1 - b}.upsample."
            )
        new = new.replace("mid_block.resnets.0.", "mid.block_1.")
        new = new.replace("mid_block.resnets.1.", "mid.block_2.")
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for diff, ldm in _VAE_ATTENTION:
                new = new.replace(f"attn_1.{diff}.", f"attn_1.{ldm}.")
            if value.ndim == 2:  # linear -> 1x1 conv, as in the original checkpoints
                value = value[:, :, None, None]
        new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        out["first_stage_model." + new] = value
    return out


def save_single_file(folder_or_pipe: Path | Any, path: Path) -> Path:
    """Write an SD 1.x-style pipeline as one ``.safetensors`` checkpoint with original key names.

    ``folder_or_pipe`` is a saved diffusers folder or a loaded pipeline. The file loads with
    ``StableDiffusionPipeline.from_single_file(path, config=<a diffusers folder>)``.
    """
    import torch
    from safetensors.torch import save_file

    if isinstance(folder_or_pipe, (str, Path)):
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder_or_pipe), safety_checker=None, requires_safety_checker=False
        )
    else:
        pipe = folder_or_pipe
    state: dict[str, torch.Tensor] = {}
    state.update(_unet_to_ldm(pipe.unet))
    state.update(_vae_to_ldm(pipe.vae))
    text = pipe.text_encoder
    inner = text.text_model if hasattr(text, "text_model") else text
    for key, value in inner.state_dict().items():
        state["cond_stage_model.transformer.text_model." + key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    return path


# --- LoRA adapters -------------------------------------------------------------------------------


def _lora_targets(module: Any, suffixes: tuple[str, ...]) -> list[tuple[str, Any]]:
    import torch

    return [
        (name, mod)
        for name, mod in module.named_modules()
        if isinstance(mod, torch.nn.Linear) and name.endswith(suffixes)
    ]


def save_kohya_lora(
    pipe: Any,
    path: Path,
    *,
    rank: int = 2,
    seed: int = 0,
    scale: float = 0.5,
    text_encoder: bool = True,
) -> Path:
    """Write a kohya-format LoRA (``lora_unet_*`` / ``lora_te_*`` keys) for ``pipe``'s shapes.

    The layout is the one kohya's sd-scripts write and model sites share: module paths with ``_``
    for ``.``, ``lora_down``/``lora_up`` weights and an ``alpha`` per module. ``up`` is non-zero so
    that applying the adapter changes the output.
    """
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    unet_targets = _lora_targets(pipe.unet, ("to_q", "to_k", "to_v", "to_out.0"))
    for name, mod in unet_targets:
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = torch.randn(rank, mod.in_features, generator=gen) * scale
        state[f"{key}.lora_up.weight"] = torch.randn(mod.out_features, rank, generator=gen) * scale
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    if text_encoder:
        te = pipe.text_encoder
        for name, mod in _lora_targets(te, ("q_proj", "k_proj", "v_proj", "out_proj")):
            # kohya names the CLIP modules from the text_model root, whatever transformers does
            full = name if name.startswith("text_model.") else "text_model." + name
            key = "lora_te_" + full.replace(".", "_")
            state[f"{key}.lora_down.weight"] = (
                torch.randn(rank, mod.in_features, generator=gen) * scale
            )
            state[f"{key}.lora_up.weight"] = (
                torch.randn(mod.out_features, rank, generator=gen) * scale
            )
            state[f"{key}.alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"ss_network_module": "networks.lora"})
    return path


def save_diffusers_lora(
    pipe: Any, folder: Path, *, rank: int = 2, seed: int = 0, scale: float = 0.5
) -> Path:
    """Write a diffusers-format LoRA folder (``pytorch_lora_weights.safetensors``) for ``pipe``.

    Made with peft itself: an adapter is injected into a copy of the UNet, given random ``B``
    weights, and saved the way diffusers' training scripts do.
    """
    import copy

    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    folder = Path(folder)
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, safe_serialization=True
    )
    return folder / "pytorch_lora_weights.safetensors"


def save_peft_lora(
    pipe: Any, folder: Path, *, rank: int = 2, alpha: int = 4, seed: int = 0, scale: float = 0.5
) -> Path:
    """Write a peft folder (``adapter_config.json`` + ``adapter_model.safetensors``) of a UNet
    adapter for ``pipe``, as ``PeftModel.save_pretrained`` does; ``alpha != rank`` on purpose."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    unet = copy.deepcopy(pipe.unet)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights="gaussian",
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
    )
    model = get_peft_model(unet, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
