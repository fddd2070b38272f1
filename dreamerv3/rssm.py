"""World-model networks: the recurrent state-space model, the encoder and the decoder."""

import math

import einops
import elements
import jax
import jax.numpy as jnp
import ninjax as nj
import numpy as np

from embodied.jax import heads, nets, outs

f32 = jnp.float32
sg = jax.lax.stop_gradient


def mask(tree, keep):
    """Zero every leaf of `tree` where the batch flag `keep` is False."""

    def fn(x):
        m = keep.reshape(keep.shape + (1,) * (x.ndim - keep.ndim))
        return jnp.where(m, x, jnp.zeros_like(x))

    return jax.tree.map(fn, tree)


def latent_dist(logit, unimix):
    """Independent unimix categoricals over the last axis, summed over the latent axis."""
    return outs.Agg(outs.OneHot(logit, unimix), 1, jnp.sum)


def kl_losses(post, prior, unimix, free_nats):
    """`dyn` = KL(sg(q) || p) and `rep` = KL(q || sg(p)), each clipped below at free nats.

    `post` and `prior` are logits of shape (..., stoch, classes); the KL is summed over the
    latent variables before the clip.
    """
    dyn = latent_dist(sg(post), unimix).kl(latent_dist(prior, unimix))
    rep = latent_dist(post, unimix).kl(latent_dist(sg(prior), unimix))
    if free_nats:
        dyn = jnp.maximum(dyn, free_nats)
        rep = jnp.maximum(rep, free_nats)
    return dyn, rep


def dense(module, name, units, x, act, norm, **kw):
    """One `Linear -> Norm -> act` block owned by `module`, with layers `name`, `<name>norm`."""
    x = module.sub(name, nets.Linear, units, **kw)(x)
    x = module.sub(f'{name}norm', nets.Norm, norm)(x)
    return nets.act(act)(x)


class RSSM(nj.Module):
    """Recurrent state-space model with a block GRU core and categorical latents."""

    deter: int = 4096
    hidden: int = 2048
    stoch: int = 32
    classes: int = 32
    act: str = 'gelu'
    norm: str = 'rms'
    unimix: float | int = 0.01
    outscale: float | int = 1.0
    winit: str = 'trunc_normal_in'
    imglayers: int = 2
    obslayers: int = 1
    dynlayers: int = 1
    absolute: bool = False
    blocks: int = 8
    free_nats: float | int = 1.0

    def __init__(self, act_space):
        if self.deter % self.blocks:
            raise ValueError(
                f'RSSM deter={self.deter} must be divisible by blocks={self.blocks}; '
                'change agent.dyn.rssm.deter or agent.dyn.rssm.blocks.'
            )
        self.act_space = act_space

    @property
    def entry_space(self):
        """Spaces of the per-step entries stored in replay as context."""
        return {
            'deter': elements.Space(np.float32, self.deter),
            'stoch': elements.Space(np.float32, (self.stoch, self.classes)),
        }

    def initial(self, batch_size):
        """All-zero latent state for `batch_size` sequences."""
        return nets.cast(
            {
                'deter': jnp.zeros((batch_size, self.deter), f32),
                'stoch': jnp.zeros((batch_size, self.stoch, self.classes), f32),
            }
        )

    def truncate(self, entries):
        """Carry made of the last time step of (B, T, ...) entries."""
        return jax.tree.map(lambda x: x[:, -1], entries)

    def starts(self, entries, nlast):
        """The last `nlast` steps of (B, T, ...) entries as B * nlast independent states."""
        return jax.tree.map(lambda x: x[:, -nlast:].reshape((-1, *x.shape[2:])), entries)

    def observe(self, carry, tokens, action, reset, single=False):
        """Posterior steps; over time (axis 1) unless `single`. Returns carry, entries, feat."""
        carry, tokens, action = nets.cast((carry, tokens, action))
        if single:
            carry, (entry, feat) = self._observe(carry, (tokens, action, reset))
            return carry, entry, feat
        carry, (entries, feat) = nj.scan(self._observe, carry, (tokens, action, reset), axis=1)
        return carry, entries, feat

    def imagine(self, carry, policy, length, single=False):
        """Prior steps driven by `policy(carry) -> action` or by an action sequence.

        Returns carry, feat and the actions used; over `length` steps (axis 1) unless `single`.
        """
        carry = nets.cast(carry)
        if single:
            return self._imagine(carry, policy)
        if callable(policy):
            step = lambda c, _: self._imagine(c, policy)
            carry, (feat, action) = nj.scan(step, carry, (), length, axis=1)
        else:
            carry, (feat, action) = nj.scan(self._imagine, carry, nets.cast(policy), length, axis=1)
        return carry, feat, action

    def loss(self, carry, tokens, action, reset):
        """Observe a sequence and return carry, entries, {dyn, rep} losses, feat, metrics."""
        carry, entries, feat = self.observe(carry, tokens, action, reset)
        prior = self._prior(feat['deter'])
        post = feat['logit']
        dyn, rep = kl_losses(post, prior, self.unimix, self.free_nats)
        metrics = {
            'dyn_ent': self._dist(prior).entropy().mean(),
            'rep_ent': self._dist(post).entropy().mean(),
        }
        return carry, entries, {'dyn': dyn, 'rep': rep}, feat, metrics

    def _observe(self, carry, inputs):
        tokens, action, reset = inputs
        # A reset step starts from the zero state and sees an all-zero action embedding.
        deter, stoch, action = mask((carry['deter'], carry['stoch'], action), ~reset)
        actemb = mask(self._embed(action), ~reset)
        deter = self._core(deter, stoch, actemb)
        tokens = tokens.reshape((*deter.shape[:-1], -1))
        x = tokens if self.absolute else jnp.concatenate([deter, tokens], -1)
        for i in range(self.obslayers):
            x = dense(self, f'obs{i}', self.hidden, x, self.act, self.norm, winit=self.winit)
        logit = self._logit('obslogit', x)
        stoch = nets.cast(self._dist(logit).sample(nj.seed()))
        carry = {'deter': deter, 'stoch': stoch}
        feat = {'deter': deter, 'stoch': stoch, 'logit': logit}
        return carry, (dict(carry), feat)

    def _imagine(self, carry, policy):
        action = policy(sg(carry)) if callable(policy) else policy
        deter = self._core(carry['deter'], carry['stoch'], self._embed(action))
        logit = self._prior(deter)
        stoch = nets.cast(self._dist(logit).sample(nj.seed()))
        carry = {'deter': deter, 'stoch': stoch}
        feat = {'deter': deter, 'stoch': stoch, 'logit': logit}
        return carry, (feat, action)

    def _embed(self, action):
        return nets.cast(nets.DictConcat(self.act_space, 1)(action))

    def _core(self, deter, stoch, action):
        """One block-GRU step: reset, candidate and update gates from block-diagonal layers."""
        stoch = stoch.reshape((stoch.shape[0], -1))
        action = action / sg(jnp.maximum(1, jnp.abs(action)))
        g = self.blocks
        kw = dict(act=self.act, norm=self.norm, winit=self.winit)
        x0 = dense(self, 'dynin0', self.hidden, deter, **kw)
        x1 = dense(self, 'dynin1', self.hidden, stoch, **kw)
        x2 = dense(self, 'dynin2', self.hidden, action, **kw)
        x = jnp.concatenate([x0, x1, x2], -1)[..., None, :].repeat(g, -2)
        groups = einops.rearrange(deter, '... (g h) -> ... g h', g=g)
        x = einops.rearrange(jnp.concatenate([groups, x], -1), '... g h -> ... (g h)')
        for i in range(self.dynlayers):
            x = self.sub(f'dynhid{i}', nets.BlockLinear, self.deter, g, winit=self.winit)(x)
            x = self.sub(f'dynhid{i}norm', nets.Norm, self.norm)(x)
            x = nets.act(self.act)(x)
        gru = self.sub('dyngru', nets.BlockLinear, 3 * self.deter, g, winit=self.winit)
        reset, cand, update = gru(x, parts=3)
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1)
        return update * cand + (1 - update) * deter

    def _prior(self, x):
        for i in range(self.imglayers):
            x = dense(self, f'prior{i}', self.hidden, x, self.act, self.norm, winit=self.winit)
        return self._logit('priorlogit', x)

    def _logit(self, name, x):
        x = self.sub(
            name, nets.Linear, self.stoch * self.classes, winit=self.winit, outscale=self.outscale
        )(x)
        return x.reshape((*x.shape[:-1], self.stoch, self.classes))

    def _dist(self, logit):
        return latent_dist(logit, self.unimix)


def split_keys(obs_space):
    """Vector keys (rank <= 2) and image keys (rank 3) of an observation space."""
    bad = {k: s.shape for k, s in obs_space.items() if len(s.shape) > 3}
    if bad:
        raise ValueError(
            f'Observations of rank > 3 are not supported: {bad}. Flatten or drop these keys.'
        )
    if not obs_space:
        raise ValueError(
            'The encoder and decoder need at least one observation key besides is_first, '
            'is_last, is_terminal and reward.'
        )
    veckeys = [k for k, s in obs_space.items() if len(s.shape) <= 2]
    imgkeys = [k for k, s in obs_space.items() if len(s.shape) == 3]
    return veckeys, imgkeys


class Stateless:
    """Carry and replay entries of a module without recurrent state: all empty."""

    @property
    def entry_space(self):
        """No entries to store in the replay."""
        return {}

    def initial(self, batch_size):
        """Empty carry."""
        return {}

    def truncate(self, entries):
        """Empty carry."""
        return {}


class Encoder(Stateless, nj.Module):
    """Maps observations to tokens: an MLP for vector keys and a CNN for images."""

    depth: int = 64
    mults: tuple = (2, 3, 4, 4)
    layers: int = 3
    units: int = 1024
    act: str = 'gelu'
    norm: str = 'rms'
    winit: str = 'trunc_normal_in'
    symlog: bool = True
    outer: bool = False
    kernel: int = 5
    strided: bool = False

    def __init__(self, obs_space):
        self.obs_space = obs_space
        self.veckeys, self.imgkeys = split_keys(obs_space)
        self.depths = tuple(self.depth * mult for mult in self.mults)

    def __call__(self, carry, obs, reset, single=False):
        """Tokens of shape (*reset.shape, F); returns carry, entries, tokens."""
        bdims = 1 if single else 2
        bshape = reset.shape
        parts = []
        if self.veckeys:
            spaces = {k: self.obs_space[k] for k in self.veckeys}
            squish = nets.symlog if self.symlog else (lambda x: x)
            x = nets.DictConcat(spaces, 1, squish=squish)({k: obs[k] for k in self.veckeys})
            x = nets.cast(x.reshape((-1, *x.shape[bdims:])))
            for i in range(self.layers):
                x = dense(self, f'mlp{i}', self.units, x, self.act, self.norm, winit=self.winit)
            parts.append(x)
        if self.imgkeys:
            parts.append(self._cnn(obs, bdims))
        x = jnp.concatenate(parts, -1)
        return carry, {}, x.reshape((*bshape, *x.shape[1:]))

    def _cnn(self, obs, bdims):
        imgs = [obs[k] for k in sorted(self.imgkeys)]
        for key, img in zip(sorted(self.imgkeys), imgs):
            if img.dtype != jnp.uint8:
                raise TypeError(f'Image observation {key!r} has dtype {img.dtype}; expected uint8.')
        x = nets.cast(jnp.concatenate(imgs, -1), force=True) / 255 - 0.5
        x = x.reshape((-1, *x.shape[bdims:]))
        for i, depth in enumerate(self.depths):
            if self.outer and i == 0:
                x = self.sub(f'cnn{i}', nets.Conv2D, depth, self.kernel, winit=self.winit)(x)
            elif self.strided:
                x = self.sub(f'cnn{i}', nets.Conv2D, depth, self.kernel, 2, winit=self.winit)(x)
            else:
                x = self.sub(f'cnn{i}', nets.Conv2D, depth, self.kernel, winit=self.winit)(x)
                B, H, W, C = x.shape
                if H % 2 or W % 2:
                    raise ValueError(
                        f'Encoder stage {i} max-pools a {H}x{W} map; both sides must be even. '
                        'Resize the images to a multiple of 2**len(mults).'
                    )
                x = x.reshape((B, H // 2, 2, W // 2, 2, C)).max((2, 4))
            x = self.sub(f'cnn{i}norm', nets.Norm, self.norm)(x)
            x = nets.act(self.act)(x)
        if not (3 <= x.shape[-3] <= 16 and 3 <= x.shape[-2] <= 16):
            raise ValueError(
                f'Encoder output map is {x.shape[-3]}x{x.shape[-2]}; expected 3..16 per side. '
                'Change the image size or agent.enc.simple.mults.'
            )
        return x.reshape((x.shape[0], -1))


class Decoder(Stateless, nj.Module):
    """Reconstructs observations from latent features: an MLP for vectors, a CNN for images."""

    depth: int = 64
    mults: tuple = (2, 3, 4, 4)
    layers: int = 3
    units: int = 1024
    act: str = 'gelu'
    norm: str = 'rms'
    outscale: float | int = 1.0
    winit: str = 'trunc_normal_in'
    symlog: bool = True
    outer: bool = False
    kernel: int = 5
    bspace: int = 8
    strided: bool = False

    def __init__(self, obs_space):
        self.obs_space = obs_space
        self.veckeys, self.imgkeys = split_keys(obs_space)
        self.depths = tuple(self.depth * mult for mult in self.mults)
        self.imgdep = sum(obs_space[k].shape[-1] for k in self.imgkeys)
        self.imgres = self.imgkeys and obs_space[self.imgkeys[0]].shape[:-1]

    def __call__(self, carry, feat, reset):
        """Outputs per observation key over the batch shape of `reset`; carry, entries, recons."""
        bshape = reset.shape
        recons = {}
        if self.veckeys:
            recons.update(self._vector(feat, bshape))
        if self.imgkeys:
            recons.update(self._image(feat, bshape))
        return carry, {}, recons

    def _vector(self, feat, bshape):
        inp = [nets.cast(feat[k]).reshape((math.prod(bshape), -1)) for k in ('stoch', 'deter')]
        inp = jnp.concatenate(inp, -1)
        spaces = {k: self.obs_space[k] for k in self.veckeys}
        cont = 'symlog_mse' if self.symlog else 'mse'
        kinds = {k: 'categorical' if s.discrete else cont for k, s in spaces.items()}
        x = self.sub(
            'mlp', nets.MLP, self.layers, self.units, act=self.act, norm=self.norm, winit=self.winit
        )(inp)
        x = x.reshape((*bshape, *x.shape[1:]))
        head = self.sub(
            'vec', heads.DictHead, spaces, kinds, winit=self.winit, outscale=self.outscale
        )
        return head(x)

    def _image(self, feat, bshape):
        factor = 2 ** (len(self.depths) - int(bool(self.outer)))
        if any(x % factor for x in self.imgres):
            raise ValueError(
                f'Image size {tuple(self.imgres)} is not divisible by {factor}; '
                'change the image size or agent.dec.simple.mults.'
            )
        minres = [int(x // factor) for x in self.imgres]
        if not all(3 <= x <= 16 for x in minres):
            raise ValueError(
                f'Decoder start map {minres} must be 3..16 per side; '
                'change the image size or agent.dec.simple.mults.'
            )
        shape = (*minres, self.depths[-1])
        deter = nets.cast(feat['deter']).reshape((math.prod(bshape), -1))
        stoch = nets.cast(feat['stoch']).reshape((math.prod(bshape), -1))
        if self.bspace:
            x = self._spatial_blocks(deter, stoch, shape)
        else:
            x = self.sub('space', nets.Linear, shape, winit=self.winit)(
                jnp.concatenate([stoch, deter], -1)
            )
            x = nets.act(self.act)(self.sub('spacenorm', nets.Norm, self.norm)(x))
        for i, depth in reversed(list(enumerate(self.depths[:-1]))):
            if self.strided:
                x = self.sub(
                    f'conv{i}', nets.Conv2D, depth, self.kernel, 2, transp=True, winit=self.winit
                )(x)
            else:
                x = self.sub(
                    f'conv{i}', nets.Conv2D, depth, self.kernel, upsample=True, winit=self.winit
                )(x)
            x = nets.act(self.act)(self.sub(f'conv{i}norm', nets.Norm, self.norm)(x))
        kw = dict(winit=self.winit, outscale=self.outscale)
        if self.outer:
            x = self.sub('imgout', nets.Conv2D, self.imgdep, self.kernel, **kw)(x)
        elif self.strided:
            x = self.sub('imgout', nets.Conv2D, self.imgdep, self.kernel, 2, transp=True, **kw)(x)
        else:
            x = self.sub('imgout', nets.Conv2D, self.imgdep, self.kernel, upsample=True, **kw)(x)
        x = jax.nn.sigmoid(x)
        x = x.reshape((*bshape, *x.shape[1:]))
        split = np.cumsum([self.obs_space[k].shape[-1] for k in self.imgkeys][:-1])
        return {
            k: outs.Agg(outs.MSE(part), 3, jnp.sum)
            for k, part in zip(self.imgkeys, jnp.split(x, split, -1))
        }

    def _spatial_blocks(self, deter, stoch, shape):
        # Each block of deter paints a whole spatial map with its own slice of the channels.
        g = self.bspace
        if deter.shape[-1] % g or shape[-1] % g:
            raise ValueError(
                f'Decoder bspace={g} must divide deter={deter.shape[-1]} and the last depth '
                f'{shape[-1]}; change agent.dec.simple.bspace.'
            )
        x0 = self.sub('sp0', nets.BlockLinear, math.prod(shape), g, winit=self.winit)(deter)
        x0 = einops.rearrange(x0, '... (g h w c) -> ... h w (g c)', h=shape[0], w=shape[1], g=g)
        x1 = dense(self, 'sp1', 2 * self.units, stoch, self.act, self.norm, winit=self.winit)
        x1 = self.sub('sp2', nets.Linear, shape, winit=self.winit)(x1)
        x = self.sub('spnorm', nets.Norm, self.norm)(x0 + x1)
        return nets.act(self.act)(x)
