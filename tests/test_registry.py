"""The model registry, the shared frozen front end, the typed batch audio, and the proof that the
table works: a Hugging Face masked LM (a tiny BERT built from a config) trains, decodes and
deliberates through the same loss and samplers as LLaDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_WHISPER, fake_batch, overfit, tiny_model_config, tiny_whisper_decoder

from tests.test_transcribe import QF  # the tiny Q-Former without dropout
from whisper_llada.config.model import ModelConfig
from whisper_llada.config.registry import ARCHS, CTC, MASKED_DIFFUSION, get_arch
from whisper_llada.data.audio import FEATURES, FRAMES, TOKENS, Audio
from whisper_llada.decoding.settings import DecodeConfig
from whisper_llada.diffusion.counts import PassCounts
from whisper_llada.models import build_model
from whisper_llada.models.frontend import FrozenWhisperFrontEnd
from whisper_llada.utils.config import from_dict

BERT = dict(
    model_type="bert",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def mlm_model(sp_model, llm=BERT, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(
        tiny_model_config(sp_model, "whisper_hf_mlm", qformer=QF, llm={"config": llm, "train": "full"}, **kw)
    )


def test_unknown_arch_lists_the_known_ones(sp_model):
    with pytest.raises(ValueError) as e:
        tiny_model_config(sp_model, "whisper_nope")
    for name in ARCHS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="whisper_llada"):
        get_arch("llada")


def test_existing_recipe_configs_still_load():
    from pathlib import Path

    from whisper_llada.config.recipe import load_recipe_config

    confs = sorted(Path("egs").glob("*/conf/*.yaml"))
    assert confs
    archs = set()
    for conf in confs:
        try:
            cfg = load_recipe_config(conf)
        except (FileNotFoundError, KeyError):
            continue  # a partial config (decode settings) that is merged into another
        archs.add(cfg.model.arch)
    assert {"whisper_llada", "whisper_llama", "whisper_ctc"} <= archs


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_registered_arch_builds_and_trains_a_step(sp_model, tokenizer, name):
    arch = get_arch(name)
    kw = {}
    if arch.layout == "cross_attention":  # Whisper's own decoder: its shape is the Whisper config's
        kw["whisper"] = {"config": tiny_whisper_decoder(tokenizer.vocab_size)}
        kw["loss"] = {"response_length": 24, "ctc_weight": 0}
        kw["llm"] = {"train": "full"}
    elif arch.reads_llm:
        kw["llm"] = {"config": arch.shape_config(64, 2, 4, 128, tokenizer.vocab_size, 256), "train": "full"}
    model = build_model(tiny_model_config(sp_model, name, qformer=QF, **kw))
    assert isinstance(model, arch.model_cls()) and isinstance(model, FrozenWhisperFrontEnd)
    # The frozen Whisper front end: no gradient, eval mode in training, never in a checkpoint.
    model.train()
    assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
    assert not any(k.startswith("encoder.") for k in model.trainable_state_dict()) and model.trainable_state_dict()
    feats, lens, texts = fake_batch(2, seed=1)
    out = model(texts, Audio.features(feats, lens), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert hasattr(model, "denoiser") == (arch.objective == MASKED_DIFFUSION)
    # Checkpoints keep their keys: the layout is no module, the Q-Former is the model's own.
    parts = {k.split(".")[0] for k in model.state_dict()}
    if arch.reads_llm:
        assert model.layout.name == arch.layout
        assert parts == ({"encoder", "llm"} if arch.layout == "cross_attention" else {"encoder", "qformer", "llm"})


def test_masked_diffusion_archs_differ_by_their_layout_alone():
    from whisper_llada.models.masked_diffusion import MaskedDiffusionSpeechLM
    from whisper_llada.models.whisper_decoder import WhisperDecoderMDM
    from whisper_llada.models.whisper_llada import WhisperLLaDA

    assert not issubclass(WhisperDecoderMDM, WhisperLLaDA)
    for cls in (WhisperDecoderMDM, WhisperLLaDA):
        assert cls.__bases__ == (MaskedDiffusionSpeechLM,) and set(vars(cls)) <= {
            "__module__",
            "__doc__",
            "__qualname__",
            "__firstlineno__",
            "__static_attributes__",
        }


def test_frozen_front_end_reads_features_or_cached_frames_alike(sp_model):
    for name in ("whisper_llada", "whisper_ctc"):
        model = build_model(tiny_model_config(sp_model, name)).eval()
        feats, lens, _ = fake_batch(3, seed=2)
        frames, real = model.encoder_output(Audio.features(feats, lens))
        again, real2 = model.encoder_output(Audio.frames(frames, real))
        assert again is frames and real2 is real
        with pytest.raises(ValueError, match="audio_tokens"):
            model.encoder_output(Audio.tokens(torch.zeros(3, 4, 8), torch.tensor([4, 3, 2])))
    with torch.no_grad():
        torch.testing.assert_close(
            model(["A"] * 3, Audio.frames(frames, real))["loss"], model(["A"] * 3, Audio.features(feats, lens))["loss"]
        )


def test_audio_checks_and_moves():
    a = Audio.features(torch.zeros(2, 5, 80), torch.tensor([5, 3]))
    assert a.kind == FEATURES and len(a) == 2 and a.mask.sum(1).tolist() == [5, 3]
    assert a.to("cpu").kind == FEATURES
    with pytest.raises(ValueError, match="audio kind"):
        Audio("fbank", torch.zeros(2, 5, 80), torch.tensor([5, 3]))
    with pytest.raises(ValueError, match="lens"):
        Audio.frames(torch.zeros(2, 5, 80), torch.tensor([5]))
    with pytest.raises(ValueError, match="reads features, not audio_tokens"):
        Audio.tokens(torch.zeros(2, 5, 8), torch.tensor([5, 3])).expect(FEATURES, who="x")


def test_dataset_puts_each_kind_of_audio_in_one_field(tmp_path):
    from lhotse import CutSet, MonoCut, SupervisionSegment
    from lhotse.features import Features
    from lhotse.features.io import NumpyFilesWriter

    from whisper_llada.data.dataset import SpeechTextDataset, move_batch

    rng = np.random.default_rng(0)
    cuts = []
    with NumpyFilesWriter(str(tmp_path / "feats")) as w:
        for i, n in enumerate((120, 80)):
            cid = f"c{i}"
            key = w.write(cid, rng.standard_normal((n, 80)).astype(np.float32))
            f = Features(
                type="whisper-fbank",
                num_frames=n,
                num_features=80,
                frame_shift=0.01,
                sampling_rate=16000,
                start=0,
                duration=n / 100,
                storage_type=w.name,
                storage_path=str(tmp_path / "feats"),
                storage_key=key,
            )
            sup = SupervisionSegment(cid, cid, 0, n / 100, text="A CAT")
            cut = MonoCut(cid, 0, n / 100, 0, features=f, supervisions=[sup])
            frames = w.store_array(f"{cid}-enc", rng.standard_normal((n // 2, 16)).astype(np.float32))
            cuts.append(cut.with_custom("encoder_out", frames).with_custom("encoder_real_frames", n // 2 - 1))
    cuts = CutSet.from_cuts(cuts)
    batch = SpeechTextDataset()[cuts]
    assert set(batch) == {"audio", "texts", "cut_ids", "durations"}
    assert batch["audio"].kind == FEATURES and batch["audio"].lens.tolist() == [120, 80]
    assert batch["audio"].data.shape == (2, 120, 80)
    cached = SpeechTextDataset(encoder_cache=True)[cuts]["audio"]
    assert cached.kind == FRAMES and cached.lens.tolist() == [59, 39] and cached.data.shape == (2, 60, 16)
    ds = SpeechTextDataset()
    ds.token_cache = {"c0": torch.ones(3, 8), "c1": torch.ones(2, 8)}
    tokens = ds[cuts]["audio"]
    assert tokens.kind == TOKENS and tokens.lens.tolist() == [3, 2] and tokens.data[1, 2].abs().sum() == 0
    assert move_batch(batch, "cpu")["audio"].kind == FEATURES


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_masked_lm_padded_batch_equals_rows_alone(sp_model, model_type):
    """Absolute position embeddings: each row's positions start at 0 after its left padding (RoBERTa's
    from padding_idx + 1), so a row reads the same in a batch as alone."""
    model = mlm_model(sp_model, {**BERT, "model_type": model_type}).eval()
    feats, lens, texts = fake_batch(3, seed=4)
    with torch.no_grad():
        prefix, mask, pos = model.prefix(Audio.features(feats, lens))
        assert pos is None and not mask.all()  # rows of different lengths: really left-padded
        resp = model.response_ids(texts)
        batch = model.logits(prefix, mask, resp)
        for i in range(3):
            p1, m1, _ = model.prefix(Audio.features(feats[i : i + 1, : int(lens[i])], lens[i : i + 1]))
            torch.testing.assert_close(batch[i], model.logits(p1, m1, resp[i : i + 1])[0], atol=1e-5, rtol=1e-4)
        cfg = DecodeConfig(mode="decoding", gen_len=12, steps=6, block_length=12)
        together = model.transcribe({"audio": Audio.features(feats, lens)}, cfg)
        alone = [
            model.transcribe({"audio": Audio.features(feats[i : i + 1, : int(lens[i])], lens[i : i + 1])}, cfg)[0]
            for i in range(3)
        ]
    assert together == alone


def test_masked_lm_refusals(sp_model):
    with pytest.raises(ValueError, match="prefix_attends_response false is not possible"):
        mlm_model(sp_model, prefix_attends_response=False)
    model = mlm_model(sp_model).eval()
    feats, lens, texts = fake_batch(2, seed=4)
    with pytest.raises(ValueError, match="keeps no prefix cache"):
        model.transcribe(
            {"audio": Audio.features(feats, lens)},
            DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=8, cache="approximate"),
        )
    with pytest.raises(ValueError, match="max_position_embeddings 40"):
        mlm_model(sp_model, {**BERT, "max_position_embeddings": 40})(texts, Audio.features(feats, lens))
    with pytest.raises(ValueError, match="model_type"):
        mlm_model(sp_model, {k: v for k, v in BERT.items() if k != "model_type"})


def test_masked_lm_lora_on_its_own_projection_names(sp_model):
    cfg = tiny_model_config(
        sp_model,
        "whisper_hf_mlm",
        qformer=QF,
        llm={"config": BERT, "train": "lora"},
        lora={"targets": ["query", "value"]},
    )
    model = build_model(cfg)
    llm_trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert llm_trainable and all("lora_" in n for n in llm_trainable)
    feats, lens, texts = fake_batch(2)
    model(texts, Audio.features(feats, lens))["loss"].backward()


@pytest.fixture(scope="module")
def trained_mlm(sp_model):
    """A tiny BERT Whisper model overfitted on four utterances (cached encoder frames, as the trainer's cache)."""
    model = mlm_model(sp_model)
    feats, lens, texts = fake_batch(4, seed=3)
    # measured: 160 steps recover 1 of 4 transcripts, 300 all of them
    losses = overfit(model, texts, Audio.frames(*model.run_encoder(feats, lens)))
    return model.eval(), {"audio": Audio.features(feats, lens)}, texts, losses


@pytest.mark.slow
def test_masked_lm_trains_decodes_and_deliberates_through_the_samplers(trained_mlm):
    model, batch, texts, losses = trained_mlm
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    for cfg in (dict(gen_len=24, steps=12, block_length=24), dict(gen_len=24, steps=24, block_length=8)):
        stats = PassCounts()
        assert model.transcribe(batch, DecodeConfig(mode="decoding", **cfg), stats=stats) == texts
        assert (stats.forward_passes <= cfg["steps"]).all()
    # Deliberation: one corrupted word per utterance is re-masked (lowest confidence) and repaired.
    corrupted = [t.replace(t.split()[0], "RIVER" if t.split()[0] != "RIVER" else "STONE", 1) for t in texts]
    out = model.deliberate(
        batch, corrupted, DecodeConfig(mode="diffusion_deliberation", mask_ratio=0.5, masking_type="low_confidence")
    )
    assert sum(o == t for o, t in zip(out, texts)) > sum(c == t for c, t in zip(corrupted, texts))
    out = model.deliberate(batch, corrupted, DecodeConfig(mode="semi_ar_deliberation", num_chunks=2, steps=16))
    assert len(out) == len(texts) and all(isinstance(o, str) for o in out)


def test_ctc_objective_and_config_checks(sp_model):
    assert get_arch("whisper_ctc").objective == CTC and not get_arch("whisper_ctc").reads_llm
    with pytest.raises(ValueError, match="tokenizer.type must be sentencepiece"):
        from_dict(
            ModelConfig,
            {"arch": "whisper_ctc", "whisper": {"config": TINY_WHISPER}, "tokenizer": {"type": "hf", "path": "x"}},
            "test",
        )


def test_masked_lm_from_a_hub_directory_with_its_own_tokenizer(tmp_path):
    """What a real user points the config at: a saved masked LM and its tokenizer (no chat template;
    [MASK], [SEP] as EOS, [PAD]); the prompt is the task in [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "transcribe", "the", "audio:", "hello", "world"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(tmp_path / "bert")
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(
        AutoConfig.for_model(**{**BERT, "vocab_size": len(words), "pad_token_id": 0})
    ).save_pretrained(tmp_path / "bert")
    cfg = from_dict(
        ModelConfig,
        {
            "arch": "whisper_hf_mlm",
            "prompt": "transcribe the audio:",
            "whisper": {"config": TINY_WHISPER},
            "qformer": QF,
            "llm": {"path": str(tmp_path / "bert"), "train": "lora"},
            "lora": {"targets": ["query", "value"]},
            "tokenizer": {
                "type": "hf",
                "path": str(tmp_path / "bert"),
                "mask_token": "[MASK]",
                "eos_token": "[SEP]",
                "pad_token": "[PAD]",
            },
            "loss": {"response_length": 8},
        },
        "test",
    )
    model = build_model(cfg)
    assert model.prompt_ids.tolist() == [2, 5, 6, 7, 3]
    assert (model.mask_id, model.eos_id, model.tokenizer.pad_id) == (4, 3, 0)
    feats, lens, _ = fake_batch(2)
    model(["hello world", "world"], Audio.features(feats, lens))["loss"].backward()
    out = model.eval().transcribe(
        {"audio": Audio.features(feats, lens)}, DecodeConfig(mode="decoding", gen_len=8, steps=4, block_length=8)
    )
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_model(
            from_dict(
                ModelConfig,
                {
                    "arch": "whisper_hf_mlm",
                    "whisper": {"config": TINY_WHISPER},
                    "llm": {"path": str(tmp_path)},
                    "tokenizer": cfg.tokenizer.__dict__,
                },
                "t",
            )
        )


@pytest.mark.parametrize("window", ["audio", "full"])
def test_encoder_adaptation_trains_the_top_layers_only(sp_model, window):
    """whisper.train_layers: the top layers and the final norm train, the rest stay frozen; at
    initialisation the model reads what the frozen encoder gives, from features or from the cache
    (which holds the frozen layers' output); a checkpoint and the front end's fingerprint hold them."""
    from whisper_llada.training.encoder_cache import frontend_fingerprint

    torch.manual_seed(0)
    enc = {"config": {**TINY_WHISPER, "encoder_layers": 2}, "window": window}
    frozen = build_model(tiny_model_config(sp_model, "whisper_llada", whisper=enc))
    adapted = build_model(tiny_model_config(sp_model, "whisper_llada", whisper={**enc, "train_layers": 1}))
    adapted.load_state_dict(frozen.state_dict())
    n = len(adapted.encoder.layers)
    trained = {".".join(k.split(".")[1:3]) for k in adapted.trainable_state_dict() if k.startswith("encoder.")}
    assert trained == {f"layers.{n - 1}", "layer_norm.weight", "layer_norm.bias"}
    feats, lens, texts = fake_batch(3, seed=2)
    frozen.eval(), adapted.eval()
    with torch.no_grad():
        want, real = frozen.encoder_output(Audio.features(feats, lens))
        got, real2 = adapted.encoder_output(Audio.features(feats, lens))
        cached = adapted.encoder_output(Audio.frames(*adapted.run_encoder(feats, lens)))[0]
    assert torch.equal(real, real2)
    for r in range(3):  # the frames the model reads (full: Whisper's whole window)
        k = int(real[r]) if window == "audio" else want.shape[1]
        torch.testing.assert_close(got[r, :k], want[r, :k], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cached[r, :k], got[r, :k])
    adapted.train()
    adapted(texts, Audio.features(feats, lens))["loss"].backward()
    assert adapted.encoder.layers[-1].fc1.weight.grad is not None and adapted.encoder.layers[0].fc1.weight.grad is None
    before = frontend_fingerprint(adapted)
    with torch.no_grad():
        adapted.encoder.layers[-1].fc1.weight.add_(1.0)
    assert frontend_fingerprint(adapted) != before
    # The AR twin takes this front end (frontend_from) only with the same adapted layers.
    with pytest.raises(ValueError, match="same whisper.train_layers"):
        build_model(tiny_model_config(sp_model, "whisper_llama", whisper=enc)).load_frontend(
            adapted.trainable_state_dict(), "llada.pt"
        )
    twin = build_model(tiny_model_config(sp_model, "whisper_llama", whisper={**enc, "train_layers": 1}))
    twin.load_frontend(adapted.trainable_state_dict(), "llada.pt")
    assert torch.equal(twin.encoder.layers[-1].fc1.weight, adapted.encoder.layers[-1].fc1.weight)
    with pytest.raises(ValueError, match="train_layers 9"):
        build_model(tiny_model_config(sp_model, "whisper_ctc", whisper={"config": TINY_WHISPER, "train_layers": 9}))
