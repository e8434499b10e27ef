"""One window on one engine: the official ``wan`` package and diffusers behind one small
interface (``base``), the chain that picks one (``chain.load_backend``), multi-GPU groups, the
diffusers speed features and the pool that owns loaded backends. No torch at import."""
