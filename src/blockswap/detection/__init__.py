"""Detection transfer (BlockSwap §7): genotype backbones with an FPN inside torchvision's detectors, COCO data
and evaluation, detection training and the Fisher potential measured through a detector's loss."""
