"""The heads' training loops in NumPy: softmax and mlp heads with Adam, several heads at once.

Why NumPy and not Keras: a softmax head on 1,000 x 1280 features is about 4 GFLOP for
50 epochs (tens of milliseconds on one core), but Keras spent ~4 s importing TensorFlow
and ~2 s on per-step and per-epoch bookkeeping around it. This loop does the same
arithmetic (`Flatten -> Dense softmax`, or `Dense(relu) -> Dropout -> Dense softmax`,
sparse cross-entropy plus `l2 * sum(kernel ** 2)` as Keras' `L2` regularizer, Keras'
Adam with its default betas and epsilon, Glorot-uniform kernels and zero biases) in
float32, with few NumPy calls a step.

Several heads of the same shape on the same features train as one stack: the first
layer's kernels sit side by side in one matrix, so one GEMM serves them all; the second
layer (mlp) is a batched matmul (`DenseStack`). Softmax heads train in `SoftmaxStack`,
the same arithmetic laid out for its skinny products (1,000 x 1280 features, 50 epochs:
0.18 s became 0.09-0.12 s on one Zen 4 core; see docs/speed.md). Each head has its own
Adam state, learning rate, L2 and dropout rate; all see the same minibatch order, initial weights
and dropout draws, so a head trained in a stack gets the weights it would get alone
(to float rounding). A head that early-stops leaves the stack.

Determinism contract: for a given seed, the initial weights come from
`numpy.random.default_rng(seed)`, then each epoch draws one permutation and, for the
mlp, one `(batch, units)` uniform matrix per step, from the same generator; nothing
depends on how many heads train together.
"""

import collections
import dataclasses
from concurrent import futures

import numpy as np

# Keras' Adam defaults.
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-7
# BLAS threads by GEMM size (multiply-adds of the largest per-step product): below this
# many, a second thread costs more in synchronization than it gains (measured on 2 Zen 4
# vCPUs; see docs/speed.md, stage two).
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
    """Per-feature mean and scale of `(n, D)` training features: standardization with a variance floor.

    `scale_j = sqrt(var_j + mean_k var_k)`. A feature that varies more than the average is
    all but standardized; one that varies much less is divided by about the average spread
    rather than by its own, so it keeps its small relative size instead of being blown up to
    unit variance (noise the head would fit), while the features' overall scale is fixed
    (the lab's softmax undertrained raw VGG16 features). Against scikit-learn's
    StandardScaler, on 8 real MobileNet and MobileNetV2 caches (`benchmarks/head_scaling.py`,
    docs/speed.md), validation accuracy rose by 1.0 point on average for the softmax head and
    0.3-0.4 for mlp and logreg; no head lost more than 0.2 points on any cache.

    Returns:
        `(mean, scale)`, two `(D,)` float32 arrays; scale 1 if every feature is constant.
    """
    flat = np.asarray(features).reshape(len(features), -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    variance = flat.var(axis=0, dtype=np.float64)
    scale = np.sqrt(variance + variance.mean())
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


# OpenBLAS multiplies a product of up to about a million multiply-adds with its small-matrix
# kernels, which skip packing the operands. A skinny product such as (256, 1280) @ (1280, 10)
# ran 2x faster here as four (64, 1280) @ (1280, 10) products (one NumPy call on a stack of
# matrices); other BLAS libraries compute the same products either way.
SMALL_PRODUCT = 1_000_000
# Chunks of fewer rows than this are not worth their calls.
MIN_CHUNK_ROWS = 16
# Softmax stacks validate a block of epochs with one product; at most this many bytes of
# weight snapshots and validation probabilities wait for it.
VALIDATION_BLOCK_BYTES = 32 * 1024 * 1024
# Without early stopping, validation comes in about this many blocks, all but the last
# scored while later epochs train.
VALIDATION_BLOCKS = 5


def chunk_rows(inner, outer, count=None):
    """Rows per product of an `(n, inner) @ (inner, outer)` split by rows; 0: do not split.

    With `count` (n), the rows of equal chunks that cover all but fewer than a chunk's count of rows.
    """
    rows = SMALL_PRODUCT // max(1, inner * outer)
    if rows < MIN_CHUNK_ROWS:
        return 0
    return rows if count is None else count // -(-count // rows)


def chunked_matmul(a, b):
    """`a @ b` for `(n, k)` `a` and `(k, m)` `b`, in chunks of `chunk_rows` rows."""
    rows, count = chunk_rows(a.shape[1], b.shape[1], len(a)), len(a)
    whole = count // rows * rows if rows else 0
    if whole < 2 * rows or not rows:
        return a @ b
    out = np.empty((count, b.shape[1]), np.result_type(a, b))
    np.matmul(a[:whole].reshape(-1, rows, a.shape[1]), b, out=out[:whole].reshape(-1, rows, b.shape[1]))
    if whole < count:
        np.matmul(a[whole:], b, out=out[whole:])
    return out


def chunked_gradient(g, x, out):
    """`out[...] = g @ x` for a skinny `(m, n)` `g` and `(n, D)` `x`, in chunks of the columns of `x`.

    Each chunk writes its own columns of `out`: no temporary and no sum over chunks (chunks of
    rows, summed, ran as fast here; one `(10, 256) @ (256, 1280)` product 1.4x slower).
    """
    width, dim = chunk_rows(len(x), len(g), x.shape[1]), x.shape[1]
    whole = dim // width * width if width else 0
    if whole < 2 * width or not width:
        return np.matmul(g, x, out=out)
    np.matmul(g, x[:, :whole].reshape(len(x), -1, width).transpose(1, 0, 2),
              out=out[:, :whole].reshape(len(g), -1, width).transpose(1, 0, 2))
    if whole < dim:
        np.matmul(g, x[:, whole:], out=out[:, whole:])
    return out


def _softmax_in_place(values, axis):
    values -= np.maximum.reduce(values, axis=axis, keepdims=True)
    np.exp(values, out=values)
    values /= np.add.reduce(values, axis=axis, keepdims=True)
    return values


class DenseStack:
    """The weights and Adam state of `spec.size` heads, laid out for one GEMM per layer.

    The first layer's kernels sit side by side in a `(D, heads, units)` array, the mlp's
    second layer in a `(heads, units, classes)` one. `train_stack` trains mlp heads with it,
    softmax heads with `SoftmaxStack` (the same arithmetic, laid out for speed).
    """

    def __init__(self, spec, dim, rng, dtype=np.float32):
        heads, classes = spec.size, spec.num_classes
        units = spec.hidden_units if spec.head == "mlp" else classes
        first = _glorot(rng, dim, units)  # Every head starts where it would start alone.
        self.params = [np.repeat(first[:, None, :], heads, axis=1), np.zeros((heads, units))]
        if spec.head == "mlp":
            second = _glorot(rng, units, classes)
            self.params += [np.repeat(second[None], heads, axis=0), np.zeros((heads, classes))]
        self.params = [np.ascontiguousarray(p, dtype) for p in self.params]
        self.moments = [np.zeros_like(p) for p in self.params]
        self.velocities = [np.zeros_like(p) for p in self.params]
        self.steps = 0
        self.scratch = {}
        self.mlp, self.top5 = spec.head == "mlp", classes >= 5
        self.lr = np.asarray(spec.learning_rates, np.float64)
        self.l2 = np.asarray(spec.l2s, dtype)
        self.keep = 1.0 - np.asarray(spec.dropouts, dtype)
        self.gradients = None

    @property
    def parameters(self):
        """Every trained array (the last `step`'s `gradients` match them one to one)."""
        return self.params

    def validation_block(self, epochs, validation_rows):  # pylint: disable=unused-argument
        """Epochs validated together: one (a forward pass per epoch is one large product already)."""
        return 1

    def keep_only(self, rows):
        """Drops every head but those at stack positions `rows`."""
        head_axis = [1, 0, 0, 0]
        for group in (self.params, self.moments, self.velocities):
            group[:] = [np.ascontiguousarray(np.take(p, rows, axis=head_axis[i]))
                        for i, p in enumerate(group)]
        self.lr, self.l2, self.keep = self.lr[rows], self.l2[rows], self.keep[rows]
        self.scratch = {}

    def snapshot(self):
        """A copy of every head's weights, for `head_weights` and `validate`."""
        return [p.copy() for p in self.params]

    def head_weights(self, position, snapshot):
        """`(kernels, biases)` of the head at a stack position in a `snapshot`, as copies."""
        kernels, biases = [snapshot[0][:, position].copy()], [snapshot[1][position].copy()]
        if self.mlp:
            kernels.append(snapshot[2][position].copy())
            biases.append(snapshot[3][position].copy())
        return kernels, biases

    def forward(self, x, uniform=None, params=None):
        """Logits `(heads, batch, classes)` and what the backward pass needs."""
        params = self.params if params is None else params
        heads = self.lr.size
        z = (x @ params[0].reshape(x.shape[1], -1)).reshape(len(x), heads, -1)
        z += params[1]
        if not self.mlp:
            return z.transpose(1, 0, 2), None
        hidden = np.maximum(z, 0.0).transpose(1, 0, 2)  # (heads, batch, units)
        mask = None
        if uniform is not None:  # Inverted dropout, Keras' way; one draw shared by all heads.
            mask = (uniform[None] < self.keep[:, None, None]) / self.keep[:, None, None]
            hidden = hidden * mask
        return np.matmul(hidden, params[2]) + params[3][:, None, :], (hidden, mask)

    def onehot(self, labels):  # pylint: disable=unused-argument
        """What `step`'s `onehot` takes for these labels: nothing (see `SoftmaxStack.onehot`)."""
        return None

    def epoch_scores(self, count):  # pylint: disable=unused-argument
        """What `step`'s `scores` takes: nothing, each batch is scored in its step (see `SoftmaxStack`)."""
        return None

    def step(self, x, labels, uniform=None, update=True, onehot=None,  # pylint: disable=unused-argument
             scores=None):
        """One Adam step on a batch (only the gradients without `update`).

        Returns:
            `(3, heads)` float64 sums over the batch: loss (cross-entropy plus the L2
            penalty), correct predictions, top-5 hits (correct ones with under 5 classes).
        """
        logits, saved = self.forward(x, uniform)
        probabilities = softmax(logits)
        batch = len(x)
        sums = _sums(probabilities, labels, self.top5)
        grad = probabilities
        grad[:, np.arange(batch), labels] -= 1.0
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
        self.gradients = [(x.T @ grad_z).reshape(self.params[0].shape), grad.sum(axis=1)] + grads
        sums[0] += batch * self._penalty_and_decay(self.gradients)
        if update:
            self._adam(self.gradients)
        return sums

    def validate(self, x_val, y_val, snapshots):
        """`(epochs, 3, heads)` mean validation loss, accuracy and top-5 accuracy of each snapshot."""
        return np.stack([_sums(softmax(self.forward(x_val, params=s)[0]), y_val, self.top5) / len(y_val)
                         for s in snapshots])

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
                 / (1.0 - ADAM_BETA_1 ** self.steps)).astype(self.params[0].dtype)
        shapes = [(1, -1, 1), (-1, 1), (-1, 1, 1), (-1, 1)]
        # In place, through one scratch array per parameter: large temporaries cost page
        # faults on every step (this halved the mlp's step time).
        for param, grad, m, v, shape in zip(self.params, grads, self.moments, self.velocities, shapes):
            scratch = self.scratch.setdefault(param.shape, np.empty_like(param))
            _adam_moments(grad, m, v, scratch)
            scratch *= alpha.reshape(shape)
            param -= scratch


def _adam_moments(grad, m, v, scratch):
    """Keras' Adam moments, in place: `m`, `v` updated, `scratch = m / (sqrt(v) + epsilon)`."""
    m *= ADAM_BETA_1
    m += np.multiply(grad, 1.0 - ADAM_BETA_1, out=scratch)
    v *= ADAM_BETA_2
    np.multiply(grad, grad, out=scratch)
    scratch *= 1.0 - ADAM_BETA_2
    v += scratch
    np.sqrt(v, out=scratch)
    scratch += ADAM_EPSILON
    np.divide(m, scratch, out=scratch)


class SoftmaxStack:
    """Softmax heads laid out class-major: the same arithmetic as `DenseStack`'s, faster.

    Every head's parameters live in one flat vector, `theta`: the kernels as one
    `(heads * classes, D)` matrix (each head's kernel transposed, head after head), then the
    `(heads, classes)` biases. Adam updates all of them in one pass of vector operations;
    logits come out `(heads, classes, batch)`, so the softmax reduces over a short middle
    axis (NumPy reduces a last axis of 10 ten times slower); the kernels' gradient is one
    `(heads * classes, batch) @ (batch, D)` product. Skinny products are split into row
    chunks (`chunked_matmul`), and `validate` scores a block of epochs with one product.
    """

    def __init__(self, spec, dim, rng, dtype=np.float32):
        heads, self.classes, self.dim = spec.size, spec.num_classes, dim
        first = _glorot(rng, dim, self.classes)  # Every head starts where it would start alone.
        self.theta = np.concatenate([np.tile(first.T, (heads, 1)).ravel(),
                                     np.zeros(heads * self.classes)]).astype(dtype)
        self.lr = np.asarray(spec.learning_rates, np.float64)
        self.l2 = np.asarray(spec.l2s, dtype)
        self.top5 = self.classes >= 5
        self.eye = np.eye(self.classes, dtype=dtype)
        self.steps = 0
        self._allocate(np.zeros_like(self.theta), np.zeros_like(self.theta))

    def _allocate(self, moments, velocities):
        """Views of `theta` and the gradient, Adam's state and the per-parameter learning rates."""
        self.moments, self.velocities = moments, velocities
        self.kernel_t, self.bias = self.views(self.theta)
        self.gradient = np.zeros_like(self.theta)
        self.grad_kernel_t, grad_bias = self.views(self.gradient)
        self.grad_bias = grad_bias[..., 0]
        self.scratch = np.empty_like(self.theta)
        self.l2_any = bool(self.l2.any())
        per_head = np.repeat(self.lr, self.classes)
        self.rates = np.concatenate([np.repeat(per_head, self.dim), per_head]).astype(self.theta.dtype)

    @property
    def parameters(self):
        """Every trained array (the last `step`'s `gradients` match them one to one)."""
        return [self.theta]

    @property
    def gradients(self):
        return [self.gradient]

    def views(self, flat):
        """`(kernels (heads * classes, D), biases (heads, classes, 1))`, views of a flat vector."""
        rows = flat.size // (self.dim + 1)
        return (flat[:rows * self.dim].reshape(rows, self.dim),
                flat[rows * self.dim:].reshape(-1, self.classes, 1))

    def validation_block(self, epochs, validation_rows):
        """Epochs validated with one product: all of them, or as many as `VALIDATION_BLOCK_BYTES` hold."""
        rows = self.theta.size // (self.dim + 1)  # heads * classes
        # A snapshot, and the logits, probabilities and temporaries of the product.
        per_epoch = self.theta.nbytes + 4 * validation_rows * rows * self.theta.itemsize
        return max(1, min(epochs, VALIDATION_BLOCK_BYTES // per_epoch))

    def keep_only(self, rows):
        """Drops every head but those at stack positions `rows`."""
        def pick(flat):
            kernels, biases = self.views(flat)
            return np.concatenate([kernels.reshape(-1, self.classes * self.dim)[rows].ravel(),
                                   biases[rows].ravel()])

        moments, velocities, self.theta = pick(self.moments), pick(self.velocities), pick(self.theta)
        self.lr, self.l2 = self.lr[rows], self.l2[rows]
        self._allocate(moments, velocities)

    def snapshot(self):
        """A copy of every head's weights, for `head_weights` and `validate`."""
        return self.theta.copy()

    def head_weights(self, position, snapshot):
        """`(kernels, biases)` of the head at a stack position in a `snapshot`, as `(D, classes)` copies."""
        kernels, biases = self.views(snapshot)
        return ([kernels[position * self.classes:(position + 1) * self.classes].T.copy()],
                [biases[position, :, 0].copy()])

    def probabilities(self, x):
        """`(heads, classes, n)` probabilities of `(n, D)` features."""
        logits = chunked_matmul(x, self.kernel_t.T)
        probabilities = np.ascontiguousarray(logits.T).reshape(len(self.bias), self.classes, len(x))
        probabilities += self.bias
        return _softmax_in_place(probabilities, 1)

    def onehot(self, labels):
        """`(classes, n)` one-hot columns of `(n,)` labels (an epoch's, made once; `step` takes slices)."""
        return self.eye[:, labels]

    def epoch_scores(self, count):
        """A `(heads, classes, count)` buffer for an epoch's probabilities (see `step`)."""
        return np.empty((self.lr.size, self.classes, count), self.theta.dtype)

    def step(self, x, labels, uniform=None, update=True, onehot=None,  # pylint: disable=unused-argument
             scores=None):
        """One Adam step on a batch (only the gradients without `update`); see `DenseStack.step`.

        With `scores`, a `(heads, classes, batch)` slice of an `epoch_scores` buffer, the batch's
        probabilities are kept there, to be scored with the whole epoch's (fewer NumPy calls), and
        the sums returned hold the L2 penalty only.
        """
        batch = len(x)
        probabilities = self.probabilities(x)
        onehot = self.eye[:, labels] if onehot is None else onehot
        if scores is None:
            sums = _class_major_sums(probabilities, onehot, labels, self.top5)
        else:
            scores[...] = probabilities
            sums = np.zeros((3, self.lr.size))
        grad = probabilities
        grad -= onehot
        grad *= 1.0 / batch
        chunked_gradient(grad.reshape(-1, batch), x, out=self.grad_kernel_t)
        np.add.reduce(grad, axis=2, out=self.grad_bias)
        if self.l2_any:
            sums[0] += batch * self._penalty_and_decay()
        if update:
            self._adam()
        return sums

    def validate(self, x_val, y_val, snapshots):
        """`(epochs, 3, heads)` mean validation loss, accuracy and top-5 accuracy of each snapshot.

        One `(m, D) @ (D, epochs * heads * classes)` product scores them all.
        """
        stacked = np.stack(snapshots)
        rows = stacked.shape[1] // (self.dim + 1)
        kernels = stacked[:, :rows * self.dim].reshape(-1, self.dim)
        biases = stacked[:, rows * self.dim:].reshape(len(snapshots), -1, self.classes, 1)
        logits = np.ascontiguousarray((x_val @ kernels.T).T).reshape(*biases.shape[:3], len(x_val))
        logits += biases
        # The scores from the logits: the softmax is monotonic, and -log p_true = logsumexp - z_true.
        true = np.add.reduce(logits * self.eye[:, y_val], axis=-2)
        sums = np.empty((3, *true.shape[:-1]))
        sums[1] = (logits.argmax(axis=-2) == y_val).sum(axis=-1)
        sums[2] = ((np.add.reduce(logits > true[..., None, :], axis=-2) < 5).sum(axis=-1)
                   if self.top5 else sums[1])
        largest = np.maximum.reduce(logits, axis=-2, keepdims=True)
        logits -= largest
        np.exp(logits, out=logits)
        loss = np.log(np.add.reduce(logits, axis=-2)) + largest[..., 0, :] - true
        sums[0] = np.minimum(loss, -np.log(1e-7)).sum(axis=-1, dtype=np.float64)  # p clipped at 1e-7
        return sums.transpose(1, 0, 2) / len(y_val)

    def _penalty_and_decay(self):
        """Adds the L2 gradients to the kernels' gradient; returns each head's penalty `(heads,)`."""
        kernels = self.kernel_t.reshape(self.lr.size, -1)
        gradient = self.grad_kernel_t.reshape(self.lr.size, -1)
        gradient += (2.0 * self.l2)[:, None] * kernels
        return self.l2 * np.einsum("hk,hk->h", kernels, kernels, dtype=np.float64)

    def _adam(self):
        self.steps += 1
        correction = np.sqrt(1.0 - ADAM_BETA_2 ** self.steps) / (1.0 - ADAM_BETA_1 ** self.steps)
        _adam_moments(self.gradient, self.moments, self.velocities, self.scratch)
        self.scratch *= self.rates
        self.scratch *= correction
        self.theta -= self.scratch


def softmax(logits):
    """Softmax over the last axis, in the logits' dtype."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def _sums(probabilities, labels, top5):
    """`(3, heads)` sums of loss, correct and top-5 hits over `(heads, n, classes)` probabilities."""
    true = probabilities[:, np.arange(len(labels)), labels]
    loss = -np.log(np.maximum(true, 1e-7)).sum(axis=1, dtype=np.float64)
    correct = (probabilities.argmax(axis=2) == labels).sum(axis=1)
    hits = ((probabilities > true[:, :, None]).sum(axis=2) < 5).sum(axis=1) if top5 else correct
    return np.stack([loss, correct, hits]).astype(np.float64)


def _class_major_sums(probabilities, onehot, labels, top5):
    """`(3, ...)` sums over samples, like `_sums`, of `(..., classes, n)` probabilities."""
    true = np.add.reduce(probabilities * onehot, axis=-2)
    sums = np.empty((3, *true.shape[:-1]))
    sums[1] = (probabilities.argmax(axis=-2) == labels).sum(axis=-1)
    sums[2] = ((np.add.reduce(probabilities > true[..., None, :], axis=-2) < 5).sum(axis=-1)
               if top5 else sums[1])
    sums[0] = -np.log(np.maximum(true, 1e-7)).sum(axis=-1, dtype=np.float64)
    return sums


def _train_epoch(stack, x_train, y_train, spec, rng, batch):
    """One pass in a fresh random order; returns `(3, heads)` means of loss, accuracy and top-5
    accuracy (accuracy again without top-5). `batch` is a `(batch_size, D)` buffer."""
    count = len(y_train)
    order = rng.permutation(count)
    labels = y_train[order]
    onehot, scores = stack.onehot(labels), stack.epoch_scores(count)
    sums = 0.0
    for start in range(0, count, spec.batch_size):
        end = min(start + spec.batch_size, count)
        uniform = (rng.random((end - start, spec.hidden_units), dtype=np.float32)
                   if spec.head == "mlp" else None)
        # Into one reused buffer (no page faults); mode="clip" spares take its bounds-check copy.
        x = np.take(x_train, order[start:end], axis=0, out=batch[:end - start], mode="clip")
        sums = sums + stack.step(x, labels[start:end], uniform,
                                 onehot=None if onehot is None else onehot[:, start:end],
                                 scores=None if scores is None else scores[..., start:end])
    if scores is not None:
        sums = sums + _class_major_sums(scores, onehot, labels, spec.num_classes >= 5)
    return sums / count


def _history_row(epoch, position, train, validation, top5):
    row = {"epoch": epoch, "loss": float(train[0, position]), "accuracy": float(train[1, position]),
           "val_loss": float(validation[0, position]), "val_accuracy": float(validation[1, position])}
    if top5:
        row.update(top5_accuracy=float(train[2, position]), val_top5_accuracy=float(validation[2, position]))
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


class _Run:
    """The histories, early stopping and results of a stack's heads, by their index in the spec."""

    def __init__(self, spec, log):
        self.spec, self.log = spec, log
        self.histories = [[] for _ in range(spec.size)]
        self.stoppers = [_EarlyStopping(spec.early_stopping) for _ in range(spec.size)]
        self.alive = list(range(spec.size))  # index in the spec, by stack position
        self.results = [None] * spec.size

    def record(self, stack, epochs):
        """Records validated epochs `[(epoch, train (3, heads), validation (3, heads), snapshot)]`
        in order; a head stops at its early-stopping epoch and leaves the stack."""
        top5, stopped = self.spec.num_classes >= 5, {}
        for epoch, train, validation, snapshot in epochs:
            for position, original in enumerate(self.alive):
                if position in stopped:
                    continue
                row = _history_row(epoch, position, train, validation, top5)
                self.histories[original].append(row)
                if self.log:
                    self.log(f"Epoch {epoch + 1}/{self.spec.epochs}: " + "  ".join(
                        f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
                if self.spec.early_stopping and self.stoppers[original].should_stop(
                        epoch, row["val_loss"], lambda p=position, s=snapshot: stack.head_weights(p, s)):
                    stopped[position] = epoch
        for position, epoch in stopped.items():
            original, stopper = self.alive[position], self.stoppers[self.alive[position]]
            history = tuple(self.histories[original])
            self.results[original] = TrainedHead(*map(tuple, stopper.weights), history, epoch + 1,
                                                 stopper.best_epoch)
        keep = [p for p in range(len(self.alive)) if p not in stopped]
        if stopped and keep:
            stack.keep_only(keep)
        self.alive = [self.alive[p] for p in keep]

    def finish(self, stack):
        """The heads' results; those that did not stop early take the stack's last weights."""
        snapshot = stack.snapshot()
        for position, original in enumerate(self.alive):
            stopper = self.stoppers[original]
            kernels, biases = (stopper.weights if self.spec.early_stopping
                               else stack.head_weights(position, snapshot))
            best_epoch = stopper.best_epoch if self.spec.early_stopping else self.spec.epochs - 1
            history = tuple(self.histories[original])
            self.results[original] = TrainedHead(tuple(kernels), tuple(biases), history, self.spec.epochs,
                                                 best_epoch)
        return self.results


class _Validator:
    """Scores blocks of epochs from their snapshots and records them in order.

    Without early stopping nothing waits on a block's scores, so a helper thread
    computes them while the next epochs train (NumPy releases the GIL in its products
    and array loops, so a second core, when free, takes the validation's share), and
    each block is recorded once it and those before it are done. With early stopping,
    a block is scored and recorded before training goes on: a stop changes the stack.
    """

    def __init__(self, stack, run, x_val, y_val, background):
        self.stack, self.run, self.x_val, self.y_val = stack, run, x_val, y_val
        self.waiting = collections.deque()
        self.pool = futures.ThreadPoolExecutor(1) if background else None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, pending):
        """Scores `[(epoch, training means, snapshot)]`, now or in the helper thread."""
        snapshots = [snapshot for _, _, snapshot in pending]
        if self.pool is None:
            self._record(pending, self.stack.validate(self.x_val, self.y_val, snapshots))
        else:
            self.waiting.append((pending, self.pool.submit(self.stack.validate, self.x_val, self.y_val,
                                                            snapshots)))
            self.drain(wait=False)

    def drain(self, wait):
        """Records the blocks scored so far, in order (all of them with `wait`)."""
        while self.waiting and (wait or self.waiting[0][1].done()):
            pending, scores = self.waiting.popleft()
            self._record(pending, scores.result())

    def _record(self, pending, scores):
        self.run.record(self.stack, [(e, t, v, s) for (e, t, s), v in zip(pending, scores)])


def train_stack(x_train, y_train, x_val, y_val, spec, log=None, stack_type=None):
    """Trains `spec.size` heads of one shape together on standardized features.

    Validation scores each epoch's weights, as Keras' `fit` does, from snapshots of
    them: `SoftmaxStack` a block of epochs at once (`validation_block`) and, without
    early stopping, in a helper thread beside the training of the next epochs
    (`_Validator`); epochs are recorded in order. With early stopping, a block holds
    at most `spec.early_stopping` epochs; a head that stops inside one gets the
    history and weights it would get if validated after every epoch (the epochs
    trained past its stop are dropped).

    Args:
        x_train: `(n, D)` float32 standardized training features.
        y_train: `(n,)` int labels.
        x_val: `(m, D)` float32 standardized validation features (for `val_loss`).
        y_val: `(m,)` int labels.
        spec: a `StackSpec`.
        log: if given, called with one line per epoch (single heads).
        stack_type: `SoftmaxStack` or `DenseStack`; default: the first for softmax heads.

    Returns:
        One `TrainedHead` per head, in `spec`'s order.
    """
    x_train, x_val = np.asarray(x_train, np.float32), np.asarray(x_val, np.float32)
    rng = np.random.default_rng(spec.seed)
    stack_type = stack_type or (SoftmaxStack if spec.head == "softmax" else DenseStack)
    stack = stack_type(spec, x_train.shape[1], rng)
    run = _Run(spec, log)
    block = stack.validation_block(spec.epochs, len(y_val))
    # Early stopping: a stop must be known within `patience` epochs. Without: blocks small
    # enough to overlap training (only the last one waits at the end).
    block = min(block, spec.early_stopping or -(-spec.epochs // VALIDATION_BLOCKS))
    batch = np.empty((min(spec.batch_size, len(y_train)), x_train.shape[1]), np.float32)
    pending = []
    with _Validator(stack, run, x_val, y_val, background=not spec.early_stopping) as validator:
        for epoch in range(spec.epochs):
            pending.append((epoch, _train_epoch(stack, x_train, y_train, spec, rng, batch), stack.snapshot()))
            if len(pending) == block or epoch == spec.epochs - 1:
                validator.submit(pending)
                pending = []
                if not run.alive:
                    break
        validator.drain(wait=True)
    return run.finish(stack)


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
