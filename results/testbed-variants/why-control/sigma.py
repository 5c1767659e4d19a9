"""Per question, 8 sampled traces from the start: spread across traces of log c for the noise tokens and the value."""
import random
import statistics as st

import torch

from nrt import testbed as tb
from nrt.modeling import load_policy

torch.manual_seed(0)
s = tb.Settings(variant="noise", eval_size=1000, answer_steps=100)
pol = load_policy(str(tb.start_checkpoint(s)))
m, tok = pol.model, pol.tokenizer
v = tb.VARIANTS["noise"]
rng = random.Random(11)
noise_sd, noise_sum_sd, hard_gap = [], [], []
for _ in range(60):
    p = tb.make_problem(rng, rng.randint(3, 4), v)
    prompt, trace, ans = tb.encode_problem(tok, p)
    rows = []
    for _sample in range(8):
        ids = list(prompt)
        for _ in range(6):
            with torch.no_grad():
                nxt = torch.multinomial(m(torch.tensor([ids])).logits[0, -1].float().softmax(-1), 1).item()
            ids.append(nxt)
            if nxt == pol.delimiter_id:
                break
        if ids[-1] != pol.delimiter_id:
            ids.append(pol.delimiter_id)
        full = ids + ans
        with torch.no_grad():
            lp = m(torch.tensor([full])).logits[0].float().log_softmax(-1)
        a0 = len(ids)
        lc = [lp[a0 - 1 + i, t].item() for i, t in enumerate(ans)]
        rows.append((ids[len(prompt):-1] == trace, lc))
    noise = [sum(r[1][6:]) for r in rows]
    per_tok = [st.pstdev([r[1][j] for r in rows]) for j in range(6, 14)]
    noise_sd.append(st.mean(per_tok))
    noise_sum_sd.append(st.pstdev(noise))
    right = [r[1][3] for r in rows if r[0]]
    wrong = [r[1][3] for r in rows if not r[0]]
    if right and wrong:
        hard_gap.append(st.mean(right) - st.mean(wrong))
print(f"noise tokens: sd across traces of log c per token {st.mean(noise_sd):.3f}, "
      f"of their sum {st.mean(noise_sum_sd):.3f}")
print(f"value token: log c (exact trace) - log c (other traces) {st.mean(hard_gap):.2f} "
      f"over {len(hard_gap)} questions with both")
