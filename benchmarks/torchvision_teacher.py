"""Compress a network trained the way an engineer trains one, and check what comes out as a deployment would.

1. A stand-in image folder: Fashion-MNIST (the real images; no ImageNet-scale set is on these machines),
   class-stratified, padded to 32 px and repeated to RGB, saved as PNG under DIR/train|val/<class name>/.
2. A torchvision `resnet18(num_classes=10)` trained on it as torchvision's reference trains: `ImageFolder`,
   `ToTensor`, ImageNet's `Normalize`, random horizontal flips, a plain SGD loop; its validation error by the
   same plain loop; `torch.save(net.state_dict(), ...)`.
3. `blockswap compress --teacher r18.pth --data DIR --budget 2M` with compress's defaults (and --threads).
4. Checks: the teacher's error as compress tested it equals the engineer's own; `blockswap.load(OUT)` and
   ONNX Runtime on `OUT/student/model.onnx`, both fed by `preprocess.json`, give the same top-1 on every
   validation image, and their accuracy is the card's.

    python benchmarks/torchvision_teacher.py --out /tmp/engineer [--train 5000 --val 1000 --threads 2]
Prints one JSON object; every figure in it is measured by this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import datasets, transforms

from blockswap.data.datasets import FASHION_MNIST_CLASSES, load_dataset

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def write_folder(root: Path, per_split: dict[str, int], seed: int = 0) -> None:
    """Class-stratified Fashion-MNIST images, padded 28 → 32 px and repeated to RGB, as PNG files."""
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        data = load_dataset("fashion-mnist", None, "train" if split == "train" else "test")
        images, labels = data.images.squeeze(1).numpy(), data.labels.numpy()
        for c, name in enumerate(FASHION_MNIST_CLASSES):
            folder = root / split / name.replace("/", "_").replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for i in rng.choice(np.flatnonzero(labels == c), n // len(FASHION_MNIST_CLASSES), replace=False):
                padded = np.pad(images[i], 2)
                Image.fromarray(np.repeat(padded[:, :, None], 3, axis=2)).save(folder / f"{i}.png")


def train_the_torchvision_way(root: Path, path: Path, epochs: int, seed: int = 0) -> float:
    """resnet18 trained by a plain loop with torchvision's transforms; returns its validation error (%)."""
    torch.manual_seed(seed)
    normalize = transforms.Normalize(*IMAGENET)
    train = datasets.ImageFolder(root / "train", transforms.Compose(
        [transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    val = datasets.ImageFolder(root / "val", transforms.Compose([transforms.ToTensor(), normalize]))
    net = torchvision.models.resnet18(num_classes=len(train.classes))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    for _ in range(epochs):
        net.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.save(net.state_dict(), path)
    net.eval()
    wrong = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(val, batch_size=256):
            wrong += int((net(x).argmax(1) != y).sum())
    return 100 * wrong / len(val)


def deployed_predictions(out: Path, root: Path) -> dict:
    """Top-1 of every validation image by `blockswap.load` and by ONNX Runtime, both fed by preprocess.json."""
    import onnxruntime

    import blockswap
    from blockswap.compress import deploy

    spec = json.loads((out / "student" / "preprocess.json").read_text())
    files = sorted((root / "val").glob("*/*.png"))
    truth = np.array([spec["classes"].index(f.parent.name) for f in files])
    x = deploy.prepare([str(f) for f in files], spec)
    with torch.no_grad():
        torch_top1 = blockswap.load(out)(x).argmax(1).numpy()
    session = onnxruntime.InferenceSession(str(out / "student" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_top1 = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].argmax(1)
    return {"images": len(files), "top1_agreement": float(np.mean(torch_top1 == onnx_top1)),
            "error_torch": float(100 * np.mean(torch_top1 != truth)),
            "error_onnx": float(100 * np.mean(onnx_top1 != truth))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="working folder (data/, r18.pth, compressed/)")
    p.add_argument("--train", type=int, default=5000, help="training images (default 5000)")
    p.add_argument("--val", type=int, default=1000, help="validation images (default 1000)")
    p.add_argument("--epochs", type=int, default=3, help="the teacher's epochs (default 3)")
    p.add_argument("--budget", default="2M", help="compress's params budget (default 2M)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root, weights, out = args.out / "data", args.out / "r18.pth", args.out / "compressed"
    if not root.exists():
        write_folder(root, {"train": args.train, "val": args.val})
    record = args.out / "teacher.json"  # the teacher of an earlier run of this script, reused
    if not record.exists():
        started = time.perf_counter()
        error = train_the_torchvision_way(root, weights, args.epochs)
        record.write_text(json.dumps({"error": error, "seconds": time.perf_counter() - started}))
    teacher = json.loads(record.read_text())
    own_error, teacher_s = teacher["error"], teacher["seconds"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "blockswap", "compress", "--teacher", str(weights), "--data", str(root),
                    "--budget", args.budget, "--threads", str(args.threads), "--quiet", "-o", str(out)],
                   check=True, env={**os.environ})
    compress_s = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    print(json.dumps({
        "engineer_teacher_error": own_error, "engineer_teacher_seconds": round(teacher_s, 1),
        "compress_teacher_error": report["teacher"]["test_top1_error"],
        "student": report["student"], "teacher": report["teacher"], "preprocess": report["preprocess"],
        "latency": report["latency"], "export": report["export"], "compress_seconds": round(compress_s, 1),
        "report_wall_time_s": report["wall_time_s"], "deployed": deployed_predictions(out, root),
        "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
