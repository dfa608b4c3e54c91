"""``facegate evaluate identify``: one-shot open-set identification on identity folders.

Protocol: identities sorted by name; for each, the first image (sorted by
name) is enrolled and the others are probes. Closed set (``rank1``): every
identity enrolled. Open set: a fixed, seeded half of the identities is left
out of the gallery; their probes are strangers. ``dir_at_fpir``: the share of
enrolled probes that are both the nearest identity and under the threshold
at which a share ``fpir`` of stranger probes would be accepted.
``operating_point``: the same open set decided by ``facegate.decide.identify`` at
the model card's calibrated threshold (DIR, wrong names, FPIR).

With ``strangers`` (another dataset's identity folders; issue 20): every identity of
``root`` is enrolled and every image of the other set is a stranger probe, so the
open-set figures rest on thousands of strangers, not on the ~3 of the half left out
that FPIR 1% allows. Each figure then carries a 95% interval from a bootstrap that
resamples identities (probes of one person are not independent), enrolled and
strangers apart.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from facegate.convert.evaluate import ChipSource, embed_images
from facegate.convert.metrics import threshold_at_rate
from facegate.decide import OperatingPoint, identify
from facegate.encoder import Encoder
from facegate.errors import FacegateError
from facegate.gallery import Templates
from facegate.images import IMAGE_SUFFIXES


def identity_folders(root: pathlib.Path, min_images: int = 2) -> dict[str, list[str]]:
    if not root.is_dir():
        raise FacegateError(f"{root}: not a folder of identity folders")
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(
            f"{folder.name}/{f.name}" for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
        )
        if len(images) >= min_images:
            out[folder.name] = images
    if len(out) < 2:
        raise FacegateError(f"{root}: need at least 2 identity folders with {min_images}+ images each")
    return out


def group_by_identity(keys: Iterable[str]) -> dict[str, list[str]]:
    """``identity/image`` keys by identity, each list sorted (as ``identity_folders`` lists them)."""
    out: dict[str, list[str]] = {}
    for key in sorted(keys):
        out.setdefault(key.split("/")[0], []).append(key)
    return out


def dir_at_fpir(
    genuine_best: np.ndarray, genuine_correct: np.ndarray, stranger_best: np.ndarray, fpir: float
) -> tuple[float, float]:
    """(DIR, threshold) at a false positive identification rate ``fpir``."""
    threshold = threshold_at_rate(stranger_best, fpir)
    hits = genuine_correct & (genuine_best < threshold)
    return float(hits.mean()), threshold


def evaluate_folders(
    encoder: Encoder,
    root: pathlib.Path,
    source: ChipSource,
    far: float,
    protocol: Callable[[dict[str, list[str]], dict[str, np.ndarray], OperatingPoint], dict[str, Any]],
    folders: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Embed every image of the identity folders once, run ``protocol`` on them at the shipped
    operating point (through the device's own decision function), and say what was used."""
    started = time.perf_counter()
    folders = folders or identity_folders(root)
    embeddings, failed = embed_images(encoder, root, [p for v in folders.values() for p in v], source)
    return {
        **protocol(folders, embeddings, OperatingPoint.from_card(encoder.card, far)),
        "images": len(embeddings) + len(failed),
        "failed": len(failed),
        "failed_images": failed[:40],
        "failure_reasons": dict(getattr(source, "failures", {})),
        "alignment": source.description,
        "model": encoder.card.sha256,
        "seconds": round(time.perf_counter() - started, 1),
    }


def evaluate_identify(
    encoder: Encoder,
    root: pathlib.Path,
    source: ChipSource,
    seed: int = 0,
    fpir: float = 1e-2,
    far: float = 1e-3,
    strangers: pathlib.Path | None = None,
) -> dict[str, object]:
    if strangers is None:
        return evaluate_folders(
            encoder, root, source, far, lambda f, e, op: identification_metrics(f, e, op, seed, fpir)
        )
    pool = identity_folders(strangers, min_images=1)  # one photo is enough to be a stranger
    folders = identity_folders(root)
    clash = sorted(set(pool) & set(folders))
    if clash:
        raise FacegateError(f"{strangers}: shares identities with {root} ({', '.join(clash[:5])})")
    others, failed = embed_images(encoder, strangers, [p for v in pool.values() for p in v], source)
    result = evaluate_folders(
        encoder, root, source, far, lambda f, e, op: stranger_pool_metrics(f, e, others, op, seed), folders
    )
    result["strangers"] = {"root": str(strangers), "images": len(others) + len(failed), "failed": len(failed)}
    return result


def _enrolled(folders: dict[str, list[str]], embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each identity's first image's embedding, where it has one."""
    return {n: embeddings[v[0]] for n, v in folders.items() if v[0] in embeddings}


def _nearest(enrolled: dict[str, np.ndarray], gallery: list[str], probe: np.ndarray) -> tuple[str, float]:
    """The template of ``gallery`` nearest to ``probe``, and its distance."""
    dist = np.linalg.norm(np.stack([enrolled[g] for g in gallery]) - probe, axis=1)
    best = int(np.argmin(dist))
    return gallery[best], float(dist[best])


def rank1_hits(folders: dict[str, list[str]], embeddings: dict[str, np.ndarray]) -> list[tuple[str, bool]]:
    """Closed set, every identity enrolled from its first image: per probe (every later image
    with an embedding), its identity and whether the nearest template is that identity's.
    Rank-1 is the mean of the hits; a paired comparison of two pipelines needs them one by one."""
    enrolled = _enrolled(folders, embeddings)
    gallery = list(enrolled)
    return [
        (n, _nearest(enrolled, gallery, embeddings[p])[0] == n)
        for n in folders
        for p in folders[n][1:]
        if p in embeddings
    ]


def identification_metrics(
    folders: dict[str, list[str]],
    embeddings: dict[str, np.ndarray],
    op: OperatingPoint,
    seed: int = 0,
    fpir: float = 1e-2,
    decide: Callable[[Templates, np.ndarray], str | None] | None = None,
) -> dict[str, object]:
    """The protocol of the module docstring on embeddings already computed (an image missing
    from ``embeddings`` had no usable face: an identity whose first image failed is not
    enrolled, a probe that failed is not counted). Shared with the benchmark against
    face_recognition, so both libraries are scored by the same code. ``decide`` names the
    probe's identity or None at the operating point; by default the device's own
    ``facegate.decide.identify`` at ``op``."""
    if decide is None:
        decide = lambda templates, e: identify(templates, e, op).name  # noqa: E731
    names = list(folders)
    enrolled = _enrolled(folders, embeddings)
    probes = [(n, embeddings[p]) for n in names for p in folders[n][1:] if p in embeddings]
    rank1 = float(np.mean([hit for _, hit in rank1_hits(folders, embeddings)]))
    rng = np.random.default_rng(seed)
    known = set(rng.permutation(names)[: len(names) // 2].tolist())
    open_gallery = [n for n in enrolled if n in known]
    genuine = [(_nearest(enrolled, open_gallery, e), n) for n, e in probes if n in known and n in enrolled]
    strangers = [_nearest(enrolled, open_gallery, e)[1] for n, e in probes if n not in known]
    rate, threshold = dir_at_fpir(
        np.array([d for (_, d), _ in genuine]),
        np.array([g == n for (g, _), n in genuine]),
        np.array(strangers),
        fpir,
    )
    templates = Templates(tuple(open_gallery), np.stack([enrolled[g] for g in open_gallery]))
    named = [(decide(templates, e), n) for n, e in probes if n in known and n in enrolled]
    stranger_named = [decide(templates, e) for n, e in probes if n not in known]
    return {
        "rank1": rank1,
        "dir_at_fpir": {f"{fpir:g}": rate, "threshold": threshold},
        "operating_point": {
            "target_far": op.target_far,
            "threshold": op.threshold,
            "dir": float(np.mean([got == n for got, n in named])),
            "misidentified": float(np.mean([got is not None and got != n for got, n in named])),
            "fpir": float(np.mean([got is not None for got in stranger_named])),
        },
        "identities": len(names),
        "enrolled_closed_set": len(enrolled),
        "enrolled_open_set": len(open_gallery),
        "probes": len(probes),
        "genuine_probes_open_set": len(genuine),
        "stranger_probes": len(strangers),
        "seed": seed,
    }


def _interval(values: list[float]) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def stranger_pool_metrics(
    folders: dict[str, list[str]],
    embeddings: dict[str, np.ndarray],
    strangers: dict[str, np.ndarray],
    op: OperatingPoint,
    seed: int = 0,
    fpirs: tuple[float, ...] = (1e-2, 1e-3),
    rounds: int = 1000,
    decide: Callable[[Templates, np.ndarray], str | None] | None = None,
) -> dict[str, object]:
    """Open set against a pool of strangers from another dataset (module docstring).

    Every identity's first image is enrolled, its other images are genuine probes; every
    embedding of ``strangers`` (keyed ``identity/image``) is a stranger probe. Returns rank-1,
    DIR at each FPIR, and the operating point's DIR / wrong names / FPIR, each with a 95%
    interval from ``rounds`` bootstrap replicates over identities."""
    if decide is None:
        decide = lambda templates, e: identify(templates, e, op).name  # noqa: E731
    names = [n for n in folders if folders[n][0] in embeddings]
    templates = Templates(tuple(names), np.stack([embeddings[folders[n][0]] for n in names]))
    genuine = [(n, embeddings[p]) for n in names for p in folders[n][1:] if p in embeddings]
    if not genuine or not strangers:
        raise FacegateError("need enrolled identities with probes and at least one stranger")

    gallery = templates.matrix.astype(np.float64)

    def nearest(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one product, not a probes x gallery x 128 array
        v = vectors.astype(np.float64)
        squared = (v**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2.0 * v @ gallery.T
        d = np.sqrt(np.maximum(squared, 0.0))
        return np.argmin(d, axis=1), np.min(d, axis=1)

    g_best, g_dist = nearest(np.stack([e for _, e in genuine]))
    g_correct = np.array([templates.names[b] == n for b, (n, _) in zip(g_best, genuine)])
    s_keys = sorted(strangers)
    _, s_dist = nearest(np.stack([strangers[k] for k in s_keys]))
    g_named = [decide(templates, e) for _, e in genuine]
    g_right = np.array([got == n for got, (n, _) in zip(g_named, genuine)])
    g_wrong = np.array([got is not None and got != n for got, (n, _) in zip(g_named, genuine)])
    s_named = np.array([decide(templates, strangers[k]) is not None for k in s_keys])

    def figures(g: np.ndarray, s: np.ndarray) -> dict[str, float]:
        out = {"rank1": float(g_correct[g].mean())}
        for fpir in fpirs:
            out[f"dir_at_fpir_{fpir:g}"] = dir_at_fpir(g_dist[g], g_correct[g], s_dist[s], fpir)[0]
        out.update(
            dir=float(g_right[g].mean()),
            misidentified=float(g_wrong[g].mean()),
            fpir=float(s_named[s].mean()),
        )
        return out

    def groups(labels: list[str]) -> list[np.ndarray]:
        index: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            index.setdefault(label, []).append(i)
        return [np.array(v) for v in index.values()]

    g_groups = groups([n for n, _ in genuine])
    s_groups = groups([k.split("/")[0] for k in s_keys])
    point = figures(np.arange(len(genuine)), np.arange(len(s_keys)))
    rng = np.random.default_rng(seed)
    replicates: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(rounds):
        g = np.concatenate([g_groups[i] for i in rng.integers(0, len(g_groups), len(g_groups))])
        s = np.concatenate([s_groups[i] for i in rng.integers(0, len(s_groups), len(s_groups))])
        for k, v in figures(g, s).items():
            replicates[k].append(v)
    return {
        "rank1": {"value": point["rank1"], "ci95": _interval(replicates["rank1"])},
        "dir_at_fpir": {
            f"{fpir:g}": {
                "value": point[f"dir_at_fpir_{fpir:g}"],
                "ci95": _interval(replicates[f"dir_at_fpir_{fpir:g}"]),
                "threshold": dir_at_fpir(g_dist, g_correct, s_dist, fpir)[1],
            }
            for fpir in fpirs
        },
        "operating_point": {
            "target_far": op.target_far,
            "threshold": op.threshold,
            **{
                k: {"value": point[k], "ci95": _interval(replicates[k])}
                for k in ("dir", "misidentified", "fpir")
            },
        },
        "identities": len(folders),
        "enrolled": len(names),
        "probes": len(genuine),
        "stranger_probes": len(s_keys),
        "stranger_identities": len(s_groups),
        "bootstrap_rounds": rounds,
        "seed": seed,
    }
