"""The ``captcha-ocr`` command: parse arguments, call the library, print results.

Torch-side modules are imported inside the subcommands that need them, so reading
commands start fast and work in an install without torch.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import string
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .charset import UnknownCharacterError
from .config import ARCHS, DEFAULT_ARCH
from .cpus import MAX_AUTO_WORKERS
from .data import (
    LABELS_FILE,
    NAME_SCHEMES,
    DatasetError,
    counted,
    list_images,
    subfolders_hint,
    survey,
    trained_on,
)
from .labelcheck import CONFIDENT, suspect
from .listening import PortError
from .metrics import cer, sequence_accuracy
from .modeldir import FILES, ModelError
from .preprocess import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageError
from .tsv import field

EXIT_ERROR = 1
# Fewer labeled images than the smallest training size the benches measure: train says so.
FEW_LABELS = 50


class CLIError(Exception):
    """A one-line error for the user."""


def _path(text: str) -> str:
    """An argparse type: a path, never empty (``predict "$FILE"`` with FILE unset would
    otherwise read the current folder: Path("") is ".")."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?): give a file or folder")
    return text


def _at_least(low: float, kind: type = int):
    """An argparse type: a number of ``kind`` that is at least ``low``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {text}")
        return value

    return parse


def _fraction_closed(text: str) -> float:
    value = _at_least(0.0, float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
    return value


def _fraction(text: str) -> float:
    value = _at_least(0.0, float)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def _port(text: str) -> int:
    value = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be in 0-65535, not {text}")
    return value


def _root_path(text: str) -> str:
    """`serve --root-path`: "" or a path like /ocr (a trailing slash dropped)."""
    path = text.rstrip("/")
    parts = path.split("/")[1:]
    if path and (not path.startswith("/") or not all(parts) or any(p in (".", "..") for p in parts)
                 or not set(path) <= _PATH_CHARS):
        raise argparse.ArgumentTypeError(f"must be a path like /ocr (letters, digits and . _ ~ -), "
                                         f"not {text!r}")
    return path


_PATH_CHARS = set(string.ascii_letters + string.digits + "/._~-")  # uvicorn sends it as ASCII


POSITIVE = _at_least(1)
COUNT = _at_least(0)


def _workers(text: str) -> int | None:
    """`serve --workers`: a count, or "auto" (None: the service decides)."""
    if text == "auto":
        return None
    try:
        return POSITIVE(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; or auto") from None


def _err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


STEM_LABELS_HELP = ("where the folder has a labels.csv, label the images it does not name by "
                    "their file names (default: those are unlabeled and left out)")
NAME_LABELS_HELP = ("how file names carry labels: auto (the whole name, or the label part of "
                    "LABEL_ID / ID_LABEL / PREFIX_LABEL / LABEL-ID names such as "
                    "2b6c_1700000962.png or captcha_2b6c.png; refuses names that are a numbering "
                    "or ids), whole, label_id, id_label, prefix_label, label-id")


# ---------------------------------------------------------------- train


def pick_note(picked: dict) -> str:
    """Why ``--init auto`` started where it did, from ``training.init.picked``: the mean
    losses, and where the first candidate was kept although another's loss was lower, that
    it was not lower by enough (``train.PICK_T``)."""
    from .train import PICK_T

    values = list(picked["loss"].values())
    # enough decimals that losses that differ do not print alike ("base 0.250, base2 0.250")
    places = next((d for d in range(3, 7) if len({f"{v:.{d}f}" for v in values}) == len(set(values))), 6)
    losses = ", ".join(f"{k} {v:.{places}f}" for k, v in picked["loss"].items())
    first = next(iter(picked["loss"]))
    ts = picked.get("t_against_first", {})
    close = [k for k, t in ts.items() if 0 < t <= PICK_T and k != picked["chosen"]]
    unclear = (f"; {' or '.join(close)} lower, but not by over {PICK_T:g} standard errors"
               if close and picked["chosen"] == first else "")
    return f"picked by the labels' mean loss per image: {losses}{unclear}"


def cmd_train(a: argparse.Namespace) -> None:
    from .download import resolve_data
    from .train import recipe, train

    t_start = time.perf_counter()
    data = resolve_data(a.data_dir)
    if a.pseudo_confidence is not None and a.unlabeled is None:
        raise CLIError("--pseudo-confidence needs --unlabeled DIR")
    if a.unlabeled_max is not None and a.unlabeled is None:
        raise CLIError("--unlabeled-max needs --unlabeled DIR")
    if a.steps is not None and a.epochs is not None:
        raise CLIError("--steps and --epochs both set the budget: give one of them")
    init = None
    if a.init is None and a.arch is None and a.height is None and a.channels is None:
        # Start from the shipped base model (fine-tuning): far better than training from
        # scratch with few labels, as good with 500 and 2x faster, and it never sits on the
        # CTC plateau (README, "Fine-tuning and the base model").
        a.init = "auto"
    if a.init == "none":
        a.init = None
    if a.init:
        from .finetune import default_start

        if a.arch:
            raise ModelError(f"--init {a.init} and --arch: a fine-tuned model keeps the "
                             f"architecture of the model it starts from; drop --arch, or drop "
                             f"--init {a.init} to train {a.arch} from random weights")
        a.arch, init = default_start(a.init)
        first = init[0] if isinstance(init, list) else init
        for key in ("height", "channels"):  # the starting model's layers are sized for them
            asked, fixed = getattr(a, key), getattr(first.info.image, key)
            if asked is not None and asked != fixed:
                raise ModelError(f"--init {a.init}: it reads images of {key} {fixed}, not "
                                 f"{asked}; drop --{key}, or drop --init {a.init} to train "
                                 "from random weights")
    a.arch = a.arch or DEFAULT_ARCH
    cfg = recipe(a.arch, finetune=init is not None, epochs=a.epochs, patience=a.patience,
                 batch_size=a.batch_size, lr=a.lr, val_fraction=a.val_fraction, seed=a.seed,
                 threads=a.threads, augment=a.augment,
                 steps=a.steps, ema=a.ema, bf16=a.bf16, features_lr=a.features_lr,
                 keep_best=None if a.keep is None else a.keep == "best")
    if a.keep == "last" and cfg.patience:
        raise CLIError(f"--keep last: the {a.arch} recipe stops early (patience {cfg.patience}) and "
                       "ends with the best round; add --patience 0 to keep the last")
    # What the user fixed; the rest of the input is decided from the images.
    image = {k: v for k, v in dict(height=a.height, width=a.width, channels=a.channels).items()
             if v is not None}
    if a.no_crop:
        image["crop"] = (0.0, 0.0, 1.0, 1.0)
    console = _err_console()
    reads_them = a.unlabeled is not None and Path(a.unlabeled).resolve() == Path(data).resolve()
    note = survey(data, stem_labels=a.stem_labels, names=a.name_labels).note(
        "self-training reads them" if reads_them else f"--unlabeled {data} self-trains on them")
    if note:  # -q hides the rounds, not what is wrong with the labels
        console.print(note, markup=False, soft_wrap=True)

    had_int8 = (Path(a.out) / FILES.int8).is_file()  # replaced with the old weights, if any
    replaces = (Path(a.out) / FILES.info).is_file()
    with _EpochProgress(console, cfg.epochs, quiet=a.quiet) as progress:
        told: set[Path] = set()  # unreadable images named (self-training starts twice)

        def start(cfg, im, start_model, picked, skipped) -> None:
            progress.epochs = cfg.epochs
            if not a.quiet:
                say_start(cfg, im, start_model, picked)
            for path, reason in skipped:  # named before training, not after
                if path not in told:
                    told.add(path)
                    progress.console.print(_skipped(path, reason), markup=False, soft_wrap=True)

        def say_start(cfg, im, start_model, picked) -> None:
            crop = "" if im.crop == (0.0, 0.0, 1.0, 1.0) else \
                " crop " + ",".join(f"{v:.3f}" for v in im.crop)
            budget = (f"{cfg.steps} steps, rounded up to {cfg.epochs} whole "
                      f"round{'s' if cfg.epochs != 1 else ''}" if cfg.steps
                      else f"{cfg.epochs} epochs")
            start_from = f" from {start_model.source}" if start_model else ""
            if picked and picked.get("loss"):  # --init auto: say why
                start_from += f" ({pick_note(picked)})"
            progress.console.print(
                f"training [bold]{a.arch}[/]{start_from} on {data} -> {a.out}: input {im.width}x{im.height} "
                f"{'colour' if im.channels == 3 else 'grey'}{crop}; up to {budget}, patience "
                f"{cfg.patience or 'off'}", soft_wrap=True)
            if replaces:
                progress.console.print(f"{a.out} holds a model: this run replaces it when it is "
                                       "complete (until then the old one stays)", markup=False,
                                       soft_wrap=True)

        run = dict(arch=a.arch, image=image, cfg=cfg, init=init,
                   command=shlex.join(["captcha-ocr", *a.argv]), resume=a.resume,
                   ignore_case=a.ignore_case, alphabet=a.alphabet, stem_labels=a.stem_labels,
                   names=a.name_labels, on_start=start, on_epoch=progress.epoch, on_batch=progress.batch)
        try:
            if a.unlabeled is None:
                result = train(data, a.out, **run)
            else:
                from .selftrain import DEFAULT_MAX_IMAGES, DEFAULT_MIN_CONFIDENCE, first_run_kept, self_train

                def phase(msg: str) -> None:
                    if not a.quiet:
                        progress.console.print(msg, markup=False, soft_wrap=True)

                result = self_train(train, data, a.out, a.unlabeled,
                                    DEFAULT_MIN_CONFIDENCE if a.pseudo_confidence is None
                                    else a.pseudo_confidence, phase,
                                    max_images=DEFAULT_MAX_IMAGES if a.unlabeled_max is None
                                    else a.unlabeled_max, **run)
        except KeyboardInterrupt:
            from .train import CHECKPOINT_SECONDS

            hint = _resume_hint(a.out, f"{CHECKPOINT_SECONDS:g} s, at the end of a round")
            if a.unlabeled is not None and first_run_kept(a.out, run["command"]):
                hint = (f"the first run's model is complete in {a.out}: the same command with "
                        "--resume goes on from it with the second run")
            console.print(hint, markup=False, soft_wrap=True)
            raise
    m, t = result.info.metrics, result.info.training
    kept = result.history[result.best_epoch - 1]
    best = min(result.history, key=lambda h: (h.val_loss != h.val_loss, h.val_loss))  # NaN last
    print(f"epochs: {len(result.history)} (kept epoch {result.best_epoch}; {t['steps']} steps), "
          f"{t['n_train']} train / {t['n_val']} validation images"
          + (f", {len(result.skipped)} unreadable skipped" if result.skipped else "")
          + (f" ({t['copies']} copies of other images, each on its original's side)"
             if t.get("copies") else ""))
    if t["n_val"]:
        print(f"best validation loss: {best.val_loss:.4f} (epoch {best.epoch}); "
              f"kept epoch's: {kept.val_loss:.4f}")
        ci = m.get("val_sequence_accuracy_ignoring_case")
        print(f"validation sequence accuracy: {m['val_sequence_accuracy']:.4f}  "
              f"CER: {m['val_cer']:.4f}" + (f"  ignoring case: {ci:.4f}" if ci is not None else ""))
        if ci is not None and _mostly_case(m["val_sequence_accuracy"], ci, t["n_val"]):
            print(f"most validation misreadings differ from their labels in case only "
                  f"({m['val_sequence_accuracy']:.4f} -> {ci:.4f} ignoring it): if the site "
                  "accepts either case, train with --ignore-case")
    else:
        print("no validation split (--val-fraction 0): no validation metrics")
    labeled = t["n_images"]  # the labeled folder's, without pseudo-labeled ones
    if labeled < FEW_LABELS:
        held = (f" (the accuracy above is from {counted(t['n_val'], 'validation image')}: a rough "
                "guide)") if t["n_val"] else ""
        _err_console().print(
            f"warning: only {counted(labeled, 'labeled image')}{held}; fine-tuning the shipped "
            f"base reads most styles well from {FEW_LABELS} labels on (README: Benchmarks): label more with "
            "captcha-ocr label DIR, and check the model with captcha-ocr eval on images it did "
            "not train on", markup=False, soft_wrap=True)
    al = t.get("alphabet", {})
    if al.get("added"):
        print(f"alphabet: {len(result.info.alphabet)} characters: the labels' {al['labels']} and "
              f"{al['added']} from the starting model ({counted(al['seen_once'], 'character')} "
              f"{'appears' if al['seen_once'] == 1 else 'appear'} only once in the labels: they "
              "likely miss some of the site's; --alphabet labels to keep to theirs)")
    if a.unlabeled is None:
        print(f"time: {result.seconds:.1f} s")
    elif "pseudo_labels" not in result.info.training:  # nothing read confidently enough
        print(f"time: {time.perf_counter() - t_start:.1f} s in all (one run and the reading)")
    else:  # two runs and the reading between them
        print(f"time: {time.perf_counter() - t_start:.1f} s in all (the last run {result.seconds:.1f} s)")
    print(f"model: {result.model_dir}")
    plots = [result.model_dir / f for f in (FILES.curves, FILES.grid, FILES.calibration)]
    print(f"plots: {', '.join(str(f) for f in plots if f.is_file())}")
    if had_int8 and not (result.model_dir / FILES.int8).is_file():
        print(f"the earlier {FILES.int8} was the old weights' and is gone (readers now run "
              f"float32); make one for these: captcha-ocr export {a.out} --int8 --data DIR")


def _mostly_case(acc: float, ignoring_case: float, n_val: int) -> bool:
    """At least half the validation misreadings, and two images or more, are case only."""
    wrong, case_only = (1 - acc) * n_val, (ignoring_case - acc) * n_val
    return case_only >= 1.5 and case_only >= wrong / 2


def _skipped(path: str | Path, reason: str) -> str:
    """"skipped PATH: why", the path once (an image's error names it already)."""
    return f"skipped {reason}" if reason.startswith(f"{path}: ") else f"skipped {path}: {reason}"


def _bar(*columns, console, disable: bool = False):
    """A transient rich progress bar on ``console`` (stderr). What the command prints to
    stdout meanwhile is drawn above the bar only where stdout is that terminal too: where
    it is a file or a pipe, it goes there (rich's default sends it to the bar's console).
    Off where the console is no terminal (a log file, a pipe): rich then printed an empty
    line where the bar had been, before any error line."""
    from rich.progress import Progress

    return Progress(*columns, console=console, transient=True,
                    disable=disable or not console.is_terminal, redirect_stdout=sys.stdout.isatty())


class _EpochProgress:
    """A rich progress bar per epoch (batches), then one summary line per epoch."""

    def __init__(self, console, epochs: int, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

        self.console, self.epochs, self.quiet = console, epochs, quiet
        self.progress = _bar(TextColumn("epoch {task.fields[epoch]}/{task.fields[of]}"),
                             BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[msg]}"),
                             console=console, disable=quiet)
        self.task = None
        self.n = 1

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("", total=None, epoch=1, of=self.epochs, msg="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def batch(self, k: int, total: int) -> None:
        self.progress.update(self.task, completed=k, total=total, epoch=self.n, of=self.epochs)

    def epoch(self, s) -> None:
        if self.n == 1 and s.epoch > 1 and not self.quiet:  # the first round shown: a resumed run
            done = "round 1" if s.epoch == 2 else f"rounds 1-{s.epoch - 1}"
            self.progress.console.print(f"({done} came from the last checkpoint; later rounds "
                                        "that ran before the interruption run again)",
                                        markup=False, soft_wrap=True)
        self.n = s.epoch + 1
        line = (f"epoch {s.epoch:3d}/{self.epochs}  train loss {s.train_loss:.4f}  "
                f"val loss {s.val_loss:.4f}  val acc {s.val_sequence_accuracy:.3f}  "
                f"val CER {s.val_cer:.4f}  {s.seconds:.1f}s")
        if not self.quiet:
            self.progress.console.print(line, markup=False, soft_wrap=True)


# ---------------------------------------------------------------- reading


def _reader(a: argparse.Namespace):
    from .runtime import Reader

    return Reader.load(a.model, threads=getattr(a, "threads", 0) or 0, provider=a.provider,
                       precision=a.precision, max_pixels=a.max_pixels)


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """How a Reader runs its network: the execution provider and the precision."""
    p.add_argument("--provider", choices=["cpu", "cuda"], default="cpu",
                   help="ONNX Runtime execution provider (cuda: needs onnxruntime-gpu)")
    p.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto",
                   help="network to run: auto (int8 where 'export --int8' made one), fp32 or int8")


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    """The reading options, the same for predict and eval (and the service's parameters)."""
    _add_runtime_options(p)
    p.add_argument("--max-pixels", type=POSITIVE, default=DEFAULT_MAX_PIXELS,
                   help="largest image in pixels, refused above, checked before decoding "
                        f"(default: {DEFAULT_MAX_PIXELS})")
    g = p.add_argument_group("reading options")
    g.add_argument("--allow", metavar="CHARS", help="only these characters may be read (e.g. 0123456789)")
    g.add_argument("--length", type=POSITIVE, help="the reading has exactly this many characters")
    g.add_argument("--min-length", type=COUNT, help="at least this many characters")
    g.add_argument("--max-length", type=POSITIVE, help="at most this many characters")
    g.add_argument("--beam", type=COUNT, default=0, metavar="K",
                   help="beam search of width K; with --json, up to K alternatives with "
                   "probabilities (default: 0, greedy)")
    g.add_argument("--solve", action="store_true",
                   help="also compute the answer of an arithmetic captcha ('14+27' -> 41)")
    g.add_argument("--min-confidence", type=_fraction_closed, metavar="P",
                   help="flag readings whose calibrated confidence is below P")


def _reading_options(reader, a: argparse.Namespace):
    from .runtime import ReadOptionError

    try:
        return reader.options(allow=a.allow, length=a.length, min_length=a.min_length,
                              max_length=a.max_length, beam=a.beam, solve=a.solve,
                              min_confidence=a.min_confidence)
    except ReadOptionError as e:
        raise CLIError(str(e)) from None


def _floor3(p: float) -> str:
    """A confidence to 3 decimals, rounded down: 0.99998 below a 0.99999 threshold shows
    as 0.999, not as 1.000."""
    return f"{math.floor(p * 1000) / 1000:.3f}"


def _resume_hint(out, every: str) -> str:
    """What an interrupted train or pretrain run into ``out`` left to go on from."""
    from .staging import StagedModelDir

    if StagedModelDir(out).interrupted():
        return "the run can go on from its last checkpoint: the same command with --resume"
    return (f"no checkpoint yet (one is written every {every}): "
            "nothing to resume; run the command again to start over")


def _reading_json(r) -> dict:
    """The JSON fields of one reading, beside its path (no per-character confidences)."""
    return {k: v for k, v in r.as_dict().items() if k != "char_confidences"}


def cmd_eval(a: argparse.Namespace) -> None:
    reader = _reader(a)
    options = _reading_options(reader, a)
    labeling = survey(a.data_dir, stem_labels=a.stem_labels, names=a.name_labels)
    samples = labeling.samples
    if labeling.note():
        _err_console().print(labeling.note(), markup=False, soft_wrap=True)
    if trained_on(reader.info.training, samples):
        _err_console().print(f"warning: these {len(samples):,} images are from the folder the model "
                             "was trained on, its validation images included (model.json's data "
                             "fingerprint): their accuracy says "
                             "little about new captchas; evaluate on images kept out of "
                             "training", markup=False, soft_wrap=True)
    # A model trained with --ignore-case reads one case: compare that way by default.
    fold = a.ignore_case or bool(reader.info.training.get("ignore_case"))
    norm = (lambda t: t.lower()) if fold else (lambda t: t)  # noqa: E731
    labels = [norm(s.label) for s in samples]
    # A label with characters the model cannot emit is read and counted wrong, not fatal.
    unknown = {s.path: reader.charset.unknown(y) for s, y in zip(samples, labels)}
    unknown = {path: chars for path, chars in unknown.items() if chars}
    if unknown and not a.json:
        path, chars = next(iter(unknown.items()))
        have = "label has" if len(unknown) == 1 else "labels have"
        _err_console().print(f"warning: {len(unknown)} {have} characters the model does not "
                             f"know (first: {path}: {chars!r}); they count as wrong",
                             markup=False, soft_wrap=True)
    readings = reader.read_many([s.path for s in samples], options, batch_size=a.batch_size)
    preds = [norm(r.text) for r in readings]

    def why(s, r) -> dict:
        if r.error:
            return {"error": r.error}
        if s.path in unknown:
            return {"error": f"the label has characters the model does not know: {unknown[s.path]!r}"}
        return {}

    label_chars = "".join(sorted(set("".join(labels))))
    label_lengths = {len(y) for y in labels}

    def check(s, r, p) -> dict:
        """A confident reading against the label: the label may be what is wrong."""
        if r.error or s.path in unknown:
            return {}
        conf = round(r.confidence, 6)  # as shown: the flag agrees with the number printed
        flag = suspect(p, conf, alphabet=label_chars, lengths=label_lengths)
        return dict(confidence=conf, label_to_check=flag)

    errors = [dict(file=str(s.path), label=s.label, prediction=r.text) | why(s, r) | check(s, r, p)
              for s, r, y, p in zip(samples, readings, labels, preds) if p != y]
    report = dict(n=len(samples), sequence_accuracy=sequence_accuracy(labels, preds),
                  cer=cer(labels, preds), precision=reader.precision, errors=errors)
    if options.min_confidence is not None:
        kept = [p == y for r, y, p in zip(readings, labels, preds) if r.ok and r.accepted]
        report["accepted"] = len(kept)
        report["accepted_accuracy"] = sum(kept) / len(kept) if kept else None
    if a.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(f"images: {report['n']}  correct: {report['n'] - len(errors)}  wrong: {len(errors)}"
          + ("  (case ignored)" if fold else "") + f"  (network: {reader.precision})")
    print(f"sequence accuracy: {report['sequence_accuracy']:.4f}")
    print(f"CER: {report['cer']:.4f}")
    if "accepted" in report:
        acc = report["accepted_accuracy"]
        print(f"accepted (confidence >= {options.min_confidence}): {report['accepted']} of "
              f"{report['n']}, of which right: " + ("-" if acc is None else f"{acc:.4f}"))
    n_check = sum(e.get("label_to_check", False) for e in errors)
    if n_check:
        print(f"labels to check: {n_check} of the wrong readings {'has' if n_check == 1 else 'have'} "
              f"confidence >= {CONFIDENT} "
              "and only characters the labels use (marked 'label?'): the label may be what is wrong")
    for e in errors:
        why = f"  ({e['error']})" if "error" in e else ""
        mark = f"  label? ({_floor3(e['confidence'])})" if e.get("label_to_check") else ""
        print(f"{field(e['file'])}  {field(e['label'])} -> {field(e['prediction'])}{why}{mark}")


# check-labels: below this share read as labeled, its models cannot tell wrong labels
# from their own misreadings (bench/label_check_bench.py: the parts read 0.42-0.46 of
# imagecaptcha and listed 1 and 7 of its 10 and 25 wrong labels; 0.64-0.98 elsewhere).
LOW_AGREEMENT = 0.5


def cmd_check_labels(a: argparse.Namespace) -> None:
    from .crosscheck import check_labels

    console = _err_console()

    def fold(f) -> None:
        if not a.quiet:
            agree = "-" if f.agree is None else f"{f.agree:.4f}"
            console.print(f"part {f.fold} of {a.folds}: trained on {f.trained_on} labels, read "
                          f"the other {f.read}: {agree} as labeled ({f.seconds:.0f} s)",
                          markup=False, soft_wrap=True)

    def start(n: int) -> None:
        if not a.quiet:
            note = survey(a.data_dir, stem_labels=a.stem_labels, names=a.name_labels).note()
            if note:  # where the labels came from (file names read as LABEL_ID, say)
                console.print(note, markup=False, soft_wrap=True)
            console.print(f"checking the {n} labels of {a.data_dir}: {a.folds} training runs, "
                          "each reading the labels it did not train on", markup=False, soft_wrap=True)

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    # a transient bar while each part trains (minutes each): rounds done of the budget's
    bar = _bar(TextColumn("part {task.fields[part]} of " + str(a.folds) + ": training, round"),
               MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(), console=console,
               disable=a.quiet)
    with bar:
        task = []  # added once the folder and the start are checked

        def start_and_show(n: int) -> None:
            start(n)
            task.append(bar.add_task("", total=None, part=1))

        def round_done(part: int, done: int, rounds: int) -> None:
            bar.update(task[0], part=part, completed=done, total=rounds)

        def fold_and_reset(f) -> None:
            fold(f)
            if f.fold < a.folds:
                bar.reset(task[0], total=None, part=f.fold + 1)
            else:
                bar.remove_task(task[0])

        result = check_labels(a.data_dir, folds=a.folds, seed=a.seed, threshold=a.min_confidence,
                              stem_labels=a.stem_labels, names=a.name_labels,
                              init=None if a.init == "none" else a.init,
                              on_start=start_and_show, on_fold=fold_and_reset, on_round=round_done,
                              recipe_overrides=dict(steps=a.steps))
    for path, why in result.unreadable:
        console.print(_skipped(path, why), markup=False, soft_wrap=True)
    weak = result.weakest
    if weak is not None and weak.agree < LOW_AGREEMENT:
        console.print(f"warning: part {weak.fold}'s model read only {weak.agree:.0%} of the labels "
                      "it did not train on as labeled: too few to tell a wrong label from its own "
                      "misreading, so the list may name right labels and miss wrong ones; check "
                      "that the labels are what the images show (e.g. how file names were read), "
                      "label more, or train longer (--steps)", markup=False, soft_wrap=True)
    if a.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    for x in result.items:
        print(f"{field(x.file)}\t{field(x.label)}\t{field(x.reading)}\t{_floor3(x.confidence)}",
              flush=True)
    skipped = f", {len(result.unreadable)} unreadable skipped" if result.unreadable else ""
    if result.copies:
        skipped += (f", {result.copies} {'copy' if result.copies == 1 else 'copies'} of another "
                    "image read in its original's part")
    console.print(f"labels to check: {len(result.items)} of {result.n}{skipped} (read otherwise at "
                  f"confidence >= {result.threshold} by a model that did not train on them; "
                  f"FILE, LABEL, READING, CONFIDENCE above); {result.seconds:.0f} s",
                  markup=False, soft_wrap=True)


STDIN = "-"  # predict's path for an image piped in
# Image files of formats the gate does not decode: a folder's are named, not passed over.
OTHER_IMAGE_SUFFIXES = (".tif", ".tiff", ".jfif", ".avif", ".heic", ".heif", ".svg", ".ico",
                        ".jp2", ".tga", ".ppm", ".pgm", ".pbm", ".psd")


def _expand(paths: Sequence[str]) -> list[Path]:
    out = []
    if list(paths).count(STDIN) > 1:
        raise CLIError("'-' (an image on standard input) can be given once")
    for p in map(Path, paths):
        if str(p) == STDIN:
            if getattr(sys.stdin, "buffer", None) is None or sys.stdin.isatty():
                raise CLIError("'-' reads one image from standard input: pipe one in "
                               "(captcha-ocr predict - < x.png)")
            out.append(p)
        elif p.is_dir():
            # a dangling link: its own error, not a silent skip; a folder of no images (or
            # one named like an image) stands for itself: its own error line
            out += list_images(p, odd=True) or [p]
        elif p.exists() or p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(p)  # a missing file still gets its own error line
        else:
            raise CLIError(f"{p}: no such file or folder")
    return out


def _no_images(folder: Path):
    """The reading of a folder given as a path that holds no images: its error."""
    from .runtime import Reading

    return Reading("", 0.0, (), f"{folder}: a folder with no images (expected "
                   f"{', '.join(IMAGE_SUFFIXES)})", accepted=False)  # subfolders: noted above


def cmd_predict(a: argparse.Namespace) -> None:
    reader = _reader(a)
    paths = _expand(a.paths)
    if all(p.is_dir() for p in paths):
        subfolders = "".join(subfolders_hint(Path(p)) for p in a.paths if Path(p).is_dir())
        raise CLIError(f"no images found in {' '.join(a.paths)} (expected "
                       f"{', '.join(IMAGE_SUFFIXES)}){subfolders}")
    from rich.progress import Progress

    options = _reading_options(reader, a)
    failed = 0
    console = _err_console()
    for p in dict.fromkeys(a.paths):  # images one level down, or in other formats: not read
        if p == STDIN or not Path(p).is_dir():
            continue
        hint = subfolders_hint(Path(p))
        if hint:
            console.print(f"note: {p}{hint}", markup=False, soft_wrap=True)
        other = sorted(f.name for f in Path(p).iterdir() if f.suffix.lower() in OTHER_IMAGE_SUFFIXES)
        if other:
            console.print(f"note: {p} holds {counted(len(other), 'image')} in formats that are not "
                          f"read ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}): "
                          f"convert them to PNG", markup=False, soft_wrap=True)
    if a.model is None:  # the shipped model reads one site's captchas only: say which
        console.print("reading with the shipped captcha_images_v2 model (that set's style only); "
                      "for your site's captchas pass --model MODEL_DIR", markup=False, soft_wrap=True)
    with _bar(*Progress.get_default_columns(), console=console) as bar:
        task = bar.add_task("reading", total=len(paths))
        sources = [sys.stdin.buffer if str(p) == STDIN else p for p in paths if not p.is_dir()]
        read = reader.iter_read(sources, options, batch_size=a.batch_size)
        for path in paths:
            r = _no_images(path) if path.is_dir() else next(read)
            failed += not r.ok
            if a.json:
                row = {"path": str(path)} | (_reading_json(r) if r.ok else {"error": r.error})
                print(json.dumps(row, ensure_ascii=False), flush=True)
            elif r.ok:
                shown = field(r.text) + ("" if not a.solve else f"\t{'-' if r.answer is None else r.answer}")
                flag = "" if r.accepted else "\tNO READING" if not r.text else \
                    f"\tLOW CONFIDENCE {_floor3(r.confidence)}"
                print(f"{field(path)}\t{shown}{flag}", flush=True)
            else:  # a line on stdout too: one per input, in order, for scripts
                print(f"{field(path)}\t" + ("\t-" if a.solve else "") + "\tERROR", flush=True)
                console.print(f"error: {r.error}", markup=False, soft_wrap=True)
            bar.advance(task)
    if failed:
        what = "inputs" if any(p.is_dir() for p in paths) else "images"  # a folder of none counts
        raise CLIError(f"{failed} of {len(paths)} {what} could not be read")


# ---------------------------------------------------------------- export, download


def cmd_export(a: argparse.Namespace) -> None:
    import numpy as np

    from .export import export_onnx, onnx_parity
    from .staging import StagedModelDir
    from .train import load_checkpoint

    if a.int8 and not a.data:
        raise CLIError("--int8 needs --data DIR: labeled images of the site, to calibrate the "
                       "int8 ranges and check that it reads as well as float32")
    if a.data and not a.int8:
        raise CLIError("--data is for --int8; add --int8 or leave --data out")
    for flag, given in (("--stem-labels", a.stem_labels), ("--name-labels", a.name_labels != "auto")):
        if given and not a.data:
            raise CLIError(f"{flag} is for --int8 --data DIR")
    if not (Path(a.model_dir) / FILES.info).is_file():  # before a lock file is made beside it
        raise CLIError(f"{a.model_dir}: not a model directory (no {FILES.info}); name one written "
                       "by 'captcha-ocr train' (export rewrites its model.onnx)")
    samples = None
    if a.int8:  # the data's errors before anything is written
        from .modeldir import ModelInfo
        from .quantize import check_enough, check_labels_fit

        samples = survey(a.data, stem_labels=a.stem_labels, names=a.name_labels).samples
        check_enough(samples, a.data)
        check_labels_fit(a.model_dir, a.data, [s.label for s in samples], ModelInfo.load(a.model_dir))
    with StagedModelDir(a.model_dir):  # the directory's lock: not while a train swaps it
        model, info = load_checkpoint(a.model_dir)
        if samples is not None and trained_on(info.training, samples):
            _err_console().print(f"warning: {a.data} holds the images the model was trained on "
                                 "(model.json's data fingerprint): the check below compares int8 "
                                 "with float32 on images the model knows, not on new captchas; "
                                 "give labeled images kept out of training where you have them",
                                 markup=False, soft_wrap=True)
        path = export_onnx(model, info, a.model_dir)
        x = np.random.default_rng(0).random((4, info.image.channels, info.image.height,
                                             info.image.width), dtype=np.float32)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); "
              f"max |ONNX - PyTorch| log-prob difference: {onnx_parity(model, path, x):.2e}")
        if a.int8:
            from .quantize import quantize_model

            quantize_model(a.model_dir, a.data, samples=samples, on_log=print)
            q = Path(a.model_dir) / FILES.int8
            print(f"wrote {q} ({q.stat().st_size / 1e6:.2f} MB); readers use it by default "
                  "(--precision fp32 for the float network)")


def cmd_download(a: argparse.Namespace) -> None:
    from .download import download

    t0 = time.perf_counter()
    folder = download(a.name, a.dest)
    print(f"{folder}: {len(list_images(folder))} images, content check passed "
          f"({time.perf_counter() - t0:.1f} s)")


# ---------------------------------------------------------------- serve


def cmd_serve(a: argparse.Namespace) -> None:
    from .service import serve

    serve(a.model, a.host, a.port, max_body=int(a.max_body_mb * 1024 * 1024), max_batch=a.max_batch,
          max_wait_ms=a.max_wait_ms, max_pixels=a.max_pixels, threads=a.threads,
          max_batch_pixels=a.max_batch_pixels, header_timeout=a.header_timeout,
          body_timeout=a.body_timeout, provider=a.provider, workers=a.workers,
          precision=a.precision, drain=a.drain, root_path=a.root_path)


def cmd_label(a: argparse.Namespace) -> None:
    from .labeling import read_review_list, read_review_suggestions, serve_labeling

    review = read_review_list(a.review) if a.review else None
    suggestions = read_review_suggestions(a.review) if a.review else None
    trust_stems = a.trust_stems or a.name_labels != "auto"  # how to read them: so read them
    if review is not None and not (Path(a.data_dir) / LABELS_FILE).is_file():
        # check-labels read this folder's file names as its labels: those are under review
        trust_stems = True
    serve_labeling(a.data_dir, a.model, a.host, a.port, order=a.order, trust_stems=trust_stems,
                   open_browser=not a.no_browser, review=review, suggestions=suggestions,
                   names=a.name_labels)


# ---------------------------------------------------------------- zoo


def _ranges(alphabet: str) -> str:
    """``abcdxyz0123`` -> ``a-dxyz0-3``: runs of three or more consecutive characters shortened;
    items spaced apart when the alphabet has punctuation (``0-9 + - x =``)."""
    out, i = [], 0
    while i < len(alphabet):
        j = i
        while j + 1 < len(alphabet) and ord(alphabet[j + 1]) == ord(alphabet[j]) + 1:
            j += 1
        out += [f"{alphabet[i]}-{alphabet[j]}"] if j - i >= 2 else list(alphabet[i : j + 1])
        i = j + 1
    return ("" if alphabet.isalnum() else " ").join(out)


def cmd_zoo(a: argparse.Namespace) -> None:
    from .zoo import STYLES, ZooError, get_style, write_style

    if a.style is None and a.out is not None:
        raise CLIError(f"name the style to write to {a.out}: captcha-ocr zoo STYLE --out DIR "
                       "(captcha-ocr zoo alone lists them)")
    if a.style is None:
        for s in STYLES.values():
            lengths = f"{s.lengths[0]}-{s.lengths[1]}" if s.lengths[0] < s.lengths[1] else f"{s.lengths[0]}"
            print(f"{s.name:16s} {s.size[0]:3d}x{s.size[1]:<3d} len {lengths:4s} "
                  f"{_ranges(s.alphabet):22s} {s.description}")
        return
    try:
        style = get_style(a.style)
        if a.out is None:
            raise CLIError(f"say where to write the {style.name} images with --out DIR")
        t0 = time.perf_counter()
        write_style(style, a.out, a.n, seed=a.seed, fmt=a.format)
    except ZooError as e:
        raise CLIError(str(e)) from None
    print(f"wrote {a.n} {style.name} images ({style.size[0]}x{style.size[1]}, seed {a.seed}) and "
          f"labels.csv to {a.out} ({time.perf_counter() - t0:.1f} s)")


def cmd_pretrain(a: argparse.Namespace) -> None:
    from .pretrain import PretrainConfig, pretrain
    from .zoo import STYLES, ZooError, get_style, pool

    out = Path(a.out)
    try:
        styles = tuple(get_style(s).name for s in a.styles.split(",")) if a.styles else ()
        for name in styles or STYLES:  # a missing font package: one line now, not in a worker
            pool(get_style(name).fonts, a.fonts)
        cfg = PretrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                             styles=styles, workers=a.workers, device=a.device,
                             checkpoint_minutes=a.checkpoint_minutes, eval_images=a.eval_images,
                             threads=a.threads, widen=a.widen, fonts=a.fonts)
        done = pretrain(out, cfg, resume=a.resume, command=shlex.join(["captcha-ocr", *a.argv]),
                        on_log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ZooError, ValueError) as e:
        raise CLIError(str(e)) from None
    except KeyboardInterrupt:
        print(_resume_hint(out, f"{a.checkpoint_minutes:g} min (--checkpoint-minutes)"),
              file=sys.stderr)
        raise
    if done is None:  # not rank 0
        return
    info = json.loads((done / FILES.info).read_text())
    for style, m in info["metrics"]["zoo"].items():
        print(f"{style:16s} accuracy {m['accuracy']:.3f}  CER {m['cer']:.3f}")
    t = info["training"]
    print(f"{t['steps']} steps, {t['images']} images, {t['processes']} process(es) on "
          f"{t['device']}, {t['seconds']:.0f} s")
    print(f"model: {done}")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captcha-ocr",
                                description="Train a captcha reader and read captchas with it.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = ("model directory, or a shipped model: 'base' or 'base2' (general, "
                  "zero-shot) or 'captcha_images_v2' (the default)")

    t = sub.add_parser("train", help="train a model on a folder of labeled images",
                       description="Train on a folder of images labeled by file name (or labels.csv).")
    t.add_argument("data_dir", type=_path, nargs="?", help="dataset folder (default: $CAPTCHA_OCR_DATA, "
                   "the cache ~/.cache/captcha-ocr, or a download of captcha_images_v2)")
    t.add_argument("--out", type=_path, required=True, help="model directory to write")
    t.add_argument("--init", type=_path, metavar="MODEL",
                   help="fine-tune: start from a model directory or a shipped model ('base', "
                   "'base2', 'captcha_images_v2'); 'auto': the shipped base that fits the "
                   "labels best ('base' unless 'base2' clearly does); 'none': random weights "
                   "(default: 'auto' unless --arch, --height or --channels is given)")
    t.add_argument("--arch", choices=list(ARCHS), default=None,
                   help=f"architecture and its training recipe (default: {DEFAULT_ARCH}; "
                   "seed: the tutorial's network, settings and 200x50 grey input)")
    t.add_argument("--epochs", type=POSITIVE, help="maximum epochs (recipe default: a step budget "
                   "for deep and crnn, 100 for seed, 50 for fast)")
    t.add_argument("--steps", type=POSITIVE, help="optimizer steps in all, rounded up to whole "
                   "rounds (default fine-tuning: 2500, 1500 from under 100 images; from scratch: "
                   "about 50 passes over the data, at least 4000, at most 6000)")
    t.add_argument("--patience", type=COUNT, help="early-stopping patience in epochs, 0: off")
    t.add_argument("--batch-size", type=POSITIVE, help="batch size (recipe default)")
    t.add_argument("--lr", type=_at_least(1e-12, float), help="peak learning rate (recipe default)")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random jitter/noise/lines on training images (recipe default)")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="conv layers in bfloat16 while training (default: where the CPU has "
                   "native bfloat16, AVX-512 BF16 or AMX; the model is saved in float32)")
    t.add_argument("--features-lr", type=_at_least(0.0, float), metavar="X",
                   help="the conv layers' learning rate as a multiple of the rest's (default: 1)")
    t.add_argument("--ema", type=_fraction, help="decay per step of a moving average "
                   "of the weights, which the model then holds; 0: off (recipe default)")
    t.add_argument("--keep", choices=("best", "last"), default=None,
                   help="the weights the model ends with: the round with the lowest "
                   "validation loss, or the last round's (recipe default)")
    t.add_argument("--val-fraction", type=_fraction, default=0.1,
                   help="share held out for validation (default: 0.1)")
    t.add_argument("--seed", type=int, default=2021, help="split/initialisation seed (default: 2021)")
    t.add_argument("--height", type=_at_least(8), help="model input height (default: from the images)")
    t.add_argument("--width", type=_at_least(8), help="model input width (default: from the images)")
    t.add_argument("--channels", type=int, choices=(1, 3),
                   help="1: grey, 3: colour (default: colour where the images have colour)")
    t.add_argument("--no-crop", action="store_true",
                   help="use the whole image (default: crop to where images differ, if that is "
                   "clearly smaller)")
    t.add_argument("--threads", type=COUNT, default=0, help="torch threads (default: all cores)")
    t.add_argument("--unlabeled", type=_path, metavar="DIR",
                   help="a folder of unlabeled captchas of the same site: train, read them, "
                   "add the confident readings as labels and train again (self-training)")
    t.add_argument("--pseudo-confidence", type=_fraction_closed, default=None, metavar="P",
                   help="with --unlabeled: the least calibrated confidence of a reading kept "
                   "as a label (default: 0.9)")
    t.add_argument("--unlabeled-max", type=COUNT, default=None, metavar="N",
                   help="with --unlabeled: read at most N of its images, evenly spaced in "
                   "file-name order (default: 2000; 0: all)")
    t.add_argument("--alphabet", default="auto", metavar="auto|labels|CHARS",
                   help="the characters the model can read: auto (the labels' characters; "
                        "fine-tuning, also the starting model's characters of the classes the "
                        "labels use where characters seen only once suggest the labels miss "
                        "some), labels (theirs only), or exactly CHARS (default: auto)")
    t.add_argument("--stem-labels", action="store_true", help=STEM_LABELS_HELP)
    t.add_argument("--name-labels", choices=NAME_SCHEMES, default="auto", help=NAME_LABELS_HELP)
    t.add_argument("--ignore-case", action="store_true",
                   help="fold labels to lower case (for sites that accept either case); the "
                        "model reads lower case")
    t.add_argument("--resume", action="store_true",
                   help="continue the run that was interrupted in OUT.partial (same data and "
                        "options; the result is the same as without the interruption)")
    t.add_argument("-q", "--quiet", action="store_true",
                   help="no start line or per-round output (notes on the data and the result stay)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="measure accuracy on a labeled folder",
                       description="Read every image of a labeled folder and compare with its label.")
    e.add_argument("data_dir", type=_path, help="labeled dataset folder")
    e.add_argument("--model", type=_path, help=model_help)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--batch-size", type=POSITIVE, default=64, help="images per batch (default: 64)")
    e.add_argument("--ignore-case", action="store_true", help="compare readings and labels in lower case")
    e.add_argument("--stem-labels", action="store_true", help=STEM_LABELS_HELP)
    e.add_argument("--name-labels", choices=NAME_SCHEMES, default="auto", help=NAME_LABELS_HELP)
    _add_reading_options(e)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("check-labels", help="find labels that are likely wrong",
                       description="Train on part of the labels, read the rest, and the other "
                       "way round; print the labeled images read otherwise with confidence "
                       "(FILE<TAB>LABEL<TAB>READING<TAB>CONFIDENCE), most confident first.")
    c.add_argument("data_dir", type=_path, help="labeled dataset folder")
    c.add_argument("--folds", type=_at_least(2), default=2,
                   help="parts; each is read by a model trained on the others (default: 2)")
    c.add_argument("--min-confidence", type=_fraction_closed, default=CONFIDENT, metavar="P",
                   help=f"list readings at this calibrated confidence or more (default: {CONFIDENT})")
    c.add_argument("--init", type=_path, default="auto", metavar="auto|base|base2|DIR|none",
                   help="the model each run starts from, as for train (default: auto)")
    c.add_argument("--steps", type=POSITIVE, help="optimizer steps of each run (default: the "
                   "training recipe's budget for its number of labels)")
    c.add_argument("--seed", type=int, default=0, help="the deal into parts and the runs' seeds")
    c.add_argument("--stem-labels", action="store_true", help=STEM_LABELS_HELP)
    c.add_argument("--name-labels", choices=NAME_SCHEMES, default="auto", help=NAME_LABELS_HELP)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    c.set_defaults(func=cmd_check_labels)

    r = sub.add_parser("predict", help="read images or folders of images",
                       description="Print PATH<TAB>TEXT per image (or JSON lines with --json).")
    r.add_argument("paths", type=_path, nargs="+", metavar="PATH",
                   help="image file or folder; - : one image piped to standard input")
    r.add_argument("--model", type=_path, help=model_help)
    r.add_argument("--json", action="store_true",
                   help='one JSON object per line: {"path", "text", "confidence", "accepted"}, plus '
                        '"alternatives" (--beam), "answer" and "answer_error" (--solve); '
                        '{"path", "error"} for an image that cannot be read')
    r.add_argument("--batch-size", type=POSITIVE, default=64, help="images per batch (default: 64)")
    r.add_argument("--threads", type=COUNT, default=0, help="ONNX Runtime threads (default: all cores)")
    _add_reading_options(r)
    r.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="(re)write model.onnx from a model directory's weights",
                       description="Export the weights to ONNX and check it against PyTorch; "
                       "with --int8, also an int8 network, kept only where it reads DIR's "
                       "held-out labeled images as well as float32.")
    x.add_argument("model_dir", type=_path, help="model directory")
    x.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (static quantization; needs --data)")
    x.add_argument("--data", type=_path, metavar="DIR",
                   help="with --int8: labeled images of the site, to calibrate and check it")
    x.add_argument("--stem-labels", action="store_true", help=STEM_LABELS_HELP)
    x.add_argument("--name-labels", choices=NAME_SCHEMES, default="auto", help=NAME_LABELS_HELP)
    x.set_defaults(func=cmd_export)

    d = sub.add_parser("download", help="download and check a public dataset",
                       description="Download a public dataset, check its content, unpack it.")
    d.add_argument("name", nargs="?", default="captcha_images_v2", choices=["captcha_images_v2"])
    d.add_argument("--dest", type=_path, help="parent folder (default: ~/.cache/captcha-ocr)")
    d.set_defaults(func=cmd_download)

    v = sub.add_parser("serve", help="serve a model over HTTP, with a web page",
                       description="Serve POST /v1/read, /v1/read-batch, /v1/model, /healthz and a "
                       "web page at / with uvicorn; Ctrl-C or SIGTERM stops it (see --drain).")
    v.add_argument("--model", type=_path, help=model_help)
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    v.add_argument("--port", type=_port, default=8000, help="port, 0-65535 (default: 8000)")
    v.add_argument("--max-body-mb", type=_at_least(1e-6, float), default=2.0,
                   help="largest request body in MiB, 413 above (default: 2)")
    v.add_argument("--max-batch", type=POSITIVE, default=64,
                   help="most images per inference batch and per /v1/read-batch (default: 64)")
    v.add_argument("--max-pixels", type=POSITIVE, default=DEFAULT_MAX_PIXELS,
                   help="largest image in pixels, 422 above, checked before decoding "
                        f"(default: {DEFAULT_MAX_PIXELS})")
    v.add_argument("--max-wait-ms", type=_at_least(0.0, float), default=2.0,
                   help="longest wait for other images to batch with (default: 2)")
    v.add_argument("--max-batch-pixels", type=POSITIVE, default=16_000_000,
                   help="most pixels in all the images of one /v1/read-batch request, 413 above "
                        "(default: 16000000)")
    v.add_argument("--header-timeout", type=_at_least(0.01, float), default=10.0,
                   help="seconds a client has to send a request's headers, 408 after (default: 10)")
    v.add_argument("--body-timeout", type=_at_least(0.01, float), default=30.0,
                   help="seconds a client has to send a request's body, 408 after (default: 30)")
    v.add_argument("--threads", type=COUNT, default=1, help="ONNX Runtime threads (default: 1)")
    _add_runtime_options(v)
    v.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="processes sharing the port, each with its own model (default: auto, "
                   f"one per usable core, at most {MAX_AUTO_WORKERS} and as many as a container's "
                   "memory limit holds; 1 with --provider cuda)")
    v.add_argument("--drain", type=_at_least(0.0, float), default=0.0, metavar="SECONDS",
                   help="on SIGTERM, go on serving this long with /healthz answering 503, so "
                        "that a load balancer takes the instance out first; Ctrl-C still stops "
                        "at once (default: 0, stop at once)")
    v.add_argument("--root-path", type=_root_path, default="", metavar="PATH",
                   help="the path prefix a reverse proxy serves this under and strips, e.g. /ocr "
                        "(the docs link their files under it; the page works under any prefix)")
    v.set_defaults(func=cmd_serve)

    lb = sub.add_parser("label", help="label a folder of captchas in the browser",
                        description="Serve a local page that shows the images of DATA_DIR one "
                        "at a time with the model's reading pre-filled; Enter accepts. Labels "
                        "are written to DATA_DIR/labels.csv as you go.")
    lb.add_argument("data_dir", type=_path, help="folder of captcha images (labels.csv is written there)")
    lb.add_argument("--model", type=_path, default=None,
                    help="model that pre-fills readings: a model directory, a shipped name, or "
                         "'none' (default: the model the page last trained, DATA_DIR/.label-model, "
                         "where there is one, else base)")
    lb.add_argument("--order", choices=["confidence", "file"], default="confidence",
                    help="least confident first (default) or file order")
    lb.add_argument("--review", type=_path, metavar="LIST",
                    help="show only these images, labeled or not, to keep or correct their labels: "
                    "a file of names, one per line, e.g. the output of 'captcha-ocr check-labels'")
    lb.add_argument("--trust-stems", action="store_true",
                    help="file names count as labels (as train reads them); the page shows the "
                    "images left without one (--review LIST to go through labeled ones)")
    lb.add_argument("--name-labels", choices=NAME_SCHEMES, default="auto",
                    help="how --trust-stems reads the file names (implies it): " + NAME_LABELS_HELP)
    lb.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    lb.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    lb.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lb.set_defaults(func=cmd_label)

    z = sub.add_parser("zoo", help="list the synthetic captcha styles, or write one as a dataset",
                       description="Without STYLE: list the seeded synthetic captcha styles. With STYLE: "
                       "write N of its images and their labels.csv to a folder.")
    z.add_argument("style", nargs="?", metavar="STYLE", help="style to write (default: list them)")
    z.add_argument("--out", type=_path, metavar="DIR", help="folder to write (new, or without images)")
    z.add_argument("-n", type=POSITIVE, default=500, help="number of images (default: 500)")
    z.add_argument("--seed", type=int, default=0, help="image stream seed (default: 0)")
    z.add_argument("--format", default="png", choices=[s[1:] for s in IMAGE_SUFFIXES],
                   help="image file format (default: png)")
    z.set_defaults(func=cmd_zoo)

    q = sub.add_parser("pretrain", help="pretrain a general base model on the synthetic zoo",
                       description="Train a base model on synthetic captchas of every zoo style, "
                       "drawn on the fly (seeded, never stored); fine-tune it on a site with "
                       "'captcha-ocr train DIR --init MODEL'. Runs as one process or under "
                       "torchrun --nproc-per-node N (DistributedDataParallel).")
    q.add_argument("--out", type=_path, required=True, metavar="DIR", help="model directory to write")
    q.add_argument("--steps", type=POSITIVE, default=20000, help="optimizer steps (default: 20000)")
    q.add_argument("--batch-size", type=POSITIVE, default=32, help="images per step and process "
                   "(default: 32)")
    q.add_argument("--lr", type=_at_least(1e-9, float), default=3e-3,
                   help="peak learning rate (default: 3e-3)")
    q.add_argument("--seed", type=COUNT, default=0, help="zoo stream and initialisation seed")
    q.add_argument("--styles", help="comma-separated zoo styles (default: all)")
    q.add_argument("--workers", type=COUNT, default=1,
                   help="image-drawing processes per training process (default: 1; 0: none)")
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA where there is one")
    q.add_argument("--checkpoint-minutes", type=_at_least(0.0, float), default=5.0,
                   help="minutes between resumable checkpoints (default: 5; 0: every step)")
    q.add_argument("--resume", action="store_true",
                   help="go on from the last checkpoint of an interrupted run (in DIR.partial)")
    q.add_argument("--eval-images", type=COUNT, default=100,
                   help="held-out images per style read at the end (default: 100; 0: none)")
    q.add_argument("--threads", type=COUNT, default=0, help="torch threads per process "
                   "(default: 1 on CUDA, else the cores over the processes less the workers)")
    q.add_argument("--widen", type=_fraction_closed, default=0.2, help="share of images placed in a "
                   "wider strip, short text in a long box (default: 0.2)")
    q.add_argument("--fonts", choices=("zoo", "wide"), default="zoo",  # zoo.FONT_POOLS (a test
                   # checks; importing the zoo here would cost every command 35 ms)
                   help="typefaces: zoo, each style's own (matplotlib's and captcha's); wide, "
                        "those and 37 faces of the font packages of the fonts extra, of the "
                        "same looks (default: zoo)")
    q.set_defaults(func=cmd_pretrain)
    return p


# The packages of the extras (pyproject.toml), by import name: a command that needs one
# in a reading install (`pip install -e .`) says which extra, not a traceback.
_EXTRA_OF = {**dict.fromkeys(("torch", "onnx", "safetensors", "matplotlib", "captcha"), "train"),
             **dict.fromkeys(("fastapi", "uvicorn", "multipart", "python_multipart", "httptools",
                              "uvloop", "fastapi_offline"), "serve")}
# torch's version: the CPU build pinned in pyproject.toml's [train] extra and the Makefile
_INSTALL = {"train": "pip install torch==2.13.0, then pip install -e '.[train]' (README: "
                     "\"Install by hand\")",
            "serve": "pip install -e '.[serve]'"}


def _missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing package of an extra, else None (also where the
    package is there and a part of it is not: a broken install, not a missing extra)."""
    import importlib.util

    root = (e.name or "").split(".")[0]
    extra = _EXTRA_OF.get(root)
    if extra is None:
        return None
    try:
        if importlib.util.find_spec(root) is not None:
            return None
    except (ImportError, ValueError):  # blocked in sys.modules (None), or half there
        pass
    return (f"this command needs the {root} package of the [{extra}] extra, not installed here: "
            f"{_INSTALL[extra]}")


RETRY_SECONDS = 0.05  # a stop signal that came during an import is taken again this much later


def _importing(frame) -> bool:
    """Whether ``frame`` (where a signal found the main thread) runs inside an import, or
    inside code compiled from a string (a dataclass's methods, a namedtuple's: modules make
    them as they import), below ``main`` (whose own caller may be ``python -c``)."""
    while frame is not None and frame.f_code is not main.__code__:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or name == "<string>":
            return True
        frame = frame.f_back
    return False


def _interrupt(signum, frame) -> None:
    """SIGTERM and Ctrl-C during a long run: a KeyboardInterrupt, but never inside an
    import. One raised there leaves the module half made, and on Python 3.11 surfaced as
    a RuntimeError traceback (raised in a dataclass's ``__set_name__``) or ended the
    process by SIGINT after its lines (an interrupted ``exec`` of a string: exit -2, not
    130); torch imports such modules lazily at the first optimizer step, a few seconds
    into a run. There the interval timer (SIGALRM, this handler too) takes it again
    ``RETRY_SECONDS`` later, until it lands outside: one timer, whatever else comes, and
    no thread started from a handler."""
    if _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        return
    signal.setitimer(signal.ITIMER_REAL, 0)  # a retry still pending: this is it
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in model.json by train
    previous = None
    if args.command in ("train", "pretrain", "check-labels") and \
            threading.current_thread() is threading.main_thread():
        # A service manager's stop (SIGTERM) ends a long run as Ctrl-C does: with a line,
        # and for train the --resume hint (its checkpoints are written atomically either way).
        # Ctrl-C too, where it is not ignored (a job started in the background); SIGALRM
        # is _interrupt's own retry.
        previous = {sig: signal.signal(sig, _interrupt)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)
                    if sig != signal.SIGINT or signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        args.func(args)
    except (CLIError, DatasetError, ModelError, ImageError, UnknownCharacterError, PortError) as e:
        print(f"captcha-ocr {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as e:
        message = _missing_extra(e)
        if message is None:
            raise
        print(f"captcha-ocr {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"captcha-ocr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)  # no retry after the run
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
