"""Language encoder: state-dict layout and parity with the official code (pseudo-random weights)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_seem.model.prompt_templates import PROMPT_TEMPLATES, fill_templates
from napari_seem.model.text_encoder import LanguageEncoder
from napari_seem.model.tokenizer import default_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SEEM_PARITY_FIXTURES", REPO_ROOT.parent / "shared" / "parity" / "fixtures"))
PREFIX = "sem_seg_head.predictor.lang_encoder."
CLASSES = ["coin", "hand", "table", "background"]
REL_TOL = 1e-4


def _require_fixtures() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixtures directory {FIXTURES} not found (set SEEM_PARITY_FIXTURES)")
    if not (FIXTURES.parent / "fill_weights.py").is_file():
        pytest.skip(f"{FIXTURES.parent / 'fill_weights.py'} not found")


def _load_fill_weights():
    spec = importlib.util.spec_from_file_location("fill_weights", FIXTURES.parent / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_close(name: str, actual: torch.Tensor, reference: np.ndarray) -> None:
    """Max abs error <= REL_TOL * max |reference|."""
    actual = actual.detach().cpu().numpy()
    assert actual.shape == reference.shape, name
    err = float(np.abs(actual - reference).max())
    scale = float(np.abs(reference).max())
    assert err <= REL_TOL * scale, f"{name}: max abs err {err:.3g} > {REL_TOL} * {scale:.3g}"


@pytest.fixture(scope="module")
def parity_encoder() -> LanguageEncoder:
    """Focal-T v1 sized encoder filled with the deterministic parity weights."""
    _require_fixtures()
    fill = _load_fill_weights()
    model = LanguageEncoder()
    state = {k: fill.fill_tensor(PREFIX + k, v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _fixture(name: str) -> dict[str, np.ndarray]:
    _require_fixtures()
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"parity fixture {path} not found")
    return dict(np.load(path))


# ---------------------------------------------------------------- layout


def _manifest_shapes() -> dict[str, tuple[int, ...]]:
    path = FIXTURES.parent.parent / "seem" / "keys_focalt_v1.tsv"
    if not path.is_file():
        pytest.skip(f"key manifest {path} not found")
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")[:2]
        if key.startswith(PREFIX):
            shapes[key[len(PREFIX) :]] = tuple(int(s) for s in shape.split("x")) if shape else ()
    return shapes


def test_state_dict_matches_official_keys() -> None:
    model = LanguageEncoder()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _manifest_shapes()
    assert model.state_dict()["logit_scale"].dim() == 0


def test_small_config_runs_and_has_no_mask_in_state() -> None:
    torch.manual_seed(0)
    model = LanguageEncoder(width=64, layers=2, heads=4, proj_dim=32).eval()
    keys = list(model.state_dict())
    assert not any("mask" in k for k in keys)
    assert len(keys) == 2 + 12 * 2 + 2 + 2  # embeddings, 2 blocks, ln_final, lang_proj + logit_scale
    with torch.no_grad():
        out = model.token_embeddings(["a coin", "two cells"])
        tokens, class_emb = model.grounding_tokens(["a coin", "two cells"])
        emb = model.class_embeddings(["coin", "wall-other-merged"])
        plain = model.class_embeddings(["coin"], templates=False)
        hidden = model.encode_ids(torch.tensor([[49406, 320, 4170, 49407]]))
    assert out["token_emb"].shape == (2, 77, 32)
    assert out["class_emb"].shape == (2, 32)
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 77)
    n_tokens = int(out["attention_mask"].sum())
    assert tokens.shape == (n_tokens, 1, 32) and class_emb.shape == (2, 32)
    assert emb.shape == (2, 32) and plain.shape == (1, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert hidden.shape == (1, 4, 64)


def test_small_vocab_and_context() -> None:
    model = LanguageEncoder(vocab_size=100, context_length=8, width=16, layers=1, heads=2, proj_dim=8)
    with torch.no_grad():
        assert model.encode_ids(torch.randint(0, 100, (3, 8))).shape == (3, 8, 16)
    with pytest.raises(ValueError):
        model.token_embeddings(["a coin"])  # CLIP ids do not fit a 100-row embedding


def test_causality_and_padding_independence() -> None:
    """Tokens never see later positions, so the EOS state doesn't depend on what follows."""
    torch.manual_seed(0)
    model = LanguageEncoder(width=32, layers=2, heads=4, proj_dim=16).eval()
    ids, _ = default_tokenizer()(["a coin"])
    other = ids.clone()
    other[0, 4:] = 123  # change everything after EOS
    with torch.no_grad():
        a, b = model.encode_ids(ids), model.encode_ids(other)
    torch.testing.assert_close(a[:, :4], b[:, :4])


def test_shared_tokenizer_instance() -> None:
    assert LanguageEncoder(width=8, layers=1, heads=1, proj_dim=4).tokenizer is default_tokenizer()


# ---------------------------------------------------------------- parity


def test_text_grounding_parity(parity_encoder: LanguageEncoder) -> None:
    ref = _fixture("c_text_grounding.npz")
    with torch.no_grad():
        out = parity_encoder.token_embeddings(["a coin"])
        tokens, class_emb = parity_encoder.grounding_tokens(["a coin"])
    np.testing.assert_array_equal(out["input_ids"].numpy(), ref["input_ids"])
    np.testing.assert_array_equal(out["attention_mask"].numpy(), ref["attention_mask"])
    _assert_close("token_emb", out["token_emb"], ref["token_emb"])
    _assert_close("class_emb", out["class_emb"], ref["class_emb"])
    n_tokens = int(ref["attention_mask"].sum())
    _assert_close("grounding tokens", tokens[:, 0], ref["token_emb"][0, :n_tokens])
    _assert_close("grounding class_emb", class_emb, ref["class_emb"])


def test_per_template_embeddings_parity(parity_encoder: LanguageEncoder) -> None:
    ref = _fixture("a_generic.npz")
    with torch.no_grad():
        per_template = parity_encoder.sentence_embeddings(fill_templates("coin"))
    assert per_template.shape == (len(PROMPT_TEMPLATES), 512)
    _assert_close("template_class0_embeddings_norm", per_template, ref["template_class0_embeddings_norm"])


def test_class_embeddings_parity(parity_encoder: LanguageEncoder) -> None:
    ref = _fixture("a_generic.npz")
    with torch.no_grad():
        emb = parity_encoder.class_embeddings(CLASSES, batch_size=200)
    _assert_close("text_embeddings", emb, ref["text_embeddings"])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(len(CLASSES)))
