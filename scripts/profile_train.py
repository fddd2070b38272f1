"""Where the time of one DreamerV3 train step goes: each stage timed as its own jitted program.

Builds the model for the given presets and flags (the observation and action spaces come from
the task, as in `python -m dreamerv3.main`), then compiles and times, on one fixed random batch:

- enc: the encoder, forward and backward;
- dyn: the RSSM posterior over the sequence and its KL losses, forward and backward;
- dec: the decoder and its reconstruction losses, forward and backward;
- heads: the reward and continuation heads on the posterior features, forward and backward;
- imagine: the imagined rollouts from every posterior state (forward only, as in training);
- actor-critic: the policy and value losses on the imagined and replayed sequences;
- loss+grad: the whole loss with its gradient, and train: the whole step with the optimizer
  (optimizer = train - loss+grad).

For each it prints compile seconds, XLA-counted FLOPs, median milliseconds and the share of
the full step, as a markdown table and (with --json) a JSON file:

    python scripts/profile_train.py --configs size1m --task dummy_disc --jax.platform cpu \
        --jax.compute_dtype float32

With `--ops N` it also traces each stage with the JAX profiler and lists its N costliest XLA
operations (milliseconds per call summed over threads, output shape, the JAX operation they
came from), which is how to find the layer or copy that a stage loses its time in. On CPU,
measure with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` set, as training runs should (README).
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import xla_ops
from bench_train import random_batch

from dreamerv3 import config as configlib
from dreamerv3 import main as mainlib

sg = jax.lax.stop_gradient


def total(tree):
    """Sum of the means of all floating leaves, as a float32 scalar (a stand-in loss)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return sum(x.astype(jnp.float32).mean() for x in leaves)


class Stage:
    """A function of the model run under ninjax, optionally differentiated w.r.t. modules."""

    def __init__(self, name, fn, modules=()):
        self.name = name
        self.fn = fn
        self.prefixes = tuple(f'{m.path}/' for m in modules)

    def program(self, state, *args):
        """The jittable program: forward (and backward when modules are given)."""
        if not self.prefixes:
            return nj.pure(self.fn)(state, *args, seed=0)[1]
        params = {k: v for k, v in state.items() if k.startswith(self.prefixes)}
        rest = {k: v for k, v in state.items() if k not in params}

        def loss(params):
            out = nj.pure(self.fn)({**rest, **params}, *args, seed=0)[1]
            return total(out), out

        return jax.grad(loss, has_aux=True)(params)


def measure(program, args, repeats):
    """Compile seconds, XLA FLOPs, median seconds and the compiled program, on fixed inputs."""
    start = time.time()
    compiled = jax.jit(program).lower(*args).compile()
    compile_s = time.time() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get('flops', float('nan')))
    if not repeats:  # FLOPs only.
        return compile_s, flops, float('nan'), compiled
    jax.block_until_ready(compiled(*args))
    durations = []
    for _ in range(repeats):
        start = time.time()
        jax.block_until_ready(compiled(*args))
        durations.append(time.time() - start)
    return compile_s, flops, float(np.median(durations)), compiled


def build_stages(model, state, data):
    """The stages of the train step with the inputs each one receives."""
    cfg = model.config
    batch = len(data['is_first'])
    carry = model.init_train(batch)
    run = lambda fn, *args: jax.jit(nj.pure(fn))(state, *args, seed=0)[1]
    carry, obs, prevact, _ = run(model._apply_replay_context, carry, data)
    enc_carry, dyn_carry, dec_carry = carry
    reset = obs['is_first']
    B, T = reset.shape

    def enc(obs):
        return model.enc(enc_carry, obs, reset)[2]

    tokens = run(enc, obs)

    def dyn(tokens):
        _, entries, losses, feat, _ = model.dyn.loss(dyn_carry, tokens, prevact, reset)
        return losses, feat, entries

    _, repfeat, entries = run(dyn, tokens)

    def dec(repfeat):
        recons = model.dec(dec_carry, repfeat, reset)[2]
        return {k: r.loss(sg(obs[k].astype(jnp.float32) / 255)) for k, r in recons.items()}

    def heads(repfeat):
        inp = model.feat2tensor(repfeat)
        con = 1 - obs['is_terminal'].astype(jnp.float32)
        return model.rew(inp, 2).loss(obs['reward']), model.con(inp, 2).loss(con)

    K = min(cfg.imag_last or T, T)

    def imagine(entries):
        return model.imagine(entries, K)

    imgfeat, imgprevact = run(imagine, entries)

    def actorcritic(repfeat, imgfeat, imgprevact):
        los, outs, _ = model.actor_critic_loss(repfeat, imgfeat, imgprevact, K, training=True)
        if cfg.repval_loss:
            boot = outs['ret'][:, 0].reshape((B, K))
            los.update(model.replay_value_loss(repfeat, obs, boot, training=True)[0])
        return los

    def lossgrad(carry, obs, prevact):
        return model.loss(carry, obs, prevact, training=True)[0]

    def train(carry, data):
        return model.train(carry, data)

    trainable = model.modules
    return [
        (Stage('enc', enc, [model.enc]), (obs,)),
        (Stage('dyn', dyn, [model.dyn]), (tokens,)),
        (Stage('dec', dec, [model.dec]), (repfeat,)),
        (Stage('heads', heads, [model.rew, model.con]), (repfeat,)),
        (Stage('imagine', imagine), (entries,)),
        (
            Stage('actor-critic', actorcritic, [model.pol, model.val]),
            (repfeat, imgfeat, imgprevact),
        ),
        (
            Stage('loss+grad', lossgrad, trainable),
            ((enc_carry, dyn_carry, dec_carry), obs, prevact),
        ),
        (Stage('train', train), (model.init_train(batch), data)),
    ]


def table(rows, full):
    """Markdown table of the measured stages."""
    lines = [
        '| stage | compile (s) | GFLOPs | ms | share of train step |',
        '|---|---:|---:|---:|---:|',
    ]
    for row in rows:
        share = f'{100 * row["seconds"] / full:.0f} %' if row['name'] != 'train' else '100 %'
        lines.append(
            f'| {row["name"]} | {row["compile_s"]:.1f} | {row["flops"] / 1e9:.2f} | '
            f'{1000 * row["seconds"]:.0f} | {share} |'
        )
    return '\n'.join(lines)


def main(argv=None):
    """Entry point: profile the stages of the train step of the flags' model."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5, help='timed runs; 0: FLOPs only')
    parser.add_argument('--json', type=pathlib.Path, default=None)
    parser.add_argument('--stages', default='', help='comma-separated subset of stage names')
    parser.add_argument(
        '--ops', type=int, default=0, help='also list the N costliest XLA ops of each stage'
    )
    args, rest = parser.parse_known_args(argv)
    config, _ = configlib.parse(['--logdir', '/tmp/profile_train', *rest])
    with jax.transfer_guard('allow'):
        rows = profile(config, args)
    print(f'profiled {len(rows)} stages of batch {config.batch_size}x{config.batch_length}')


def profile(config, args):
    """Measure the stages; prints and returns the table rows."""
    agent = mainlib.make_agent(config)
    model = agent.model
    rng = np.random.default_rng(0)
    data = random_batch(agent.spaces, config, rng)
    data = jax.tree.map(jnp.asarray, data)
    state = dict(jax.device_get(agent.params))
    wanted = set(filter(None, args.stages.split(',')))
    rows = []
    for stage, inputs in build_stages(model, state, data):
        if wanted and stage.name not in wanted:
            continue
        stage_args = (state, *inputs)
        compile_s, flops, seconds, compiled = measure(stage.program, stage_args, args.repeats)
        row = dict(name=stage.name, compile_s=compile_s, flops=flops, seconds=seconds)
        print(f'{stage.name}: {1000 * seconds:.1f} ms, {flops / 1e9:.2f} GFLOPs', flush=True)
        if args.ops:
            ops = xla_ops.op_table(compiled, stage_args, max(args.repeats, 1))
            row['ops'] = ops[: args.ops]
            print(f'The {args.ops} costliest XLA ops of {stage.name}, summed over threads:')
            print(xla_ops.format_ops(ops, args.ops), flush=True)
        rows.append(row)
    full = next((r['seconds'] for r in rows if r['name'] == 'train'), None)
    lossgrad = next((r for r in rows if r['name'] == 'loss+grad'), None)
    if full and lossgrad:
        rows.append(
            dict(
                name='optimizer (train - loss+grad)',
                compile_s=0.0,
                flops=next(r['flops'] for r in rows if r['name'] == 'train') - lossgrad['flops'],
                seconds=full - lossgrad['seconds'],
            )
        )
    print(table(rows, full or max(r['seconds'] for r in rows)))
    if args.json:
        args.json.write_text(json.dumps(dict(stages=rows), indent=1) + '\n')
    return rows


if __name__ == '__main__':
    main()
