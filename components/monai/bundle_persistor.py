"""The global model of a MONAI bundle (NVFlare's ``MonaiBundlePersistor``).

At the start of the run the bundle's training config is read with MONAI's ``ConfigParser`` and its
network definition (``network_def``) is instantiated, on the CPU, as the initial global model; with
``source_ckpt_filename`` the bundle's checkpoint provides the initial weights. Everything else is
:class:`~flruntime.components.persistors.pt_file.PTFileModelPersistor`: the global and best models are
saved in the server's workspace (so ``PTFileModelLocator`` offers them for cross-site evaluation), and a
persistor filter (``filter_id``, e.g. HE serialisation) sees every model loaded or saved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import torch
from flruntime.components.persistors.pt_file import PTFileModelPersistor
from monai.bundle import ConfigParser

from flruntime.graph.refs import Ref
from flruntime.roles import PersistorFilter
from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)


class MonaiBundlePersistor(PTFileModelPersistor):
    """Loads a bundle's network as the initial global model and saves global models as PyTorch files.

    Args:
        bundle_root: the bundle's folder, relative to the app folder (``config/spleen_ct_segmentation``).
        config_train_filename: the bundle's training config (or a list of configs merged in order), relative
            to the bundle.
        network_def_key: the config id of the network definition.
        exclude_vars: a regular expression of variables not sent to clients (see PTFileModelPersistor).
        global_model_file_name: the global model's file, in the server's workspace.
        best_global_model_file_name: the best global model's file, in the server's workspace.
        source_ckpt_filename: a checkpoint with the initial weights, relative to the bundle
            (``models/model.pt``); without it the network starts from its own initialisation. It always loads with
            ``torch.load(weights_only=True)`` (tensors and plain containers), even where the site sets
            ``FLRUNTIME_ALLOW_PICKLE_CHECKPOINTS``.
        filter_id: a persistor filter applied after loading and before saving.
    """

    def __init__(
        self,
        bundle_root: str,
        config_train_filename: str | list[str] = "configs/train.json",
        network_def_key: str = "network_def",
        exclude_vars: str | None = None,
        global_model_file_name: str = "FL_global_model.pt",
        best_global_model_file_name: str = "best_FL_global_model.pt",
        source_ckpt_filename: str | None = None,
        filter_id: Annotated[str, Ref(PersistorFilter)] | None = None,
    ) -> None:
        super().__init__(
            exclude_vars=exclude_vars,
            global_model_file_name=global_model_file_name,
            best_global_model_file_name=best_global_model_file_name,
            filter_id=filter_id,
            load_weights_only=True,
        )
        if not bundle_root:
            raise ValueError("bundle_root must name the bundle's folder")
        files = [config_train_filename] if isinstance(config_train_filename, str) else list(config_train_filename)
        if not files or not all(isinstance(f, str) and f for f in files):
            raise ValueError(f"config_train_filename must name one or more config files, got {config_train_filename!r}")
        self.bundle_root = bundle_root
        self.config_train_filename = files
        self.network_def_key = network_def_key
        self.source_ckpt_filename = source_ckpt_filename or None

    def bundle_dir(self, ctx: RunContext) -> Path:
        """The bundle's folder on this site."""
        return ctx.app_dir / self.bundle_root

    def _configs(self, ctx: RunContext) -> list[Path]:
        configs = [self.bundle_dir(ctx) / name for name in self.config_train_filename]
        missing = [str(p) for p in configs if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"bundle config not found: {', '.join(missing)} (check bundle_root)")
        return configs

    def preflight(self, ctx: RunContext) -> None:
        """Check, before the run starts, that the bundle's training config is there.

        Raises:
            FileNotFoundError: when a config file is missing.
        """
        self._configs(ctx)

    def setup(self, ctx: RunContext) -> None:
        """Build the bundle's network (and point at its checkpoint), then start as a PTFileModelPersistor.

        Raises:
            FileNotFoundError: when a config file is missing.
            TypeError: when ``network_def_key`` does not build a ``torch.nn.Module``.
        """
        bundle = self.bundle_dir(ctx)
        configs = self._configs(ctx)
        parser = ConfigParser()
        parser.read_config([str(p) for p in configs])
        parser["bundle_root"] = str(bundle)
        network = parser.get_parsed_content(self.network_def_key)
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"'{self.network_def_key}' of {configs[0]} is a {type(network).__name__}, not a network")
        self.model = network
        if self.source_ckpt_filename:
            self.source_ckpt_file_full_name = str(bundle / self.source_ckpt_filename)
        log.info("initial model: %s from %s", type(network).__name__, bundle)
        super().setup(ctx)
