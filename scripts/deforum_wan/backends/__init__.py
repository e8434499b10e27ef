"""Wan backends: the official ``wan`` package and diffusers, behind one small interface.

``load_backend`` picks one (official first under ``auto``) and reports why the others
were skipped. Importing this package does not import torch; trying a backend does.
"""
from .base import Backend, BackendOptions, GenerateRequest
from .chain import load_backend

__all__ = ["Backend", "BackendOptions", "GenerateRequest", "load_backend"]
