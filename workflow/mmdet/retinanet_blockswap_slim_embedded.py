# RetinaNet slimmed for CPU runs on the embedded set: FPN and head 64 wide, anchors 8...128 px on P3-P7 (octave
# base scale 1 × stride), BatchNorm (one process). Boxes only (the masks loaded are not used).
_base_ = ['./retinanet_blockswap-r34_fpn_1x_coco.py', './_base_/embedded_instance.py']
width = 64
model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(out_channels=width),
    bbox_head=dict(in_channels=width, feat_channels=width, num_classes=10, anchor_generator=dict(octave_base_scale=1)))
train_dataloader = {{_base_.embedded_train_dataloader}}
val_dataloader = {{_base_.embedded_test_dataloader}}
test_dataloader = {{_base_.embedded_test_dataloader}}
val_evaluator = {{_base_.embedded_bbox_evaluator}}
test_evaluator = {{_base_.embedded_bbox_evaluator}}
train_cfg = {{_base_.embedded_train_cfg}}
optim_wrapper = {{_base_.embedded_optim_wrapper}}
param_scheduler = {{_base_.embedded_param_scheduler}}
