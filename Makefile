# captcha-ocr: set up, run the main job, run the tests. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The dataset: the shared copy when it is beside this checkout, else the CLI's own
# search (CAPTCHA_OCR_DATA, ~/.cache/captcha-ocr, then a download).
DATA   ?= $(firstword $(wildcard ../shared/data/captcha_images_v2))
ARCH   ?=
OUT    ?= runs/demo

.PHONY: setup demo test lint bench clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0   # the CPU build on disk; other specs pull CUDA
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/captcha-ocr train $(DATA) --out $(OUT) $(if $(ARCH),--arch $(ARCH),)
	@echo "--- reading three images with the new model:"
	$(BIN)/captcha-ocr predict $$(ls -d $(or $(DATA),$${CAPTCHA_OCR_DATA:-$$HOME/.cache/captcha-ocr/captcha_images_v2})/*.png | head -3) --model $(OUT)

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache src/*.egg-info
