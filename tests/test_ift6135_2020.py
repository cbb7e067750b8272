"""ift6135-2020's chapter module: the report's conclusions decided on known numbers."""
import math

import pandas as pd
import pytest

from repro.chapters import ift6135_2020 as ift2020

SIZES = ["(784, 256)", "(512, 384)", "(666, 333)", "(666, 666)"]
LRS = (0.05, 0.01, 0.005)


def losses(glorot, zero, normal):
    return pd.DataFrame({"glorot": glorot, "zero": zero, "normal": normal}, index=[1.0, 2.0, 3.0])


def test_init_claims_hold_on_the_reports_picture_and_fail_when_glorot_stalls():
    ln10 = math.log(10)
    train = losses([0.5, 0.3, 0.2], [ln10, ln10, ln10], [1.5, 1.0, 0.7])
    valid = losses([0.45, 0.3, 0.25], [ln10, ln10 + 0.001, ln10], [1.6, 1.3, 1.2])
    claims = ift2020.init_claims(train, valid, "ift6135-2020-s1", ran=True, why="")
    assert [c.name for c in claims] == ["glorot_learns", "zero_stalls", "init_order", "normal_overfits"]
    assert [c.status for c in claims] == ["holds"] * 4
    stalled = train.assign(glorot=[0.5, 0.3, 0.31])
    claims = ift2020.init_claims(stalled, valid, "ift6135-2020-s1", ran=True, why="")
    assert claims[0].status == "fails" and claims[0].evidence["first failing"] == "train epoch 3"


def grid(best=("relu", 0.05)):
    """Validation accuracies of the 36 networks: tanh 0.96, sigmoid 0.90, ReLU 0.975 (0.98 at ``best``)."""
    values = {}
    for s in SIZES:
        for act, acc in (("relu", 0.975), ("sigmoid", 0.90), ("tanh", 0.96)):
            for lr in LRS:
                values[(s, act, lr)] = 0.98 if (act, lr) == best else acc
    return pd.Series(values).rename_axis(["hidden_dims", "activation", "lr"]).sort_index()  # as pivot_table gives it


def test_grid_claims_read_the_sizes_in_the_given_order():
    valid = grid()
    table2 = {k for k, v in valid.items() if v >= 0.97}
    claims = {c.name: c for c in ift2020.grid_claims(valid, SIZES, table2, "ift6135-2020-s2", ran=True, why="")}
    assert claims["table2_exactly"].status == "holds" and claims["sigmoid_poor"].status == "holds"
    assert claims["tanh_some"].status == "fails"  # no tanh network reaches 97% here
    assert claims["best_relu_005"].status == "holds" and list(claims["best_relu_005"].evidence)[2:] == SIZES
    assert list(claims["size_matters_little"].evidence)[1:] == [f"best {s}" for s in SIZES]
    other = {c.name: c for c in ift2020.grid_claims(grid(best=("relu", 0.01)), SIZES, table2, "s", ran=True, why="")}
    assert other["best_relu_005"].status == "fails" and other["table2_exactly"].status == "holds"


@pytest.mark.parametrize("accuracies, expected", [
    ([0.97], "a single seed measures no spread"),
    ([0.970, 0.974], "another seed moves a network by about 1.4 times the 0.002 tolerance"),
])
def test_spread_reading(accuracies, expected):
    assert ift2020.spread_reading(pd.Series(accuracies), 0.002).startswith(expected)
