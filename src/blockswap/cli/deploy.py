"""`blockswap predict`: a compressed student's top classes for image files, by name."""

from __future__ import annotations

from .args import int_at_least


def cmd_predict(args) -> None:
    from ..compress.deploy import predict

    for path, top in zip(args.images, predict(args.folder, args.images, args.top, args.runtime)):
        print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in top))


def add_commands(sub) -> None:
    p = sub.add_parser("predict", help="the top classes of image files by a `blockswap compress` student, each "
                       "image prepared as in training (preprocess.json)")
    p.add_argument("folder", metavar="DIR", help="the output folder of `blockswap compress` (or its student/)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files")
    p.add_argument("-k", "--top", type=int_at_least(1), default=3, metavar="K",
                   help="classes shown per image (default 3)")
    p.add_argument("--runtime", default="torch", help="torch: the checkpoint in PyTorch (the default); onnx: "
                   "model.onnx in ONNX Runtime")  # checked by deploy.predict: the parser stays torch-free
    p.set_defaults(func=cmd_predict)
