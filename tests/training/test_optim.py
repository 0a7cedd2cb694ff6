"""The loss and the label form must always match.

Pairing a one-hot loss with integer labels once trained silently at chance level;
these tests feed the labels the dataset really produces into the loss really used.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.data.records import make_dataset
from imgclf.data.shards import read_meta
from imgclf.params import TrainParams
from imgclf.training.optim import make_accuracy, make_loss, make_optimizer, uses_one_hot

LOSSES = ["sparse_categorical_crossentropy", "categorical_crossentropy"]


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_matches_the_dataset_labels(tiny_prepared: Path, loss: str) -> None:
    train = TrainParams(loss=loss)
    meta = read_meta(tiny_prepared)
    ds = make_dataset(tiny_prepared, meta, "train", 16, one_hot=uses_one_hot(train))
    _, y = next(iter(ds))
    index = y.numpy().argmax(1) if uses_one_hot(train) else y.numpy()
    n = len(index)
    perfect = np.full((n, 3), 1e-6, np.float32)
    perfect[np.arange(n), index] = 1 - 2e-6
    uniform = np.full((n, 3), 1 / 3, np.float32)
    fn = make_loss(train)
    assert float(fn(y, perfect)) < 1e-4
    assert float(fn(y, uniform)) == pytest.approx(np.log(3), rel=1e-4)
    acc = make_accuracy(train)
    acc.update_state(y, perfect)
    assert float(acc.result()) == 1.0


def test_label_smoothing_is_applied() -> None:
    train = TrainParams(loss="categorical_crossentropy", label_smoothing=0.3)
    y = np.eye(3, dtype=np.float32)
    # Smoothing makes a perfectly confident prediction cost something.
    assert float(make_loss(train)(y, np.eye(3, dtype=np.float32) * 0.999 + 0.0005)) > 0.5


@pytest.mark.parametrize("name,cls", [("adam", keras.optimizers.Adam),
                                      ("adamw", keras.optimizers.AdamW),
                                      ("sgd", keras.optimizers.SGD),
                                      ("rmsprop", keras.optimizers.RMSprop)])
def test_optimizers(name: str, cls: type) -> None:
    opt = make_optimizer(TrainParams(optimizer=name), 0.02, 100)
    assert isinstance(opt, cls)
    assert float(opt.learning_rate) == pytest.approx(0.02)


def test_cosine_schedule_decays_to_zero() -> None:
    opt = make_optimizer(TrainParams(lr_schedule="cosine"), 0.1, 100)
    schedule = opt._learning_rate  # the schedule object; .learning_rate is its current value
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(50)) == pytest.approx(0.05, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("schedule,end", [("cosine", 0.0), ("constant", 0.1)])
def test_warmup_rises_from_zero_then_follows_the_schedule(schedule: str, end: float) -> None:
    opt = make_optimizer(TrainParams(lr_schedule=schedule), 0.1, 100, warmup_steps=20)
    rate = opt._learning_rate
    assert float(rate(0)) == pytest.approx(0.0, abs=1e-7)
    assert float(rate(10)) == pytest.approx(0.05, rel=1e-3)  # halfway up
    assert float(rate(20)) == pytest.approx(0.1, rel=1e-3)  # the top, at the end of warmup
    # Cosine decays over the remaining 80 steps, to 0 at the last; constant stays put.
    assert float(rate(60)) == pytest.approx(0.05 if schedule == "cosine" else 0.1, rel=1e-3)
    assert float(rate(100)) == pytest.approx(end, abs=1e-7)


def test_ema_keeps_an_average_of_the_weights_and_saves_it() -> None:
    # One weight, pulled from 0 toward 1 by a squared loss: the average lags behind the
    # raw weight, and fit ends by writing the average into the model.
    train = TrainParams(optimizer="sgd", momentum=0.0, ema=0.9)
    opt = make_optimizer(train, 0.1, 50)
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.9)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                                     kernel_initializer="zeros")])
    model.compile(opt, loss="mse")
    x, y = np.ones((8, 1), np.float32), np.ones((8, 1), np.float32)
    history = []
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: history.append(float(model.layers[0].kernel.numpy()[0, 0])))])
    raw = history[-1]
    saved = float(model.layers[0].kernel.numpy()[0, 0])
    assert 0 < saved < raw < 1  # the average, not the last step's weight
    plain = make_optimizer(TrainParams(), 0.1, 50)
    assert not plain.use_ema
