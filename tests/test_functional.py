"""Property tests of the functional core: padding side, padding amount and batch mates never change a result."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from st_pooling import functional as F

DIM = 8


def _gem(states, mask):
    return F.generalized_mean(states, mask, torch.tensor([3.0]))


def _gem_clamp(states, mask):
    return F.generalized_mean(states, mask, torch.tensor([2.5]), negatives="clamp")


def _weighted_sum(states, mask):
    return F.weighted_sum(states, mask, states[..., 0] * 3.0)


REDUCTIONS = {
    "mean": F.masked_mean, "max": F.masked_max, "first": F.first_token, "last": F.last_token,
    "weighted_mean": F.position_weighted_mean, "gem": _gem, "gem_clamp": _gem_clamp, "weighted_sum": _weighted_sum,
}


def pad(rows: list[torch.Tensor], side: str, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of (len_i, dim) rows to one batch, on ``side``, with ``extra`` more padding than needed.

    Padding holds large garbage values, so any leak of padding into a result shows."""
    width = max(len(r) for r in rows) + extra
    states = torch.full((len(rows), width, DIM), 1e4)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, row in enumerate(rows):
        if side == "right":
            states[i, : len(row)], mask[i, : len(row)] = row, 1
        else:
            states[i, width - len(row):], mask[i, width - len(row):] = row, 1
    return states, mask


rows_strategy = st.lists(
    st.integers(min_value=1, max_value=9).flatmap(
        lambda n: st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=n * DIM, max_size=n * DIM)
    ),
    min_size=1, max_size=5,
).map(lambda rows: [torch.tensor(r, dtype=torch.float32).view(-1, DIM) for r in rows])


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, extra=st.integers(0, 3))
def test_padding_side_and_amount_do_not_change_results(name, rows, extra):
    reduce = REDUCTIONS[name]
    right = reduce(*pad(rows, "right"))
    left = reduce(*pad(rows, "left", extra))
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(right).all()


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=30, deadline=None)
@given(rows=rows_strategy)
def test_batch_mates_do_not_change_a_texts_result(name, rows):
    reduce = REDUCTIONS[name]
    together = reduce(*pad(rows, "right"))
    for i, row in enumerate(rows):
        alone = reduce(*pad([row], "right"))
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)


def test_reductions_match_their_definitions():
    states = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(F.masked_mean(states, mask), torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(F.masked_max(states, mask), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(F.last_token(states, mask), torch.tensor([[3.0, 4.0]]))
    # weights 1, 2: (1*1 + 2*3) / 3, (1*-2 + 2*4) / 3
    torch.testing.assert_close(F.position_weighted_mean(states, mask), torch.tensor([[7 / 3, 2.0]]))
    # GeM p=1 is the mean, p large approaches the max (of magnitudes, keeping the sign)
    torch.testing.assert_close(F.generalized_mean(states, mask, torch.tensor([1.0])), torch.tensor([[2.0, 1.0]]),
                               atol=1e-5, rtol=1e-5)
    gem3 = F.generalized_mean(states, mask, torch.tensor([3.0]))
    expected = torch.tensor([[((1 + 27) / 2) ** (1 / 3), ((-8 + 64) / 2) ** (1 / 3)]])
    torch.testing.assert_close(gem3, expected)
    assert F.generalized_mean(states, mask, torch.tensor([60.0]))[0, 1] > 3.9


def test_empty_rows_pool_to_zero_not_nan():
    states = torch.randn(2, 4, DIM)
    mask = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0]])
    for name, reduce in REDUCTIONS.items():
        out = reduce(states, mask)
        assert torch.isfinite(out).all(), name
        assert torch.count_nonzero(out[0]) == 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_kind(dtype):
    states = (torch.randn(3, 50, DIM) * 300).to(dtype)  # large activations, as decoder sinks produce
    mask = torch.ones(3, 50, dtype=torch.int64)
    for name, reduce in REDUCTIONS.items():
        out = reduce(states, mask)
        assert out.dtype == dtype, name
        assert torch.isfinite(out).all(), name
    reference = F.masked_mean(states.float(), mask)
    torch.testing.assert_close(F.masked_mean(states, mask).float(), reference, atol=0.5, rtol=1e-2)


def test_drop_first_token_keeps_single_token_rows():
    mask = torch.tensor([[0, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    assert F.drop_first_token(mask).tolist() == [[0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0]]


def test_unflatten_gives_the_padded_layout():
    rows = [torch.randn(n, DIM) for n in (3, 1, 5)]
    flat = torch.cat(rows).unsqueeze(0)  # (1, total, dim)
    cu = torch.tensor([0, 3, 4, 9])
    states, mask = F.unflatten(flat, cu)
    expected_states, expected_mask = pad(rows, "right")
    assert torch.equal(mask, expected_mask)
    torch.testing.assert_close(F.masked_mean(states, mask), F.masked_mean(expected_states, expected_mask))


def test_gem_rejects_unknown_negative_handling():
    with pytest.raises(ValueError, match="negatives"):
        F.generalized_mean(torch.randn(1, 2, DIM), torch.ones(1, 2), torch.tensor([3.0]), negatives="abs")
