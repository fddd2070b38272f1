"""The DreamerV3 agent: world model, actor-critic losses, acting, training and reports."""

import chex
import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np
import optax
from jaxtyping import Array, Float, Shaped

import embodied.jax as ej
from embodied.jax import heads, nets, opt, utils

from . import replay_layout, rssm

f32 = jnp.float32
i32 = jnp.int32
sg = jax.lax.stop_gradient

# Observation keys that are bookkeeping for the loss, not inputs to reconstruct.
NOT_MODELLED = ('is_first', 'is_last', 'is_terminal', 'reward')
ENCODERS = {'simple': rssm.Encoder}
DYNAMICS = {'rssm': rssm.RSSM}
DECODERS = {'simple': rssm.Decoder}


def isimage(space):
    """Whether a space holds uint8 images (rank 3)."""
    return space.dtype == np.uint8 and len(space.shape) == 3


def concat(trees, axis):
    """Concatenate matching pytrees leaf by leaf."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis), *trees)


def sample(dists):
    """One sample per output of a dict of outputs, each with its own key."""
    return {k: v.sample(nj.seed()) for k, v in dists.items()}


def lambda_return(
    last: Shaped[Array, 'n t'],
    term: Shaped[Array, 'n t'],
    rew: Float[Array, 'n t'],
    boot: Float[Array, 'n t'],
    disc: float,
    lam: float,
) -> Float[Array, 'n t-1']:
    """λ-returns R_0..R_{T-2} of (N, T) sequences, bootstrapped from `boot`.

    R_{T-1} = boot_{T-1};
    R_t = rew_{t+1} + disc (1 - term_{t+1}) [(1 - λ_{t+1}) boot_{t+1} + λ_{t+1} R_{t+1}],
    with λ_{t+1} = lam (1 - last_{t+1}).
    """
    shapes = {x.shape for x in (last, term, rew, boot)}
    if len(shapes) != 1:
        raise ValueError(f'lambda_return needs equal (N, T) shapes, got {shapes}.')
    live = (1 - f32(term))[:, 1:] * disc
    cont = (1 - f32(last))[:, 1:] * lam
    interm = f32(rew)[:, 1:] + (1 - cont) * live * f32(boot)[:, 1:]

    def step(ret, inputs):
        interm, live, cont = inputs
        ret = interm + live * cont * ret
        return ret, ret

    xs = [jnp.moveaxis(x, 1, 0) for x in (interm, live, cont)]
    _, rets = jax.lax.scan(step, f32(boot)[:, -1], xs, reverse=True)
    return jnp.moveaxis(rets, 0, 1)


def imag_loss(
    act,
    rew,
    con,
    policy,
    value,
    slowvalue,
    retnorm,
    valnorm,
    advnorm,
    update,
    contdisc=True,
    slowtar=False,
    horizon=333,
    lam=0.95,
    actent=3e-4,
    slowreg=1.0,
):
    """Policy and value losses on imagined (N, H+1) trajectories.

    Returns ({policy, value} of shape (N, H), {ret}, metrics).
    """
    voffset, vscale = valnorm.stats()
    val = value.pred() * vscale + voffset
    slowval = slowvalue.pred() * vscale + voffset
    tarval = slowval if slowtar else val
    disc = 1 if contdisc else 1 - 1 / horizon
    weight = jnp.cumprod(disc * con, 1) / disc
    ret = lambda_return(jnp.zeros_like(con), 1 - con, rew, tarval, disc, lam)

    roffset, rscale = retnorm(ret, update)
    adv = (ret - tarval[:, :-1]) / rscale
    aoffset, ascale = advnorm(adv, update)
    adv_normed = (adv - aoffset) / ascale
    logpi = sum(dist.logp(sg(act[k]))[:, :-1] for k, dist in policy.items())
    ents = {k: dist.entropy()[:, :-1] for k, dist in policy.items()}
    policy_loss = sg(weight[:, :-1]) * -(logpi * sg(adv_normed) + actent * sum(ents.values()))

    voffset, vscale = valnorm(ret, update)
    tar_normed = (ret - voffset) / vscale
    tar_padded = jnp.concatenate([tar_normed, 0 * tar_normed[:, -1:]], 1)
    value_loss = (
        sg(weight[:, :-1])
        * (value.loss(sg(tar_padded)) + slowreg * value.loss(sg(slowvalue.pred())))[:, :-1]
    )

    ret_normed = (ret - roffset) / rscale
    metrics = {
        'adv': adv.mean(),
        'adv_std': adv.std(),
        'adv_mag': jnp.abs(adv).mean(),
        'rew': rew.mean(),
        'con': con.mean(),
        'ret': ret_normed.mean(),
        'val': val.mean(),
        'tar': tar_normed.mean(),
        'weight': weight.mean(),
        'slowval': slowval.mean(),
        'ret_min': ret_normed.min(),
        'ret_max': ret_normed.max(),
        'ret_rate': (jnp.abs(ret_normed) >= 1.0).mean(),
    }
    for k, dist in policy.items():
        metrics[f'ent/{k}'] = ents[k].mean()
        if hasattr(dist, 'minent') and hasattr(dist, 'maxent'):
            # Bounds may come per element (bounded normal); they are equal everywhere.
            lo, hi = jnp.mean(dist.minent), jnp.mean(dist.maxent)
            metrics[f'rand/{k}'] = (ents[k].mean() - lo) / (hi - lo)
    return {'policy': policy_loss, 'value': value_loss}, {'ret': ret}, metrics


def repl_loss(
    last: Shaped[Array, 'b k'],
    term: Shaped[Array, 'b k'],
    rew: Float[Array, 'b k'],
    boot: Float[Array, 'b k'],
    value: ej.outs.Output,
    slowvalue: ej.outs.Output,
    valnorm: utils.Normalize,
    update: bool,
    slowreg: float = 1.0,
    slowtar: bool = False,
    horizon: int = 333,
    lam: float = 0.95,
) -> tuple[dict[str, Float[Array, 'b k-1']], dict[str, Float[Array, 'b k-1']], dict]:
    """Value loss on replayed (B, K) sequences bootstrapped from imagined returns.

    `slowtar` is accepted for config compatibility; only `boot` is bootstrapped from.
    Returns ({repval} of shape (B, K-1), {ret}, metrics).
    """
    del slowtar
    disc = 1 - 1 / horizon
    ret = lambda_return(last, term, rew, boot, disc, lam)
    voffset, vscale = valnorm(ret, update)
    ret_normed = (ret - voffset) / vscale
    ret_padded = jnp.concatenate([ret_normed, 0 * ret_normed[:, -1:]], 1)
    weight = 1 - f32(last)
    repval = (
        weight[:, :-1]
        * (value.loss(sg(ret_padded)) + slowreg * value.loss(sg(slowvalue.pred())))[:, :-1]
    )
    return {'repval': repval}, {'ret': ret}, {}


class Model:
    """DreamerV3 model: ninjax root modules plus the policy/train/report contract."""

    def __init__(self, obs_space, act_space, config):
        self.obs_space = obs_space
        self.act_space = act_space
        self.config = config
        for kind, table in (('enc', ENCODERS), ('dyn', DYNAMICS), ('dec', DECODERS)):
            if config[kind].typ not in table:
                raise ValueError(
                    f'agent.{kind}.typ={config[kind].typ!r} is unknown; choose one of '
                    f'{sorted(table)}.'
                )
        space = {k: v for k, v in obs_space.items() if k not in NOT_MODELLED}
        self.enc = ENCODERS[config.enc.typ](space, **config.enc[config.enc.typ], name='enc')
        self.dyn = DYNAMICS[config.dyn.typ](act_space, **config.dyn[config.dyn.typ], name='dyn')
        self.dec = DECODERS[config.dec.typ](space, **config.dec[config.dec.typ], name='dec')

        scalar = elements.Space(np.float32, ())
        binary = elements.Space(bool, (), 0, 2)
        self.rew = heads.MLPHead(scalar, **config.rewhead, name='rew')
        self.con = heads.MLPHead(binary, **config.conhead, name='con')
        kinds = {
            k: config.policy_dist_disc if s.discrete else config.policy_dist_cont
            for k, s in act_space.items()
        }
        self.pol = heads.MLPHead(act_space, kinds, **config.policy, name='pol')
        self.val = heads.MLPHead(scalar, **config.value, name='val')
        self.slowval = utils.SlowModel(
            heads.MLPHead(scalar, **config.value, name='slowval'),
            source=self.val,
            **config.slowvalue,
        )
        self.retnorm = utils.Normalize(**config.retnorm, name='retnorm')
        self.valnorm = utils.Normalize(**config.valnorm, name='valnorm')
        self.advnorm = utils.Normalize(**config.advnorm, name='advnorm')

        self.modules = [self.dyn, self.enc, self.dec, self.rew, self.con, self.pol, self.val]
        self.opt = opt.Optimizer(
            self.modules, opt.make_chain(**config.opt), summary_depth=1, name='opt'
        )

        scales = dict(config.loss_scales)
        rec = scales.pop('rec')
        scales.update({k: rec for k in space})
        if not config.repval_loss:
            scales.pop('repval')
        self.scales = scales
        self.wm_keys = ['dyn', 'rep', 'rew', 'con', *space]

    @property
    def policy_keys(self):
        """Regex of the state entries the policy needs."""
        return '^(enc|dyn|dec|pol)/'

    @property
    def ext_space(self):
        """Batch keys besides observations and actions: chunk index, step id, stored latents."""
        spaces = {'consec': elements.Space(np.int32), 'stepid': elements.Space(np.uint8, 20)}
        if self.config.replay_context:
            spaces.update(self._context_spaces())
        return spaces

    def init_policy(self, batch_size):
        """Zero carry: (enc, dyn, dec, previous action)."""
        prevact = {k: jnp.zeros((batch_size, *s.shape), s.dtype) for k, s in self.act_space.items()}
        return (
            self.enc.initial(batch_size),
            self.dyn.initial(batch_size),
            self.dec.initial(batch_size),
            prevact,
        )

    def init_train(self, batch_size):
        """Same structure as the policy carry."""
        return self.init_policy(batch_size)

    def init_report(self, batch_size):
        """Same structure as the policy carry."""
        return self.init_policy(batch_size)

    def feat2tensor(self, feat):
        """Flattened feature [deter, flatten(stoch)] in the compute dtype."""
        stoch = feat['stoch'].reshape((*feat['stoch'].shape[:-2], -1))
        return jnp.concatenate([nets.cast(feat['deter']), nets.cast(stoch)], -1)

    def policy(self, carry, obs, mode='train'):
        """One acting step; `mode` is ignored: evaluation samples like training, as published."""
        del mode
        chex.assert_rank(obs['is_first'], 1)
        chex.assert_tree_shape_prefix(obs, obs['is_first'].shape)
        enc_carry, dyn_carry, dec_carry, prevact = carry
        reset = obs['is_first']
        enc_carry, enc_entry, tokens = self.enc(enc_carry, obs, reset, single=True)
        dyn_carry, dyn_entry, feat = self.dyn.observe(
            dyn_carry, tokens, prevact, reset, single=True
        )
        act = sample(self.pol(self.feat2tensor(feat), 1))
        act = {k: v.astype(self.act_space[k].dtype) for k, v in act.items()}
        outs = {}
        if self.config.replay_context:
            outs.update(self._pack_context(enc_entry, dyn_entry, {}))
        return (enc_carry, dyn_carry, dec_carry, act), act, outs

    def train(self, carry, data):
        """One optimiser step on a (B, C+T) batch; the first C steps only restore the latents."""
        # Shape and dtype checks on the batch from the replay; they run once, while tracing.
        chex.assert_rank(data['is_first'], 2)
        chex.assert_type([data['is_first'], data['consec']], [bool, np.int32])
        chex.assert_tree_shape_prefix(data, data['is_first'].shape)
        carry, obs, prevact, stepid = self._apply_replay_context(carry, data)
        metrics, (carry, entries, aux, mets) = self.opt(
            self.loss, carry, obs, prevact, training=True, has_aux=True
        )
        metrics.update(mets)
        self.slowval.update()
        replay = {'stepid': stepid, 'priority': sg(aux['priority'])}
        if self.config.replay_context:
            replay.update(self._pack_context(*entries))
        # Everything written back to the replay is per step of the trained (B, T) part.
        chex.assert_tree_shape_prefix(replay, obs['is_first'].shape)
        carry = (*carry, {k: data[k][:, -1] for k in self.act_space})
        return carry, {'replay': replay}, metrics

    def loss(self, carry, obs, prevact, training):
        """Total loss and (carry, entries, aux, metrics) for sequences of length T."""
        enc_carry, dyn_carry, dec_carry = carry
        reset = obs['is_first']
        B, T = reset.shape
        losses, metrics = {}, {}

        enc_carry, enc_entries, tokens = self.enc(enc_carry, obs, reset)
        dyn_carry, dyn_entries, los, repfeat, mets = self.dyn.loss(
            dyn_carry, tokens, prevact, reset
        )
        losses.update(los)
        metrics.update(mets)
        dec_carry, dec_entries, recons = self.dec(dec_carry, repfeat, reset)
        inp = self.feat2tensor(repfeat)
        losses['rew'] = self.rew(inp if self.config.reward_grad else sg(inp), 2).loss(obs['reward'])
        con = 1 - f32(obs['is_terminal'])
        if self.config.contdisc:
            con *= 1 - 1 / self.config.horizon
        losses['con'] = self.con(inp, 2).loss(con)
        for key, recon in recons.items():
            space, value = self.obs_space[key], obs[key]
            target = f32(value) / 255 if isimage(space) else value
            losses[key] = recon.loss(sg(target))
        bad = {k: v.shape for k, v in losses.items() if v.shape != (B, T)}
        assert not bad, ((B, T), bad)
        priority = sum(self.scales[k] * losses[k] for k in self.wm_keys)

        # Imagination from every (or the last K) posterior states.
        K = min(self.config.imag_last or T, T)
        imgfeat, imgprevact = self.imagine(dyn_entries, K)
        los, imgouts, mets = self.actor_critic_loss(repfeat, imgfeat, imgprevact, K, training)
        losses.update({k: v.mean(1).reshape((B, K)) for k, v in los.items()})
        metrics.update(mets)

        if self.config.repval_loss:
            boot = imgouts['ret'][:, 0].reshape((B, K))
            los, _, mets = self.replay_value_loss(repfeat, obs, boot, training)
            losses.update(los)
            metrics.update({f'reploss/{k}': v for k, v in mets.items()})

        assert set(losses) == set(self.scales), (sorted(losses), sorted(self.scales))
        metrics.update({f'loss/{k}': v.mean() for k, v in losses.items()})
        loss = sum(v.mean() * self.scales[k] for k, v in losses.items())
        carry = (enc_carry, dyn_carry, dec_carry)
        entries = (enc_entries, dyn_entries, dec_entries)
        aux = {'tokens': tokens, 'repfeat': repfeat, 'losses': losses, 'priority': priority}
        return loss, (carry, entries, aux, metrics)

    def policyfn(self, feat):
        """Actions the policy samples for features of any leading shape."""
        return sample(self.pol(self.feat2tensor(feat), 1))

    def imagine(self, dyn_entries, K):
        """Imagined features and previous actions of imag_length steps from the last K
        posterior states of each sequence, flattened to B * K rollouts."""
        starts = self.dyn.starts(dyn_entries, K)
        _, imgfeat, imgprevact = self.dyn.imagine(starts, self.policyfn, self.config.imag_length)
        return imgfeat, imgprevact

    def actor_critic_loss(self, repfeat, imgfeat, imgprevact, K, training):
        """imag_loss of the rollouts, each prefixed with the posterior state it started from."""
        B = jax.tree.leaves(repfeat)[0].shape[0]
        first = jax.tree.map(lambda x: x[:, -K:].reshape((B * K, 1, *x.shape[2:])), repfeat)
        first = first if self.config.ac_grads else sg(first)
        imgfeat = concat([first, sg(imgfeat)], 1)
        lastact = self.policyfn(jax.tree.map(lambda x: x[:, -1], imgfeat))
        imgact = concat([imgprevact, jax.tree.map(lambda x: x[:, None], lastact)], 1)
        inp = self.feat2tensor(imgfeat)
        return imag_loss(
            imgact,
            self.rew(inp, 2).pred(),
            self._contprob(self.con(inp, 2)),
            self.pol(inp, 2),
            self.val(inp, 2),
            self.slowval(inp, 2),
            self.retnorm,
            self.valnorm,
            self.advnorm,
            update=training,
            contdisc=self.config.contdisc,
            horizon=self.config.horizon,
            **self.config.imag_loss,
        )

    def replay_value_loss(self, repfeat, obs, boot, training):
        """repl_loss on the last K replayed steps, bootstrapped from the imagined returns."""
        K = boot.shape[1]
        feat = repfeat if self.config.repval_grad else sg(repfeat)
        last, term, rew = [obs[k] for k in ('is_last', 'is_terminal', 'reward')]
        feat, last, term, rew = jax.tree.map(lambda x: x[:, -K:], (feat, last, term, rew))
        inp = self.feat2tensor(feat)
        return repl_loss(
            last,
            term,
            rew,
            boot,
            self.val(inp, 2),
            self.slowval(inp, 2),
            self.valnorm,
            update=training,
            horizon=self.config.horizon,
            **self.config.repl_loss,
        )

    def report(self, carry, data):
        """Loss metrics, optional gradient norms and open-loop videos."""
        if not self.config.report:
            return carry, {}
        carry, obs, prevact, _ = self._apply_replay_context(carry, data)
        _, dyn_carry, dec_carry = carry
        B, T = obs['is_first'].shape
        RB = min(6, B)

        _, (new_carry, _, aux, metrics) = self.loss(carry, obs, prevact, training=False)
        metrics = dict(metrics)

        if self.config.report_gradnorms:
            metrics.update(self._gradnorms(carry, obs, prevact))

        firsthalf = lambda xs: jax.tree.map(lambda x: x[:RB, : T // 2], xs)
        secondhalf = lambda xs: jax.tree.map(lambda x: x[:RB, T // 2 :], xs)
        dyn_carry = jax.tree.map(lambda x: x[:RB], dyn_carry)
        dec_carry = jax.tree.map(lambda x: x[:RB], dec_carry)
        dyn_carry, _, obsfeat = self.dyn.observe(
            dyn_carry, firsthalf(aux['tokens']), firsthalf(prevact), firsthalf(obs['is_first'])
        )
        _, imgfeat, _ = self.dyn.imagine(dyn_carry, secondhalf(prevact), T - T // 2)
        dec_carry, _, obsrecons = self.dec(dec_carry, obsfeat, firsthalf(obs['is_first']))
        _, _, imgrecons = self.dec(dec_carry, imgfeat, jnp.zeros_like(secondhalf(obs['is_first'])))
        for key in self.dec.imgkeys:
            pred = jnp.concatenate([obsrecons[key].pred(), imgrecons[key].pred()], 1)
            metrics[f'openloop/{key}'] = openloop_video(obs[key][:RB], pred)

        carry = (*new_carry, {k: data[k][:, -1] for k in self.act_space})
        return carry, metrics

    def _gradnorms(self, carry, obs, prevact):
        """Global norm of the gradient of each mean loss w.r.t. all trained parameters."""
        keys = sorted(self.scales)
        context = dict(nj.context())
        params = opt.trainable_params(self.modules, context)
        seed = nj.seed()

        def means(params):
            def fn():
                losses = self.loss(carry, obs, prevact, training=False)[1][2]['losses']
                return jnp.stack([losses[k].mean() for k in keys])

            return nj.pure(fn, nested=True)({**context, **params}, seed=seed)[1]

        # One forward pass, then one backward pass per loss (sequential to bound memory).
        values, vjp = jax.vjp(means, params)
        onehots = jnp.eye(len(keys), dtype=values.dtype)
        norms = jax.lax.map(lambda ct: optax.global_norm(vjp(ct)[0]), onehots)
        return {f'gradnorm/{k}': norms[i] for i, k in enumerate(keys)}

    def _contprob(self, dist):
        """Probability of continuing under a Binary output."""
        return dist.prob(jnp.ones(dist.pred().shape, f32))

    def _prefixed(self, enc, dyn, dec):
        """Flat `enc/...`, `dyn/...`, `dec/...` dict of module entries."""
        flat = {}
        for name, entries in (('enc', enc), ('dyn', dyn), ('dec', dec)):
            flat.update({f'{name}/{k}': v for k, v in entries.items()})
        return flat

    def _model_entry_spaces(self):
        """Flat spaces of the module entries as the model computes them."""
        return self._prefixed(self.enc.entry_space, self.dyn.entry_space, self.dec.entry_space)

    def _context_spaces(self):
        """Flat spaces of the module entries as the replay stores them (compact, lossless)."""
        return {
            k: replay_layout.compact_space(k, s, nets.COMPUTE_DTYPE)
            for k, s in self._model_entry_spaces().items()
        }

    def _pack_context(self, enc, dyn, dec):
        """Module entries in the replay's layout: compute-dtype floats, one-hot as indices."""
        spaces = self._context_spaces()
        packed = {}
        for key, value in self._prefixed(enc, dyn, dec).items():
            dtype = spaces[key].dtype
            if key in replay_layout.ONEHOT_KEYS:
                value = jnp.argmax(value, -1).astype(dtype)
            elif jnp.issubdtype(value.dtype, jnp.floating):
                value = nets.cast(value)
                floating = np.issubdtype(dtype, np.floating)
                value = (
                    value.astype(dtype) if floating else jax.lax.bitcast_convert_type(value, dtype)
                )
            packed[key] = value
        return packed

    def _unpack_context(self, stored):
        """Exactly the model's module entries from stored ones (inverse of `_pack_context`)."""
        spaces = self._model_entry_spaces()
        entries = {}
        for key, value in stored.items():
            space = spaces[key]
            if key in replay_layout.ONEHOT_KEYS:
                value = jax.nn.one_hot(value, space.shape[-1], dtype=nets.COMPUTE_DTYPE)
            elif np.issubdtype(space.dtype, np.floating):
                if not jnp.issubdtype(value.dtype, jnp.floating):
                    value = jax.lax.bitcast_convert_type(value, nets.COMPUTE_DTYPE)
                value = nets.cast(value)
            entries[key] = value
        return entries

    def _apply_replay_context(self, carry, data):
        """Start state, observations, previous actions and stepids of a (B, C+T) batch.

        With a replay context of C steps, rows that start a sampled sequence begin from the
        latents stored at step C - 1 (rebuilt exactly from the replay's compact layout); the
        other rows continue from the carry. Both drop the first C steps.
        """
        enc_carry, dyn_carry, dec_carry, prevact = carry
        carry = (enc_carry, dyn_carry, dec_carry)
        stepid = data['stepid']
        obs = {k: data[k] for k in self.obs_space}
        prevact = {
            k: jnp.concatenate([prevact[k][:, None], data[k][:, :-1]], 1) for k in self.act_space
        }
        C = self.config.replay_context
        if not C:
            return carry, obs, prevact, stepid

        lhs = lambda xs: jax.tree.map(lambda x: x[:, :C], xs)
        rhs = lambda xs: jax.tree.map(lambda x: x[:, C:], xs)
        modules = (('enc', self.enc), ('dyn', self.dyn), ('dec', self.dec))
        # Only the start step is rebuilt from the compact layout.
        last = self._unpack_context(
            {
                f'{name}/{k}': v
                for name, module in modules
                for k, v in module.truncate(
                    lhs({k: data[f'{name}/{k}'] for k in module.entry_space})
                ).items()
            }
        )
        rep_carry = nets.cast(
            tuple({k: last[f'{name}/{k}'] for k in module.entry_space} for name, module in modules)
        )
        rep_prevact = {k: data[k][:, C - 1 : -1] for k in self.act_space}
        # Rows that start a sampled sequence have no carried state; they use the stored one.
        first = data['consec'][:, 0] == 0
        carry = nets.where(first, rep_carry, carry)
        prevact = nets.where(first, rep_prevact, rhs(prevact))
        return carry, rhs(obs), prevact, rhs(stepid)


def openloop_video(true, pred):
    """Video (T+10, 3H+4, B(W+4), C) of truth, prediction and error with colored frames."""
    B, T, H, W, C = true.shape
    pred = jnp.clip(pred * 255, 0, 255).astype(jnp.uint8)
    error = ((i32(pred) - i32(true) + 255) / 2).astype(jnp.uint8)
    video = jnp.concatenate([true, pred, error], 2)
    video = jnp.pad(video, [[0, 0], [0, 0], [2, 2], [2, 2], [0, 0]])
    inner = jnp.zeros(video.shape, bool).at[:, :, 2:-2, 2:-2, :].set(True)
    # Green while the model observes, red once it predicts open loop.
    border = jnp.zeros((T, C), jnp.uint8).at[: T // 2, 1 % C].set(255)
    border = border.at[T // 2 :, 0].set(255)
    video = jnp.where(inner, video, border[None, :, None, None, :])
    # Always ten black frames (the reference appends only min(10, T) of them).
    black = jnp.zeros((B, 10, *video.shape[2:]), jnp.uint8)
    video = jnp.concatenate([video, black], 1)
    B, T, H, W, C = video.shape
    return video.transpose((1, 2, 0, 3, 4)).reshape((T, H, B * W, C))


class Agent(ej.Agent):
    """DreamerV3: the jitted, sharded JAX agent around `Model`, built from a run's config.

    The agent reads the run's `jax` section and batch shape; the model reads its own `agent`
    section and `replay_context`.
    """

    def __init__(self, obs_space: dict, act_space: dict, config: elements.Config):
        model_config = elements.Config(**config.agent, replay_context=config.replay_context)
        model_fn = lambda obs_space, act_space: Model(obs_space, act_space, model_config)
        super().__init__(model_fn, obs_space, act_space, config)
