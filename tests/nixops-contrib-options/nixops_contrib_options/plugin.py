"""Registers the options module with NixOps 2.0 (see pyproject.toml)."""
import os.path

import nixops.plugins
from nixops.plugins import Plugin


class ContribOptions(Plugin):
    @staticmethod
    def nixexprs():
        return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "nix")]


@nixops.plugins.hookimpl
def plugin():
    return ContribOptions()
