"""The heads' training loops in NumPy: softmax and mlp heads with Adam, several heads at once.

Why NumPy and not Keras: a softmax head on 1,000 x 1280 features is about 4 GFLOP for
50 epochs (tens of milliseconds on one core), but Keras spent ~4 s importing TensorFlow
and ~2 s on per-step and per-epoch bookkeeping around it. This loop does the same
arithmetic (`Flatten -> Dense softmax`, or `Dense(relu) -> Dropout -> Dense softmax`,
sparse cross-entropy plus `l2 * sum(kernel ** 2)` as Keras' `L2` regularizer, Keras'
Adam with its default betas and epsilon, Glorot-uniform kernels and zero biases) in
float32 with one BLAS call per layer and direction.

Several heads of the same shape on the same features train as one stack: the first
layer's kernels sit side by side in one `(D, heads * units)` matrix, so one GEMM serves
them all; the second layer (mlp) is a batched matmul. Each head has its own Adam state,
learning rate, L2 and dropout rate; all see the same minibatch order, initial weights
and dropout draws, so a head trained in a stack gets the weights it would get alone
(to float rounding). A head that early-stops leaves the stack.

Determinism contract: for a given seed, the initial weights come from
`numpy.random.default_rng(seed)`, then each epoch draws one permutation and, for the
mlp, one `(batch, units)` uniform matrix per step, from the same generator; nothing
depends on how many heads train together.
"""

import dataclasses

import numpy as np

# Keras' Adam defaults.
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-7
# BLAS threads by GEMM size (multiply-adds of the largest per-step product): below this
# many, a second thread costs more in synchronization than it gains (measured on 2 Zen 4
# vCPUs; see the README's stage-two benchmark).
TWO_THREADS_FROM = 512 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """What the heads of one stack share and what each has of its own.

    Attributes:
        head: `"softmax"` or `"mlp"`.
        num_classes: outputs of the last layer.
        hidden_units: width of the mlp hidden layer (ignored for softmax).
        learning_rates: one Adam learning rate per head.
        l2s: one L2 penalty per head (on every kernel).
        dropouts: one dropout rate per head (mlp).
        epochs: passes over the training features.
        batch_size: samples per step.
        early_stopping: patience in epochs on `val_loss` (0: train every epoch).
        seed: seed of initialization, shuffling and dropout.
    """

    head: str
    num_classes: int
    hidden_units: int
    learning_rates: tuple
    l2s: tuple
    dropouts: tuple
    epochs: int
    batch_size: int
    early_stopping: int
    seed: int

    @property
    def size(self):
        return len(self.learning_rates)


@dataclasses.dataclass(frozen=True)
class TrainedHead:
    """One head's result.

    Attributes:
        kernels: the dense layers' `(fan_in, fan_out)` float32 kernels, first to last.
        biases: their `(fan_out,)` biases.
        history: one dict per epoch run (`epoch`, `loss`, `accuracy`, `val_loss`,
            `val_accuracy`, and `top5_accuracy`, `val_top5_accuracy` with 5+ classes).
        epochs_run: epochs trained.
        best_epoch: the epoch whose weights were kept (the last without early stopping).
    """

    kernels: tuple
    biases: tuple
    history: tuple
    epochs_run: int
    best_epoch: int


def standardization(features):
    """Per-feature mean and scale of `(n, D)` training features, as scikit-learn's StandardScaler.

    Returns:
        `(mean, scale)`, two `(D,)` float32 arrays; a constant feature gets scale 1.
    """
    flat = np.asarray(features).reshape(len(features), -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    scale = flat.std(axis=0, dtype=np.float64)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def standardize(features, mean, scale):
    """`(features - mean) / scale` on flattened `(n, D)` float32 features."""
    flat = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    return (flat - mean) / scale


def blas_threads(rows, fan_in, fan_out):
    """BLAS threads for a `(rows, fan_in) @ (fan_in, fan_out)` product: 1 unless it is large."""
    return 2 if rows * fan_in * fan_out >= TWO_THREADS_FROM else 1


def _glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


class _Stack:
    """The weights and Adam state of `spec.size` heads, laid out for one GEMM per layer."""

    def __init__(self, spec, dim, rng):
        heads, classes = spec.size, spec.num_classes
        units = spec.hidden_units if spec.head == "mlp" else classes
        first = _glorot(rng, dim, units)  # Every head starts where it would start alone.
        self.params = [np.ascontiguousarray(np.repeat(first[:, None, :], heads, axis=1)),
                       np.zeros((heads, units), np.float32)]
        if spec.head == "mlp":
            second = _glorot(rng, units, classes)
            self.params += [np.repeat(second[None], heads, axis=0), np.zeros((heads, classes), np.float32)]
        self.moments = [np.zeros_like(p) for p in self.params]
        self.velocities = [np.zeros_like(p) for p in self.params]
        self.steps = 0
        self.scratch = {}
        self.mlp = spec.head == "mlp"
        self.lr = np.asarray(spec.learning_rates, np.float64)
        self.l2 = np.asarray(spec.l2s, np.float32)
        self.keep = 1.0 - np.asarray(spec.dropouts, np.float32)

    def keep_only(self, rows):
        """Drops every head but those at stack positions `rows`."""
        head_axis = [1, 0, 0, 0]
        for group in (self.params, self.moments, self.velocities):
            group[:] = [np.ascontiguousarray(np.take(p, rows, axis=head_axis[i]))
                        for i, p in enumerate(group)]
        self.lr, self.l2, self.keep = self.lr[rows], self.l2[rows], self.keep[rows]
        self.scratch = {}

    def head_weights(self, position):
        """`(kernels, biases)` of the head at a stack position, as copies."""
        kernels = [self.params[0][:, position].copy()]
        biases = [self.params[1][position].copy()]
        if self.mlp:
            kernels.append(self.params[2][position].copy())
            biases.append(self.params[3][position].copy())
        return kernels, biases

    def forward(self, x, uniform=None):
        """Logits `(heads, batch, classes)` and what the backward pass needs."""
        heads = self.lr.size
        z = (x @ self.params[0].reshape(x.shape[1], -1)).reshape(len(x), heads, -1)
        z += self.params[1]
        if not self.mlp:
            return z.transpose(1, 0, 2), None
        hidden = np.maximum(z, 0.0).transpose(1, 0, 2)  # (heads, batch, units)
        mask = None
        if uniform is not None:  # Inverted dropout, Keras' way; one draw shared by all heads.
            mask = (uniform[None] < self.keep[:, None, None]) / self.keep[:, None, None]
            hidden = hidden * mask
        return np.matmul(hidden, self.params[2]) + self.params[3][:, None, :], (hidden, mask)

    def step(self, x, labels, uniform):
        """One Adam step on a batch; returns `(heads, batch, classes)` probabilities and the loss."""
        logits, saved = self.forward(x, uniform)
        probabilities = softmax(logits)
        batch = len(x)
        rows = np.arange(batch)
        grad = probabilities.copy()
        grad[:, rows, labels] -= 1.0
        grad /= batch
        grads = []
        if self.mlp:
            hidden, mask = saved
            grads = [np.matmul(hidden.transpose(0, 2, 1), grad), grad.sum(axis=1)]
            back = np.matmul(grad, self.params[2].transpose(0, 2, 1))
            back *= hidden > 0  # ReLU (and dropped units, which are 0 too).
            if mask is not None:
                back *= mask
            grad = back
        grad_z = np.ascontiguousarray(grad.transpose(1, 0, 2)).reshape(batch, -1)
        grads = [(x.T @ grad_z).reshape(self.params[0].shape), grad.sum(axis=1)] + grads
        loss = -np.log(np.maximum(probabilities[:, rows, labels], 1e-7)).mean(axis=1)
        loss += self._penalty_and_decay(grads)
        self._adam(grads)
        return probabilities, loss

    def _penalty_and_decay(self, grads):
        """Adds the L2 gradients to `grads`; returns each head's penalty `(heads,)`."""
        penalty = np.zeros(self.lr.size, np.float64)
        if not self.l2.any():
            return penalty
        for index, shape, sums in ((0, (1, -1, 1), "dhu,dhu->h"), (2, (-1, 1, 1), "huc,huc->h")):
            if index < len(self.params):
                kernel = self.params[index]
                grads[index] += (2.0 * self.l2).reshape(shape) * kernel
                penalty += self.l2 * np.einsum(sums, kernel, kernel)
        return penalty

    def _adam(self, grads):
        self.steps += 1
        alpha = (self.lr * np.sqrt(1.0 - ADAM_BETA_2 ** self.steps)
                 / (1.0 - ADAM_BETA_1 ** self.steps)).astype(np.float32)
        shapes = [(1, -1, 1), (-1, 1), (-1, 1, 1), (-1, 1)]
        # In place, through one scratch array per parameter: large temporaries cost page
        # faults on every step (this halved the mlp's step time).
        for param, grad, m, v, shape in zip(self.params, grads, self.moments, self.velocities, shapes):
            scratch = self.scratch.setdefault(param.shape, np.empty_like(param))
            m *= ADAM_BETA_1
            m += np.multiply(grad, 1.0 - ADAM_BETA_1, out=scratch)
            v *= ADAM_BETA_2
            np.multiply(grad, grad, out=scratch)
            scratch *= 1.0 - ADAM_BETA_2
            v += scratch
            np.sqrt(v, out=scratch)
            scratch += ADAM_EPSILON
            np.divide(m, scratch, out=scratch)
            scratch *= alpha.reshape(shape)
            param -= scratch


def softmax(logits):
    """Softmax over the last axis, in the logits' dtype."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def _scores(probabilities, labels, top5):
    """Per-head `(loss, accuracy, top5 accuracy or None)` of `(heads, n, classes)` probabilities."""
    true = probabilities[:, np.arange(len(labels)), labels]
    loss = -np.log(np.maximum(true, 1e-7)).mean(axis=1)
    accuracy = (probabilities.argmax(axis=2) == labels).mean(axis=1)
    ranked = (probabilities > true[:, :, None]).sum(axis=2) < 5 if top5 else None
    return loss, accuracy, None if ranked is None else ranked.mean(axis=1)


def _train_epoch(stack, x_train, y_train, spec, rng, top5):
    """One pass in a fresh random order; returns `(3, heads)` sample-weighted sums of loss,
    accuracy and top-5 accuracy (accuracy again without top-5)."""
    count = len(y_train)
    order = rng.permutation(count)
    sums = np.zeros((3, stack.lr.size))
    for start in range(0, count, spec.batch_size):
        index = order[start:start + spec.batch_size]
        uniform = (rng.random((len(index), spec.hidden_units), dtype=np.float32)
                   if spec.head == "mlp" else None)
        # np.take copies the rows faster than fancy indexing (10-40% on 256 x 2048).
        probabilities, loss = stack.step(np.take(x_train, index, axis=0), y_train[index], uniform)
        _, accuracy, top = _scores(probabilities, y_train[index], top5)
        sums += len(index) * np.stack([loss, accuracy, top if top5 else accuracy])
    return sums


def _history_row(epoch, position, sums, count, validation, top5):
    val_loss, val_accuracy, val_top = validation
    row = {"epoch": epoch, "loss": sums[0, position] / count, "accuracy": sums[1, position] / count,
           "val_loss": float(val_loss[position]), "val_accuracy": float(val_accuracy[position])}
    if top5:
        row.update(top5_accuracy=sums[2, position] / count, val_top5_accuracy=float(val_top[position]))
    return row


class _EarlyStopping:
    """Keras' `EarlyStopping(monitor="val_loss", restore_best_weights=True)`, for one head."""

    def __init__(self, patience):
        self.patience, self.wait, self.best, self.best_epoch, self.weights = patience, 0, np.inf, 0, None

    def should_stop(self, epoch, val_loss, weights):
        """Records the epoch; `weights()` returns the head's current weights (called if best)."""
        self.wait += 1
        if val_loss < self.best:
            self.best, self.best_epoch, self.weights, self.wait = val_loss, epoch, weights(), 0
            return False
        return self.wait >= self.patience and epoch > 0


def train_stack(x_train, y_train, x_val, y_val, spec, log=None):
    """Trains `spec.size` heads of one shape together on standardized features.

    Args:
        x_train: `(n, D)` float32 standardized training features.
        y_train: `(n,)` int labels.
        x_val: `(m, D)` float32 standardized validation features (for `val_loss`).
        y_val: `(m,)` int labels.
        spec: a `StackSpec`.
        log: if given, called with one line per epoch (single heads).

    Returns:
        One `TrainedHead` per head, in `spec`'s order.
    """
    rng = np.random.default_rng(spec.seed)
    stack = _Stack(spec, x_train.shape[1], rng)
    top5 = spec.num_classes >= 5
    histories = [[] for _ in range(spec.size)]
    stoppers = [_EarlyStopping(spec.early_stopping) for _ in range(spec.size)]
    alive, results = list(range(spec.size)), [None] * spec.size  # alive: original index by position
    for epoch in range(spec.epochs):
        sums = _train_epoch(stack, x_train, y_train, spec, rng, top5)
        validation = _scores(softmax(stack.forward(x_val)[0]), y_val, top5)
        stopped = []
        for position, original in enumerate(alive):
            row = _history_row(epoch, position, sums, len(y_train), validation, top5)
            histories[original].append(row)
            if log:
                log(f"Epoch {epoch + 1}/{spec.epochs}: " + "  ".join(
                    f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
            if spec.early_stopping and stoppers[original].should_stop(
                    epoch, row["val_loss"], lambda p=position: stack.head_weights(p)):
                stopped.append(position)
        for position in stopped:
            original, stopper = alive[position], stoppers[alive[position]]
            results[original] = TrainedHead(*map(tuple, stopper.weights), tuple(histories[original]),
                                            epoch + 1, stopper.best_epoch)
        if stopped:
            keep = [p for p in range(len(alive)) if p not in stopped]
            alive = [alive[p] for p in keep]
            if not alive:
                break
            stack.keep_only(keep)
    for position, original in enumerate(alive):
        stopper = stoppers[original]
        kernels, biases = stopper.weights if spec.early_stopping else stack.head_weights(position)
        best_epoch = stopper.best_epoch if spec.early_stopping else spec.epochs - 1
        results[original] = TrainedHead(tuple(kernels), tuple(biases), tuple(histories[original]),
                                        spec.epochs, best_epoch)
    return results


def forward(features, kernels, biases):
    """Probabilities of a dense stack: ReLU between layers, softmax at the end.

    Args:
        features: `(n, D)` float32 standardized features.
        kernels: `(fan_in, fan_out)` kernels, first to last.
        biases: their `(fan_out,)` biases.

    Returns:
        `(n, num_classes)` float32 probabilities.
    """
    x = np.asarray(features, np.float32)
    for index, (kernel, bias) in enumerate(zip(kernels, biases)):
        x = x @ kernel + bias
        if index < len(kernels) - 1:
            np.maximum(x, 0.0, out=x)
    return softmax(x)
