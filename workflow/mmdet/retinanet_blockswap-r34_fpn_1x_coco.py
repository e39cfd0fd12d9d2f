# RetinaNet with an FPN (P3-P7) around a BlockSwap ResNet-34 backbone on COCO 2017, mmdet's 1x schedule.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/blockswap_resnet34.py']
model = dict(backbone={{_base_.blockswap_backbone}}, neck=dict(in_channels={{_base_.blockswap_channels}}))
