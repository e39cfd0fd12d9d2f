# The embedded detection set (`blockswap detect make-set`: Fashion-MNIST garments on 160-px canvases, COCO
# instances with RLE masks) where the default workflow writes it; `blockswap detect train --backend mmdet`
# points the datasets at the files it is given. Images keep their size, as in the torchvision backend's slim
# preset. Named embedded_*, not merged, because mmengine refuses keys that two bases share.
embedded_data_root = 'results/default/detection/set/'
embedded_canvas = 160
embedded_metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
                         'Bag', 'Ankle boot'))
embedded_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(embedded_canvas, embedded_canvas), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
embedded_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(embedded_canvas, embedded_canvas), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
embedded_train_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type='CocoDataset', data_root=embedded_data_root, metainfo=embedded_metainfo,
                 ann_file='instances_train.json',
                 data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True, min_size=8),
                 pipeline=embedded_train_pipeline))
embedded_test_dataloader = dict(
    _delete_=True, batch_size=10, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=embedded_data_root, metainfo=embedded_metainfo,
                 ann_file='instances_val.json',
                 data_prefix=dict(img=''), test_mode=True, pipeline=embedded_test_pipeline))
embedded_evaluator = dict(_delete_=True, type='CocoMetric', ann_file=embedded_data_root + 'instances_val.json',
                          metric=['bbox', 'segm'], format_only=False)
embedded_bbox_evaluator = dict(_delete_=True, type='CocoMetric', ann_file=embedded_data_root + 'instances_val.json',
                               metric='bbox', format_only=False)
# The default workflow's recipe (its detection.recipe): 2 epochs of batch 4, lr 0.01 cosine per epoch after a
# 20-step warm-up, gradients clipped at norm 10.
embedded_train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
embedded_optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
embedded_param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=2, T_max=2, eta_min=0.0),
]
