import torch

import repro
from repro import gradcheck, models


def test_central_differences_match_an_analytic_gradient():
    theta = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    loss = lambda: (theta ** 3).sum() + torch.sin(theta).sum()
    numeric = gradcheck.central_differences(loss, theta, [0, 1, 2], 1e-5)
    exact = 3 * theta ** 2 + torch.cos(theta)
    assert torch.allclose(numeric, exact, rtol=1e-8)
    assert torch.equal(theta, torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64))  # restored


def test_truncation_error_shrinks_as_eps_squared():
    theta = torch.tensor([0.7], dtype=torch.float64)
    loss = lambda: torch.exp(theta).sum()
    errors = [abs(float(gradcheck.central_differences(loss, theta, [0], 1 / n)[0]) - float(torch.exp(theta)))
              for n in (10, 100)]
    assert 80 < errors[0] / errors[1] < 120  # O(eps^2)


def test_autograd_gradient_of_an_mlp_agrees_with_finite_differences():
    net = models.mlp((6, 5, 3), activation="tanh", dtype=torch.float64).initialize("glorot", 0)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    w = net.weights[0]
    loss = lambda: repro.cross_entropy(net(x)[0], y).mean()
    analytic = gradcheck.analytic_gradient(loss, w.requires_grad_(True))[0].flatten()[:8]
    numeric = gradcheck.central_differences(loss, w.data[0], range(8), 1e-6)
    assert gradcheck.relative_error(analytic, numeric).max() < 1e-7


def test_relative_error_has_a_floor():
    assert gradcheck.relative_error(torch.tensor([0.0]), torch.tensor([1e-9]))[0] == 1e-9 / 1e-5


def test_epsilon_grid_is_the_assignment_set():
    assert gradcheck.epsilon_grid() == [1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 500000]


def test_parameter_count_formula_matches_built_models_and_the_report():
    for hidden, reported in (((784, 256), 818970), ((512, 384), 602762), ((666, 333), 748261), ((666, 666), 973702)):
        dims = (784, *hidden, 10)
        assert models.mlp_parameter_count(dims) == reported == repro.count_parameters(models.mlp(dims))
    assert repro.count_parameters(models.MLPFamily((784, 512, 512, 10), "relu", n_members=4)) == 669706


def test_layer_table_lists_module_outputs_and_parameters():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 14 * 14, 10))
    table = models.layer_table(net, (1, 28, 28))
    assert list(table.index) == ["Conv2d-1", "MaxPool2d-2", "Flatten-3", "Linear-4"]
    assert table["parameters"].tolist() == [20, 0, 0, 3930]
    assert table.loc["MaxPool2d-2", "output shape"] == "[-1, 2, 14, 14]"
