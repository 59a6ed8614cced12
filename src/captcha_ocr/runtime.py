"""Read captchas with ONNX Runtime: load a model directory once, read images in batches.

Imports numpy, Pillow and onnxruntime only (never torch), so a reading install is small
and starts fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from .charset import one_case
from .cpus import usable_cores
from .decoding import DecodeOptions, decode
from .modeldir import FILES, ModelError, ModelInfo
from .preprocess import DEFAULT_MAX_PIXELS, ImageError, ImageSource, preprocess

__all__ = ["BASE_MODELS", "BUNDLED_MODEL", "ImageError", "ModelError", "ReadOptionError",
           "ReadOptions", "Reader", "Reading", "bundled_model_dir"]

BUNDLED_MODEL = "captcha_images_v2"
# The general base models shipped with the package, the default first (``finetune``).
BASE_MODELS = ("base", "base2")
PRECISIONS = ("auto", "fp32", "int8")


def _default_split() -> tuple[int, int]:
    """(inference threads, decoding threads): half the cores each. On 2 cores, one ONNX
    Runtime thread beside one decoding thread read 2,735 images/s at batch 64 against
    1,827 with two inference threads competing with decoding, and batch-1 latency fell
    from 0.79 to 0.66 ms (bench/read_bench.py, before and after)."""
    cores = usable_cores()
    infer = max(1, cores // 2)
    return infer, max(1, cores - infer)


def shipped_models() -> list[str]:
    """The names of the models shipped in the package ("base", ...)."""
    root = bundled_model_dir().parent
    return sorted(p.name for p in root.iterdir() if (p / FILES.info).is_file()) if root.is_dir() else []


def is_shipped(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is one of the models in the package (never to be written)."""
    return Path(model_dir).resolve().parent == bundled_model_dir().resolve().parent


def resolve_model(model_dir: str | Path) -> Path:
    """A model directory from what a user gave: a folder (``~`` expanded) holding a
    ``model.json``, else a shipped model of that bare name; what is neither is left to
    ``ModelInfo.load`` to name (a folder without ``model.json``), or refused here."""
    given = str(model_dir)
    path = Path(given).expanduser()
    if (path / FILES.info).is_file():
        return path
    if given in shipped_models():  # a bare name ("base"), never a path that happens to fit
        return bundled_model_dir(given)
    if path.is_file():
        raise ModelError(f"{given}: a file, not a model directory: pass the folder that holds "
                         f"{FILES.info} and {FILES.onnx}")
    if not given.strip() or not path.is_dir():
        shipped = ", ".join(shipped_models()) or "none in this install"
        raise ModelError(f"{given!r}: no such model directory, and no model of that name ships "
                         f"with captcha-ocr ({shipped})")
    return path


def _check_count(name: str, value: object, low: int) -> None:
    """A whole number (numpy's too, not a bool) of at least ``low``, or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be a whole number of at least {low}, not {value!r}")


def bundled_model_dir(name: str = BUNDLED_MODEL) -> Path:
    """Where the pretrained model shipped with the package lives."""
    return Path(__file__).parent / "models" / name


@dataclass(frozen=True)
class Reading:
    """The text read from one image.

    Attributes:
        text: the decoded text ("" when ``error`` is set).
        confidence: in [0, 1]: the probability of ``text`` under the model at its
            calibrated temperature: the chance that the reading is right.
        char_confidences: one probability per character of ``text`` (for shading).
        error: why this item could not be read (``read_many`` only), else None.
        alternatives: with ``beam``: up to K (text, probability) readings, best first.
        answer: with ``solve``: the value of the arithmetic expression read, else None.
        answer_error: with ``solve``, why there is no answer.
        accepted: False when ``confidence`` is under ``min_confidence`` (True without
            one), and where nothing was read (``error`` set, or an empty ``text``).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    error: str | None = None
    alternatives: tuple[tuple[str, float], ...] = ()
    answer: int | None = None
    answer_error: str | None = None
    accepted: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        """The JSON fields of a reading (CLI and service): alternatives and the answer
        only where they were asked for."""
        out = {"text": self.text, "confidence": round(self.confidence, 6),
               "char_confidences": [round(c, 6) for c in self.char_confidences],
               "accepted": self.accepted}
        if self.alternatives:
            out["alternatives"] = [{"text": t, "probability": round(q, 6)} for t, q in self.alternatives]
        if self.answer is not None or self.answer_error is not None:
            out["answer"] = self.answer
            if self.answer_error:
                out["answer_error"] = self.answer_error
        return out


class ReadOptionError(ValueError):
    """Reading options that cannot apply to the model (one line)."""


@dataclass(frozen=True)
class ReadOptions:
    """What a reading may be asked for (``Reader.options`` builds and checks one).

    Attributes:
        decode: allowed characters, length range, beam width (``decoding.DecodeOptions``).
        solve: also compute the answer of an arithmetic expression (``solve.solve``).
        min_confidence: readings below it get ``accepted=False``.
    """

    decode: DecodeOptions = DecodeOptions()
    solve: bool = False
    min_confidence: float | None = None


DEFAULT_OPTIONS = ReadOptions()


_OPTION_TYPES = dict(allow=(str, "a string"), length=(Integral, "an integer"),
                     min_length=(Integral, "an integer"), max_length=(Integral, "an integer"),
                     beam=(Integral, "an integer"), solve=((bool, np.bool_), "True or False"),
                     min_confidence=(Real, "a number"))


def _check_types(**options) -> None:
    """A reading option of the wrong type is a ``ReadOptionError`` naming it (not a
    ``TypeError`` from deep in decoding, nor a string "yes" taken as true)."""
    for name, value in options.items():
        if value is None and name not in ("beam", "solve"):
            continue
        kind, want = _OPTION_TYPES[name]
        if not isinstance(value, kind) or (name != "solve" and isinstance(value, (bool, np.bool_))):
            shown = " ".join(repr(value).split())[:60]  # one line, short
            raise ReadOptionError(f"{name} must be {want}, not {type(value).__name__} {shown}")


def _failed(error: str) -> Reading:
    return Reading("", 0.0, (), error, accepted=False)  # nothing read: nothing to submit


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


# cuDNN's exhaustive search for each convolution runs again for every new input shape,
# and a Reader's batches come in every size (the service's micro-batches above all):
# its heuristic choice instead.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def _providers(name: str) -> list:
    """ONNX Runtime's provider list for ``name`` (CPU kept last as ORT's fallback)."""
    if name not in PROVIDERS:
        raise ModelError(f"provider {name!r}: expected one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[name]
    if wanted not in ort.get_available_providers():
        raise ModelError(f"provider {name!r} is not available in this onnxruntime "
                         f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                         "instead of onnxruntime for CUDA, or use --provider cpu")
    if name == "cuda" and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA and cuDNN in the nvidia-* pip packages only when asked
        # (or when torch was imported first: never on the reading path). Its notes go to
        # stderr, not into a JSON reading on stdout (a process-wide swap, for the moment
        # a model loads: at start-up, before any reading).
        try:
            with contextlib.redirect_stdout(sys.stderr):
                ort.preload_dlls()
        except Exception as e:  # noqa: BLE001 - onnxruntime's loader raises what it meets
            raise ModelError(_provider_failed(Path("onnxruntime"), name, str(e))) from None
    if name == "cpu":
        return [wanted]
    return [(wanted, CUDA_OPTIONS), "CPUExecutionProvider"]  # the CPU runs what CUDA cannot


def _cuda_wanted() -> str:
    """The CUDA and cuDNN this onnxruntime was built for, as pip names them."""
    version = getattr(getattr(ort, "capi", None), "build_and_package_info", None)
    major = str(getattr(version, "cuda_version", "") or "").split(".")[0]
    return f"CUDA {major} and cuDNN 9" if major else "CUDA and cuDNN"


def _provider_failed(onnx_path: Path, provider: str, why: str = "") -> str:
    """One line for a provider that ONNX Runtime has but cannot start here."""
    cuda = re.search(r"CUDA failure \d+: ([^;]+?)\s*;", why)  # ORT's own words, else its first line
    reason = cuda.group(1) if cuda else why.strip().splitlines()[0][:160] if why.strip() else ""
    return (f"{onnx_path}: ONNX Runtime could not start its {provider!r} provider on this "
            f"machine{f' ({reason})' if reason else ''}: is a GPU visible, with {_cuda_wanted()} "
            "(pip install 'onnxruntime-gpu[cuda,cudnn]')? Or use --provider cpu")


def _check_provider(session: ort.InferenceSession, wanted: str, onnx_path: Path) -> None:
    """A Reader asked for a GPU must not read on the CPU without a word (ONNX Runtime
    drops a provider it cannot register)."""
    if PROVIDERS[wanted] not in session.get_providers():
        raise ModelError(_provider_failed(onnx_path, wanted))


def _check_graph(session: ort.InferenceSession, info: ModelInfo, onnx_path: Path) -> None:
    """``model.json`` must describe the network it sits beside (it can be edited by hand,
    and its checksum covers the ONNX file, not itself)."""
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    im = info.image
    want_in = {1: im.channels, 2: im.height, 3: im.width}
    for axis, want in want_in.items():
        got = inp.shape[axis] if len(inp.shape) == 4 else None
        if got != want:
            what = ("channels", "height", "width")[axis - 1]
            raise ModelError(f"{onnx_path.parent / FILES.info}: input {what} {want} does not fit "
                             f"the network in {FILES.onnx} ({got}); re-train or restore model.json")
    classes = out.shape[-1] if len(out.shape) == 3 else None
    if classes != info.charset.n_classes:
        raise ModelError(f"{onnx_path.parent / FILES.info}: an alphabet of "
                         f"{len(info.alphabet)} characters needs {info.charset.n_classes} output "
                         f"classes, the network in {FILES.onnx} has {classes}; re-train or "
                         "restore model.json")


class Reader:
    """A loaded model that turns images into text.

    Use ``Reader.load(model_dir)``; one Reader is safe to share between threads.
    """

    def __init__(self, session: ort.InferenceSession, info: ModelInfo, model_dir: Path,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int | None = None,
                 onnx_file: str = FILES.onnx) -> None:
        self.session = session
        self.onnx_file = onnx_file  # the network file run: model.onnx or model.int8.onnx
        self.info = info
        self.model_dir = model_dir
        self.charset = info.charset
        self._fitted: set[ReadOptions] = set()  # options checked against this model
        self.max_pixels = max_pixels
        self._input = session.get_inputs()[0].name
        self.steps = self._time_steps()  # at most this many characters can be read
        self._workers = workers or _default_split()[1]
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="captcha-ocr-decode")

    @classmethod
    def load(cls, model_dir: str | Path | None = None, *, threads: int = 0,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, provider: str = "cpu",
             precision: str = "auto") -> Reader:
        """Load a model directory (default: the bundled pretrained model).

        Args:
            model_dir: a directory written by ``captcha-ocr train``, or the name of a
                model shipped in the package ("base", "base2", "captcha_images_v2").
            threads: ONNX Runtime intra-op threads (0: half the cores; the other half
                decode images for ``read_many``, a two-stage pipeline).
            max_pixels: images with more pixels are refused before decoding.
            provider: ONNX Runtime execution provider: "cpu", or "cuda" where the
                ``onnxruntime-gpu`` package is installed instead of ``onnxruntime``.
            precision: "auto" (the int8 network where ``captcha-ocr export --int8`` made
                one: it was kept only where it read as well), "fp32" or "int8".

        Raises:
            ModelError: the directory is not a model, ``model.onnx`` does not match
                the checksum in ``model.json``, the provider is not available, or
                int8 was asked of a model without one.
        """
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        _check_count("threads", threads, 0)
        if max_pixels is not None:
            _check_count("max_pixels", max_pixels, 1)
        providers = _providers(provider)
        if model_dir is None:
            model_dir = bundled_model_dir()
            if not (model_dir / FILES.info).is_file():
                raise ModelError("no bundled model in this install; pass a model directory "
                                 "(--model DIR) written by 'captcha-ocr train'")
        else:
            model_dir = resolve_model(model_dir)
        info = ModelInfo.load(model_dir)
        has_int8 = FILES.int8 in info.files and info.int8.get("onnx") == info.files.get(FILES.onnx)
        if precision == "int8" and not has_int8:
            if is_shipped(model_dir):
                raise ModelError(f"{model_dir.name} (a shipped model): has no int8 network; make "
                                 f"one for a copy: cp -r {model_dir} M && captcha-ocr export M --int8 "
                                 "--data DIR (labeled images of the site)")
            raise ModelError(f"{model_dir}: has no int8 network; make one with 'captcha-ocr export "
                             f"{model_dir} --int8 --data DIR' (labeled images of the site)")
        # model.onnx first, even where int8 runs: a half-written or damaged folder says so
        onnx_path = info.verify(model_dir, FILES.onnx)
        if has_int8 and precision != "fp32":
            onnx_path = info.verify(model_dir, FILES.int8)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or _default_split()[0]
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            # No silent fallback: where a provider cannot start, ONNX Runtime would print
            # its error on stdout (into a JSON reading) and run on the CPU.
            session = ort.InferenceSession(str(onnx_path), opts, providers=providers,
                                           enable_fallback=0)
        except Exception as e:  # onnxruntime raises its own untyped errors
            if provider != "cpu" and re.search(r"cuda|EP Error|provider", str(e), re.IGNORECASE):
                raise ModelError(_provider_failed(onnx_path, provider, str(e))) from None
            raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        _check_provider(session, provider, onnx_path)
        _check_graph(session, info, onnx_path)
        return cls(session, info, model_dir, max_pixels, onnx_file=onnx_path.name)

    @property
    def name(self) -> str:
        """A short model name: directory name and the ONNX checksum's first 8 hex digits."""
        return f"{self.model_dir.name}@{self.info.files.get(self.onnx_file, '')[:8]}"

    @property
    def precision(self) -> str:
        """The network that runs: "int8" (``model.int8.onnx``) or "fp32"."""
        return "int8" if self.onnx_file == FILES.int8 else "fp32"

    def _time_steps(self) -> int:
        """Time steps T of the network's output (from the graph where it is fixed, else
        one run on a blank image, at load: never on a request's path)."""
        t = self.session.get_outputs()[0].shape[1]
        if isinstance(t, int):
            return t
        image = self.info.image
        return int(self.run(np.zeros((1, image.channels, image.height, image.width), np.float32)).shape[1])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw network: ``(N, C, H, W)`` float32 in [0, 1] -> log-probs ``(N, T, n_classes)``."""
        return self.session.run(None, {self._input: batch})[0]

    def preprocess(self, source: ImageSource) -> np.ndarray:
        """One image -> ``(C, H, W)`` model input. Raises ``ImageError``."""
        return preprocess(source, self.info.image, self.max_pixels)

    def options(self, *, allow: str | None = None, length: int | None = None,
                min_length: int | None = None, max_length: int | None = None, beam: int = 0,
                solve: bool = False, min_confidence: float | None = None) -> ReadOptions:
        """Check reading options against this model and bundle them.

        Args:
            allow: the characters the site draws, the only ones the reading may hold
                (the others' probability is moved onto them, never onto the blank: a glyph
                outside them is read as the nearest allowed one). For a model trained
                with ``ignore_case`` (it reads lower case) they are folded to lower case.
            length: the reading's exact length (or ``min_length`` / ``max_length``):
                the most probable reading of an allowed length, by beam search.
            beam: K > 0: beam search, with up to K alternatives and their probabilities.
            solve: also return the ``answer`` of an arithmetic reading ("14+27" -> 41).
            min_confidence: flag readings below it (``accepted=False``).

        Raises:
            ReadOptionError: an option of the wrong type, characters outside the alphabet,
                lengths under 1, inconsistent or over what the model can read, a beam
                outside 0-32, a confidence outside [0, 1].
        """
        _check_types(allow=allow, length=length, min_length=min_length, max_length=max_length,
                     beam=beam, solve=solve, min_confidence=min_confidence)
        length, min_length, max_length = (None if v is None else int(v)  # numpy ints too
                                          for v in (length, min_length, max_length))
        beam, solve = int(beam), bool(solve)
        try:
            min_confidence = None if min_confidence is None else float(min_confidence)
        except OverflowError:
            raise ReadOptionError("min confidence must be in [0, 1], not a number that large") from None
        if length is not None:
            if min_length is not None or max_length is not None:
                raise ReadOptionError("give a length, or a min and max length, not both")
            min_length = max_length = length
        if allow and self.info.training.get("ignore_case"):  # "ABC" is "abc" to it
            allow = one_case(allow)
        d = DecodeOptions(allow=allow, min_length=min_length, max_length=max_length, beam=beam)
        try:
            d.check(self.charset)
        except ValueError as e:
            raise ReadOptionError(str(e)) from None
        if min_length is not None and min_length > self.steps:
            raise ReadOptionError(f"this model reads at most {self.steps} characters (its input, "
                                  f"{self.info.image.width} pixels wide, gives {self.steps} time "
                                  f"steps), not {min_length}")
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise ReadOptionError(f"min confidence must be in [0, 1], not {min_confidence}")
        out = ReadOptions(d, solve, min_confidence)
        self._remember(out)
        return out

    def _remember(self, options: ReadOptions) -> None:
        """Note options as checked against this model (a bounded set: options made per
        call are checked again, not kept forever)."""
        if len(self._fitted) >= 256:
            self._fitted.clear()
        self._fitted.add(options)

    def read_arrays(self, batch: np.ndarray, options: ReadOptions = DEFAULT_OPTIONS) -> list[Reading]:
        """Read a preprocessed batch ``(N, C, H, W)``."""
        return self.readings(self.run(batch), options)

    def readings(self, log_probs: np.ndarray, options: ReadOptions = DEFAULT_OPTIONS) -> list[Reading]:
        """Decode the network's output ``(N, T, C)`` (``run``) into readings, with ``options``."""
        out = []
        for d in decode(log_probs, self.charset, options.decode, self.info.temperature):
            answer, why = None, None
            if options.solve:
                from .solve import solve

                solved = solve(d.text)
                answer, why = solved.answer, solved.error
            # nothing read (an all-blank output, or no reading of the asked length): nothing to submit
            accepted = bool(d.text) and (options.min_confidence is None
                                         or d.confidence >= options.min_confidence)
            out.append(Reading(d.text, d.confidence, d.char_confidences, None, d.alternatives,
                               answer, why, accepted))
        return out

    def _options(self, options: ReadOptions | None, kwargs: dict) -> ReadOptions:
        if options is not None and not isinstance(options, ReadOptions):
            raise ReadOptionError(f"options must come from reader.options(...), not {options!r}; "
                                  "or pass them as keywords: "
                                  "read(x, allow='0123456789')")
        if kwargs:
            if options is not None:
                raise ReadOptionError("pass options=... or keyword options, not both")
            unknown = sorted(set(kwargs) - set(_OPTION_TYPES))
            if unknown:
                raise ReadOptionError(f"unknown reading option {unknown[0]!r}; the options: "
                                      f"{', '.join(_OPTION_TYPES)}")
            return self.options(**kwargs)
        if options is None or options == DEFAULT_OPTIONS:
            return DEFAULT_OPTIONS
        try:
            known = options in self._fitted
        except TypeError:  # built by hand, with a list for a string
            raise ReadOptionError("options must come from reader.options(...)") from None
        if not known:  # made by another model's Reader?
            d = options.decode
            try:
                self.options(allow=d.allow, min_length=d.min_length, max_length=d.max_length,
                             beam=d.beam, solve=options.solve, min_confidence=options.min_confidence)
            except ReadOptionError as e:
                raise ReadOptionError(f"these options do not fit this model ({e}): were they made "
                                      "by another Reader? make them with this one's options()") from None
        return options

    def read(self, source: ImageSource, options: ReadOptions | None = None, **kwargs) -> Reading:
        """Read one image (path, encoded bytes, PIL image or uint8 array).

        Args:
            options: from ``Reader.options(...)``, or the same as keywords here:
                ``reader.read(x, allow="0123456789", length=4, beam=5, solve=True,
                min_confidence=0.9)`` (default: greedy, no constraints).

        Raises:
            ImageError: the image cannot be read; the message names it.
            ReadOptionError: options that do not fit the model.
        """
        return self.read_arrays(self.preprocess(source)[None], self._options(options, kwargs))[0]

    def _submit(self, sources: list) -> Callable[[], tuple[np.ndarray, list[str | None]]]:
        """Start preprocessing ``sources`` into one batch array, in a few chunks on the
        thread pool (PIL decodes with the GIL released); returns a function that waits."""
        im = self.info.image
        batch = np.empty((len(sources), im.channels, im.height, im.width), np.float32)
        errors: list[str | None] = [None] * len(sources)

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                try:
                    batch[i] = self.preprocess(sources[i])
                except ImageError as e:
                    errors[i] = str(e)

        step = max(1, -(-len(sources) // self._workers))
        futures = [self._pool.submit(work, lo, min(lo + step, len(sources)))
                   for lo in range(0, len(sources), step)]

        def wait() -> tuple[np.ndarray, list[str | None]]:
            for f in futures:
                f.result()
            return batch, errors

        return wait

    def _read_prepared(self, batch: np.ndarray, errors: list[str | None],
                       options: ReadOptions) -> list[Reading]:
        good = [i for i, e in enumerate(errors) if e is None]
        if len(good) == len(errors):
            return self.read_arrays(batch, options)
        read = iter(self.read_arrays(batch[good], options) if good else [])
        return [_failed(e) if e is not None else next(read) for e in errors]

    def iter_read(self, sources: Iterable[ImageSource], options: ReadOptions | None = None, *,
                  batch_size: int = 64, **kwargs) -> Iterator[Reading]:
        """Read images lazily in batches, yielding results in input order.

        Decoding of the next batch (in threads) overlaps inference on the current one.
        A source that cannot be read yields a ``Reading`` with ``error`` set. Options as
        for ``read``.

        Raises (on the call, not on the first reading):
            TypeError: ``sources`` is one image (a path, bytes, a file, an array), not several.
            ValueError: ``batch_size`` under 1 or not a whole number.
            ReadOptionError: bad options.
        """
        if isinstance(sources, np.ndarray):
            raise TypeError(f"read_many and iter_read take a list of images, not an array of "
                            f"shape {sources.shape}: a stack of images? pass list(arr)")
        if isinstance(sources, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)) or \
                hasattr(sources, "read"):
            raise TypeError(f"read_many and iter_read take a list of images, not one "
                            f"{type(sources).__name__}: read(x) reads one")
        _check_count("batch_size", batch_size, 1)
        return self._iter_read(iter(sources), batch_size, self._options(options, kwargs))

    def _iter_read(self, it: Iterator[ImageSource], batch_size: int,
                   options: ReadOptions) -> Iterator[Reading]:
        pending = self._submit(list(islice(it, batch_size)))
        while True:
            batch, errors = pending()
            if not errors:
                return
            pending = self._submit(list(islice(it, batch_size)))
            yield from self._read_prepared(batch, errors, options)

    def read_many(self, sources: Iterable[ImageSource], options: ReadOptions | None = None, *,
                  batch_size: int = 64, **kwargs) -> list[Reading]:
        """Read many images in batches; same order as ``sources``; bad items carry
        ``error``. Options as for ``read``; raises as ``iter_read``."""
        return list(self.iter_read(sources, options, batch_size=batch_size, **kwargs))
