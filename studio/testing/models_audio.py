"""Tiny random-weight audio models for tests: VITS, MusicGen (plain and melody) and Stable Audio,
offline.

Each factory builds the model from a small config, writes it with ``save_pretrained``
(safetensors, transformers layout) together with a tokenizer built without any download, and
returns the folder. :func:`to_hub_cache` then places a folder into a Hugging Face hub cache so that
hub-id resolution is tested offline. The audio is noise (random weights): tests check shapes,
rates, determinism, events and errors, never quality.

transformers and diffusers are imported inside the functions, so importing this module stays
cheap.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from studio.testing.hub import save_to_hub_cache

#: Characters of the tiny VITS voice; "_" (id 0) is the blank the tokenizer puts between them.
VITS_CHARACTERS = "_ abcdefghijklmnopqrstuvwxyz'.,!?-"
VITS_SAMPLING_RATE = 16000
#: One VITS output frame is this many samples (product of the upsample rates below).
VITS_HOP = 16

MUSICGEN_SAMPLING_RATE = 8000
MUSICGEN_FRAME_RATE = 50  # 8000 Hz / hop 160
MUSICGEN_HOP = 160
MUSICGEN_MAX_POSITIONS = 256
MUSICGEN_CODEBOOKS = 4
MELODY_CHROMA_LENGTH = 20
#: Feature extractor settings of the tiny melody model (small windows: short test melodies).
MELODY_FEATURES = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "processor_class": "MusicgenMelodyProcessor",
    "feature_size": 12,
    "sampling_rate": MUSICGEN_SAMPLING_RATE,
    "hop_length": 400,
    "chunk_length": 4,
    "n_fft": 1024,
    "num_chroma": 12,
    "padding_side": "left",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "stem_indices": [3, 2],
}

#: The tiny Stable Audio pipeline: 8 kHz stereo, 64 samples per latent frame (VAE ratios 2, 4, 8),
#: a window of 250 latent frames, so at most 2 s of audio.
STABLE_AUDIO_SAMPLING_RATE = 8000
STABLE_AUDIO_HOP = 64
STABLE_AUDIO_SAMPLE_SIZE = 250
STABLE_AUDIO_MAX_SECONDS = STABLE_AUDIO_SAMPLE_SIZE * STABLE_AUDIO_HOP / STABLE_AUDIO_SAMPLING_RATE


def tiny_vits(
    folder: Path,
    *,
    num_speakers: int = 1,
    sampling_rate: int = VITS_SAMPLING_RATE,
    phonemize: bool = False,
    seed: int = 0,
    full_size: bool = False,
) -> Path:
    """A VITS voice of a few thousand weights, with a character vocabulary (MMS-TTS style).

    ``full_size`` keeps VitsConfig's default architecture (the size of the released voices, about
    36M weights, hop 256) with random weights: for benchmarks.
    """
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny = {
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "window_size": 2,
        "ffn_dim": 16,
        "flow_size": 8,
        "spectrogram_bins": 9,
        "upsample_initial_channel": 16,
        "upsample_rates": [4, 4],
        "upsample_kernel_sizes": [8, 8],
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3]],
        "depth_separable_channels": 2,
        "depth_separable_num_layers": 1,
        "duration_predictor_flow_bins": 4,
        "duration_predictor_filter_channels": 8,
        "duration_predictor_num_flows": 1,
        "prior_encoder_num_flows": 1,
        "prior_encoder_num_wavenet_layers": 1,
        "posterior_encoder_num_wavenet_layers": 1,
        "wavenet_kernel_size": 3,
    }
    config = VitsConfig(
        vocab_size=len(VITS_CHARACTERS),
        sampling_rate=sampling_rate,
        num_speakers=num_speakers,
        speaker_embedding_size=(4 if not full_size else 256) if num_speakers > 1 else 0,
        **({} if full_size else tiny),  # type: ignore[arg-type]
    )
    torch.manual_seed(seed)
    model = VitsModel(config).eval()
    model.save_pretrained(folder)
    vocab_file = folder / "vocab.json"
    vocab_file.write_text(
        json.dumps({c: i for i, c in enumerate(VITS_CHARACTERS)}, ensure_ascii=False),
        encoding="utf-8",
    )
    tokenizer = VitsTokenizer(
        str(vocab_file),
        pad_token="_",
        unk_token="_",
        add_blank=True,
        normalize=True,
        phonemize=phonemize,
    )
    tokenizer.save_pretrained(folder)
    return folder


def tiny_t5_tokenizer() -> object:
    """A T5 (Unigram) tokenizer over lower-case letters, built without sentencepiece files."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_musicgen(
    folder: Path,
    *,
    melody: bool = False,
    stereo: bool = False,
    seed: int = 0,
    hidden_size: int = 16,
    num_layers: int = 1,
    max_positions: int = MUSICGEN_MAX_POSITIONS,
) -> Path:
    """A MusicGen (or MusicGen-melody) of T5 encoder + EnCodec + decoder, all tiny.

    EnCodec runs at 8 kHz with a hop of 160 samples: 50 frames per second like the real models,
    4 codebooks of 32 codes (8 interleaved for ``stereo``). ``hidden_size``/``num_layers`` size the
    decoder and ``max_positions`` its length limit (benchmarks use a larger one than tests:
    2048 positions, as the released models, allow about 40 s).
    """
    import torch
    from transformers import EncodecConfig, T5Config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    channels = 2 if stereo else 1
    text = T5Config(
        vocab_size=64,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    audio = EncodecConfig(
        sampling_rate=MUSICGEN_SAMPLING_RATE,
        audio_channels=1,
        hidden_size=8,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[5, 4, 4, 2],
        codebook_size=32,
        codebook_dim=8,
        num_lstm_layers=1,
        target_bandwidths=[1.0],
        use_causal_conv=False,
    )
    decoder_args: dict[str, Any] = {
        "vocab_size": 32,
        "max_position_embeddings": max_positions,
        "num_hidden_layers": num_layers,
        "ffn_dim": 2 * hidden_size,
        "num_attention_heads": 2,
        "hidden_size": hidden_size,
        "num_codebooks": MUSICGEN_CODEBOOKS * channels,
        "audio_channels": channels,
        "pad_token_id": 32,
        "bos_token_id": 32,
        # Larger weights than the default 0.02: peaked logits, so that the text and the melody
        # visibly steer the sampled codes even in a model this small.
        "initializer_factor": 0.5,
    }
    torch.manual_seed(seed)
    if melody:
        from transformers import (
            MusicgenMelodyConfig,
            MusicgenMelodyDecoderConfig,
            MusicgenMelodyForConditionalGeneration,
        )

        config = MusicgenMelodyConfig(
            text_encoder=text,
            audio_encoder=audio,
            decoder=MusicgenMelodyDecoderConfig(**decoder_args),
            num_chroma=12,
            chroma_length=MELODY_CHROMA_LENGTH,
        )
        model = MusicgenMelodyForConditionalGeneration(config).eval()
    else:
        from transformers import (
            MusicgenConfig,
            MusicgenDecoderConfig,
            MusicgenForConditionalGeneration,
        )

        plain = MusicgenConfig(
            text_encoder=text, audio_encoder=audio, decoder=MusicgenDecoderConfig(**decoder_args)
        )
        model = MusicgenForConditionalGeneration(plain).eval()
    _randomise_codebooks(model)
    generation = model.generation_config
    generation.decoder_start_token_id = 32
    generation.pad_token_id = 32
    generation.bos_token_id = 32
    generation.do_sample = True
    generation.guidance_scale = 3.0
    generation.max_length = max_positions
    model.save_pretrained(folder)
    tokenizer = tiny_t5_tokenizer()
    if melody:
        # The melody processor's feature extractor needs torchaudio; its settings are plain JSON.
        tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
        (folder / "preprocessor_config.json").write_text(
            json.dumps(MELODY_FEATURES, indent=2), encoding="utf-8"
        )
    else:
        from transformers import EncodecFeatureExtractor, MusicgenProcessor

        processor = MusicgenProcessor(
            feature_extractor=EncodecFeatureExtractor(
                feature_size=1, sampling_rate=MUSICGEN_SAMPLING_RATE
            ),
            tokenizer=tokenizer,
        )
        processor.save_pretrained(folder)
    return folder


def _randomise_codebooks(model: object) -> None:
    """EnCodec initialises its codebooks to zeros: every code would decode to the same sound.

    Random codebooks make the audio depend on the generated codes, so that tests of seeds,
    determinism and cancel see the difference.
    """
    import torch

    for name, buffer in model.named_buffers():  # type: ignore[attr-defined]
        if name.endswith((".embed", ".embed_avg")) and "quantizer" in name:
            with torch.no_grad():
                buffer.copy_(torch.randn_like(buffer))


def tiny_stable_audio(
    folder: Path,
    *,
    seed: int = 0,
    sample_size: int = STABLE_AUDIO_SAMPLE_SIZE,
    num_layers: int = 1,
    heads: int = 2,
    head_dim: int = 4,
    audio_channels: int = 2,
) -> Path:
    """A ``StableAudioPipeline`` of T5 encoder + projection + DiT + Oobleck VAE, all tiny.

    The sizes follow diffusers' own fast tests, with a real-looking rate: the VAE runs at 8 kHz
    with a hop of 64 samples (even strides only, so that a latent frame decodes to exactly 64
    samples) and the DiT denoises ``sample_size`` latent frames (250: 2 s). The scheduler is the
    one Stable Audio Open ships (CosineDPMSolverMultistepScheduler, needs torchsde). Saved in
    diffusers layout, safetensors only. ``num_layers``/``heads``/``head_dim`` size the DiT
    (benchmarks use a larger one).
    """
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    conditioning = 4
    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(
        sample_size=sample_size,
        in_channels=3,
        num_layers=num_layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        num_key_value_attention_heads=max(1, heads // 2),
        out_channels=3,
        cross_attention_dim=4,
        time_proj_dim=8,
        global_states_input_dim=2 * conditioning,  # start and end seconds, concatenated
        cross_attention_input_dim=conditioning,
    )
    with warnings.catch_warnings():  # Oobleck uses torch's deprecated weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        vae = AutoencoderOobleck(
            encoder_hidden_size=4,
            downsampling_ratios=[2, 4, 8],
            channel_multiples=[1, 2, 2],
            decoder_channels=4,
            decoder_input_channels=3,
            audio_channels=audio_channels,
            sampling_rate=STABLE_AUDIO_SAMPLING_RATE,
        )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=64,
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    ).eval()
    projection = StableAudioProjectionModel(
        text_encoder_dim=16, conditioning_dim=conditioning, min_value=0, max_value=32
    )
    # The values Stable Audio Open ships with.
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500,
        sigma_data=1.0,
        sigma_schedule="exponential",
        solver_order=2,
        prediction_type="v_prediction",
    )
    tokenizer: Any = tiny_t5_tokenizer()
    tokenizer.model_max_length = 64  # the pipeline pads (and cuts) every prompt to this length
    pipe: Any = StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def to_hub_cache(folder: Path, repo_id: str, cache_dir: Path) -> Path:
    """Put a saved tiny model into the hub cache ``cache_dir`` as ``repo_id``; the snapshot path."""
    return save_to_hub_cache(folder, repo_id, cache_dir)
