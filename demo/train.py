"""Demo: train two small digit classifiers and log what happens inside them.

Writes two runs under --logdir (default runs/):
  healthy    ReLU MLP 64 -> 128 -> 64 -> 10 with Adam: gradients reach every layer.
  vanishing  a deep sigmoid stack trained with plain SGD: the early layers get
             gradients orders of magnitude smaller than the last ones (the
             planted problem the "Model Insight" tab makes visible).

Data: scikit-learn's 8x8 digits (shipped with the package, no download).
Runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from torch_visualization import SummaryWriter

CLASS_NAMES = [str(digit) for digit in range(10)]


def load_data(seed):
    """Digits as standardised float tensors, split 80/20."""
    digits = load_digits()
    features = digits.data.astype(np.float32) / 16.0
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    targets = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(targets))
    split = int(0.8 * len(order))
    train, test = order[:split], order[split:]
    as_tensors = lambda idx: (torch.from_numpy(features[idx]), torch.from_numpy(targets[idx]))
    return as_tensors(train), as_tensors(test)


def healthy_model():
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def vanishing_model():
    layers = [nn.Linear(64, 128), nn.Sigmoid()]
    for _ in range(6):
        layers += [nn.Linear(128, 128), nn.Sigmoid()]
    layers += [nn.Linear(128, 64), nn.Sigmoid(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def pca_2d(features):
    """Projects rows of `features` on their first two principal components."""
    centred = features - features.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def train_run(name, model, optimizer, data, logdir, epochs, log_every, batch_size, seed):
    """Trains `model`; `watch()` logs its insides, evaluation adds the rest.

    `watch()` logs every `log_every` optimizer steps: weights/<param>
    heatmaps, gradients/norm|mean_abs|max_abs|nonfinite bars, updates/ratio,
    activations/zero_fraction and the outputs/classes pie. At the same steps
    the held-out set gives accuracy, the predicted-class pie, the confusion
    matrix and a PCA scatter of the last hidden layer.
    """
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = data
    writer = SummaryWriter(os.path.join(logdir, name))
    handle = writer.watch(model, optimizer, log_every=log_every, class_names=CLASS_NAMES)
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(y_train))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            if step % log_every == 0:
                writer.add_scalar("loss/train", loss.item(), step)
                log_evaluation(writer, model, x_test, y_test, step)
            step += 1
    handle.remove()
    writer.close()
    return step


def log_evaluation(writer, model, x_test, y_test, step):
    """Held-out accuracy, predicted classes, confusion matrix and features."""
    model.eval()
    with torch.no_grad():
        hidden = model[:-1](x_test)
        logits = model[-1](hidden)
    predicted = logits.argmax(dim=1)
    writer.add_scalar("accuracy/test", (predicted == y_test).float().mean().item(), step)
    writer.add_class_pie(
        "outputs/predicted", torch.bincount(predicted, minlength=10), step,
        class_names=CLASS_NAMES,
    )
    writer.add_confusion_matrix(
        "eval/confusion", logits, y_test, step, class_names=CLASS_NAMES
    )
    writer.add_scatter(
        "features/pca", pca_2d(hidden), step, labels=y_test, class_names=CLASS_NAMES
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = load_data(args.seed)
    started = time.perf_counter()
    runs = {
        "healthy": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
        "vanishing": lambda m: torch.optim.SGD(m.parameters(), lr=0.05),
    }
    for name, make_optimizer in runs.items():
        torch.manual_seed(args.seed)
        model = healthy_model() if name == "healthy" else vanishing_model()
        steps = train_run(
            name, model, make_optimizer(model), data, args.logdir,
            args.epochs, args.log_every, args.batch_size, args.seed,
        )
        print("%-10s %5d steps" % (name, steps))
    print("wrote %s in %.1f s" % (args.logdir, time.perf_counter() - started))


if __name__ == "__main__":
    main()
