# Stage 4: the papers' ablations.
#   (a) proxies vs trained error of random nets (Table 1)   (b) density of their errors (Figure 2)
#   (c) error of the top-ranked candidate after n samples (§4.3)
# Ablation nets learn from the first teacher with the students' recipe.

FIRST_TEACHER_CHECKPOINT = expand(
    rules.train_teacher.output.checkpoint, seed=FIRST_TEACHER
)


use rule sample_candidates as sample_random_nets with:
    output:
        f"{R}/ablations/random/budget{{budget}}/nets.jsonl",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/sample.log",
    params:
        samples=ABLATIONS["random_count"],
        seed=ABLATIONS["random_seed"],


use rule distill_blockswap as distill_random_net with:
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        nets=rules.sample_random_nets.output,
    output:
        checkpoint=f"{R}/ablations/random/budget{{budget}}/net{{i}}/model.pt",
        metrics=f"{R}/ablations/random/budget{{budget}}/net{{i}}/metrics.json",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/net{{i}}.log",
    benchmark:
        f"{BENCH}/ablations/random/budget{{budget}}/net{{i}}.tsv"
    params:
        genotype=lambda w, input: f"--genotype {input.nets} --index {w.i}",
        labels=lambda w: labels(
            method="random", budget=w.budget, net=w.i, teacher_seed=FIRST_TEACHER
        ),
        seed=FIRST_TEACHER,


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


use rule distill_blockswap as distill_sample_count with:
    """(c) The top-ranked of the first n candidates, distilled from the first teacher."""
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        genotype=rules.select_top.output,
    output:
        checkpoint=f"{R}/ablations/samples/budget{{budget}}/n{{n}}/model.pt",
        metrics=f"{R}/ablations/samples/budget{{budget}}/n{{n}}/metrics.json",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}.log",
    benchmark:
        f"{BENCH}/ablations/samples/budget{{budget}}/n{{n}}.tsv"
    params:
        labels=lambda w: labels(
            method="samples", budget=w.budget, samples=w.n, teacher_seed=FIRST_TEACHER
        ),
        seed=FIRST_TEACHER,
