"""Tests of lrlab.lab.models.zoo: shapes and parameter counts worked out by hand from the
layer sizes, and torch's own layers (same seed) as the reference for the architecture
and its default initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrlab.errors import LrlabError
from lrlab.lab.data.datasets import Dataset
from lrlab.lab.models.zoo import MODELS, build_model, count_params, mlp_layout, parse_hidden


def fake(name: str, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    """A Dataset with the given metadata and two examples (models only read metadata)."""
    x = torch.zeros(2, *input_shape)
    y = torch.zeros(2, dtype=torch.int64)
    return Dataset(
        name=name, x_train=x, y_train=y, x_test=x, y_test=y,
        num_classes=num_classes, input_shape=input_shape, source="test",
    )


FASHION = fake("fashion-mnist", (1, 28, 28), 10)
CLASSIFICATION = fake("classification", (100,), 2)
BLOBS = fake("blobs", (10,), 2)


def conv_out(size: int, kernel: int, pad: int = 0, stride: int = 1) -> int:
    return (size + 2 * pad - kernel) // stride + 1


# --- LeNet ------------------------------------------------------------------------------


def test_lenet_shapes_layer_by_layer():
    model = build_model("lenet", FASHION)
    s1 = conv_out(28, 5, pad=2)  # 28
    p1 = s1 // 2  # 14
    s2 = conv_out(p1, 5)  # 10
    p2 = s2 // 2  # 5
    expected = [
        (6, s1, s1), (6, s1, s1), (6, p1, p1),
        (16, s2, s2), (16, s2, s2), (16, p2, p2),
        (16 * p2 * p2,), (120,), (120,), (84,), (84,), (10,),
    ]
    assert 16 * p2 * p2 == 400
    x = torch.randn(3, 1, 28, 28)
    shapes = []
    for layer in model.children():
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == expected


def test_lenet_is_the_modern_variant():
    kinds = [type(m) for m in build_model("lenet").children()]
    assert kinds.count(nn.ReLU) == 4 and kinds.count(nn.MaxPool2d) == 2
    assert nn.Sigmoid not in kinds and nn.AvgPool2d not in kinds


def test_lenet_parameter_count():
    conv1 = 6 * 1 * 5 * 5 + 6
    conv2 = 16 * 6 * 5 * 5 + 16
    fc1 = 400 * 120 + 120
    fc2 = 120 * 84 + 84
    fc3 = 84 * 10 + 10
    total = conv1 + conv2 + fc1 + fc2 + fc3
    assert total == 61706
    assert count_params(build_model("lenet", FASHION)) == total
    assert count_params(build_model("lenet")) == total


def test_lenet_forward_and_reference_with_default_init():
    torch.manual_seed(0)
    ours = build_model("lenet", FASHION)
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )
    x = torch.randn(5, 1, 28, 28)
    out = ours(x)
    assert out.shape == (5, 10)
    torch.testing.assert_close(out, reference(x))


def test_lenet_takes_classes_from_dataset():
    model = build_model("lenet", fake("fashion-mnist", (1, 28, 28), 3))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_lenet_refuses_tabular_data_and_hidden():
    with pytest.raises(LrlabError, match="lenet") as exc:
        build_model("lenet", CLASSIFICATION)
    assert "\n" not in str(exc.value)
    with pytest.raises(LrlabError, match="hidden"):
        build_model("lenet", FASHION, hidden=[10])


# --- MLP --------------------------------------------------------------------------------


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    ("dataset", "layout"),
    [
        (CLASSIFICATION, [100, 100, 50, 2]),  # "100-100-50-2" (DL Fundamentals unit 6)
        (BLOBS, [10, 50, 2]),  # "10-50-2"
        (FASHION, [784, 256, 10]),  # D2L's MLP
    ],
)
def test_mlp_defaults_per_dataset(dataset, layout):
    model = build_model("mlp", dataset)
    assert mlp_layout(dataset) == layout
    assert linear_shapes(model) == list(zip(layout[:-1], layout[1:], strict=True))
    expected_params = sum(i * o + o for i, o in zip(layout[:-1], layout[1:], strict=True))
    assert count_params(model) == expected_params
    kinds = [type(m) for m in model.children()]
    assert kinds.count(nn.ReLU) == len(layout) - 2
    assert kinds[-1] is nn.Linear
    assert model(torch.zeros(4, *dataset.input_shape)).shape == (4, dataset.num_classes)


def test_mlp_unit6_parameter_count():
    # 100-100-50-2 written out
    assert count_params(build_model("mlp", CLASSIFICATION)) == (
        (100 * 100 + 100) + (100 * 50 + 50) + (50 * 2 + 2)
    )


def test_mlp_matches_torch_reference_with_default_init():
    torch.manual_seed(1)
    ours = build_model("mlp", CLASSIFICATION, hidden=[30, 20])
    torch.manual_seed(1)
    reference = nn.Sequential(
        nn.Linear(100, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 2)
    )
    x = torch.randn(6, 100)
    torch.testing.assert_close(ours(x), reference(x))


def test_mlp_custom_and_empty_hidden():
    assert linear_shapes(build_model("mlp", BLOBS, hidden=[8, 4])) == [(10, 8), (8, 4), (4, 2)]
    assert linear_shapes(build_model("mlp", BLOBS, hidden=[])) == [(10, 2)]


@pytest.mark.parametrize("hidden", [[0], [10, -1], [2.5], [True]])
def test_mlp_bad_hidden(hidden):
    with pytest.raises(LrlabError, match="hidden"):
        build_model("mlp", BLOBS, hidden=hidden)


def test_mlp_needs_a_dataset():
    with pytest.raises(LrlabError, match="dataset"):
        build_model("mlp")


def test_unknown_model_lists_models():
    with pytest.raises(LrlabError) as exc:
        build_model("resnet", FASHION)
    assert all(name in str(exc.value) for name in MODELS)


# --- parse_hidden -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sizes"), [("100-50", [100, 50]), ("50", [50]), (" 7 - 3 ", [7, 3])]
)
def test_parse_hidden(text, sizes):
    assert parse_hidden(text) == sizes


@pytest.mark.parametrize("text", ["", "  ", "100--50", "-5", "100-", "a-b", "0", "1.5", "10,20"])
def test_parse_hidden_errors(text):
    with pytest.raises(LrlabError) as exc:
        parse_hidden(text)
    message = str(exc.value)
    assert "\n" not in message and "100-50" in message
