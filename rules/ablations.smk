# Stage 4: the papers' ablations.
#   (a) proxies vs trained error of random nets (Table 1)   (b) density of their errors (Figure 2)
#   (c) error of the top-ranked candidate after n samples (§4.3)
# Ablation nets learn from the first teacher with the students' recipe.


use rule sample_candidates as sample_random_nets with:
    output:
        f"{R}/ablations/random/budget{{budget}}/nets.jsonl",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/sample.log",
    params:
        samples=ABLATIONS["random_count"],
        seed=ABLATIONS["random_seed"],


DISTILL_RANDOM_NET_FILES = run_files("ablations/random/budget{budget}/net{i}")


use rule distill_blockswap as distill_random_net with:
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        nets=rules.sample_random_nets.output,
    output:
        **DISTILL_RANDOM_NET_FILES.output,
    log:
        DISTILL_RANDOM_NET_FILES.log,
    benchmark:
        DISTILL_RANDOM_NET_FILES.benchmark
    params:
        genotype=lambda w, input: f"--genotype {input.nets} --index {w.i}",
        labels=lambda w: labels(
            method="random", budget=w.budget, net=w.i, teacher_seed=FIRST_TEACHER
        ),
        seed=FIRST_TEACHER,


DISTILL_RANDOM_NET_REPEAT_FILES = run_files(
    "ablations/random/budget{budget}/net{i}/seed{seed}"
)


use rule distill_random_net as distill_random_net_repeat with:
    """A random net trained again with another seed (ablations.random_repeats): one training's reliability."""
    output:
        **DISTILL_RANDOM_NET_REPEAT_FILES.output,
    log:
        DISTILL_RANDOM_NET_REPEAT_FILES.log,
    benchmark:
        DISTILL_RANDOM_NET_REPEAT_FILES.benchmark
    params:
        genotype=rules.distill_random_net.params.genotype,
        labels=lambda w: labels(
            method="random",
            budget=w.budget,
            net=w.i,
            teacher_seed=FIRST_TEACHER,
            seed=w.seed,
        ),
        seed=lambda w: w.seed,


use rule score_candidates as score_random_nets with:
    """Every proxy of every random net after k minibatches, from random initialisation."""
    input:
        rules.sample_random_nets.output,
    output:
        f"{R}/ablations/random/budget{{budget}}/proxies_k{{k}}.csv",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/proxies_k{{k}}.log",
    benchmark:
        f"{BENCH}/ablations/random/budget{{budget}}/proxies_k{{k}}.tsv"
    params:
        proxy=",".join(ABLATIONS["proxies"]),
        minibatches=lambda w: w.k,
        timings="--timings" if ABLATIONS["proxy_timings"] else "",


# (c) An independent search of n samples per (n, search seed), so each point of the curve is a mean over
# searches, not one pick among nested prefixes of a single search.
SAMPLE_SEARCH = f"{R}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}"


use rule sample_candidates as sample_n_candidates with:
    output:
        f"{SAMPLE_SEARCH}/candidates.jsonl",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/sample.log",
    params:
        samples=lambda w: w.n,
        seed=lambda w: plan.sample_search_seed(w.n, w.search),


use rule score_candidates as score_n_candidates with:
    input:
        rules.sample_n_candidates.output,
    output:
        f"{SAMPLE_SEARCH}/scores.csv",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/score.log",
    benchmark:
        f"{BENCH}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/score.tsv"
    params:
        seed=lambda w: plan.sample_search_seed(w.n, w.search),


use rule select_top as select_n_top with:
    input:
        candidates=rules.sample_n_candidates.output,
        scores=rules.score_n_candidates.output,
    output:
        f"{SAMPLE_SEARCH}/top.json",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/top.log",


use rule distill_blockswap as distill_sample_count with:
    """(c) The pick of an independent search of n samples, distilled from the first teacher."""
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        genotype=rules.select_n_top.output,
    output:
        checkpoint=f"{SAMPLE_SEARCH}/model.pt",
        metrics=f"{SAMPLE_SEARCH}/metrics.json",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/distill.log",
    benchmark:
        f"{BENCH}/ablations/samples/budget{{budget}}/n{{n}}/search{{search}}/distill.tsv"
    params:
        labels=lambda w: labels(
            method="samples",
            budget=w.budget,
            samples=w.n,
            search_seed=w.search,
            teacher_seed=FIRST_TEACHER,
        ),
        seed=FIRST_TEACHER,
