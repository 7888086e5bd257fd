"""Check that common.dec_forward(causal) equals HF's decoder and greedy decode makes sense."""
import torch, lhotse
from exp_scripts.common import *
m, tok = load_hf()
cuts = lhotse.load_manifest(str(ROOT / "data/fbank/librispeech_cuts_dev-clean.jsonl.gz"))
c = cuts[0]
feats = torch.from_numpy(c.load_features()).float()
lv = encode_levels(m.model.encoder, feats)
enc = lv[4].float()[None]
ids = torch.tensor([[SOT, NOTS] + tok.encode(" Hello world", add_special_tokens=False)])
with torch.no_grad():
    ref = m.model.decoder(input_ids=ids, encoder_hidden_states=enc).last_hidden_state
    mine = dec_forward(m.model.decoder, ids, torch.ones_like(ids, dtype=torch.bool), enc, torch.ones(1, enc.shape[1], dtype=torch.bool), True)
print("max diff", (ref - mine).abs().max().item())
# greedy
with torch.no_grad():
    x = [SOT, NOTS]
    for _ in range(60):
        t = torch.tensor([x])
        h = dec_forward(m.model.decoder, t, torch.ones_like(t, dtype=torch.bool), enc, torch.ones(1, enc.shape[1], dtype=torch.bool), True)
        nx = int((h[0, -1] @ m.model.decoder.embed_tokens.weight.T).argmax())
        if nx == EOT: break
        x.append(nx)
print("REF", c.supervisions[0].text); print("HYP", tok.decode(x[2:]))
