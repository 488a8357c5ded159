"""``nvflare.app_common.abstract.learner_spec`` without NVFlare: Learner (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import Learner

__all__ = ["Learner"]
