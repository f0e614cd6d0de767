"""Conversation scripts: explicit decision trees kept as data (YAML or JSON).

- `model`: the node and step types;
- `loader`: parse and validate a script file, every error naming its node;
- `preamble`: what a call says before the script, which no script can remove;
- `recording_consent`: the all-party-consent states, as data with sources;
- `interpreter`: the pure function (script, memory, position, reply) → next step.
"""
