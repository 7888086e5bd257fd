"""Corpora on disk: the builders of the embedded corpus (espeak-ng speech of fortune sentences in
LibriSpeech layout, joined long-form parts) and the manifests stage that imports a corpus into lhotse.

Stages before the features run this; training and decoding read only ``whisper_llada.data``.
"""
