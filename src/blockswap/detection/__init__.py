"""Detection transfer (BlockSwap §7): genotype backbones with an FPN inside torchvision's detectors, COCO data
and evaluation, the embedded detection set, detection training and Fisher through a detector's loss.

  instances  reading and checking a COCO instances JSON into pycocotools' `COCO` (no torch)
  coco       `CocoDetection`, the torch dataset over such a file and its images; train flip; batching
  evaluate   pycocotools `COCOeval` for boxes and masks; detector outputs → COCO results
  embedded   the embedded detection set: Fashion-MNIST garments composed on canvases, written as COCO
  backbone   a ResNet genotype's layer1..layer4 with an FPN; the norm a setting
  detectors  Mask R-CNN, Faster R-CNN, RetinaNet, FCOS built around it (no downloads); `DetectorConfig`
  settings   DetectTrainConfig, how a detector is trained (no torch: the CLI's options come from it)
  engine     train_one_epoch and evaluate
  train      the run loop: epoch checkpoints, exact resume, metrics with COCO AP
  fisher     Fisher potential through a detector's loss on a detection minibatch
"""
