"""Homomorphic-encryption components (TenSEAL CKKS): NVFlare's ``nvflare.app_opt.he`` classes."""
