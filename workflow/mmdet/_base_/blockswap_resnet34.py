# The BlockSwap backbone for an mmdet model (registered by importing blockswap.integrations.mmdet): ResNet-34
# with every block Conv here; `blockswap detect train --backend mmdet` sets the run's genotype, norm and init
# checkpoint, and the neck's in_channels (the stages' widths: 64, 128, 256, 512 for ResNet-34). Named, not
# merged, because mmengine refuses keys that two bases share: configs use {{_base_.blockswap_backbone}}.
custom_imports = dict(imports=['blockswap.integrations.mmdet'], allow_failed_imports=False)
blockswap_backbone = dict(
    _delete_=True,
    type='BlockSwapResNet',
    model='resnet34',
    block='Conv',
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False)  # trained from scratch: the statistics must train too
blockswap_channels = [64, 128, 256, 512]
