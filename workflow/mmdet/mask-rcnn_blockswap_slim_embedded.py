# Mask R-CNN slimmed for CPU runs on the embedded set, as the torchvision backend's slim preset: FPN 64 wide,
# box head fc 256, mask head 64, 128 RoIs per image, 500/300 proposals, anchors 8...128 px (scale 2 × stride),
# BatchNorm (one process).
_base_ = ['./mask-rcnn_blockswap-r34_fpn_1x_coco.py', './_base_/embedded_instance.py']
width = 64
model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width, anchor_generator=dict(scales=[2])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=10)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=500), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))
train_dataloader = {{_base_.embedded_train_dataloader}}
val_dataloader = {{_base_.embedded_test_dataloader}}
test_dataloader = {{_base_.embedded_test_dataloader}}
val_evaluator = {{_base_.embedded_evaluator}}
test_evaluator = {{_base_.embedded_evaluator}}
train_cfg = {{_base_.embedded_train_cfg}}
optim_wrapper = {{_base_.embedded_optim_wrapper}}
param_scheduler = {{_base_.embedded_param_scheduler}}
