"""What a study is: the settings its trials were run under, kept as study user attrs when it is first
opened, and the sampler session that keeps a seeded sampler from drawing the same points twice.

* **Identity.** The search space (Optuna distributions), the ``custom_search_space`` function, the
  fixed overrides that can change a result, and the objective names. A later sweep with the same
  ``study_name`` must match all four, or it stops before any trial with one line suggesting a new
  ``study_name``: trials of another model or data set in one study would make its best trial, its
  pruner's medians and its plots meaningless. Overrides that cannot change a result
  (:data:`IGNORED`) do not count, nor do the sweeper's own settings (``n_trials``, ``n_jobs``,
  ``n_workers``, sampler, pruner, storage): Hydra passes ``hydra.*`` overrides to the sweeper apart.
  A study created before rnnlab stored these (or by plain Optuna) adopts the current ones.
* **Sampler sessions.** Each process that opens a study (a run, a resume, a worker, another machine)
  takes the next session number under the study-wide lock. Session 0, the first process of a new
  study, uses the configured seed, so a fresh sweep is reproducible as before; later sessions use a
  seed derived from (seed, session), so a resume or a second worker continues with new points
  instead of replaying the first session's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from rnnlab.errors import ConfigError

from .config import KEY

# Study user attrs.
SPACE_ATTR = "rnnlab:search_space"  # {key: Optuna distribution as JSON}
CUSTOM_ATTR = "rnnlab:custom_search_space"  # "module.function" or None
FIXED_ATTR = "rnnlab:fixed_overrides"  # {key: value as JSON}; "~" for a deleted key
OBJECTIVE_ATTR = "rnnlab:objective"  # [metric names]
SEEDS_ATTR = "rnnlab:seeds"  # [the seeds each trial runs], [] for one run of the config's seed
SESSIONS_ATTR = "rnnlab:sampler_sessions"  # processes that have opened the study so far
# Trial system attr: the seed the sampler that asked for the trial was built with.
SEED_ATTR = "rnnlab:sampler_seed"

# Overrides that cannot change a trial's result: where it is recorded, the trial's identity (set by
# the sweeper), Hydra's own settings, and the display of training.
IGNORED = (
    "hydra",
    "trial",
    "logger",
    "output_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)
DELETED = "~"


def ignored(key: str) -> bool:
    return any(key == p or key.startswith((f"{p}.", f"{p}/")) for p in IGNORED)


def canonical_fixed(lines: Sequence[str]) -> dict[str, str]:
    """Fixed overrides as ``{key: value}``, spelled one way: ``+a=1``, ``++a=1`` and ``a=1`` are the
    same, as are ``a='x'`` and ``a=x`` or ``1e-3`` and ``0.001``; keys in :data:`IGNORED` dropped."""
    out: dict[str, str] = {}
    for o in OverridesParser.create().parse_overrides(list(lines)):
        key = o.key_or_group + (f"@{o.package}" if o.package else "")
        if ignored(key):
            continue
        value = o.value()
        if o.is_delete():
            out[key] = DELETED if value is None else f"{DELETED}{value}"
        else:
            out[key] = json.dumps(value, sort_keys=True, default=str)
    return dict(sorted(out.items()))


class StudyIdentity:
    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        fixed: Sequence[str],
        custom_search_space: str | None,
        objective_names: Sequence[str],
        seeds: Sequence[int] = (),
    ) -> None:
        self.attrs: dict[str, Any] = {
            SPACE_ATTR: {k: distribution_to_json(d) for k, d in sorted(distributions.items())},
            CUSTOM_ATTR: custom_search_space or None,
            FIXED_ATTR: canonical_fixed(fixed),
            OBJECTIVE_ATTR: list(objective_names),
            SEEDS_ATTR: list(seeds),
        }

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """What differs from a study's stored attrs, one short phrase each (attrs it lacks adopt ours)."""
        out: list[str] = []
        if SPACE_ATTR in stored:
            have = {k: json_to_distribution(v) for k, v in stored[SPACE_ATTR].items()}
            want = {k: json_to_distribution(v) for k, v in self.attrs[SPACE_ATTR].items()}
            out += _diff("search space", have, want, _show_distribution)
        if CUSTOM_ATTR in stored and stored[CUSTOM_ATTR] != self.attrs[CUSTOM_ATTR]:
            out.append(f"custom_search_space {stored[CUSTOM_ATTR]!r} -> {self.attrs[CUSTOM_ATTR]!r}")
        if FIXED_ATTR in stored:
            out += _diff("fixed", stored[FIXED_ATTR], self.attrs[FIXED_ATTR], str)
        if OBJECTIVE_ATTR in stored and list(stored[OBJECTIVE_ATTR]) != self.attrs[OBJECTIVE_ATTR]:
            out.append(f"objective {stored[OBJECTIVE_ATTR]} -> {self.attrs[OBJECTIVE_ATTR]}")
        if SEEDS_ATTR in stored and list(stored[SEEDS_ATTR]) != self.attrs[SEEDS_ATTR]:
            out.append(f"seeds {_show_seeds(stored[SEEDS_ATTR])} -> {_show_seeds(self.attrs[SEEDS_ATTR])}")
        return out

    def check_or_store(self, study: optuna.Study, storage_label: str, sweep_dir: str) -> None:
        """Refuse (ConfigError, one line) a study run under other settings; store what it lacks.
        Call under the study-wide lock."""
        stored = study.user_attrs
        diffs = self.differences(stored)
        if diffs:
            name = study.study_name
            new = _free_name(study, name)
            hint = f"{KEY}.study_name={new}"
            if Path(sweep_dir).name == name:  # a preset's fixed sweep dir: the new study's jobs go elsewhere
                hint += f" hydra.sweep.dir={Path(sweep_dir).parent / new}"
            raise ConfigError(
                f"{KEY}.study_name",
                f"study {name!r} in {storage_label} was run with other settings ({'; '.join(diffs)}); "
                f"its trials would not be comparable: set {hint} for a new study, or run it as before",
            )
        for key, value in self.attrs.items():
            if key not in stored:
                study.set_user_attr(key, value)


def _diff(label: str, have: Mapping[str, Any], want: Mapping[str, Any], show: Any) -> list[str]:
    out = []
    for k in sorted(set(have) | set(want)):
        if k not in want:
            out.append(f"{label} {k}={show(have[k])} dropped")
        elif k not in have:
            out.append(f"{label} {k}={show(want[k])} added")
        elif have[k] != want[k]:
            out.append(f"{label} {k}: {show(have[k])} -> {show(want[k])}")
    return out


def _show_seeds(seeds: Sequence[int]) -> str:
    """A trial's seeds as the setting that gives them (a mean over other seeds is another objective)."""
    return f"{list(seeds)}" if seeds else "none (one run a trial)"


def _show_distribution(d: BaseDistribution) -> str:
    """A distribution as the sweep expression that gives it."""
    if isinstance(d, CategoricalDistribution):
        return f"choice({', '.join(map(str, d.choices))})"
    if isinstance(d, (IntDistribution, FloatDistribution)):
        if d.step not in (None, 1) or (isinstance(d, IntDistribution) and not d.log and d.step == 1):
            text = f"range({d.low}, {d.high}, {d.step})"
        else:
            text = f"interval({d.low}, {d.high})"
            text = f"int({text})" if isinstance(d, IntDistribution) else text
        return f"tag(log, {text})" if d.log else text
    return repr(d)


def _free_name(study: optuna.Study, name: str) -> str:
    try:
        taken = set(optuna.get_all_study_names(study._storage))
    except Exception:
        taken = {name}
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


def take_session(study: optuna.Study) -> int:
    """This process's sampler session: 0 for the first process of a study, then 1, 2, ... Call under
    the study-wide lock. A study from before sessions were counted starts at 1 if it has trials."""
    stored = study.user_attrs.get(SESSIONS_ATTR)
    session = int(stored) if stored is not None else int(bool(study.get_trials(deepcopy=False)))
    study.set_user_attr(SESSIONS_ATTR, session + 1)
    return session


def session_seed(seed: int | None, session: int) -> int | None:
    """The seed of a sampler session: ``seed`` itself in session 0, else one derived from both."""
    if seed is None or session == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"rnnlab:{seed}:{session}".encode()).digest()[:4], "big")
