"""``nvflare.fuel.flare_api`` without NVFlare: the FLARE API over flruntime's admin session.

See :mod:`flruntime.compat.flare_api`.
"""
