# Table 4's detector: Mask R-CNN with an FPN around a BlockSwap ResNet-34 backbone on COCO 2017, mmdet's 1x
# schedule (8 GPUs × 2 images, lr 0.02, 12 epochs); SyncBN trains the from-scratch backbone's statistics across
# GPUs. The coco profile (detection.backend: mmdet) trains it by its own recipe; with mmdet's tools/train.py,
# set model.backbone.genotype to the search's pick (results/coco/detection/search/pick.json).
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './_base_/blockswap_resnet34.py']
model = dict(backbone={{_base_.blockswap_backbone}}, neck=dict(in_channels={{_base_.blockswap_channels}}))
