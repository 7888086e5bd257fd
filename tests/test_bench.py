"""The decoding benchmark runs and counts forward passes as the strategies imply."""

from __future__ import annotations

from whisper_llada import bench


def test_bench_counts(capsys):
    args = bench.get_parser().parse_args(
        ["--num-utts", "2", "--seconds", "2", "--tokens", "5", "--gen-len", "16", "--batch-sizes", "1", "2"])
    rows = bench.run(args)
    by = {(r.name, r.batch): r for r in rows}
    assert len(rows) == 20
    for b in (1, 2):
        # EOS is committed first (it is certain), then one token per step.
        assert by[("diffusion steps 16", b)].passes_per_utt == 6
        assert by[("diffusion steps 4", b)].passes_per_utt == 3  # 16 masks over 4 steps: EOS fill empties the rest
        assert by[("AR twin greedy (KV cache)", b)].passes_per_utt == 6
        assert by[("delib random 0.3", b)].passes_per_utt == 1  # int(5 * 0.3) = 1 token, one step
        assert by[("delib low-conf 0.3", b)].passes_per_utt == 2  # plus the scoring pass
    table = bench.format_table(rows)
    assert table.count("\n") == 21 and "| 1.00 |" in table
