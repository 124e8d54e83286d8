"""The model builders and the registry that names them.

To add a model: write a settings dataclass and a builder, and register them together with
`@register("name", Settings)`; then list the name in TrainConfig.models (training/config.py).
A builder receives the task ("binary", "multiclass" or "regression"), the encoded training
inputs and its settings, and returns a compiled Keras model. `preprocessing` gives it the
model's input and the features ready for dense layers; `output_layer` and `compile_for` add
what the task needs. Every model so built takes the contract's input (one float32 column per
feature: numbers, category indices, NaN for missing) and gives the contract's output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
from keras import ops

from contract.errors import InputError
from contract.schema import Schema


@dataclass(frozen=True)
class Inputs:
    """The training split as a builder sees it, encoded as the model's input."""
    schema: Schema
    x: np.ndarray  # float32 [rows, features]: numbers, category indices, NaN for missing
    y: np.ndarray  # binary 1 for the positive label; multiclass the label index; regression value

    @property
    def task(self) -> str:
        return self.schema.task


@dataclass(frozen=True)
class Registered:
    build: Callable[[str, Inputs, object], keras.Model]
    settings: type


REGISTRY: dict[str, Registered] = {}


def register(name: str, settings: type):
    """Register `builder(task, inputs, settings)` under `name`, with its settings class."""
    def add(builder):
        REGISTRY[name] = Registered(builder, settings)
        return builder
    return add


def build(name: str, inputs: Inputs, settings=None) -> keras.Model:
    """The compiled model `name` for the training inputs; `settings` default to its class's."""
    if name not in REGISTRY:
        raise InputError(f"no model named {name!r}; registered: {', '.join(REGISTRY)}")
    registered = REGISTRY[name]
    return registered.build(inputs.task, inputs, settings or registered.settings())


# The building blocks every builder shares

def preprocessing(inputs: Inputs) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model's input and, from it, every feature ready for dense layers: missing numbers
    imputed with the training split's median (and a 0/1 "was missing" column where nullable),
    categories one-hot (a missing category is all zeros plus its "was missing" column), then
    standardized with the training split's statistics. Builtin ops only, so LiteRT runs it as
    it is: the NaN test is `x != x`.

    Each step takes the whole row at once, and only what the schema needs is in the graph (no
    NaN handling without a nullable feature, nothing but the Normalization when every feature
    is a number): LiteRT runs each op of a model on every call, and slicing WDBC's 30 columns
    out one at a time made a call on one row 10.5 us instead of 2.3 (README, "Model speed")."""
    features = inputs.schema.features
    x = keras.Input((len(features),), name="features")
    encoded = x
    if any(feature.nullable for feature in features):
        missing = ops.not_equal(x, x)
        # The row with each missing value imputed, then a 0/1 "was missing" column per feature.
        encoded = ops.concatenate([ops.where(missing, imputed_values(inputs), x),
                                   ops.cast(missing, "float32")], axis=1)
    # Each output column: the column of `encoded` it takes and, for one of a category's one-hot
    # columns, the index it stands for (the category's column taken once per index), else -1.
    sources, codes = [], []
    for i, feature in enumerate(features):
        if feature.is_category:
            sources += [i] * len(feature.categories)
            codes += range(len(feature.categories))
        else:
            sources.append(i)
            codes.append(-1)
        if feature.nullable:
            sources.append(len(features) + i)
            codes.append(-1)
    encoded = columns(encoded, sources)
    codes = np.array(codes, dtype=np.float32)
    if (codes >= 0).any():
        encoded = ops.where(codes >= 0, ops.cast(ops.equal(encoded, codes), "float32"), encoded)
    normalization = keras.layers.Normalization(name="normalization")
    normalization.adapt(np.asarray(keras.Model(x, encoded)(inputs.x)))
    return x, normalization(encoded)


def imputed_values(inputs: Inputs) -> np.ndarray:
    """What stands for a missing value, per feature: a number's median on the training split;
    for a category -1, which is no category's index."""
    values = np.zeros(len(inputs.schema.features), dtype=np.float32)
    for i, feature in enumerate(inputs.schema.features):
        present = inputs.x[:, i][~np.isnan(inputs.x[:, i])]
        values[i] = -1 if feature.is_category else np.median(present) if len(present) else 0
    return values


def columns(x: keras.KerasTensor, indices: list[int]) -> keras.KerasTensor:
    """The columns `indices` of `x` (which holds no NaN), in that order: a product with a 0/1
    matrix, which LiteRT runs as one FULLY_CONNECTED (an optimized kernel, exact here) where
    slices and a concatenation are a reference kernel per column."""
    width = x.shape[1]
    if indices == list(range(width)):
        return x
    selection = np.zeros((width, len(indices)), dtype=np.float32)
    selection[indices, np.arange(len(indices))] = 1
    return ops.matmul(x, selection)


def output_layer(task: str, inputs: Inputs, hidden: keras.KerasTensor,
                 regularizer=None) -> keras.KerasTensor:
    """The contract's output: binary the positive label's probability [N, 1]; multiclass a
    probability per label [N, K]; regression the value in the target's units [N, 1] (the
    dense layer learns the standardized target, the last layer scales it back)."""
    if task == "binary":
        return keras.layers.Dense(1, activation="sigmoid", name="probability",
                                  kernel_regularizer=regularizer)(hidden)
    if task == "multiclass":
        return keras.layers.Dense(len(inputs.schema.labels), activation="softmax",
                                  name="probabilities", kernel_regularizer=regularizer)(hidden)
    standardized = keras.layers.Dense(1, name="standardized", kernel_regularizer=regularizer)(
        hidden)
    mean, std = float(np.mean(inputs.y)), float(np.std(inputs.y))
    return keras.layers.Rescaling(std or 1.0, offset=mean, name="value")(standardized)


LOSSES = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
          "regression": "mean_squared_error"}


def compile_for(task: str, model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSSES[task])
    return model


# The models

@dataclass(frozen=True)
class MLPSettings:
    hidden_units: tuple[int, ...] = (16, 8)
    dropout: float = 0.1
    learning_rate: float = 1e-3


@register("mlp", MLPSettings)
def build_mlp(task: str, inputs: Inputs, settings: MLPSettings) -> keras.Model:
    x, hidden = preprocessing(inputs)
    for units in settings.hidden_units:
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
        hidden = keras.layers.Dropout(settings.dropout)(hidden)
    model = keras.Model(x, output_layer(task, inputs, hidden), name="mlp")
    return compile_for(task, model, settings.learning_rate)


@dataclass(frozen=True)
class LinearSettings:
    l2: float = 1e-3
    learning_rate: float = 1e-2


@register("linear", LinearSettings)
def build_linear(task: str, inputs: Inputs, settings: LinearSettings) -> keras.Model:
    """Logistic regression (binary), softmax regression (multiclass) or linear regression."""
    x, features = preprocessing(inputs)
    model = keras.Model(x, output_layer(task, inputs, features,
                                        keras.regularizers.L2(settings.l2)), name="linear")
    return compile_for(task, model, settings.learning_rate)
