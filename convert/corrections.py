"""``facegate evaluate corrections``: what "that was not alice" does, replayed on real faces.

The open set of ``facegate evaluate identify`` (one enrollment image per known
identity, a seeded half of the identities left out as strangers). Every other
image is a probe, and each identity's probes alternate between two phases:

1. **Review.** Each phase-1 probe is decided at the shipped threshold
   (``facegate.decide.identify``). Every wrong name (a stranger named alice,
   or bob named alice) is corrected as a user would: "not alice", through
   ``facegate.decide.check_correction`` (which refuses some) and the gallery's
   own limits (``MAX_NEGATIVES`` a person).
2. **After.** The phase-2 probes, other photos of the same people, are decided
   with and without those corrections: wrong names, strangers accepted, and
   people named rightly (what corrections may cost).

``careless``: the same again when the user also wrongly corrects a share of the
right names of phase 1 ("not alice" on alice): how much the guard lets such
mistakes lower true accepts.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from facegate.convert.evaluate import ChipSource
from facegate.convert.identify import evaluate_folders
from facegate.decide import CORRECTION_GUARD, OperatingPoint, check_correction, identify
from facegate.encoder import Encoder
from facegate.errors import FacegateError
from facegate.gallery import MAX_NEGATIVES, Templates

Probe = tuple[str, np.ndarray]  # (true identity, unit embedding)


def _outcomes(
    templates: Templates, probes: list[Probe], known: set[str], op: OperatingPoint
) -> dict[str, Any]:
    named = [(identify(templates, e, op).name, n) for n, e in probes]
    genuine = [(got, n) for got, n in named if n in known]
    strangers = [got for got, n in named if n not in known]
    wrong = sum(got is not None and got != n for got, n in genuine)
    accepted = sum(got is not None for got in strangers)
    return {
        "right": sum(got == n for got, n in genuine),
        "genuine": len(genuine),
        "wrong_names": wrong,
        "strangers_accepted": accepted,
        "strangers": len(strangers),
        "false_accepts": wrong + accepted,
    }


def _with_corrections(
    templates: Templates, corrections: list[tuple[str, np.ndarray]], op: OperatingPoint
) -> tuple[Templates, dict[str, int]]:
    """``templates`` with the corrections the guard admits, at most ``MAX_NEGATIVES`` a person
    (the newest kept, as the gallery does); how many were recorded and refused."""
    kept: dict[str, list[np.ndarray]] = {}
    refused = 0
    for name, e in corrections:
        try:
            check_correction(templates, name, e, op)
        except FacegateError:
            refused += 1
            continue
        kept.setdefault(name, []).append(e)
    vectors, owners = [], []
    for name, es in kept.items():
        for e in es[-MAX_NEGATIVES:]:
            vectors.append(e)
            owners.append(templates.names.index(name))
    size = templates.matrix.shape[1]
    corrected = Templates(
        templates.names,
        templates.matrix,
        np.array(vectors, np.float32).reshape(-1, size),
        np.array(owners, np.intp),
    )
    return corrected, {"recorded": len(vectors), "refused": refused}


def replay(
    folders: dict[str, list[str]],
    embeddings: dict[str, np.ndarray],
    op: OperatingPoint,
    seed: int = 0,
    careless: float = 0.1,
) -> dict[str, Any]:
    """The protocol of the module docstring on embeddings already computed."""
    names = list(folders)
    rng = np.random.default_rng(seed)
    known = set(rng.permutation(names)[: len(names) // 2].tolist())
    enrolled = {n: embeddings[folders[n][0]] for n in names if n in known and folders[n][0] in embeddings}
    if len(enrolled) < 2:
        raise FacegateError("need at least 2 enrolled identities")
    known = set(enrolled)
    phases: tuple[list[Probe], list[Probe]] = ([], [])
    for n in names:
        images = folders[n][1:] if n in known else folders[n]
        for i, path in enumerate(p for p in images if p in embeddings):
            phases[i % 2].append((n, embeddings[path]))
    order = tuple(sorted(enrolled))
    base = Templates(order, np.stack([enrolled[n] for n in order]).astype(np.float32))
    review = [(identify(base, e, op).name, n, e) for n, e in phases[0]]
    mistakes = [(got, e) for got, n, e in review if got is not None and got != n]
    rights = [(got, e) for got, n, e in review if got == n]
    careless_pick = rng.permutation(len(rights))[: round(careless * len(rights))]
    slips = [rights[i] for i in careless_pick]
    result: dict[str, Any] = {
        "identities": len(names),
        "enrolled": len(enrolled),
        "threshold": op.threshold,
        "target_far": op.target_far,
        "guard": CORRECTION_GUARD,
        "review": {
            "probes": len(phases[0]),
            "wrong_names_corrected": len(mistakes),
            "right_names_wrongly_corrected": len(slips),
        },
        "after": {"probes": len(phases[1]), "no corrections": _outcomes(base, phases[1], known, op)},
    }
    for label, corrections in (
        ("corrections", mistakes),
        (f"corrections + {careless:g} careless", mistakes + slips),
    ):
        corrected, counts = _with_corrections(base, [(str(g), e) for g, e in corrections], op)
        result["after"][label] = {**_outcomes(corrected, phases[1], known, op), **counts}
    return result


def evaluate_corrections(
    encoder: Encoder, root: pathlib.Path, source: ChipSource, seed: int = 0, far: float = 1e-3
) -> dict[str, Any]:
    return evaluate_folders(encoder, root, source, far, lambda f, e, op: replay(f, e, op, seed))
