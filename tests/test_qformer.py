"""Window-level Q-Former: window counts for 30 s and trimmed audio, batch consistency."""

from __future__ import annotations

import torch

from whisper_llada.models.qformer import QFormerConfig, WindowQFormer, encoder_frames


def small(trim: bool) -> WindowQFormer:
    torch.manual_seed(0)
    cfg = QFormerConfig(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, trim_to_audio=trim)
    return WindowQFormer(cfg, encoder_width=24, llm_dim=40).eval()


def test_paper_geometry_30s():
    cfg = QFormerConfig()
    assert (cfg.kernel, cfg.stride) == (17, 17)
    assert cfg.num_windows(1500) == 88
    out, mask = small(trim=False)(torch.randn(2, 1500, 24))
    assert out.shape == (2, 88 * 4, 40)  # 352 audio tokens per 30 s
    assert mask.all()


def test_trimmed_to_real_audio():
    q = small(trim=True)
    # 4 s of audio: 400 feature frames -> 200 encoder frames -> 12 windows cover it, plus one.
    real = encoder_frames(torch.tensor([400, 1000]))
    assert real.tolist() == [200, 500]
    out, mask = q(torch.randn(2, 1500, 24), real)
    assert mask.sum(1).tolist() == [(12 + 1) * 4, (30 + 1) * 4]
    assert out.shape[1] == 31 * 4  # windows past the longest row are never computed
    # Never more windows than exist.
    _, mask_full = q(torch.randn(1, 1500, 24), torch.tensor([1500]))
    assert mask_full.sum() == 88 * 4


def test_rows_independent_of_batch():
    q = small(trim=True)
    frames = torch.randn(2, 1500, 24)
    real = torch.tensor([150, 700])
    out, mask = q(frames, real)
    for i in range(2):
        alone, m = q(frames[i : i + 1], real[i : i + 1])
        n = int(m.sum())
        torch.testing.assert_close(out[i, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        assert int(mask[i].sum()) == n


def test_blip2_parameter_names():
    names = set(small(False).state_dict())
    for n in (
        "query_tokens",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.attention.output.LayerNorm.bias",
        "bert.encoder.layer.0.crossattention.self.key.weight",
        "bert.encoder.layer.0.intermediate_query.dense.weight",
        "bert.encoder.layer.0.output_query.LayerNorm.weight",
        "proj.weight",
    ):
        assert n in names, n
    # Cross-attention keys read the encoder width.
    sd = small(False).state_dict()
    assert sd["bert.encoder.layer.0.crossattention.self.key.weight"].shape == (32, 24)
