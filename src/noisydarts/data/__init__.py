"""Data: datasets, augmentation and batches, in memory or streamed from disk.

One module per concern:

* :mod:`.memory`: datasets decoded once into uint8 tensors (``load_dataset``: ``cifar10-mini``,
  ``cifar10``, ``cifar100``, ImageFolder directories), for CIFAR-sized data;
* :mod:`.folder`: the image-folder layouts, the held-out split, the file listing and decoding
  one image (the decisions on image modes and file kinds);
* :mod:`.cache`: the decoded-image cache (a folder decoded once, memory-mapped by later runs);
* :mod:`.augment`: normalization, batched CIFAR augmentation, per-image ImageNet augmentation;
* :mod:`.streaming`: ImageFolder data decoded batch by batch in DataLoader workers;
* :mod:`.batching`: (seed, epoch)-seeded batches from an in-memory dataset, and splits;
* :mod:`.factory`: which path a ``data`` config takes, and one interface over both
  (``open_dataset``, ``make_batches``): what the search and training loops call.
"""

from .augment import CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD, AugmentParams, apply_augment, augment, color_jitter, imagenet_eval, imagenet_train, normalize, random_resized_crop_box, sample_augment_params
from .batching import BatchIterator, epoch_seed, split_indices
from .cache import CACHE_ENV, DEFAULT_CACHE_DIR, cache_directory
from .factory import DATA_DEFAULTS, augment_style, check_dataset, data_summary_line, describe_data, in_memory, make_batches, memory_budget, open_dataset, validate_data_config
from .folder import IMAGE_EXTENSIONS, SPLITS, FolderLayout, decode_files, decode_image, find_folder_layout, folder_split, held_out_rows, list_images, to_rgb
from .memory import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, DATASETS, DEFAULT_ROOT, ImageDataset, channel_stats, load_dataset, load_image_folder, mini_metadata, resize_images
from .memory import _load_torchvision as _load_torchvision  # tests replace it (no download)
from .streaming import ImageFolderSplit, StreamingBatches, stream_image_folder

__all__ = [
    "AugmentParams", "BatchIterator", "CACHE_ENV", "CIFAR100_MEAN", "CIFAR100_STD", "CIFAR10_MEAN", "CIFAR10_STD",
    "CROP_FRACTION", "DATASETS", "DATA_DEFAULTS", "DEFAULT_CACHE_DIR", "DEFAULT_ROOT", "FolderLayout", "IMAGENET_MEAN", "IMAGENET_STD",
    "IMAGE_EXTENSIONS", "ImageDataset", "ImageFolderSplit", "SPLITS", "StreamingBatches", "apply_augment",
    "augment", "augment_style", "cache_directory", "channel_stats", "check_dataset", "color_jitter", "data_summary_line",
    "decode_files", "decode_image", "describe_data", "epoch_seed", "find_folder_layout", "folder_split", "held_out_rows",
    "imagenet_eval", "imagenet_train", "in_memory", "list_images", "load_dataset", "load_image_folder",
    "make_batches", "memory_budget", "mini_metadata", "normalize", "open_dataset", "random_resized_crop_box",
    "resize_images", "sample_augment_params", "split_indices", "stream_image_folder", "to_rgb",
    "validate_data_config",
]
