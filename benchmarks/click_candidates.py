"""One click per object: the IoU of each of SEEM's three candidate masks, raw and post-processed.

    .venv/bin/python benchmarks/click_candidates.py CHECKPOINT ../shared/data/dsb2018_subset --per-image 3

For a seeded choice of objects per image (as ``napari-seem eval interactive --max-objects``), one
click at the protocol's first point. Prints the mean IoU of the candidate the model selects
(embedding match), of the best of the three (an oracle) and of the one with the highest logit at
the click, for the raw mask and after the engine's post-processing (``keep_connected`` and
``obey_clicks``). It tells a bad choice among good candidates from three bad candidates.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_seem.engine import SeemPredictor
from napari_seem.engine.conversion import mask_iou
from napari_seem.engine.predictor import _clicks
from napari_seem.evaluation.clicks import first_click
from napari_seem.evaluation.interactive import choose_objects
from napari_seem.model.postprocess import select_by_embedding
from napari_seem.prompts import ObjectPrompt, Point, rasterize
from napari_seem.training.checkpoint import load_model
from napari_seem.training.data import folder_names, read_folder_item


def candidates(predictor: SeemPredictor, prompt: ObjectPrompt):
    """The decoder's answer to ``prompt`` on the predictor's image: (prediction, spatial prompt)."""
    model = predictor.model
    pos, neg = rasterize(predictor._model_prompt(prompt), predictor.prepared.model_shape)
    generator = torch.Generator().manual_seed(predictor.seed)
    with torch.no_grad():
        spatial = model.encode_visual_prompt(predictor.features, torch.from_numpy(pos[None]),
                                             torch.from_numpy(neg[None]), generator=generator)
        out = model.decode(predictor.features, spatial=spatial, generator=generator, include_object_queries=False)
    return out.final["queries_spatial"], spatial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--per-image", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = SeemPredictor(load_model(args.checkpoint)[0])
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {}
    for name in folder_names(args.data):
        image, labels = read_folder_item(args.data, name)
        predictor.set_image(image)
        for object_id in choose_objects(labels, args.per_image, 10, rng):
            target = labels == object_id
            click = first_click(target)
            prompt = ObjectPrompt(points=[Point(click.y, click.x)])
            pred, spatial = candidates(predictor, prompt)
            _, index, _ = select_by_embedding(pred, spatial.pos_embedding, True)
            height, width = pred.masks.shape[-2:]
            scale_y = predictor.prepared.model_shape[0] / labels.shape[0] / 4
            scale_x = predictor.prepared.model_shape[1] / labels.shape[1] / 4
            at_click = pred.masks[0, :, min(int(click.y * scale_y), height - 1), min(int(click.x * scale_x), width - 1)]
            chosen = {"selected": int(index[0, 0]), "highest at click": int(at_click.argmax())}
            for processed in (False, True):
                anchor = rasterize(prompt, predictor.prepared.original_shape)[0] if processed else None
                clicks = _clicks(prompt, predictor.prepared.original_shape) if processed else None
                ious = [mask_iou(predictor._result(pred.masks[0, q], pred.class_emb[0, q], None, anchor, clicks).mask,
                                 target) for q in range(pred.masks.shape[1])]
                suffix = "post-processed" if processed else "raw"
                for label, query in chosen.items():
                    rows.setdefault(f"{label}, {suffix}", []).append(ious[query])
                rows.setdefault(f"best of three, {suffix}", []).append(max(ious))
    print(f"{args.data}: {len(rows['selected, raw'])} objects, one click each")
    for label, values in rows.items():
        print(f"  {label:32s} mean IoU {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
