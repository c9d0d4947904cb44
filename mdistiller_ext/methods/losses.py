"""Distillation losses as pure functions of logits.

Conventions (those of mdistiller): KL terms are summed over classes, averaged over the batch
and scaled by T^2. Every function upcasts half-precision inputs to float32 and works in log
space, so it is finite for every finite input (no -1000 masking, no log(0)).
"""
import math
from typing import Callable, Tuple

import torch
import torch.nn.functional as F



def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _teacher(x: torch.Tensor) -> torch.Tensor:
    # the teacher is a constant of every loss here; detaching also keeps masked columns out of autograd
    return _f32(x).detach()


def standardize(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Logit standardisation (Sun et al., CVPR 2024): each logit vector's z-score, (z - mean) / (eps + std),
    with the unbiased standard deviation and eps as the authors' public code has them; a temperature is
    then applied to the standardised logits as to raw ones. A softmax method compares the teacher's and
    the student's logit relations, not their ranges."""
    z = _f32(z)
    return (z - z.mean(dim=1, keepdim=True)) / (eps + z.std(dim=1, keepdim=True))


def logit_stand(on: bool, *logits: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``logits`` standardised where ``on`` (a method's LOGIT_STAND), as they are otherwise."""
    return tuple(standardize(z) for z in logits) if on else logits


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log(cosh(x)) without overflow: |x| + log1p(exp(-2|x|)) - log 2."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def binary_kl_norm(z_s: torch.Tensor, z_t: torch.Tensor, tau: float) -> torch.Tensor:
    """DHKD's BinaryKL-Norm: tau^2/N * sum_ik log cosh((z_s - z_t) / (2 tau)).

    Equal to the spec's sigmoid form 1/2 log(1/2r) + 1/2 log(1/2(1-r)) with
    r = sigmoid((z_s - z_t)/tau); its gradient tau/(2N) tanh(.) is bounded by tau/(2N).
    """
    z_s, z_t = _f32(z_s), _teacher(z_t)
    return tau ** 2 * log_cosh((z_s - z_t) / (2.0 * tau)).sum(dim=1).mean()


def binary_kl(z_s: torch.Tensor, z_t: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-class Bernoulli KL(q || p), p = sigmoid(z_s/tau), q = sigmoid(z_t/tau), from log-sigmoids."""
    z_s, z_t = _f32(z_s) / tau, _teacher(z_t) / tau
    log_p, log_1mp = F.logsigmoid(z_s), F.logsigmoid(-z_s)
    log_q, log_1mq = F.logsigmoid(z_t), F.logsigmoid(-z_t)
    kl = log_q.exp() * (log_q - log_p) + log_1mq.exp() * (log_1mq - log_1mp)
    return tau ** 2 * kl.sum(dim=1).mean()


# DHKD.LOSS -> the logit-level loss (validation and the distiller read this one table)
LOGIT_LOSSES = {"bkl_norm": binary_kl_norm, "bkl": binary_kl}


def kd_loss(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), summed over classes, batch mean."""
    log_ps = F.log_softmax(_f32(z_s) / temperature, dim=1)
    log_pt = F.log_softmax(_teacher(z_t) / temperature, dim=1)
    return temperature ** 2 * (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()


def _target_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.one_hot(target, logits.shape[1]).bool()


def _binary_log_probs(logits: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """log p_target and log(1 - p_target) of softmax(logits), the latter as lse(non-target) - lse(all).

    The row maximum is subtracted first (softmax is shift-invariant; detached, so the gradient is
    unchanged): differences of logsumexps of large logits would otherwise lose float32 digits.
    """
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    lse = torch.logsumexp(logits, dim=1)
    log_pt = logits.masked_fill(~mask, 0.0).sum(dim=1) - lse
    log_rest = torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1) - lse
    return log_pt, log_rest


def decoupled_kd_terms(
    z_s: torch.Tensor, z_t: torch.Tensor, target: torch.Tensor, temperature: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample TCKD = T^2 KL(b_t || b_s) and NCKD = T^2 KL(p_hat_t || p_hat_s) (DKD's split).

    b = [p_target, 1 - p_target]; p_hat = softmax over the C-1 non-target classes. With C = 2 the
    non-target distribution is a single point mass and NCKD is exactly 0.
    """
    zs, zt = _f32(z_s) / temperature, _teacher(z_t) / temperature
    mask = _target_mask(zs, target)
    s_pt, s_rest = _binary_log_probs(zs, mask)
    t_pt, t_rest = _binary_log_probs(zt, mask)
    tckd = t_pt.exp() * (t_pt - s_pt) + t_rest.exp() * (t_rest - s_rest)

    log_hat_s = F.log_softmax(zs.masked_fill(mask, float("-inf")), dim=1)
    log_hat_t = F.log_softmax(zt.masked_fill(mask, float("-inf")), dim=1)
    # the target column is 0 * (-inf - -inf); masked_fill also zeroes its gradient
    nckd = (log_hat_t.exp() * (log_hat_t - log_hat_s)).masked_fill(mask, 0.0).sum(dim=1)
    t2 = temperature ** 2
    return t2 * tckd, t2 * nckd


def dkd_loss(
    z_s: torch.Tensor, z_t: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, temperature: float
) -> torch.Tensor:
    """Decoupled KD (alpha * TCKD + beta * NCKD), batch mean, without the warm-up factor."""
    tckd, nckd = decoupled_kd_terms(z_s, z_t, target, temperature)
    return (alpha * tckd + beta * nckd).mean()


Mean = Callable[[torch.Tensor], torch.Tensor]


def _batch_mean(w: torch.Tensor, mean: Mean) -> torch.Tensor:
    # an all-zero batch (every ratio underflowed) stays zero instead of 0/0
    return w / mean(w).clamp_min(torch.finfo(w.dtype).tiny)


# AEKT.RATIO_MODE -> the sign of log(p_t[target] / p_s[target]) in the weight (None: w = 1)
RATIO_MODES = {"none": None, "teacher_over_student": 1.0, "student_over_teacher": -1.0}
# AEKT.RATIO_NORM -> what follows the clip to [0, W_MAX]
RATIO_NORMS = {"clip": lambda w, mean: w, "batch_mean": _batch_mean}


def target_confidence_ratio(
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    mode: str = "teacher_over_student",
    w_max: float = 10.0,
    norm: str = "clip",
    batch_mean: Mean = torch.mean,
) -> torch.Tensor:
    """AEKT's per-sample weight w on the explicit (target-vs-rest) term; always detached.

    teacher_over_student: w = p_t[target] / p_s[target] (> 1 where the student is less confident),
    student_over_teacher: the inverse, none: w = 1. The ratio is formed in log space and clipped
    to [0, w_max]; ``batch_mean`` then divides by the batch mean so the average weight is 1.
    ``batch_mean`` computes that mean: the local batch's by default, the global batch's under
    torch.distributed (``engine.distributed.global_mean``), so N processes weigh as one.
    """
    if mode not in RATIO_MODES:
        raise ValueError(f"ratio mode {mode!r} is not one of {', '.join(RATIO_MODES)}")
    if norm not in RATIO_NORMS:
        raise ValueError(f"ratio norm {norm!r} is not one of {', '.join(RATIO_NORMS)}")
    zs = _f32(z_s).detach() / temperature
    zt = _teacher(z_t) / temperature
    sign = RATIO_MODES[mode]
    if sign is None:
        return torch.ones(zs.shape[0], dtype=zs.dtype, device=zs.device)
    mask = _target_mask(zs, target)
    log_ratio = sign * (_binary_log_probs(zt, mask)[0] - _binary_log_probs(zs, mask)[0])
    return RATIO_NORMS[norm](torch.exp(torch.clamp(log_ratio, max=math.log(w_max))), batch_mean)


def aekt_terms(
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    ratio_mode: str = "teacher_over_student",
    w_max: float = 10.0,
    ratio_norm: str = "clip",
    ratio_temperature: float = 0.0,
    batch_mean: Mean = torch.mean,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AEKT's per-sample parts (w, TCKD, NCKD); ``ratio_temperature`` <= 0 means "use ``temperature``"."""
    tckd, nckd = decoupled_kd_terms(z_s, z_t, target, temperature)
    rt = ratio_temperature if ratio_temperature > 0 else temperature
    return target_confidence_ratio(z_s, z_t, target, rt, ratio_mode, w_max, ratio_norm, batch_mean), tckd, nckd


def aekt_loss(
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
    ratio_mode: str = "teacher_over_student",
    w_max: float = 10.0,
    ratio_norm: str = "clip",
    ratio_temperature: float = 0.0,
) -> torch.Tensor:
    """AEKT (project reconstruction): mean of alpha * sg(w) * TCKD + beta * NCKD. With ratio_mode
    "none" this is DKD."""
    w, tckd, nckd = aekt_terms(z_s, z_t, target, temperature, ratio_mode, w_max, ratio_norm, ratio_temperature)
    return (alpha * w * tckd + beta * nckd).mean()


def contrastive_nce_loss(scores: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE loss of one view: ``scores`` (B, K+1) are the normalised exp-similarities of each sample's
    embedding to its positive (column 0) and its K negatives in the other view's memory. With noise
    probability Pn = 1/num_data, a positive is judged "from the data" with h = s / (s + K Pn) and a
    negative "from the noise" with 1 - h; the loss is minus the summed log-probabilities over the
    batch's positives and negatives, divided by the batch size (eps keeps a zero score finite)."""
    s = _f32(scores)
    k = s.shape[1] - 1
    noise = k / float(num_data)
    positive = torch.log(s[:, 0] / (s[:, 0] + noise + eps))
    negative = torch.log(noise / (s[:, 1:] + noise + eps))
    return -(positive.sum() + negative.sum()) / s.shape[0]


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: the cosine of the centred rows."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float, beta: float, gamma: float) -> torch.Tensor:
    """DIST (Huang et al., NeurIPS 2022): T^2 (beta * inter + gamma * intra) on p = softmax(z / T), where
    inter = 1 - the mean over samples of the Pearson correlation of the student's and the teacher's class
    distributions, and intra = the same over classes (each class's probabilities across the batch); eps
    1e-8 in the correlation's denominator, as the authors' public code."""
    p_s = F.softmax(_f32(z_s) / temperature, dim=1)
    p_t = F.softmax(_teacher(z_t) / temperature, dim=1)
    inter = 1.0 - _pearson_rows(p_s, p_t).mean()
    intra = 1.0 - _pearson_rows(p_s.t(), p_t.t()).mean()
    return temperature ** 2 * (beta * inter + gamma * intra)


def transformed_teacher_loss(z_s: torch.Tensor, z_t: torch.Tensor, gamma: float, weighted: bool = False) -> torch.Tensor:
    """TTM (Zheng & Yang, ICLR 2024): KL(p_t^gamma / sum(p_t^gamma) || p_s), the teacher's probabilities under a
    power transform (gamma = 1/T, a temperature on the teacher only), the student's at temperature 1; summed
    over classes, averaged over the batch. ``weighted`` (WTTM): each sample's divergence is weighted by
    sum_k p_t,k^gamma, the power sum before renormalisation (larger for a flatter teacher distribution)."""
    log_p_s = F.log_softmax(_f32(z_s), dim=1)
    powered = torch.exp(gamma * F.log_softmax(_teacher(z_t), dim=1))  # p_t^gamma, from log space
    norm = powered.sum(dim=1, keepdim=True)
    q = powered / norm
    kl = (q * (torch.log(q.clamp_min(1e-30)) - log_p_s)).sum(dim=1)
    return (norm.squeeze(1) * kl).mean() if weighted else kl.mean()
