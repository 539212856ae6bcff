"""Representational geometry: centred kernel alignment, cross-condition generalisation, parallelism.

* :func:`kernel_alignment` / :func:`linear_cka`: the cosine between two *centred* Gram matrices
  (Cortes, Mohri & Rostamizadeh 2012; Kornblith et al. 2019's linear CKA). Centring matters: a
  ReLU layer's mean activation adds a large constant to every entry of its Gram matrix, and an
  uncentred alignment then measures that constant, not the geometry.
* :func:`ccgp`: cross-condition generalisation performance (Bernardi et al. 2020). A linear
  read-out of a dichotomy of the conditions is trained on some conditions and tested on
  conditions it never saw; held-out *samples* of seen conditions would test memory, not abstraction.
* :func:`parallelism_score`: the mean cosine between the coding vectors of a dichotomy
  (differences of condition means across it), maximised over the ways of pairing the conditions
  (Bernardi et al. 2020). 1 when the variable is coded along one direction in every context.

Every function takes a leading ensemble axis, ``(members, samples, features)``, or none.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def _batched(x: Tensor, name: str) -> tuple[Tensor, bool]:
    x = torch.as_tensor(x)
    if x.dim() == 2:
        return x.unsqueeze(0), True
    if x.dim() != 3:
        raise ValueError(f"{name} must be (samples, features) or (members, samples, features), got {tuple(x.shape)}")
    return x, False


def gram(x: Tensor) -> Tensor:
    """``X Xᵀ`` over the last two axes: ``(..., samples, features)`` → ``(..., samples, samples)``."""
    return x @ x.transpose(-1, -2)


def center_gram(k: Tensor) -> Tensor:
    """``H K H`` with ``H = I − 11ᵀ/n``: the Gram matrix of the mean-subtracted features."""
    k = torch.as_tensor(k)
    return k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-1, -2), keepdim=True)


def kernel_alignment(k1: Tensor, k2: Tensor, *, centered: bool = True) -> Tensor:
    """``⟨K̃, L̃⟩_F / (‖K̃‖_F ‖L̃‖_F)`` over the last two axes (broadcast over the rest).

    ``centered=False`` gives Cristianini's uncentred alignment, for comparison only.
    A zero (centred) Gram matrix has no geometry: the alignment is then undefined and raises.
    """
    k1, k2 = torch.as_tensor(k1), torch.as_tensor(k2)
    if k1.shape[-1] != k1.shape[-2] or k2.shape[-2:] != k1.shape[-2:]:
        raise ValueError(f"need square Gram matrices over the same samples, got {tuple(k1.shape)} and {tuple(k2.shape)}")
    k1, k2 = torch.broadcast_tensors(k1, k2.to(k1.dtype))
    if centered:
        k1, k2 = center_gram(k1), center_gram(k2)
    n1, n2 = k1.pow(2).sum((-1, -2)).sqrt(), k2.pow(2).sum((-1, -2)).sqrt()
    if bool((n1 == 0).any()) or bool((n2 == 0).any()):
        raise ValueError("a (centred) Gram matrix is zero: every sample has the same representation, alignment is undefined")
    return (k1 * k2).sum((-1, -2)) / (n1 * n2)


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA between two representations of the same samples, ``(..., samples, d1)`` and ``(..., samples, d2)``.

    Computed in feature space, ``‖Ỹᵀ X̃‖²_F / (‖X̃ᵀ X̃‖_F ‖Ỹᵀ Ỹ‖_F)`` with mean-subtracted
    features, which equals :func:`kernel_alignment` of the two linear Gram matrices and costs
    ``O(n·d²)`` instead of ``O(n²·d)`` when there are more samples than features.
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape[-2] != y.shape[-2]:
        raise ValueError(f"x and y must hold the same samples (axis -2), got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x - x.mean(-2, keepdim=True)
    y = (y - y.mean(-2, keepdim=True)).to(x.dtype)
    xy = (y.transpose(-1, -2) @ x).pow(2).sum((-1, -2))
    xx = (x.transpose(-1, -2) @ x).pow(2).sum((-1, -2)).sqrt()
    yy = (y.transpose(-1, -2) @ y).pow(2).sum((-1, -2)).sqrt()
    if bool((xx == 0).any()) or bool((yy == 0).any()):
        raise ValueError("a representation is constant over the samples: CKA is undefined")
    return xy / (xx * yy)


def _dichotomy(dichotomy: Tensor, n_conditions: int) -> tuple[list[int], list[int]]:
    d = torch.as_tensor(dichotomy).flatten()
    if d.numel() != n_conditions or not bool(((d == 1) | (d == -1)).all()):
        raise ValueError(f"dichotomy must give +1 or -1 for each of the {n_conditions} conditions, got {d.tolist()}")
    pos = [int(i) for i in (d == 1).nonzero().flatten()]
    neg = [int(i) for i in (d == -1).nonzero().flatten()]
    if len(pos) != len(neg):
        raise ValueError(f"the dichotomy must split the conditions in halves, got {len(pos)} and {len(neg)}")
    return pos, neg


def ccgp(
    reps: Tensor, condition: Tensor, dichotomy: Tensor, *, held_out: int = 1, ridge: float = 1e-3
) -> Tensor:
    """Cross-condition generalisation of a linear read-out of ``dichotomy``, per member.

    ``reps`` is ``(members, samples, features)`` (or without the ensemble axis), ``condition``
    the condition index of every sample and ``dichotomy`` ``±1`` per condition. For every way of
    holding out ``held_out`` conditions from each side, a ridge-regularised least-squares
    classifier (with an intercept; ``ridge`` relative to the mean feature variance) is fitted to
    ``±1`` on the samples of the other conditions and scored on the held-out conditions' samples.
    Returns the accuracy averaged over all those splits.
    """
    x, single = _batched(reps, "reps")
    cond = torch.as_tensor(condition).flatten().long()
    if cond.numel() != x.shape[1]:
        raise ValueError(f"condition must name the condition of each of the {x.shape[1]} samples, got {cond.numel()}")
    n_cond = int(cond.max()) + 1
    pos, neg = _dichotomy(dichotomy, n_cond)
    if not 1 <= held_out < len(pos):
        raise ValueError(f"held_out must be between 1 and {len(pos) - 1} conditions per side, got {held_out}")
    label = torch.as_tensor(dichotomy).to(x.dtype)[cond]
    scores = []
    for out_pos in itertools.combinations(pos, held_out):
        for out_neg in itertools.combinations(neg, held_out):
            test = torch.isin(cond, torch.tensor(out_pos + out_neg))
            xtr, xte, ytr = x[:, ~test], x[:, test], label[~test]
            mean = xtr.mean(1, keepdim=True)
            xc = xtr - mean
            cov = xc.transpose(1, 2) @ xc / xc.shape[1]
            lam = ridge * cov.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(torch.finfo(x.dtype).tiny)
            eye = torch.eye(x.shape[2], dtype=x.dtype, device=x.device)
            w = torch.linalg.solve(cov + lam[:, None, None] * eye, xc.transpose(1, 2) @ (ytr - ytr.mean())[:, None] / xc.shape[1])
            pred = (xte - mean) @ w + ytr.mean()
            scores.append((torch.sign(pred[..., 0]) == label[test]).to(x.dtype).mean(-1))
    out = torch.stack(scores).mean(0)
    return out[0] if single else out


def condition_means(reps: Tensor, condition: Tensor) -> Tensor:
    """Mean representation of each condition: ``(members, samples, d)`` → ``(members, conditions, d)``."""
    x, single = _batched(reps, "reps")
    cond = torch.as_tensor(condition).flatten().long()
    n_cond = int(cond.max()) + 1
    onehot = torch.nn.functional.one_hot(cond, n_cond).to(x.dtype).T
    counts = onehot.sum(1, keepdim=True)
    if bool((counts == 0).any()):
        raise ValueError("every condition index from 0 to its maximum needs at least one sample")
    out = (onehot / counts) @ x
    return out[0] if single else out


def parallelism_score(means: Tensor, dichotomy: Tensor) -> Tensor:
    """Parallelism score of a dichotomy from the condition means ``(members, conditions, d)``.

    For every one-to-one pairing of the ``+1`` conditions with the ``-1`` conditions, the coding
    vectors are the differences of the paired means; the score of a pairing is the mean cosine
    over all pairs of coding vectors. Returns the maximum over pairings (``k!`` of them for ``k``
    conditions a side: fine for the cubes of a few latents this is meant for).
    """
    m, single = _batched(means, "means")
    pos, neg = _dichotomy(dichotomy, m.shape[1])
    if len(pos) < 2:
        raise ValueError("a parallelism score needs at least two conditions on each side")
    if len(pos) > 8:
        raise ValueError(f"{len(pos)}! pairings are too many to enumerate; use at most 8 conditions a side")
    iu = torch.triu_indices(len(pos), len(pos), 1)
    best = None
    for perm in itertools.permutations(neg):
        v = m[:, pos] - m[:, list(perm)]
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
        cos = (v @ v.transpose(1, 2))[:, iu[0], iu[1]].mean(-1)
        best = cos if best is None else torch.maximum(best, cos)
    assert best is not None
    return best[0] if single else best
