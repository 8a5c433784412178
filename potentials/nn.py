"""Small building blocks shared by the models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Within the block, torch's default dtype is ``dtype`` (restored afterwards, also on error): for
    building a model in a precision, or for libraries that compute tables in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def mlp(sizes: Sequence[int], *, final_activation: bool = False, bias_last: bool = True) -> nn.Sequential:
    """Linear layers of widths ``sizes`` joined by SiLU; SiLU after the last too if ``final_activation``."""
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        layers.append(nn.Linear(n_in, n_out, bias=bias_last or not last))
        if not last or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` ``(n, ...)`` into ``dim_size`` bins given by ``index`` ``(n,)``."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add(0, index, src)


def segment_softmax(scores: Tensor, weights: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Weighted softmax of ``scores`` ``(n, H)`` over the rows sharing an ``index``.

    out_e = w_e exp(s_e) / sum_{e' in segment} w_e' exp(s_e'), with non-negative ``weights`` ``(n,)``;
    rows whose weight goes to zero drop out continuously.
    """
    top = scores.new_full((dim_size, scores.shape[1]), -torch.inf)
    top = top.scatter_reduce(0, index[:, None].expand_as(scores), scores.detach(), "amax")
    expo = weights[:, None] * torch.exp(scores - top[index])
    return expo / scatter_sum(expo, index, dim_size)[index].clamp_min(torch.finfo(scores.dtype).tiny)
