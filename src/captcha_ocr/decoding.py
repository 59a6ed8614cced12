"""CTC decoding in numpy: log-probabilities -> text, alternatives and confidences.

Greedy (best-path) decoding, as the tutorial: take the most likely class at each
time step, collapse repeats, drop blanks (class 0); where the text it reads has a
probability of 0.5 or less, a small beam search looks for a more probable one. ``decode``
adds what a reader asks for: a set of allowed characters (the others masked at every step), a length range
and K alternatives (CTC prefix beam search), and a temperature.

Confidences: each emitted character's is the highest probability of its class over the
run of time steps that emitted it (for shading). The reading's is the probability of
its text: the sum over every alignment of it (the CTC forward algorithm), at the
model's temperature; with a temperature fitted on held-out images at training time
(``calibration``) it is a calibrated probability that the reading is right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .charset import BLANK, Charset

__all__ = ["MAX_BEAM", "MAX_LENGTH", "DecodeOptions", "Decoded", "decode", "greedy_decode",
           "sequence_log_probs", "temper"]


@dataclass(frozen=True)
class Decoded:
    """One decoded reading."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    alternatives: tuple[tuple[str, float], ...] = ()  # beam search: (text, probability), best first


def greedy_decode(log_probs: np.ndarray, charset: Charset) -> list[Decoded]:
    """Decode a batch of per-step log-probabilities.

    Args:
        log_probs: ``(B, T, C)`` log-softmax outputs (``(T, C)`` is taken as B = 1),
            class 0 the blank.
        charset: maps classes 1..C-1 to characters.

    Returns:
        One ``Decoded`` per batch item, in order.
    """
    if log_probs.ndim == 2:
        log_probs = log_probs[None]
    b, t, _ = log_probs.shape
    best = log_probs.argmax(axis=2)  # (B, T)
    peak = np.exp(np.take_along_axis(log_probs, best[..., None], axis=2)[..., 0])  # (B, T)
    # A run starts where the class changes or a new row begins; flatten rows end to end.
    starts = np.ones((b, t), dtype=bool)
    starts[:, 1:] = best[:, 1:] != best[:, :-1]
    flat_starts = np.flatnonzero(starts)
    run_class = best.ravel()[flat_starts]
    run_peak = np.maximum.reduceat(peak.ravel(), flat_starts)
    run_row = flat_starts // t
    keep = run_class != BLANK
    kept_class, kept_peak = run_class[keep], run_peak[keep]
    bounds = np.searchsorted(run_row[keep], np.arange(b + 1))  # kept runs of row r: [r, r+1)
    out = []
    for row in range(b):
        ids = kept_class[bounds[row] : bounds[row + 1]]
        conf = kept_peak[bounds[row] : bounds[row + 1]]
        total = float(np.prod(conf)) if len(conf) else float(peak[row].min())
        out.append(Decoded(charset.decode(ids.tolist()), total, tuple(conf.tolist())))
    return out


MAX_BEAM = 32  # widest beam a reader may ask for (the service's limit too)
MAX_LENGTH = 1000  # longest length (or min / max length) a reader may ask for, the service's too


@dataclass(frozen=True)
class DecodeOptions:
    """What a reader may ask of decoding (all optional).

    Attributes:
        allow: the only characters the reading may hold (a subset of the alphabet).
        min_length, max_length: the reading's length range (inclusive).
        beam: K > 0: CTC prefix beam search keeping K prefixes; up to K alternatives
            (0: none; greedy unless a length is asked for).
    """

    allow: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    beam: int = 0

    def check(self, charset: Charset) -> None:
        """Raises ``ValueError`` (one line) for options that cannot apply to ``charset``."""
        if self.allow is not None:
            if not self.allow:
                raise ValueError("allowed characters: none given")
            bad = charset.unknown(self.allow)
            if bad:
                raise ValueError(f"allowed characters {bad!r} are not in the model's alphabet "
                                 f"{charset.alphabet!r}")
        lo, hi = self.min_length, self.max_length
        if lo is not None and lo < 0:
            raise ValueError(f"min length must be at least 0, not {lo}")
        if hi is not None and hi < 1:  # an empty reading is nothing to submit
            raise ValueError(f"max length (or length) must be at least 1, not {hi}")
        for name, v in (("min length", lo), ("max length (or length)", hi)):
            if v is not None and v > MAX_LENGTH:
                raise ValueError(f"{name} must be at most {MAX_LENGTH:,}, not {v}")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min length {lo} is over max length {hi}")
        if not 0 <= self.beam <= MAX_BEAM:
            raise ValueError(f"beam must be 0-{MAX_BEAM}, not {self.beam} (its time grows with "
                             "the width)")

    @property
    def searches(self) -> bool:
        """Whether a beam search is needed (alternatives or a length range)."""
        return self.beam > 0 or self.min_length is not None or self.max_length is not None


def temper(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Log-probabilities at ``temperature``: ``log_softmax(logits / T)`` from ``log_softmax(logits)``."""
    if temperature == 1.0:
        return log_probs
    x = log_probs / np.float32(temperature)
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _allowed(n_classes: int, charset: Charset, allow: str) -> np.ndarray:
    """A boolean mask of the blank and ``allow``'s classes."""
    keep = np.zeros(n_classes, bool)
    keep[BLANK] = True
    keep[charset.encode(allow)] = True
    return keep


def _moved(log_probs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """What ``--allow`` reads: at every step the masked classes' probability moved onto
    the allowed characters, in proportion to theirs, never onto the blank. The allowed
    characters are the site's, so a masked glyph is a misreading of one of them ("O" for
    "0"), not of nothing. Renormalised with the blank instead (until stop 18), a glyph
    the network saw as a masked class could vanish from the reading, and the reading
    that dropped them came out sure: "22" from a 226md image (allow "2") at 0.9999."""
    chars = keep.copy()
    chars[BLANK] = False
    p = np.exp(log_probs.astype(np.float64))
    own = p[..., chars]
    total = own.sum(-1, keepdims=True)
    share = np.where(total > 0, own / np.maximum(total, 1e-300), 1.0 / chars.sum())
    out = np.zeros_like(p)
    out[..., chars] = own + p[..., ~keep].sum(-1, keepdims=True) * share
    out[..., BLANK] = p[..., BLANK]
    with np.errstate(divide="ignore"):
        return np.log(out).astype(np.float32)


# Below this batch size the forward algorithm runs per image on Python floats: 37 us an
# image against 316 us for one call of the vectorised form (its numpy calls cost more
# than its arithmetic at batch 1); at batch 64 the vectorised form is 2x faster.
SCALAR_BELOW = 16


def _forward_one(lp: np.ndarray, label: list[int]) -> float:
    """log P(label) for one image's ``(T, C)`` log-probabilities, in probability space
    with the sum of the states rescaled to 1 at every step."""
    ext = [BLANK]
    for c in label:
        ext += [c, BLANK]
    n = len(ext)
    rows = np.exp(lp[:, ext].astype(np.float64)).tolist()
    skip = [k >= 2 and ext[k] != BLANK and ext[k] != ext[k - 2] for k in range(n)]
    alpha = [0.0] * n
    alpha[0] = rows[0][0]
    if n > 1:
        alpha[1] = rows[0][1]
    log_scale = 0.0
    for emit in rows[1:]:
        nxt, one, two = [0.0] * n, 0.0, 0.0  # alpha[k-1], alpha[k-2] of the previous step
        for k in range(n):
            nxt[k] = (alpha[k] + one + (two if skip[k] else 0.0)) * emit[k]
            two, one = one, alpha[k]
        total = sum(nxt)
        if total <= 0.0:
            return -math.inf
        log_scale += math.log(total)
        alpha = [v / total for v in nxt]
    end = alpha[-1] + (alpha[-2] if n > 1 else 0.0)
    return log_scale + math.log(end) if end > 0.0 else -math.inf


def sequence_log_probs(log_probs: np.ndarray, labels: list[list[int]]) -> np.ndarray:
    """log P(label | image) for each batch item: the CTC forward algorithm over all the
    alignments of its label. ``log_probs`` ``(B, T, C)``, labels of class ids (no blank)."""
    b, t, _ = log_probs.shape
    if b < SCALAR_BELOW:
        return np.array([_forward_one(log_probs[i], labels[i]) for i in range(b)])
    n = np.array([len(x) for x in labels])
    s = 2 * max(1, int(n.max(initial=0))) + 1
    ext = np.zeros((b, s), np.int64)  # blank, c1, blank, c2, ... blank
    for i, x in enumerate(labels):
        ext[i, 1 : 2 * len(x) : 2] = x
    valid = np.arange(s)[None] < (2 * n + 1)[:, None]
    skip = np.zeros((b, s), bool)  # s -> s+2 allowed between different characters
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    neg = np.float64(-np.inf)
    lp = log_probs.astype(np.float64)
    emit = np.take_along_axis(lp, np.broadcast_to(ext[:, None], (b, t, s)), axis=2)  # (B, T, S)
    alpha = np.full((b, s), neg)
    alpha[:, 0] = emit[:, 0, 0]
    alpha[:, 1] = np.where(n > 0, emit[:, 0, 1], neg)
    alpha[~valid] = neg
    for k in range(1, t):
        one = np.concatenate([np.full((b, 1), neg), alpha[:, :-1]], axis=1)
        two = np.concatenate([np.full((b, 2), neg), alpha[:, :-2]], axis=1)
        alpha = np.logaddexp(np.logaddexp(alpha, one), np.where(skip, two, neg)) + emit[:, k]
        alpha[~valid] = neg
    rows = np.arange(b)
    last = alpha[rows, 2 * n]
    before = np.where(n > 0, alpha[rows, np.maximum(2 * n - 1, 0)], neg)
    return np.logaddexp(last, before)


TOP_CHARS = 3  # per step, beam search always considers this many characters at least
UNSURE = 0.5  # greedy readings this probable or less are checked by a beam search
UNSURE_BEAM = 4  # its width (4 read as well as 8 and 16 in bench/reading_bench.py)
_NEG = -math.inf


def _lae(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) on Python floats (numpy's scalar ufuncs cost ~1 us a call)."""
    if a < b:
        a, b = b, a
    return a if b == _NEG else a + math.log1p(math.exp(b - a))


def _candidates(lp: np.ndarray) -> list[list[int]]:
    """Per step, the characters worth extending with: the likely ones (p > 1e-4), and
    always the best few (a forced length needs characters a confident network gives
    almost no weight), never a masked class. All steps at once, in numpy."""
    t, c = lp.shape
    chars = lp[:, 1:]
    keep = chars > np.log(1e-4)
    k = min(TOP_CHARS, c - 1)
    top = np.argpartition(-chars, k - 1, axis=1)[:, :k]
    np.put_along_axis(keep, top, True, axis=1)
    keep &= chars > -np.inf
    return [(np.flatnonzero(row) + 1).tolist() for row in keep]


def _beam(lp: np.ndarray, width: int, lo: int, hi: int) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search on one image's ``(T, C)`` log-probabilities: readings of
    length ``lo..hi`` with their log-probabilities, best first (at most ``width``)."""
    t = lp.shape[0]
    rows = lp.astype(np.float64).tolist()
    cands = _candidates(lp)
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, _NEG]}  # prefix -> [ends in blank, not]
    for k in range(t):
        row, chars = rows[k], cands[k]
        blank = row[BLANK]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _lae(pb, pnb)
            here = nxt.setdefault(prefix, [_NEG, _NEG])
            here[0] = _lae(here[0], total + blank)
            last = prefix[-1] if prefix else None
            longer = len(prefix) < hi
            for ch in chars:
                p = row[ch]
                if ch == last:
                    here[1] = _lae(here[1], pnb + p)  # the same run goes on
                    if longer:
                        ext = nxt.setdefault(prefix + (ch,), [_NEG, _NEG])
                        ext[1] = _lae(ext[1], pb + p)  # a new run after a blank
                elif longer:
                    ext = nxt.setdefault(prefix + (ch,), [_NEG, _NEG])
                    ext[1] = _lae(ext[1], total + p)
        # Keep the best, and enough prefixes that can still reach the minimum length.
        left = t - k - 1
        ranked = sorted(((_lae(*v), q) for q, v in nxt.items() if len(q) + left >= lo),
                        key=lambda x: -x[0])
        beams = {q: nxt[q] for s, q in ranked[:width] if s > _NEG}
    done = [(q, _lae(*v)) for q, v in beams.items() if lo <= len(q) <= hi and _lae(*v) > _NEG]
    return sorted(done, key=lambda x: -x[1])


def decode(log_probs: np.ndarray, charset: Charset, options: DecodeOptions = DecodeOptions(),
           temperature: float = 1.0) -> list[Decoded]:
    """Decode a batch ``(B, T, C)`` with ``options`` at ``temperature``.

    Greedy unless the options ask for a search; ``confidence`` is the probability of the
    text (forward algorithm, whatever found the text: the beam's own score is a lower
    bound, short of the paths it pruned, and would make the confidence depend on the
    beam's width). The other alternatives carry the beam's scores: lower bounds of their
    probabilities, never above the reading's. A search that finds no reading of an
    allowed length gives an empty text with confidence 0. With ``allow``, all of this
    runs on the masked classes' probability moved onto the allowed characters (``_moved``).
    """
    if log_probs.ndim == 2:
        log_probs = log_probs[None]
    raw = log_probs.astype(np.float32)
    if options.allow is not None:
        keep = _allowed(raw.shape[-1], charset, options.allow)
        return decode(_moved(raw, keep), charset, replace(options, allow=None), temperature)
    lp = temper(raw, temperature)
    if not options.searches:
        # The text is chosen on the network's own probabilities; the temperature only
        # calibrates its confidence (the best path is the same at any temperature).
        greedy = greedy_decode(lp, charset)
        ids = [charset.encode(d.text) for d in greedy]
        conf_lp = sequence_log_probs(lp, ids)
        own_lp = conf_lp if temperature == 1.0 else sequence_log_probs(raw, ids)
        out = [Decoded(d.text, float(p), d.char_confidences) for d, p in zip(greedy, np.exp(conf_lp))]
        # Where the best path's text is unsure, another text may be more probable.
        for i in np.flatnonzero(own_lp <= math.log(UNSURE)):
            out[i] = _better_than_greedy(raw[i], lp[i], charset, out[i], float(own_lp[i]))
        return out
    width = max(options.beam, 16 if options.min_length or options.max_length else 1)
    lo = options.min_length or 0
    hi = options.max_length if options.max_length is not None else lp.shape[1]
    out = []
    for row in lp:
        found = _beam(row, width, lo, hi)[: max(1, options.beam)]
        if not found:
            out.append(Decoded("", 0.0, ()))
            continue
        best = found[0][0]
        # Exact for the reading (65 us); the other alternatives keep the beam's scores,
        # lower bounds under the best's (exact for all cost 0.25 ms more at K=4, batch 1).
        best_p = float(np.exp(sequence_log_probs(row[None], [list(best)])[0]))
        alternatives = ((charset.decode(list(best)), best_p),
                        *((charset.decode(list(q)), float(np.exp(s))) for q, s in found[1:]))
        out.append(Decoded(alternatives[0][0], best_p, _char_confidences(row, best),
                           alternatives if options.beam else ()))
    return out


def _better_than_greedy(raw: np.ndarray, lp: np.ndarray, charset: Charset, greedy: Decoded,
                        greedy_lp: float) -> Decoded:
    """The most probable text a small beam search finds, where it beats the greedy one's.

    Greedy decoding reads the most probable *path*; a text is the sum of all its paths, and
    another text can outweigh the best path's. Only where the greedy text's probability is
    at most ``UNSURE`` (0.5): above that no other text can be more probable, since they sum
    to at most 1. From 50 labels, beam search read 0.002-0.008 more of 4 of 6 styles than
    greedy (``bench/reading_bench.py --n 50``); from 500 the same. The search and the
    comparison use the network's own probabilities ``raw`` (``greedy_lp``: the greedy
    text's log-probability there); the confidence is at the model's temperature (``lp``).
    """
    found = _beam(raw, UNSURE_BEAM, 0, raw.shape[0])
    if not found:
        return greedy
    best = list(found[0][0])
    text = charset.decode(best)
    if text == greedy.text:
        return greedy
    if sequence_log_probs(raw[None], [best])[0] <= greedy_lp:  # exact: the beam's is a lower bound
        return greedy
    p = float(np.exp(sequence_log_probs(lp[None], [best])[0]))
    return Decoded(text, p, _char_confidences(lp, found[0][0]))


def _char_confidences(lp: np.ndarray, ids: tuple[int, ...]) -> tuple[float, ...]:
    """Per character of a searched reading: its class's highest probability over the
    steps that emit it in the reading's most probable alignment (Viterbi over the CTC
    states: blank, c1, blank, c2, ... blank), for shading. A repeated character ("22")
    needs a blank between its two runs, so each gets its own steps."""
    if not ids:
        return ()
    ext = [BLANK]
    for c in ids:
        ext += [c, BLANK]
    n, t = len(ext), lp.shape[0]
    rows = lp[:, ext].astype(np.float64).tolist()
    skip = [k >= 2 and ext[k] != BLANK and ext[k] != ext[k - 2] for k in range(n)]
    score = [rows[0][0], rows[0][1]] + [_NEG] * (n - 2)
    back = []  # per step after the first: each state's predecessor
    for emit in rows[1:]:
        nxt, came = [_NEG] * n, [0] * n
        for k in range(n):
            best, src = score[k], k
            if k >= 1 and score[k - 1] > best:
                best, src = score[k - 1], k - 1
            if skip[k] and score[k - 2] > best:
                best, src = score[k - 2], k - 2
            nxt[k], came[k] = best + emit[k], src
        back.append(came)
        score = nxt
    state = n - 1 if n == 1 or score[n - 1] >= score[n - 2] else n - 2
    path = [state]
    for came in reversed(back):  # the state of every step, last to first
        state = came[state]
        path.append(state)
    path.reverse()
    probs = np.exp(lp)
    out = [0.0] * len(ids)
    for step, k in zip(range(t), path):
        if k % 2:  # a character's state: 2i + 1
            out[k // 2] = max(out[k // 2], float(probs[step, ext[k]]))
    return tuple(out)
