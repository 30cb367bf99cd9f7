"""CLIP BPE tokenizer: published ids, the parity fixtures' template ids, edge cases."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_seem.model.prompt_templates import PROMPT_TEMPLATES, clean_class_name, fill_templates
from napari_seem.model.tokenizer import BOS_ID, EOS_ID, ClipTokenizer, default_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SEEM_PARITY_FIXTURES", REPO_ROOT.parent / "shared" / "parity" / "fixtures"))
CLASSES = ["coin", "hand", "table", "background"]

FOX_IDS = [49406, 518, 3712, 2866, 3240, 18911, 962, 518, 10753, 1929, 269, 49407]


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return default_tokenizer()


def _fixture(name: str) -> dict[str, np.ndarray]:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"parity fixture {path} not found (set SEEM_PARITY_FIXTURES)")
    return dict(np.load(path))


def test_vocab_layout(tok: ClipTokenizer) -> None:
    assert tok.vocab_size == 49408
    assert tok.encoder["<|startoftext|>"] == BOS_ID == 49406
    assert tok.encoder["<|endoftext|>"] == EOS_ID == 49407
    assert tok.decoder[256] == tok.decoder[0] + "</w>"


def test_quick_brown_fox(tok: ClipTokenizer) -> None:
    ids, mask = tok(["The quick brown fox jumps over the lazy dog."])
    assert ids[0, :12].tolist() == FOX_IDS
    assert (ids[0, 12:] == EOS_ID).all()
    assert mask[0].tolist() == [1] * 12 + [0] * 65
    assert tok.encode("The quick brown fox jumps over the lazy dog.") == FOX_IDS[1:-1]


def test_a_coin(tok: ClipTokenizer) -> None:
    ids, mask = tok(["a coin"])
    assert ids.shape == mask.shape == (1, 77)
    assert ids.dtype == mask.dtype == torch.long
    assert ids[0].tolist() == [49406, 320, 4170] + [49407] * 74
    assert int(mask.sum()) == 4


def test_a_coin_matches_grounding_fixture(tok: ClipTokenizer) -> None:
    ref = _fixture("c_text_grounding.npz")
    ids, mask = tok(["a coin"])
    np.testing.assert_array_equal(ids.numpy(), ref["input_ids"])
    np.testing.assert_array_equal(mask.numpy(), ref["attention_mask"])


def test_all_template_rows_match_fixture(tok: ClipTokenizer) -> None:
    ref = _fixture("a_generic.npz")
    assert ref["template_input_ids"].shape == (len(CLASSES), len(PROMPT_TEMPLATES), 77)
    for k, name in enumerate(CLASSES):
        ids, mask = tok(fill_templates(name))
        np.testing.assert_array_equal(ids.numpy(), ref["template_input_ids"][k], err_msg=name)
        np.testing.assert_array_equal(mask.numpy(), ref["template_attention_mask"][k], err_msg=name)


def test_templates_decode_to_official_strings(tok: ClipTokenizer) -> None:
    ref = _fixture("a_generic.npz")
    for template, row in zip(PROMPT_TEMPLATES, ref["template_input_ids"][0]):
        # Decoding loses the spaces BPE does not keep: "close-up" -> "close - up", "coin." -> "coin ."
        expected = template.format("coin").replace("-", " - ").replace(".", " .")
        assert tok.decode(row.tolist()) == expected


def test_prompt_templates() -> None:
    assert len(PROMPT_TEMPLATES) == 81 == len(set(PROMPT_TEMPLATES))
    assert PROMPT_TEMPLATES[:3] == ("{}.", "a photo of a {}.", "a bad photo of a {}.")
    assert PROMPT_TEMPLATES[-1] == "a tattoo of the {}."
    assert all(t.count("{}") == 1 for t in PROMPT_TEMPLATES)


def test_clean_class_name() -> None:
    assert clean_class_name("wall-other-merged") == "wall"
    assert clean_class_name("grass-merged") == "grass"
    assert clean_class_name("floor-wood") == "floor-wood"
    assert clean_class_name("sky-other-merged") == "sky"
    assert clean_class_name("building-other-merged") == "building"
    assert clean_class_name("rug-stuff") == "rug"


def test_truncation_keeps_eos(tok: ClipTokenizer) -> None:
    text = " ".join(["word"] * 200)
    ids, mask = tok([text, "short"])
    assert ids.shape == (2, 77)
    assert ids[0, 0] == BOS_ID and ids[0, -1] == EOS_ID
    assert ids[0, 1:-1].tolist() == tok.encode(text)[:75]
    assert int(mask[0].sum()) == 77
    assert int(ids[0].argmax()) == 76  # the pooling position is the last one


def test_custom_context_length(tok: ClipTokenizer) -> None:
    ids, mask = tok(["a photo of a coin."], context_length=5)
    assert ids[0].tolist() == [BOS_ID, 320, 1125, 539, EOS_ID]
    assert mask.sum() == 5


def test_lower_case_and_whitespace(tok: ClipTokenizer) -> None:
    assert tok.encode("  A   COIN\t\n") == tok.encode("a coin") == [320, 4170]


@pytest.mark.parametrize(
    "text",
    ["naïve café", "🙂 smiley 👍🏽", "日本語のテキスト", "Ünïcödé\u200b zero\x00width", "", "   ", "x" * 500],
)
def test_unicode_does_not_crash(tok: ClipTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    batch, mask = tok([text])
    assert batch.shape == (1, 77) and batch[0, 0] == BOS_ID
    assert int(batch[0, int(mask[0].sum()) - 1]) == EOS_ID
    # Non-ASCII byte sequences survive BPE and decoding intact.
    assert tok.encode(tok.decode(ids)) == ids


def test_emoji_round_trip(tok: ClipTokenizer) -> None:
    assert tok.decode(tok.encode("🙂 ok")) == "🙂 ok"


@pytest.mark.parametrize(
    "text", ["a photo of a coin", "the quick brown fox jumps over the lazy dog", "segment every cell nucleus"]
)
def test_ascii_round_trip(tok: ClipTokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text
    ids, _ = tok([text])
    assert tok.decode(ids[0]) == text
    assert tok.decode(ids[0], skip_special_tokens=False).startswith("<|startoftext|>")


def test_ascii_punctuation_round_trips_to_same_ids(tok: ClipTokenizer) -> None:
    text = "Hello, World! It's 2024: don't panic (42%)."
    ids = tok.encode(text)
    assert tok.encode(tok.decode(ids)) == ids


def test_special_tokens_in_text(tok: ClipTokenizer) -> None:
    assert tok.encode("a<|endoftext|>coin") == [320, EOS_ID, 4170]


def test_bpe_cache(tok: ClipTokenizer) -> None:
    tok.encode("microscopy")
    assert any(k.startswith("microscopy") for k in tok._cache)


def test_explicit_vocab_path() -> None:
    from importlib import resources

    asset = resources.files("napari_seem.model").joinpath("assets").joinpath("bpe_simple_vocab_16e6.txt.gz")
    with resources.as_file(asset) as path:
        tok = ClipTokenizer(str(path))
    assert tok.encode("a coin") == [320, 4170]
