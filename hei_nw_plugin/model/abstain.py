"""The memory reader's abstention rule as a logits processor (see ``model.reader_abstain_min``)."""

from __future__ import annotations

import torch


class AbstainGate:
    """Logits processor of short reader answers: at the first answer token, the abstention reply is
    forbidden unless its first token alone has probability ``minimum`` (then greedy decoding goes on).

    ``seen`` keeps, per row, that probability and whether an abstention token was the top choice, so
    that a run can be re-scored at any other ``minimum`` without generating again."""

    def __init__(self, first_ids: list[int], prompt_len: int, minimum: float) -> None:
        self.first_ids, self.prompt_len, self.minimum = first_ids, prompt_len, minimum
        self.seen: list[tuple[float, bool]] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] != self.prompt_len:
            return scores
        ids = torch.tensor(self.first_ids, device=scores.device)
        probs = torch.softmax(scores.float(), dim=-1)
        p = probs[:, ids].sum(dim=-1)
        top = torch.isin(probs.argmax(dim=-1), ids)
        self.seen = [(float(a), bool(b)) for a, b in zip(p.tolist(), top.tolist(), strict=True)]
        unsure = p < self.minimum
        scores[unsure.nonzero(as_tuple=True)[0][:, None], ids] = -float("inf")
        return scores
