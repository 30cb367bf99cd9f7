"""A non-square RGB image, end to end through the padding the official code does
(``ImageList.from_tensors(size_divisibility=32)``, FIXTURES.md sections 4 and 6): 200 x 300 is
normalised and zero-padded on the bottom and right to 224 x 320; prompt masks are padded the same
way, so a click is sampled at its pixel over the padded size; mask logits come back at the padded
size / 4 and are upsampled to the padded size, then *cropped* to the image (not stretched).

The reference is the same image padded by hand with the mean colour (zero once normalised) and run
as a 224 x 320 image: every array must be identical, and the cropped output must equal the padded
run's output cut to 200 x 300.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_seem.model import build_seem
from napari_seem.model.postprocess import resize_mask_logits, select_spatial

from tiny import tiny_config

HEIGHT, WIDTH = 200, 300
PADDED = (224, 320)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_seem(tiny_config())


def _rgb() -> torch.Tensor:
    """Distinct channels (a red ramp down, a green ramp across, blue noise), 0..255, ``[1, 3, H, W]``."""
    y = torch.linspace(0, 255, HEIGHT)[:, None].expand(HEIGHT, WIDTH)
    x = torch.linspace(0, 255, WIDTH)[None, :].expand(HEIGHT, WIDTH)
    noise = torch.rand(HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3)) * 255
    return torch.stack([y, x, noise])[None]


def _padded_by_hand(image: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    out = mean.reshape(1, 3, 1, 1).expand(1, 3, *PADDED).clone()
    out[..., :HEIGHT, :WIDTH] = image
    return out


def _click(height: int, width: int, y: int, x: int) -> torch.Tensor:
    mask = torch.zeros(1, height, width, dtype=torch.bool)
    mask[0, y - 1 : y + 2, x - 1 : x + 2] = True
    return mask


def test_a_200x300_rgb_image_is_padded_to_224x320_and_its_masks_cropped_back(tiny):
    image = _rgb()
    mean, std = tiny.pixel_mean.reshape(3), tiny.pixel_std.reshape(3)

    # Normalised, then zeros on the bottom and right only.
    x = tiny.preprocess(image)
    assert x.shape == (1, 3, *PADDED)
    assert torch.equal(x[..., :HEIGHT, :WIDTH], (image - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1))
    assert not x[..., HEIGHT:, :].any() and not x[..., :, WIDTH:].any()

    with torch.no_grad():
        features = tiny.encode(image)
        reference = tiny.encode(_padded_by_hand(image, mean))
    assert (features.image_size, features.padded_size) == ((HEIGHT, WIDTH), PADDED)
    assert reference.image_size == reference.padded_size == PADDED
    assert features.mask_features.shape[-2:] == (56, 80)
    assert [tuple(level.shape[-2:]) for level in features.multi_scale] == [(7, 10), (14, 20), (28, 40)]
    assert torch.equal(features.mask_features, reference.mask_features)
    assert all(torch.equal(a, b) for a, b in zip(features.multi_scale, reference.multi_scale))

    # A click near the bottom-right corner of the image (inside it), and one negative click.
    pos, neg = _click(HEIGHT, WIDTH, 190, 290), _click(HEIGHT, WIDTH, 20, 30)
    pos_padded, neg_padded = (F.pad(m, (0, PADDED[1] - WIDTH, 0, PADDED[0] - HEIGHT)) for m in (pos, neg))
    indices = torch.tensor([0, 5, 9])  # the same seeding spatial queries in both runs
    with torch.no_grad():
        tiny.set_vocabulary(["cell", "nucleus"], templates=False)  # class logits too
        prompt = tiny.encode_visual_prompt(features, pos, neg)
        prompt_ref = tiny.encode_visual_prompt(reference, pos_padded, neg_padded)
        out = tiny.decode(features, spatial=prompt, spatial_query_indices=indices)
        out_ref = tiny.decode(reference, spatial=prompt_ref, spatial_query_indices=indices)
        tiny.set_vocabulary_embeddings(None)
    assert out.final["queries_object"].logits.shape == (1, 11, 3)
    assert torch.equal(prompt.pos_embedding, prompt_ref.pos_embedding)
    assert all(torch.equal(a, b) for a, b in zip(prompt.tokens, prompt_ref.tokens))
    for group in ("queries_object", "queries_spatial"):
        ours, ref = out.final[group], out_ref.final[group]
        assert ours.masks.shape[-2:] == (56, 80)
        for name in ("masks", "mask_emb", "logits", "class_emb"):
            a, b = getattr(ours, name), getattr(ref, name)
            assert (a is None and b is None) or torch.equal(a, b), (group, name)

    # Back to the image: upsampled to the padded size, then cropped to 200 x 300.
    chosen, _, _ = select_spatial(out, tiny.layout)
    chosen_ref, _, _ = select_spatial(out_ref, tiny.layout)
    for mode in ("bilinear", "bicubic"):
        up = resize_mask_logits(chosen, features.padded_size, features.image_size, mode=mode)
        up_ref = resize_mask_logits(chosen_ref, reference.padded_size, reference.image_size, mode=mode)
        assert up.shape[-2:] == (HEIGHT, WIDTH)
        assert torch.equal(up, up_ref[..., :HEIGHT, :WIDTH]), mode
    # Stretching the 56 x 80 logits onto 200 x 300 instead would shift every mask towards the corner.
    stretched = F.interpolate(chosen, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    assert not torch.allclose(stretched, up_ref[..., :HEIGHT, :WIDTH], atol=1e-3)
