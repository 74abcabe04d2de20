"""Adds the config packages that installed plugins declare to rnnlab's config search path.

A package that ships presets (experiments, sweeps, trainer variants) declares its config package as an
entry point and needs no Hydra plugin of its own::

    [project.entry-points."rnnlab.conf"]
    my_pkg = "my_pkg.conf"          # a package holding experiment/*.yaml, sweep/*.yaml, ...

Only rnnlab's own app (the search path that holds ``pkg://rnnlab.conf``) is changed. The entries
come after rnnlab's own configs and before ``--config-dir`` / ``hydra.searchpath``, which Hydra
handles as in any app.
"""

from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

RNNLAB_CONF = "pkg://rnnlab.conf"
GROUP = "rnnlab.conf"


def declared_config_packages() -> list[tuple[str, str]]:
    """``(distribution entry name, pkg:// path)`` for every ``rnnlab.conf`` entry point, by name."""
    return sorted((ep.name, f"pkg://{ep.value.strip()}") for ep in entry_points(group=GROUP))


class RnnlabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == RNNLAB_CONF for element in search_path.get_path()):
            return
        for name, path in declared_config_packages():
            search_path.append(provider=f"rnnlab.conf:{name}", path=path)
