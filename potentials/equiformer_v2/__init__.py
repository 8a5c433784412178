"""EquiformerV2 (Liao, Wood, Das and Smidt, ICLR 2024; arXiv 2306.12059), built from small modules.

Work in progress (issue 3): this package holds the exact SO(3) machinery the model is built on,
:mod:`.so3` (coefficient layouts, Wigner-D matrices, edge frames) and :mod:`.so2_conv`.
"""
