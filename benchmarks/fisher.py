"""How close Fisher scoring gets to its limit, what a naive implementation costs, and CPU parallelism.

    .venv/bin/python benchmarks/fisher.py [--model wrn-40-2] [--batch-size 128] [--repeats 3]
        [--reference DIR]  # a checkout of the original code (github.com/BayesWatch/pytorch-blockswap)
        [--reference-data DIR]  # CIFAR-10 python batches: the original draws each candidate's batch from them

Figures: min and median wall time over --repeats, the three timings interleaved so that drift hits
them alike (the min is the figure least disturbed by other processes on a shared machine; the load
average is printed first), plus process CPU time (all threads), which contention disturbs less:
  (a) limit: one forward + activation-gradient backward of an already built network, hooks in place;
  (b) ours: `score_one(..., [fisher])` per candidate — model build, hooks, Fisher reduction included;
  (c) naive: model rebuilt, module backward hooks, a full backward with weight gradients;
  the ratio (b)/(a) (target ≤ 1.10); peak memory of scoring vs one SGD training step, each in a fresh
  subprocess (ru_maxrss, the process's resident-set high-water mark, minus the RSS just before the pass:
  CPU memory only, allocator caching included); intra-op threads=2 vs two 1-thread worker processes
  over a list of sampled students (pool start-up included, alternated per round, min over rounds).
With --reference, per candidate for --candidates WRN-40-2 students sampled at --budget: (a), (b) and the
original code's own per-candidate ranking (`rank_arch` of its model_generator.py, run from the checkout on
the same batch: its masked network, a one-image shape pass, a full backward with module backward hooks),
interleaved; the ratios reference/(b) (target ≥ 2.5) and (b)/(a) (target ≤ 1.10) over the candidates.
With --reference-data the original also draws each candidate's batch as it does, `next(iter(loader))` of its
own CIFAR-10 loader (crop, flip, Cutout of 128 images, workers=0), while (b) scores on the batch drawn once
for all candidates, as `blockswap score` does: the end-to-end cost per candidate of each.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from blockswap.core.genotype import Genotype
from blockswap.nn.models import create_model
from blockswap.search.fisher import probed
from blockswap.search.proxies import get_proxy, score_candidates, score_one

SEED = 0


def make_batch(g: Genotype, n: int):
    gen = torch.Generator().manual_seed(SEED)
    return (torch.randn(n, g.in_channels, g.image_size, g.image_size, generator=gen),
            torch.randint(g.num_classes, (n,), generator=gen))


def limit_pass(net, acts, batch):
    """(a): forward + ∂L/∂(probe outputs) only; nothing else."""
    x, y = batch
    acts.clear()
    torch.autograd.grad(F.cross_entropy(net(x)[0], y), acts)
    acts.clear()


def ours(g, batch):
    """(b): the real per-candidate path."""
    return score_one(g, [get_proxy("fisher")], batch, SEED)["fisher"]


def naive(g, batch):
    """(c): the straightforward way (as the original code): rebuild, hooks, loss.backward()."""
    torch.manual_seed(SEED)
    net = create_model(g).train()
    total, store = [0.0], {}
    handles = []
    for i, b in enumerate(net.blocks):
        handles.append(b.probe.register_forward_hook(lambda m, inp, out, i=i: store.__setitem__(i, out.detach())))
        handles.append(b.probe.register_full_backward_hook(
            lambda m, gin, gout, i=i: total.__setitem__(
                0, total[0] + float((store[i] * gout[0]).sum((2, 3)).pow(2).mean(0).mul(0.5).sum()))))
    x, y = batch
    F.cross_entropy(net(x)[0], y).backward()
    for h in handles:
        h.remove()
    return total[0]


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds summed over threads)."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def time_abc(g, batch, repeats) -> dict[str, list[tuple[float, float]]]:
    net = create_model(g).train()
    runs = {"a": [], "b": [], "c": []}
    with probed(net) as acts, torch.enable_grad():
        limit_pass(net, acts, batch)  # warm-up: first calls create the oneDNN kernels
        naive(g, batch)
        for _ in range(repeats):
            runs["a"].append(timed(limit_pass, net, acts, batch))
            runs["b"].append(timed(ours, g, batch))
            runs["c"].append(timed(naive, g, batch))
    return runs


def reference_ranker(checkout: str, data: str | None = None):
    """The original's `rank_arch(convs) -> fisher`, run from its checkout: its model_generator.py executes
    its search at import, so its two scoring functions are taken from the file alone and given what they
    read at module level (the model classes and helpers of its utils.py, the device, the batch source)."""
    sys.path.insert(0, checkout)
    import models as original_models  # the checkout's own packages
    import utils as original_utils

    tree = ast.parse(open(os.path.join(checkout, "model_generator.py")).read())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("one_shot_fisher", "rank_arch")]
    scope = {**vars(original_utils), **vars(original_models), "time": time, "device": torch.device("cpu")}
    scope.update({k: original_utils.AverageMeter() for k in ("create_time", "prep_time", "fish_time", "total_time")})
    exec(compile(ast.Module(body=functions, type_ignores=[]), "model_generator.py", "exec"), scope)

    if data:  # stand-in batches (as `make rehearse` writes) lack the real files' MD5 that torchvision checks
        import torchvision.datasets.cifar

        torchvision.datasets.cifar.check_integrity = lambda *args, **kwargs: True
        torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    loader = original_utils.get_cifar_loaders(data, workers=0)[0] if data else None

    def rank(g: Genotype, batch) -> float:
        scope["train_data"] = loader or [batch]  # it only ever asks next(iter(train_data))
        return scope["rank_arch"]([original_utils.string_to_conv[b] for b in g.blocks])
    return rank


def time_candidates(genotypes, batch, repeats, reference) -> dict[str, list[float]]:
    """Per candidate, min wall seconds over `repeats` of (a), (b) and the reference, interleaved."""
    per = {"a": [], "b": [], "ref": []}
    for g in genotypes:
        net = create_model(g).train()
        runs = {"a": [], "b": [], "ref": []}
        with probed(net) as acts, torch.enable_grad():
            limit_pass(net, acts, batch)  # warm-up for this net's kernels
            for _ in range(repeats):
                runs["a"].append(timed(limit_pass, net, acts, batch)[0])
                runs["b"].append(timed(ours, g, batch)[0])
                runs["ref"].append(timed(reference, g, batch)[0])
        for k, v in runs.items():
            per[k].append(min(v))
    return per


# ------------------------------------------------------------------------------------- memory (child)
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory_child(what: str, genotype: dict, batch_size: int) -> None:
    """Run one pass of `what` in this fresh process; print peak RSS and its rise above the start."""
    g = Genotype.from_dict(genotype)
    batch = make_batch(g, batch_size)
    torch.manual_seed(SEED)
    net = create_model(g).train()
    before = rss_bytes()
    if what == "score":
        from blockswap.search.fisher import fisher_per_block
        fisher_per_block(net, [batch])
    elif what == "naive":
        naive(g, batch)
    elif what == "train":
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        F.cross_entropy(net(batch[0])[0], batch[1]).backward()
        opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"peak": peak, "rise": peak - before}))


def memory(what, g, batch_size) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", what, "--genotype", g.to_json(),
                          "--batch-size", str(batch_size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ parallelism
def time_parallel(genotypes, batch, rounds):
    """Min wall seconds for the candidate list: 1 process × 2 threads vs 2 processes × 1 thread."""
    torch.set_num_threads(2)
    score_candidates(genotypes, ["fisher"], batch, SEED, workers=1)  # warm-up, also for the forks
    threads, workers = [], []
    for _ in range(rounds):
        threads.append(timed(score_candidates, genotypes, ["fisher"], batch, SEED, 1, "cpu", 1)[0])
        workers.append(timed(score_candidates, genotypes, ["fisher"], batch, SEED, 1, "cpu", 2)[0])
    return min(threads), min(workers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="wrn-40-2")
    ap.add_argument("--block", default="Conv", help="block type of the network timed in (a)-(c)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--students", type=int, default=4, help="candidates in the threads-vs-workers run")
    ap.add_argument("--reference", help="checkout of the original code, to time its ranking beside ours")
    ap.add_argument("--reference-data", help="CIFAR-10 folder the reference draws its batches from, as it does")
    ap.add_argument("--candidates", type=int, default=8, help="sampled students timed against the reference")
    ap.add_argument("--budget", type=float, default=800_000, help="their parameter budget")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--genotype", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, json.loads(args.genotype), args.batch_size)

    from blockswap.core.counting import analytic
    from blockswap.core.sampling import sample

    torch.set_num_threads(2)
    if args.reference:
        return compare_with_reference(args)
    g = Genotype.uniform(args.model, args.block)
    batch = make_batch(g, args.batch_size)
    print(f"{args.model} all-{args.block} ({analytic(g).params:,} params), batch {args.batch_size}×"
          f"{g.in_channels}×{g.image_size}×{g.image_size}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {args.repeats} repeats, load average {os.getloadavg()[0]:.2f}")
    runs = time_abc(g, batch, args.repeats)
    wall = {k: min(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    print("                                                   wall min  wall median  CPU median")
    for k, label in (("a", "(a) limit: built net, forward + act-grad backward"),
                     ("b", "(b) ours: build + hooks + pass + Fisher reduction"),
                     ("c", "(c) naive: rebuild, full backward with weight grads")):
        med = statistics.median(w for w, _ in runs[k])
        print(f"{label:51s} {wall[k]:7.3f} s  {med:8.3f} s  {cpu[k]:8.3f} s")
    print(f"ratio (b)/(a) = {wall['b'] / wall['a']:.3f} wall, {cpu['b'] / cpu['a']:.3f} CPU   (target ≤ 1.10);"
          f"  naive (c)/(b) = {wall['c'] / wall['b']:.2f} wall, {cpu['c'] / cpu['b']:.2f} CPU")

    mib = 2 ** 20
    mem = {w: memory(w, g, args.batch_size) for w in ("score", "naive", "train")}
    for w, label in (("score", "Fisher scoring (ours)"), ("naive", "naive Fisher"),
                     ("train", "one SGD training step")):
        print(f"peak RSS {label:24s} {mem[w]['peak'] / mib:8.0f} MiB   (+{mem[w]['rise'] / mib:6.0f} MiB for the pass)")
    print(f"scoring / training-step memory rise = {mem['score']['rise'] / mem['train']['rise']:.2f}")

    budget = analytic(g).params / 4
    students = sample(args.model, budget, args.students, seed=SEED, in_channels=g.in_channels,
                      num_classes=g.num_classes, image_size=g.image_size)
    t_threads, t_workers = time_parallel(students, batch, max(1, args.repeats - 1))
    n = len(students)
    print(f"{n} students of ~{budget:,.0f} params: 1 process × 2 threads {t_threads:6.2f} s "
          f"({t_threads / n:.2f} s/net);  2 processes × 1 thread {t_workers:6.2f} s ({t_workers / n:.2f} s/net)")
    print(f"faster: {'2 worker processes' if t_workers < t_threads else '2 intra-op threads'} "
          f"({max(t_threads, t_workers) / min(t_threads, t_workers):.2f}×)")


def compare_with_reference(args):
    from blockswap.core.sampling import sample

    genotypes = sample(args.model, args.budget, args.candidates, seed=SEED)
    batch = make_batch(genotypes[0], args.batch_size)
    reference = reference_ranker(args.reference, args.reference_data)
    print(f"{len(genotypes)} {args.model} students at {args.budget:,.0f} params, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, min of {args.repeats}, reference batch "
          f"{'from its loader' if args.reference_data else 'the same fixed one'}, "
          f"load average {os.getloadavg()[0]:.2f}")
    per = time_candidates(genotypes, batch, args.repeats, reference)
    print("candidate   (a) limit   (b) ours   reference   ref/(b)   (b)/(a)")
    for i, (a, b, ref) in enumerate(zip(per["a"], per["b"], per["ref"])):
        print(f"{i:9d} {a:9.3f} s {b:8.3f} s {ref:9.3f} s {ref / b:8.2f}× {b / a:8.3f}")
    a, b, ref = (sum(per[k]) for k in ("a", "b", "ref"))
    print(f"all       {a:9.3f} s {b:8.3f} s {ref:9.3f} s {ref / b:8.2f}× {b / a:8.3f}   "
          "(targets: ref/(b) ≥ 2.5, (b)/(a) ≤ 1.10)")


if __name__ == "__main__":
    main()
