"""One click per object: the IoU of each of SEEM's three candidate masks, raw and post-processed.

    python benchmarks/click_candidates.py CHECKPOINT ../shared/data/dsb2018_subset 3

For a seeded choice of PER objects per image (as ``napari-seem eval interactive --max-objects``),
one click at the protocol's first point; prints the mean IoU of the candidate the model selects
(embedding match), of the best of the three (oracle) and of the one with the highest logit at the
click, for the raw mask and after the engine's post-processing. Tells whether a bad answer is a
bad choice among good candidates or three bad candidates.
"""
import sys, numpy as np, torch
from napari_seem.training.checkpoint import load_model
from napari_seem.training.data import read_folder_item, folder_names
from napari_seem.engine import SeemPredictor
from napari_seem.engine.predictor import _clicks
from napari_seem.evaluation.clicks import first_click
from napari_seem.evaluation.interactive import choose_objects
from napari_seem.prompts import ObjectPrompt, Point, rasterize
from napari_seem.model.postprocess import select_by_embedding
torch.set_num_threads(1)
m, _ = load_model(sys.argv[1]); root = sys.argv[2]; per = int(sys.argv[3])
rng = np.random.default_rng(0)
rows = {k: [] for k in ['emb_raw', 'best_raw', 'click_raw', 'emb_pp', 'best_pp', 'click_pp']}
P = SeemPredictor(m)
for name in folder_names(root):
    img, lab = read_folder_item(root, name)
    P.set_image(img)
    for oid in choose_objects(lab, per, 10, rng):
        t = lab == oid; c = first_click(t)
        prompt = ObjectPrompt(points=[Point(c.y, c.x)])
        mp = P._model_prompt(prompt); r = rasterize(mp, P.prepared.model_shape)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            sp = m.encode_visual_prompt(P.features, torch.from_numpy(r[0][None]), torch.from_numpy(r[1][None]), generator=g)
            out = m.decode(P.features, spatial=sp, generator=g, include_object_queries=False)
        pred = out.final["queries_spatial"]
        _, idx, match = select_by_embedding(pred, sp.pos_embedding, True)
        # logit at the click, 1/4 res
        h, w = pred.masks.shape[-2:]
        py, px = P.prepared.model_shape
        cy = min(int((c.y * py / lab.shape[0]) / 4), h - 1); cx = min(int((c.x * px / lab.shape[1]) / 4), w - 1)
        at_click = pred.masks[0, :, cy, cx]
        choice = {'emb': int(idx[0, 0]), 'click': int(at_click.argmax())}
        ious = {}
        for pp in (False, True):
            for q in range(pred.masks.shape[1]):
                anchor = rasterize(prompt, P.prepared.original_shape)[0] if pp else None
                clicks = _clicks(prompt, P.prepared.original_shape) if pp else None
                res = P._result(pred.masks[0, q], pred.class_emb[0, q], None, anchor, clicks)
                ious[(pp, q)] = (res.mask & t).sum() / max((res.mask | t).sum(), 1)
            sfx = 'pp' if pp else 'raw'
            rows['emb_' + sfx].append(ious[(pp, choice['emb'])])
            rows['click_' + sfx].append(ious[(pp, choice['click'])])
            rows['best_' + sfx].append(max(ious[(pp, q)] for q in range(pred.masks.shape[1])))
print(root.split('/')[-1], len(rows['emb_raw']), {k: round(float(np.mean(v)), 3) for k, v in rows.items()})
