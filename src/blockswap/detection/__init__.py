"""Object detection transfer (BlockSwap §7): COCO instances data and evaluation, the embedded detection set.

  instances  reading and checking a COCO instances JSON into pycocotools' `COCO` (no torch)
  coco       `CocoDetection`, the torch dataset over such a file and its images; train flip; batching
  evaluate   pycocotools `COCOeval` for boxes and masks; detector outputs → COCO results
  embedded   the embedded detection set: Fashion-MNIST garments composed on canvases, written as COCO
"""
