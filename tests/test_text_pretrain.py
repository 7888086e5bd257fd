"""Text-only pre-training of the LLM (train.lm_text, train.lm_epochs): the loss on text alone trains
only the LLM, the LM text loses the held-out transcripts, and a rerun reads the result back."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from conftest import make_sentences, tiny_model_config

from whisper_llada.models.build import build_model
from whisper_llada.training.text_pretrain import lm_batches, pretrain_llm, read_lm_text


@pytest.mark.parametrize("arch", ["whisper_llada", "whisper_llama"])
def test_text_alone_trains_only_the_llm(sp_model, arch):
    model = build_model(tiny_model_config(sp_model, arch))
    texts = make_sentences(3, seed=2)
    out = model(texts, None, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    grads = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"llm"}, grads


def test_lm_text_leaves_out_held_out_long_and_repeated_sentences(tmp_path, tokenizer, caplog):
    path = tmp_path / "lm.txt"
    path.write_text("the cat sat\nTHE DOG RAN\n\nthe cat sat\nheld out one\n" + "red " * 40 + "\n")
    with caplog.at_level(logging.INFO):
        kept = read_lm_text(path, str.upper, {"HELD OUT ONE"}, tokenizer, max_tokens=20)
    assert list(kept) == ["THE CAT SAT", "THE DOG RAN"] and all(n > 0 for n in kept.values())
    assert "1 left out as dev or test transcripts" in caplog.text
    with pytest.raises(FileNotFoundError, match="train.lm_text .*missing.txt"):
        read_lm_text(tmp_path / "missing.txt", str.upper, set(), tokenizer, 20)
    batches = lm_batches([3, 1, 2, 5, 4] * 20, batch_size=7, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(100)) and max(map(len, batches)) == 7


def test_pretraining_lowers_the_text_loss_and_a_rerun_reads_it_back(sp_model, tmp_path):
    from whisper_llada.config.recipe import DataConfig, TrainConfig

    (tmp_path / "lm.txt").write_text("".join(s + "\n" for s in make_sentences(200, seed=7)))
    model = build_model(tiny_model_config(sp_model))
    tc = TrainConfig(lm_text=str(tmp_path / "lm.txt"), lm_epochs=3, lm_batch_size=16, lr=3e-3, warmup_steps=5)
    data = DataConfig(manifest_dir=str(tmp_path / "none"), dev_parts=[], test_parts=[])
    dev = make_sentences(20, seed=8)
    trainer = SimpleNamespace(
        cfg=SimpleNamespace(train=tc, data=data, model=model.cfg),
        model=model,
        ddp=model,
        exp_dir=tmp_path / "exp",
        dev_cuts=[],
        dataset=SimpleNamespace(normalize=str.upper),
        rank=0,
        world=1,
        tb=None,
        device=torch.device("cpu"),
        _autocast=lambda: torch.autocast("cpu", enabled=False),
    )
    from whisper_llada.training.text_pretrain import text_loss

    before = text_loss(trainer, dev, 16)
    pretrain_llm(trainer)
    after = text_loss(trainer, dev, 16)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "exp" / "lm-pretrain.pt").is_file()
    again = build_model(tiny_model_config(sp_model))
    trainer.model = trainer.ddp = again
    pretrain_llm(trainer)  # reads the file: no training
    assert text_loss(trainer, dev, 16) == pytest.approx(after)
    for (n, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b) or not n.startswith("llm."), n
