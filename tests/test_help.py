"""Every config key is described beside it in the config file, and --help shows it."""

import elements
import pytest

from dreamerv3 import config as configlib
from dreamerv3 import confighelp


@pytest.fixture(scope='module')
def docs():
    return configlib.key_descriptions()


@pytest.fixture(scope='module')
def defaults():
    return elements.Config(configlib.load_presets()['defaults']).flat


def test_every_key_of_the_defaults_has_a_description(docs, defaults):
    # A key added to configs/dreamerv3.yaml needs a `# ...` description beside it.
    assert confighelp.undescribed(defaults, docs) == []


def test_descriptions_are_one_short_line(docs):
    long = {key: len(text) for key, text in docs.items() if len(text) > 100}
    assert long == {}
    assert all(text.strip() and '\n' not in text for text in docs.values())


def test_every_description_names_a_key_or_block(docs, defaults):
    # A description left behind by a renamed or removed key is stale.
    blocks = {key.rsplit('.', i)[0] for key in defaults for i in range(1, key.count('.') + 1)}
    assert sorted(set(docs) - set(defaults) - blocks) == []


TEXT = """\
# Free-form comments are not descriptions.
defaults:
  plain: 1  # A plain key.
  quoted: 'a # b'  # Not cut at the hash inside quotes.
  bare: 2
  section:  # The section.
    inner: x  # An inner key.
    # Free text: also not a description.
    # flow.a: First of the flow block.
    flow: {a: 1, b: 2}  # The flow block.
  env:
    suite: {size: 3}  # A suite block.
other:
  plain: 3  # Presets are not read.
"""


def test_both_forms_are_read_and_undescribed_keys_are_named():
    docs = confighelp.descriptions(TEXT)
    assert docs == {
        'plain': 'A plain key.',
        'quoted': 'Not cut at the hash inside quotes.',
        'section': 'The section.',
        'section.inner': 'An inner key.',
        'section.flow.a': 'First of the flow block.',
        'section.flow': 'The flow block.',
        'env.suite': 'A suite block.',
    }
    keys = ['plain', 'quoted', 'bare', 'section.inner', 'section.flow.a', 'section.flow.b']
    keys.append('env.suite.size')
    # Only suite blocks stand for their keys; `section.flow.b` needs its own description.
    assert confighelp.undescribed(keys, docs) == ['bare', 'section.flow.b']
    assert confighelp.describe('env.suite.size', docs) == 'A suite block.'


def test_help_regex_shows_value_type_and_description(docs):
    config, text = configlib.parse(['--help', 'train_ratio'])
    assert config is None
    assert text.splitlines() == [
        '--run.train_ratio = 32.0 (float)',
        f'    {docs["run.train_ratio"]}',
    ]


def test_help_regex_lists_every_matching_key(defaults):
    _, text = configlib.parse(['--help=replay\\.'])
    keys = [line.split(' = ')[0][2:] for line in text.splitlines() if line.startswith('--')]
    assert keys == [key for key in defaults if key.startswith('replay.')]
    assert '--replay.fracs.uniform = 1.0 (float)\n    Fraction sampled uniformly.' in text


def test_help_regex_shows_what_the_presets_changed():
    _, text = configlib.parse(['--configs', 'crafter', '--help', r'run\.train_ratio'])
    assert text.splitlines()[0] == '--run.train_ratio = 512.0 (float; 32.0 in defaults)'


def test_a_suite_key_shows_its_block_description(docs):
    _, text = configlib.parse(['--help', r'env\.atari\.repeat'])
    assert text.splitlines()[1].strip() == docs['env.atari']


@pytest.mark.parametrize(
    'pattern, message',
    [
        ('trainratio', "--help 'trainratio' matches no config key. Closest keys: run.train_ratio"),
        ('agent.opt.lrate', 'Closest keys: agent.opt.lr'),
        ('x(', "--help 'x(' is not a valid regular expression"),
    ],
)
def test_help_regex_without_match_names_the_closest_keys(pattern, message):
    with pytest.raises(configlib.ConfigError) as info:
        configlib.parse(['--help', pattern])
    assert message in str(info.value) and '\n' not in str(info.value)


def test_cli_help_regex_without_match_exits_2(capsys):
    from dreamerv3 import main

    with pytest.raises(SystemExit) as info:
        main.main(['--help', 'trainratio'])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == ''
    assert err.startswith("dreamerv3: error: --help 'trainratio' matches no config key.")
    assert 'run.train_ratio' in err.splitlines()[0]


def test_full_help_lists_every_key_with_its_description(docs, defaults):
    _, text = configlib.parse(['--help'])
    assert '--help KEY_REGEX' in text
    rows = {line.split()[0][2:]: line for line in text.splitlines() if line.startswith('  --')}
    assert set(defaults) <= set(rows)
    assert rows['run.train_ratio'].endswith(docs['run.train_ratio'])
    assert rows['agent.opt.lr'].endswith(docs['agent.opt.lr'])
    # A suite block's description appears once, on its first key.
    assert rows['env.atari.size'].endswith(docs['env.atari'])
    assert docs['env.atari'] not in rows['env.atari.repeat']
