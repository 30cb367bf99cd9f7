"""Upper bound of the IoU of masks made from logits at 1/STRIDE of the model's input.

    python benchmarks/mask_resolution_bound.py ../shared/data/dsb2018_subset 4

For every object: its signed distance at model scale (long side 512, as the engine prepares the
image) is averaged to 1/STRIDE resolution, bilinearly upsampled, thresholded at 0 and mapped back
to the image: the best a logit map at that resolution can do. Prints the mean IoU bound, the share
of objects that can reach IoU 0.85, and the objects' diameters at model scale.
"""
import sys, numpy as np, torch, torch.nn.functional as F
from scipy.ndimage import distance_transform_edt as edt
from napari_seem.training.data import FolderDataset, folder_names, read_folder_item
from napari_seem.engine.image import prepare_image
from napari_seem.engine.conversion import resize_nearest

root = sys.argv[1]; stride = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ious, diam = [], []
for name in folder_names(root):
    img, lab = read_folder_item(root, name)
    p = prepare_image(img, None, None, 512)
    H, W = p.model_shape
    labm = resize_nearest(lab.astype(np.int32), (H, W))
    for i in np.unique(lab)[1:]:
        gt = lab == i
        m = labm == i
        if not m.any(): ious.append(0); continue
        sd = edt(m) - edt(~m)  # signed distance at model res
        t = torch.from_numpy(sd).float()[None, None]
        small = F.avg_pool2d(F.pad(t, (0, (-W) % stride, 0, (-H) % stride), mode='replicate'), stride)
        up = F.interpolate(small, scale_factor=stride, mode='bilinear', align_corners=False)[0, 0, :H, :W]
        rec = resize_nearest((up > 0).numpy().astype(np.uint8), gt.shape).astype(bool)
        ious.append((rec & gt).sum() / (rec | gt).sum())
        diam.append(2 * np.sqrt(m.sum() / np.pi))
ious = np.array(ious); diam = np.array(diam)
print(root, 'stride', stride, 'objects', len(ious), 'mean IoU bound %.3f' % ious.mean(), 'frac>=0.85 %.3f' % (ious >= 0.85).mean(),
      'median model-scale diameter %.1f px' % np.median(diam), 'p10 %.1f' % np.percentile(diam, 10))
