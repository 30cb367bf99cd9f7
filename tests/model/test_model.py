"""Structure, checkpoint loading and behaviour of the SEEM model (no parity fixtures needed except
for the official key manifests)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from napari_seem.model import CheckpointError, build_seem, get_config, load_checkpoint
from napari_seem.model.config import BackboneConfig
from napari_seem.model.postprocess import select_spatial

from parity import FIXTURES_DIR
from tiny import tiny_config

SEEM_DIR = FIXTURES_DIR.parent.parent / "seem"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_seem(tiny_config())


def read_tsv_manifest(path):
    shapes = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape = line.split("\t")[:2]
        shapes[key] = tuple(int(s) for s in shape.split("x")) if shape else ()
    return shapes


def read_txt_manifest(path):
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return shapes


# ------------------------------------------------------------------------------------- key manifests
@pytest.mark.skipif(not (SEEM_DIR / "keys_focalt_v1.tsv").is_file(), reason="key manifests not found")
@pytest.mark.parametrize("variant", ["focalt_v1", "focalt_v0", "focalt_demo"])
def test_focal_t_keys_and_shapes_equal_official(variant):
    expected = read_tsv_manifest(SEEM_DIR / "keys_focalt_v1.tsv")
    model = build_seem(variant, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    assert len(ours) == 729


@pytest.mark.skipif(not (SEEM_DIR / "keys_focall_v1.txt").is_file(), reason="key manifests not found")
@pytest.mark.parametrize("variant", ["focall_v1", "focall_v0"])
def test_focal_l_keys_and_shapes_equal_official(variant):
    expected = read_txt_manifest(SEEM_DIR / "keys_focall_v1.txt")
    model = build_seem(variant, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    learned = sum(v.numel() for k, v in model.named_parameters())
    assert learned == 341_181_177  # the published Focal-L parameter count


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown SEEM variant 'focalx'"):
        get_config("focalx")


# ------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_wrappers_and_prefixes(tiny, tmp_path):
    state = tiny.state_dict()
    for name, payload in {
        "flat.pt": state,
        "wrapped.pt": {"model": state},
        "prefixed.pt": {f"model.{k}": v for k, v in state.items()},
        "ddp.pt": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }.items():
        torch.save(payload, tmp_path / name)
        other = build_seem(tiny_config())
        load_checkpoint(other, tmp_path / name)
        for key, value in other.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


def test_checkpoint_without_non_learned_buffers_loads(tiny, tmp_path):
    state = {k: v for k, v in tiny.state_dict().items() if k not in ("dilation_kernel", "criterion.empty_weight")}
    torch.save(state, tmp_path / "released.pt")
    load_checkpoint(build_seem(tiny_config()), tmp_path / "released.pt")


def test_missing_unexpected_and_misshaped_keys_are_named(tiny, tmp_path):
    state = dict(tiny.state_dict())
    del state["sem_seg_head.predictor.class_embed"]
    state["sem_seg_head.predictor.bogus"] = torch.zeros(3)
    state["backbone.patch_embed.proj.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pt")
    model = build_seem(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, tmp_path / "bad.pt")
    message = str(err.value)
    assert "sem_seg_head.predictor.class_embed" in message and "missing" in message
    assert "sem_seg_head.predictor.bogus" in message and "unexpected" in message
    assert "backbone.patch_embed.proj.bias: checkpoint (7,) vs model (16,)" in message
    # Nothing was half-loaded.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_focal_t_weights_into_focal_l_fail_clearly(tiny, tmp_path):
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(build_seem(replace(tiny_config(), backbone=BackboneConfig(embed_dim=24, depths=(1, 1, 1, 1),
                                                                                    focal_levels=(2, 2, 2, 2)))),
                        tmp_path / "tiny.pt")


def test_truncated_and_foreign_files_are_clear_errors(tiny, tmp_path):
    torch.save(tiny.state_dict(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    model = build_seem(tiny_config())
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(model, tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(model, tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_checkpoint(model, tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(model, tmp_path / "absent.pt")


# ------------------------------------------------------------------------------------- behaviour
def _image(height=64, width=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, height, width, generator=g) * 255


def _click(height, width, y, x, objects=1, index=0):
    m = torch.zeros(objects, height, width, dtype=torch.bool)
    m[index, y - 1 : y + 2, x - 1 : x + 2] = True
    return m


def test_tiny_model_encodes_odd_sizes_and_decodes_every_prompt(tiny):
    with torch.no_grad():
        features = tiny.encode(_image(70, 90))
        assert features.padded_size == (96, 96)
        assert features.mask_features.shape == (1, 32, 24, 24)
        prompt = tiny.encode_visual_prompt(features, _click(70, 90, 30, 40), _click(70, 90, 10, 10))
        out = tiny.decode(features, spatial=prompt)
        masks, index, _ = select_spatial(out, "v1")
        assert masks.shape == (1, 1, 24, 24) and 0 <= int(index) < 3
        grounding, class_emb = tiny.grounding_prompt(["a cell"], features)
        out = tiny.decode(features, grounding=grounding, spatial=prompt, prev_mask=masks)
        assert {"queries_object", "queries_grounding", "queries_spatial"} <= set(out.final)
        assert class_emb.shape == (1, 32)


def test_decoding_is_deterministic_and_memory_changes_the_answer(tiny):
    with torch.no_grad():
        features = tiny.encode(_image())
        prompt = tiny.encode_visual_prompt(features, _click(64, 96, 30, 40))
        first = select_spatial(tiny.decode(features, spatial=prompt), "v1")[0]
        again = select_spatial(tiny.decode(features, spatial=prompt), "v1")[0]
        assert torch.equal(first, again)
        prev = torch.full_like(first, -5.0)
        prev[..., 5:10, 5:10] = 5.0
        with_memory = select_spatial(tiny.decode(features, spatial=prompt, prev_mask=prev), "v1")[0]
        assert not torch.allclose(first, with_memory)


def test_objects_are_decoded_independently_in_v1(tiny):
    """v1 keeps prompt objects apart: object 0's answer does not depend on object 1's prompt."""
    with torch.no_grad():
        features = tiny.encode(_image())
        one = _click(64, 96, 30, 40)
        two = torch.cat([one, _click(64, 96, 50, 80)])
        idx = torch.tensor([1, 5, 7])
        alone = select_spatial(tiny.decode(features, spatial=tiny.encode_visual_prompt(features, one),
                                           spatial_query_indices=idx), "v1")[0]
        both = select_spatial(tiny.decode(features, spatial=tiny.encode_visual_prompt(features, two),
                                          spatial_query_indices=torch.tensor([1, 5, 7, 2, 3, 4])), "v1")[0]
        assert both.shape[1] == 2
        assert torch.allclose(alone[:, 0], both[:, 0], atol=1e-5)


def test_skipping_object_queries_gives_the_same_prompted_answer(tiny):
    with torch.no_grad():
        features = tiny.encode(_image())
        prompt = tiny.encode_visual_prompt(features, _click(64, 96, 30, 40))
        full = tiny.decode(features, spatial=prompt).final["queries_spatial"].masks
        lean = tiny.decode(features, spatial=prompt, include_object_queries=False).final["queries_spatial"].masks
        assert torch.allclose(full, lean, atol=1e-5)


def test_bad_prompt_inputs_are_clear_errors(tiny):
    with torch.no_grad():
        features = tiny.encode(_image())
        with pytest.raises(ValueError, match=r"prompt masks must be \[N, 64, 96\]"):
            tiny.encode_visual_prompt(features, torch.ones(1, 32, 32, dtype=torch.bool))
        with pytest.raises(ValueError, match="non-empty"):
            tiny.grounding_prompt(["  "], features)
        prompt = tiny.encode_visual_prompt(features, _click(64, 96, 30, 40))
        with pytest.raises(ValueError, match="spatial_query_indices"):
            tiny.decode(features, spatial=prompt, spatial_query_indices=torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"expected an image batch"):
            tiny.encode(torch.zeros(3, 64, 64))
