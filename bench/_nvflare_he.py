"""NVFlare 2.9's HE components driven by hand for bench/he.py (run by the NVFlare environment's python).

Usage: ``python _nvflare_he.py '{"layout": [...], "clients": K}'``; prints one ``HE-BENCH {json}`` line.
The client side is ``HEModelDecryptor`` / ``HEModelEncryptor`` on DXOs (FOBS-serialised for the wire, as
NVFlare sends them); the server side is ``HEInTimeAccumulateWeightedAggregator``,
``HEModelShareableGenerator`` and ``HEModelSerializeFilter`` (pre_save + post_save, as its persistor
calls them each round), with the FLContext properties its ScatterAndGather sets.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.decomposers import common_decomposers, numpy_decomposers
from nvflare.app_opt.he.intime_accumulate_model_aggregator import HEInTimeAccumulateWeightedAggregator
from nvflare.app_opt.he.model_decryptor import HEModelDecryptor
from nvflare.app_opt.he.model_encryptor import HEModelEncryptor
from nvflare.app_opt.he.model_serialize_filter import HEModelSerializeFilter
from nvflare.app_opt.he.model_shareable_generator import HEModelShareableGenerator
from nvflare.fuel.utils import fobs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _he_common as common  # noqa: E402


def contexts() -> tuple[Any, Any]:
    """NVFlare's HEBuilder keys: (client context with the secret key, server context without)."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        common.N,
        coeff_mod_bit_sizes=common.COEFF_BITS,
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
    )
    ctx.generate_relin_keys()
    ctx.global_scale = 2**common.SCALE_BITS
    return ts.context_from(ctx.serialize(save_secret_key=True)), ts.context_from(ctx.serialize())


def main() -> None:
    logging.disable(logging.WARNING)
    cfg = json.loads(sys.argv[1])
    common_decomposers.register()
    numpy_decomposers.register()
    client_ctx, server_ctx = contexts()
    enc, dec = HEModelEncryptor(), HEModelDecryptor()
    enc.tenseal_context = dec.tenseal_context = client_ctx
    enc.encrypt_layers = [True]  # what its START_RUN handler sets for "encrypt everything"
    agg = HEInTimeAccumulateWeightedAggregator(weigh_by_local_iter=False)
    agg.handle_event(EventType.START_RUN, FLContext())
    gen, ser = HEModelShareableGenerator(), HEModelSerializeFilter()
    gen.tenseal_context = ser.tenseal_context = server_ctx
    server = FLContext()
    layout = [(n, list(s)) for n, s in cfg["layout"]]
    state = {"learnable": make_model_learnable(common.model(layout, 0, 0.05), {})}

    def client_fl(site: str) -> FLContext:
        peer = FLContext()
        peer.set_prop(ReservedKey.IDENTITY_NAME, site, private=False, sticky=False)
        fl = FLContext()
        fl.set_peer_context(peer)
        return fl

    def server_task(rnd: int) -> bytes:
        server.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=False)
        server.set_prop(AppConstants.GLOBAL_MODEL, state["learnable"], private=True, sticky=False)
        agg.reset(server)
        return fobs.dumps(gen.learnable_to_shareable(state["learnable"], server))

    def client_decrypt(task: bytes, site: str) -> dict[str, np.ndarray]:
        shareable = dec.process(fobs.loads(task), client_fl(site))
        return {k: np.asarray(v) for k, v in from_shareable(shareable).data.items()}

    def client_encrypt(update: dict[str, np.ndarray], steps: int, site: str) -> bytes:
        dxo = DXO(DataKind.WEIGHT_DIFF, data=dict(update), meta={MetaKey.NUM_STEPS_CURRENT_ROUND: steps})
        return fobs.dumps(enc.process(dxo.to_shareable(), client_fl(site)))

    def server_accept(result: bytes, site: str, rnd: int) -> None:
        shareable = fobs.loads(result)
        shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
        shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, rnd)
        if not agg.accept(shareable, server):
            raise RuntimeError(f"NVFlare's aggregator rejected {site}'s result")

    def server_update(rnd: int) -> None:
        learnable = gen.shareable_to_learnable(agg.aggregate(server), server)
        learnable = ser.process_pre_save(learnable, server)  # what its persistor does around each save
        state["learnable"] = ser.process_post_save(learnable, server)

    out = common.run_round_bench(cfg, server_task, client_decrypt, client_encrypt, server_accept, server_update)
    common.emit({"tool": "nvflare", "version": __import__("nvflare").__version__, **out})


if __name__ == "__main__":
    main()
