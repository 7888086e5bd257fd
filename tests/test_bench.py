"""The decoding benchmark runs, counts forward passes and positions as the strategies imply, and checks
that the exact prefix cache changes no token."""

from __future__ import annotations

import pytest

from whisper_llada.tools import bench


def test_bench_counts():
    args = bench.get_parser().parse_args(
        [
            "--num-utts",
            "2",
            "--seconds",
            "2",
            "--tokens",
            "5",
            "--gen-len",
            "16",
            "--batch-sizes",
            "2",
            "--only",
            "diffusion steps",
            "delib random 0.3",
            "delib low-conf 0.3",
            "len auto steps 4",
        ]
    )
    rows = bench.run(args)
    by = {(r.name, r.batch): r for r in rows}
    for b in (2,):
        # EOS is committed first (it is certain), then one token per step.
        assert by[("diffusion steps 16", b)].passes_per_utt == 6
        assert by[("diffusion steps 4", b)].passes_per_utt == 3  # 16 masks over 4 steps: EOS fill empties the rest
        assert by[("AR twin greedy (KV cache)", b)].passes_per_utt == 6
        assert by[("delib random 0.3", b)].passes_per_utt == 1  # int(5 * 0.3) = 1 token, one step
        assert by[("delib low-conf 0.3", b)].passes_per_utt == 2  # plus the scoring pass
        # canvas of 5 + 4 positions over min(4, 9) steps: EOS fills the tail after the 4 first commits at most
        auto = by[("diffusion len auto steps 4", b)]
        assert auto.passes_per_utt <= 4 and by[("diffusion steps 4", b)].positions_per_pass > auto.positions_per_pass
        cached = by[("diffusion len auto steps 4 exact cache (prefix-blind)", b)]
        blind = by[("diffusion len auto steps 4 no cache (prefix-blind)", b)]
        # the same tokens; one pass more (the prefill), each later one over the 9 response positions alone
        assert cached.tokens == blind.tokens and cached.passes_per_utt == blind.passes_per_utt + 1
        P = blind.positions_per_pass - 9
        assert cached.positions_per_utt == P + 9 * blind.passes_per_utt < blind.positions_per_utt
    table = bench.format_table(rows, 16)
    assert "| 1.00 |" in table and "DIFFER" not in table and "identical to no cache" in table


def test_bench_whisper_decoder_pair():
    """The embedded default's pair: block diffusion with its block cache gives the tokens of
    recomputing, and the passes and positions its schedule implies, beside its own AR twin."""
    args = bench.get_parser().parse_args(
        ["--num-utts", "2", "--seconds", "1", "--tokens", "5", "--batch-sizes", "2", "--only", "Whisper decoder"]
    )
    rows = bench.run(args)
    by = {r.name: r for r in rows if r.name.startswith("Whisper decoder")}
    assert len(by) == 4
    cached = by["Whisper decoder: block diffusion 4, 1 token a step, block cache"]
    plain = by["Whisper decoder: block diffusion 4, 1 token a step, no cache"]
    twin = by["Whisper decoder: AR twin greedy (KV cache)"]
    # A canvas of 8 (two blocks) one token a step: 8 passes of the prompt and canvas, and the frames'
    # one (1 s of audio: 50 encoder frames and the few the front end keeps after them).
    assert cached.tokens == plain.tokens and cached.passes_per_utt == plain.passes_per_utt == 9
    frames = plain.positions_per_utt - 8 * (3 + 8)
    assert 50 <= frames < 100
    # Each step runs its block; the prompt and block 0 are cached once, when block 1 starts.
    assert cached.positions_per_utt == frames + 8 * 4 + 3 + 4
    assert by["Whisper decoder: block diffusion 4, 2 tokens a step, block cache"].passes_per_utt == 5
    assert twin.passes_per_utt == 6 and twin.positions_per_utt == frames + 3 + 4
    table = bench.format_table(rows, 128)
    assert "DIFFER" not in table and "block cache' tokens identical to no cache" in table


def test_only_brings_each_chosen_familys_twin():
    """--only keeps the AR twins the table's ratios are to: the LLM pair's always, the Whisper
    decoder's only with one of its own rows; a pattern that matches nothing is an error."""
    every = bench.strategies(16, 5, 4)
    names = [s.name for s in bench.chosen(every, ["delib random 0.3"])]
    assert names == [
        "delib random 0.3",
        "delib random 0.3 len auto exact cache (prefix-blind)",
        "AR twin greedy (KV cache)",
    ]
    names = [s.name for s in bench.chosen(every, ["2 tokens a step"])]
    assert names == [
        "AR twin greedy (KV cache)",
        "Whisper decoder: block diffusion 4, 2 tokens a step, block cache",
        "Whisper decoder: AR twin greedy (KV cache)",
    ]
    assert bench.chosen(every, None) == every and len({s.name for s in every}) == len(every)
    with pytest.raises(SystemExit, match="matches none"):
        bench.chosen(every, ["beam"])
