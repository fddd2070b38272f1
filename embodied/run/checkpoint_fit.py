"""Whether the checkpoints a run loads fit its agent, checked before the agent compiles.

A run resumes from the newest checkpoint of its logdir, after loading `run.from_checkpoint`
when given. When the model config changed since (say `--agent.dyn.rssm.deter`), parameter
shapes differ and the load fails, but only after the agent compiled its train and report steps
for minutes. The JAX agent calls `check_resume` once it has created its parameters, before it
compiles its steps; `DoesNotFit` names the checkpoint, the parameters that differ and, once the
command line added them, the config keys that changed since the logdir's earlier run.
"""

import dataclasses

import elements

from . import checkpoints, reference_checkpoint

# The checkpoint directory (inside the logdir) that each script resumes its agent from; the
# other scripts resume none (eval_only loads only `run.from_checkpoint`).
RESUMES_FROM = {
    'train': 'ckpt',
    'train_eval': 'ckpt',
    'train_offline': 'ckpt',
    'parallel': 'ckpt/agent',
}
# Scripts that load `run.from_checkpoint` into the agent before resuming.
LOADS_FROM_CHECKPOINT = (*RESUMES_FROM, 'eval_only')
# Entries listed per kind of difference; the rest are counted.
SHOWN = 10


@dataclasses.dataclass
class Mismatch:
    """How checkpoint parameters differ from a model's: names and (name, saved, model) triples."""

    missing: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)
    differing: list = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.differing)

    def summary(self) -> str:
        """'3 parameters of another shape or dtype, 1 parameter missing from the checkpoint'."""
        parts = [
            (self.differing, 'of another shape or dtype'),
            (self.missing, 'missing from the checkpoint'),
            (self.unexpected, 'in the checkpoint but not in the model'),
        ]
        return ', '.join(f'{_count(items)} {what}' for items, what in parts if items)

    def listing(self) -> str:
        """The differing, missing and unexpected parameters, at most `SHOWN` of each kind."""
        sections = [
            (
                'Of another shape or dtype',
                [f'{name}: saved {saved}, model {model}' for name, saved, model in self.differing],
            ),
            ('Missing from the checkpoint', self.missing),
            ('Unexpected in the checkpoint', self.unexpected),
        ]
        lines = []
        for title, items in sections:
            if not items:
                continue
            lines.append(f'{title} ({len(items)}):')
            lines += [f'  {item}' for item in items[:SHOWN]]
            if len(items) > SHOWN:
                lines.append(f'  ... and {len(items) - SHOWN} more')
        return '\n'.join(lines)


class DoesNotFit(checkpoints.CheckpointError):
    """The agent parameters of a checkpoint differ from the model's; the message lists them.

    `resumed` says whether the checkpoint is the logdir's own (not `run.from_checkpoint`);
    `changes` holds the (key, before, after) of the config since the logdir's earlier run.
    """

    def __init__(self, folder, mismatch: Mismatch, resumed: bool, changes=()):
        self.folder = folder
        self.mismatch = mismatch
        self.resumed = resumed
        self.changes = list(changes)
        super().__init__(self._message())

    def naming(self, changes) -> 'DoesNotFit':
        """This error naming the config keys that changed since the logdir's earlier run.

        They explain only the logdir's own checkpoint, so one of `run.from_checkpoint` keeps
        its message.
        """
        if not self.resumed:
            return self
        return DoesNotFit(self.folder, self.mismatch, self.resumed, changes)

    def _message(self) -> str:
        head = f"The checkpoint '{self.folder}' does not fit this model: {self.mismatch.summary()}."
        if self.changes:
            shown = [f'{key} ({old!r} -> {new!r})' for key, old, new in self.changes[:SHOWN]]
            more = len(self.changes) - SHOWN
            changed = ', '.join(shown + ([f'and {more} more'] if more > 0 else []))
            head += (
                f' The config changed since the run that wrote it: {changed}. Run with that '
                'config again (it is kept in the config.yaml of the logdir), or use a new '
                '--logdir for the new one.'
            )
        elif self.resumed:
            head += (
                ' It was written by a run with another model config: run with the config of '
                'that run, or use a new --logdir.'
            )
        else:
            head += (
                ' It was written by a run with another model config: run with that config, or '
                'load only the parameters that fit with --run.from_checkpoint_regex.'
            )
        return f'{head}\n{self.mismatch.listing()}'


def compare(saved: dict, model: dict, partial: bool = False) -> Mismatch:
    """How the arrays `saved` (name -> array) differ from `model`'s in names, shapes and dtypes.

    With `partial` (a load of only some parameters), parameters absent from `saved` are fine.
    """
    missing = [] if partial else sorted(set(model) - set(saved))
    unexpected = sorted(set(saved) - set(model))
    common = set(saved) & set(model)
    differing = [
        (name, _describe(saved[name]), _describe(model[name]))
        for name in _mirrors_last(common)
        if tuple(saved[name].shape) != tuple(model[name].shape)
        or str(saved[name].dtype) != str(model[name].dtype)
    ]
    return Mismatch(missing, unexpected, differing)


def planned_loads(config: elements.Config) -> list:
    """(folders, regex, resumed) of each checkpoint the script of `config` loads its agent from.

    In the order the script loads them: `run.from_checkpoint` first, then the logdir's own.
    `folders` are the complete checkpoint folders, newest first; the first that verifies loads.
    Nothing for configs of no script (agents built outside the command line).
    """
    script = config.get('script')
    run = config.get('run') or {}
    loads = []
    if script in LOADS_FROM_CHECKPOINT and run.get('from_checkpoint'):
        try:
            folders = checkpoints.candidates(run['from_checkpoint'])
        except checkpoints.CheckpointError:
            folders = []  # Loading it says what is missing; a rebuilt policy never loads it.
        loads += [(folders, run.get('from_checkpoint_regex', ''), False)]
    if script in RESUMES_FROM:
        directory = elements.Path(config.logdir) / RESUMES_FROM[script]
        loads += [(checkpoints.complete(directory), '', True)]
    return [(folders, regex, resumed) for folders, regex, resumed in loads if folders]


def check_resume(config: elements.Config, shapes: dict, read) -> None:
    """Raise DoesNotFit when a checkpoint the run will load does not fit the model's `shapes`.

    `shapes` maps the model's parameter names to arrays or shape structs; `read(data, regex)`
    gives the parameters of checkpoint data under the model's names, as loading reads them.
    Checkpoints that do not verify or hold no agent parameters are left to the load, which
    reports them.
    """
    for folders, regex, resumed in planned_loads(config):
        folder, data = _newest_agent_data(folders)
        if not isinstance(data, dict) or not isinstance(data.get('params'), dict):
            continue
        try:
            if not resumed:
                data = reference_checkpoint.adapt(data, shapes, regex, str(folder), quiet=True)
            mismatch = compare(read(data, regex), shapes, partial=bool(regex))
        except ValueError as e:
            # What loading `run.from_checkpoint` raises too: no entry matches the regex, or a
            # reference entry has no place in this agent.
            raise checkpoints.CheckpointError(str(e)) from e
        if mismatch:
            raise DoesNotFit(folder, mismatch, resumed)


def _newest_agent_data(folders):
    """(folder, agent data) of the first of `folders` that verifies, as loading picks it."""
    for folder in folders:
        try:
            return folder, checkpoints.read(folder, ['agent'])['agent']
        except checkpoints.Corrupt:
            continue
        except KeyError:
            break  # Written by another script; loading it says so.
    return None, None


def _describe(array) -> str:
    return f'{array.dtype}{list(array.shape)}'


def _count(items) -> str:
    return '1 parameter' if len(items) == 1 else f'{len(items)} parameters'


def _mirrors_last(names) -> list:
    """`names` sorted, with entries that end in another entry's name (optimizer state) last."""
    names = set(names)

    def mirrors(name):
        return any(name[i + 1 :] in names for i, c in enumerate(name) if c == '/')

    return sorted(names, key=lambda name: (mirrors(name), name))
