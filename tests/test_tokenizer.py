"""Tokenizers: sentencepiece with our added ids, and a Hugging Face chat tokenizer built in code."""

from __future__ import annotations

import pytest
import torch

from whisper_llada.data.audio import Audio
from whisper_llada.data.tokenizer import HFChatTokenizer, SentencePieceTokenizer, TokenizerConfig, build_tokenizer


def test_sentencepiece_ids_and_round_trip(tokenizer):
    n = tokenizer.sp.get_piece_size()
    assert (tokenizer.mask_id, tokenizer.vocab_size) == (n, n + 3)
    assert tokenizer.eos_id == tokenizer.pad_id == 2
    ids = tokenizer.encode("THE CAT SAT ON THE MAT")
    assert max(ids) < n
    assert tokenizer.decode(ids) == "THE CAT SAT ON THE MAT"
    # EOS padding, mask and prompt ids are dropped wherever they stand.
    eos = tokenizer.eos_id
    assert tokenizer.decode(ids + [eos, eos]) == "THE CAT SAT ON THE MAT"
    assert tokenizer.decode([tokenizer.mask_id, tokenizer.user_id] + ids) == "THE CAT SAT ON THE MAT"
    cat = tokenizer.encode("THE CAT")
    assert tokenizer.decode(cat + [eos] + tokenizer.encode(" SAT")) == "THE CAT SAT"
    prompt = tokenizer.prompt_ids("Transcribe the audio:")
    assert prompt[0] == tokenizer.user_id and prompt[-1] == tokenizer.assistant_id


def test_missing_sentencepiece_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SentencePieceTokenizer(tmp_path / "nope.model")
    with pytest.raises(ValueError, match="tokenizer type"):
        build_tokenizer(TokenizerConfig(type="bpe", path=str(tmp_path)))


def make_hf_tokenizer_dir(path):
    """A word-level tokenizer with LLaDA's special tokens and a Llama-3 style chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<|startoftext|>",
        "<|endoftext|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|mdm_mask|>",
    ]
    words = ["[UNK]", "user", "assistant", "transcribe", "the", "audio:", "hello", "world"]
    vocab = {w: i for i, w in enumerate(words + specials)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=specials,
    )
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|> {{ m['role'] }} <|end_header_id|> "
        "{{ m['content'] }} <|eot_id|> {% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|> assistant <|end_header_id|>{% endif %}"
    )
    fast.save_pretrained(path)
    return vocab


def test_hf_chat_tokenizer(tmp_path):
    vocab = make_hf_tokenizer_dir(tmp_path)
    tok = HFChatTokenizer(tmp_path, mask_token="<|mdm_mask|>", eos_token="<|endoftext|>")
    assert tok.mask_id == vocab["<|mdm_mask|>"] and tok.eos_id == tok.pad_id == vocab["<|endoftext|>"]
    v = vocab
    expected = [
        v["<|startoftext|>"],
        v["<|start_header_id|>"],
        v["user"],
        v["<|end_header_id|>"],
        v["transcribe"],
        v["the"],
        v["audio:"],
        v["<|eot_id|>"],
        v["<|start_header_id|>"],
        v["assistant"],
        v["<|end_header_id|>"],
    ]
    assert tok.prompt_ids("transcribe the audio:") == expected
    ids = tok.encode("hello world")
    assert ids == [v["hello"], v["world"]]
    assert tok.decode(ids + [tok.eos_id, tok.eos_id]) == "hello world"
    assert tok.decode([v["hello"], tok.mask_id, v["world"]]) == "hello world"
    with pytest.raises(ValueError, match="no token"):
        HFChatTokenizer(tmp_path, mask_token="<|nope|>", eos_token="<|endoftext|>")


def test_model_from_llada_hub_directory(tmp_path):
    """A LLaDA directory as the hub has it (config.json, sharded safetensors with an index, the
    tokenizer with its chat template): the model embeds the chat prompt and decodes."""
    from conftest import TINY_WHISPER, fake_batch

    from whisper_llada.config.model import ModelConfig
    from whisper_llada.decoding.settings import DecodeConfig
    from whisper_llada.models import build_model
    from whisper_llada.models.llada import LLaDAConfig, LLaDAModelLM
    from whisper_llada.utils.config import from_dict

    vocab = make_hf_tokenizer_dir(tmp_path)
    cfg = LLaDAConfig(
        d_model=32,
        n_heads=2,
        n_layers=2,
        mlp_hidden_size=64,
        vocab_size=len(vocab),
        mask_token_id=vocab["<|mdm_mask|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    LLaDAModelLM.from_config(cfg).save_pretrained(tmp_path, max_shard_size=20_000)
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(
        list(tmp_path.glob("model-0*.safetensors"))
    ) > 1
    model = build_model(
        from_dict(
            ModelConfig,
            {
                "prompt": "transcribe the audio:",
                "whisper": {"config": TINY_WHISPER},
                "qformer": {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
                "llm": {"path": str(tmp_path)},
                "tokenizer": {"type": "hf", "path": str(tmp_path)},
                "loss": {"response_length": 8},
            },
            "test",
        )
    ).eval()
    v = vocab
    assert model.prompt_ids.tolist() == [
        v["<|startoftext|>"],
        v["<|start_header_id|>"],
        v["user"],
        v["<|end_header_id|>"],
        v["transcribe"],
        v["the"],
        v["audio:"],
        v["<|eot_id|>"],
        v["<|start_header_id|>"],
        v["assistant"],
        v["<|end_header_id|>"],
    ]
    assert (model.mask_id, model.eos_id) == (v["<|mdm_mask|>"], v["<|endoftext|>"])
    feats, lens, _ = fake_batch(2)
    texts = model.transcribe(
        {"audio": Audio.features(feats, lens)}, DecodeConfig(mode="decoding", gen_len=8, steps=8, block_length=8)
    )
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    loss = model(["hello world", "world"], Audio.features(feats, lens))["loss"]
    assert torch.isfinite(loss)
