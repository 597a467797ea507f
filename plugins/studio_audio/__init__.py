"""Built-in audio plugin: text to speech (VITS / MMS-TTS), text to music (MusicGen) and text to
audio (Stable Audio Open).

Registered through the ``studio.plugins`` entry point like any third-party plugin. Importing it
imports no model library: the generators load transformers / diffusers inside ``run``.
"""

from __future__ import annotations

from collections.abc import Callable

from studio import hookimpl
from studio_audio.music import TextToMusic
from studio_audio.stable_audio import TextToAudio
from studio_audio.tts import TextToSpeech

__version__ = "0.1.0"
#: the plugin API versions this plugin works with (checked by the studio at load).
studio_api = ">=1.0,<2"

GENERATORS = (TextToSpeech, TextToMusic, TextToAudio)


@hookimpl
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute the audio generators."""
    for generator in GENERATORS:
        register(generator)
