"""Command-line tools for what runs leave behind, each run as `python -m dreamerv3.tools.<name>`:
`plot` (learning curves), `score` (final scores by the paper's protocol), `inspect_logdir` (what a
logdir holds) and `upgrade_replay` (replay chunks of earlier versions to the current layout).
`curves` reads logdirs and published score files for `plot` and `score`."""
