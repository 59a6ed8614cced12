"""Tab-separated fields that file names cannot break, and read back by label --review."""

from hypothesis import given
from hypothesis import strategies as st

from captcha_ocr.cli import main
from captcha_ocr.labeling import read_review_list
from captcha_ocr.tsv import field, parse_field


@given(st.text())
def test_any_text_is_one_field_on_one_line_and_reads_back(text):
    written = field(text)
    assert "\t" not in written and len(("a" + written + "b").splitlines()) == 1
    assert parse_field(written) == text


def test_plain_fields_are_written_as_they_are():
    for text in ("2b6c", "data/x 1.png", "é.png", "a\"b", ""):
        assert field(text) == text
    assert field('"quoted".png') == '"\\"quoted\\".png"'
    assert field(" a.png") == '" a.png"' and field("a ") == '"a "'


def test_predict_keeps_one_line_of_two_fields_per_image_and_the_review_list_reads_it(
        capsys, tmp_path, synth_dir):
    source = sorted(synth_dir.glob("*.png"))[0]
    odd = tmp_path / "odd"
    odd.mkdir()
    names = ["new\nline.png", "tab\tname.png", "plain.png", " lead.png"]
    for name in names:
        (odd / name).write_bytes(source.read_bytes())
    assert main(["predict", str(odd)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.count("\t") == 1 for line in lines)
    listed = tmp_path / "review.tsv"
    listed.write_text("\n".join(lines) + "\n")
    assert sorted(read_review_list(listed)) == sorted(names)
