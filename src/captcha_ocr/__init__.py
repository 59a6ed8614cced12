"""captcha-ocr: learn to read text CAPTCHAs, then read them fast.

Reading needs numpy, Pillow and onnxruntime only::

    from captcha_ocr import Reader
    reader = Reader.load("MODEL_DIR")      # or Reader.load(): the bundled model
    reader.read("x.png").text
"""

from .modeldir import ModelError
from .preprocess import ImageError
from .runtime import Reader, Reading, ReadOptionError

__version__ = "0.1.0"

__all__ = ["ImageError", "ModelError", "ReadOptionError", "Reader", "Reading", "__version__"]
