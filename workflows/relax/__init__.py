"""Structure relaxation: ASE's optimizers one structure at a time, and a batched engine for many."""

from .engine import relax_batch
from .result import RelaxResult
from .single import relax

__all__ = ["RelaxResult", "relax", "relax_batch"]
