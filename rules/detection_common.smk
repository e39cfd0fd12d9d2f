# The detection stage's settings and input functions (rules in detection.smk, included after this).
import os

from blockswap.workflow import plan_detection
from blockswap.detection.settings import DetectTrainConfig
from blockswap.core.recipe import options

DETECTION = config["detection"]
DET = f"{R}/detection"
DET_EMBEDDED = plan_detection.embedded(config)
DET_RESOURCES = {
    kind: {
        key: DETECTION["resources"][kind][key] for key in ("mem_mb", "runtime", "gpu")
    }
    for kind in ("train", "score")
}


def detection_set(wildcards):
    """The embedded set's folder (a rule's output), or nothing: COCO files are not made by any rule."""
    return rules.detect_make_set.output if DET_EMBEDDED else []


def detection_files(split):
    """(images folder, annotations JSON) of a split."""
    if DET_EMBEDDED:
        folder = rules.detect_make_set.output[0]
        return folder, f"{folder}/instances_{split}.json"
    return DETECTION[split]["images"], DETECTION[split]["annotations"]


def detection_data_args(*splits):
    return " ".join(
        f"--{split}-images {images} --{split}-annotations {annotations}"
        for split in splits
        for images, annotations in [detection_files(split)]
    )


def detector_args():
    """What the detector is: the same for scoring, both trainings and the figure."""
    slim = f"--slim {DETECTION['slim']} " if DETECTION["slim"] else ""
    return f"{slim}--detector {DETECTION['detector']} --norm {DETECTION['norm']}"


DET_MMDET_CONFIG = plan_detection.mmdet_config(
    config, os.path.relpath(workflow.basedir)
)


# Detector trainings run data-parallel on the GPUs a training job asks for (torchvision's detector by
# blockswap.detection.train, mmdet's by mmengine's Runner; both under torchrun).
DET_TRAIN_LAUNCH = launcher(DETECTION["resources"]["train"])


def mmdet_config(wildcards):
    """The mmdet config is an input of the trainings, so that editing it reruns them."""
    return [DET_MMDET_CONFIG] if DET_MMDET_CONFIG else []


def train_detector_args():
    """The trainings' detector: torchvision's settings, or the mmdet config (detection.backend)."""
    if DET_MMDET_CONFIG:
        return f"--backend mmdet --mmdet-config {DET_MMDET_CONFIG} --norm {DETECTION['norm']}"
    return detector_args()


def detection_metrics(wildcards=None):
    return {
        "blockswap": rules.detect_train_blockswap.output.metrics,
        "single": expand(
            rules.detect_train_single.output.metrics, block=DETECTION["single_block"]
        ),
    }
