"""Training SEEM models with our own code: data, simulated prompts, losses and the training loop.

    from napari_seem.training import DatasetSpec, TrainConfig, train, load_trained

    path = train(TrainConfig(out_dir="runs/nuclei", steps=2000,
                             datasets=[DatasetSpec("data/dsb2018_subset", class_name="nucleus")]))
    model = load_trained(path)
"""

from .checkpoint import load_model, load_trained, read_record, save_trained
from .data import Augmentation, ArrayDataset, FolderDataset, MixedDataset
from .losses import LossWeights
from .loop import DatasetSpec, TrainConfig, TrainProgress, train
from .step import TaskConfig

__all__ = [
    "ArrayDataset",
    "Augmentation",
    "DatasetSpec",
    "FolderDataset",
    "LossWeights",
    "MixedDataset",
    "TaskConfig",
    "TrainConfig",
    "TrainProgress",
    "load_model",
    "load_trained",
    "read_record",
    "save_trained",
    "train",
]
