"""The model builders. Each takes the training features (to adapt its Normalization layer,
so the model takes raw feature values) and returns a compiled Keras model whose output is
the probability of the positive label."""
from __future__ import annotations

import keras
import numpy as np

from training.config import TrainConfig


def build_mlp(train_x: np.ndarray, config: TrainConfig) -> keras.Model:
    layers = [keras.Input((train_x.shape[1],), name="features"), _normalization(train_x)]
    for units in config.mlp_hidden_units:
        layers += [keras.layers.Dense(units, activation="relu"),
                   keras.layers.Dropout(config.mlp_dropout)]
    layers.append(keras.layers.Dense(1, activation="sigmoid", name="probability"))
    return _compiled(keras.Sequential(layers, name="mlp"), config.mlp_learning_rate)


def build_logistic_regression(train_x: np.ndarray, config: TrainConfig) -> keras.Model:
    model = keras.Sequential([
        keras.Input((train_x.shape[1],), name="features"),
        _normalization(train_x),
        keras.layers.Dense(1, activation="sigmoid", name="probability",
                           kernel_regularizer=keras.regularizers.L2(config.logistic_regression_l2)),
    ], name="logistic_regression")
    return _compiled(model, config.logistic_regression_learning_rate)


BUILDERS = {"mlp": build_mlp, "logistic_regression": build_logistic_regression}


def _normalization(train_x: np.ndarray) -> keras.layers.Normalization:
    layer = keras.layers.Normalization(name="normalization")
    layer.adapt(train_x)
    return layer


def _compiled(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model
